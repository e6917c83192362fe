package daemon_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/capfile"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
	"github.com/jmxdp/jmxdp/userspace/tools/xmit"
)

// blast sends packets frames of streams streams from the lab's router end
// with xmit (BPF_PROG_TEST_RUN live frames), in calls of burst frames each,
// and returns what the kernel says it sent.
func (e *env) blast(t *testing.T, packets uint64, streams, burst int) xmit.Stats {
	t.Helper()
	m := gen.Mirror{SrcMAC: e.lab.RouterMAC, DstMAC: e.lab.HostMAC, Router: e.lab.RouterAddr.Addr(), Collector: e.lab.HostAddr.Addr(),
		MID: 1, SID: 1, Inner: gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, 200)}
	frame, err := m.Frame()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := xmit.Run(ctx, xmit.Options{
		Iface: e.lab.RouterIface, Netns: e.lab.Name, Templates: [][]byte{frame},
		Intercepts: streams, Sessions: 1, BaseMID: 1, BaseSID: 1,
		Packets: packets, Duration: 30 * time.Second, MaxBurst: burst, Batch: min(burst, 64),
	})
	if err != nil {
		t.Fatalf("xmit: %v", err)
	}
	return st
}

// vethRefused is what the router end's veth refused to hand its peer
// (its XDP ring was full): frames that never reached jmxdp's program.
func (e *env) vethRefused(t *testing.T) uint64 {
	t.Helper()
	var st map[string]uint64
	if err := netns.Do(e.lab.Name, func() (err error) { st, err = xmit.DeviceStats(e.lab.RouterIface); return err }); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for k, v := range st {
		if strings.HasPrefix(k, "tx_queue_") && strings.HasSuffix(k, "_xdp_xmit_errors") {
			n += v
		}
	}
	return n
}

// countFilePackets counts the packets in every stream file under dir.
func countFilePackets(t *testing.T, dir string) uint64 {
	t.Helper()
	var n uint64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".pcapng") {
			return err
		}
		r, err := capfile.Open(path)
		if err != nil {
			return err
		}
		defer r.Close()
		for i := 0; i < 1<<24; i++ {
			if _, err := r.Next(); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// TestConservationUnderOverload overloads the pipeline on purpose (a ring
// of 64 frames and the smallest queue) with more than it can take, and
// checks that every frame the program redirected is written or dropped
// under a named reason, exactly: redirected = received + ring drops, and
// received = written + queue drops + writer drops; the files hold the
// written packets, and the stop line says the same.
func TestConservationUnderOverload(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Capture.FramesPerQueue = 64
	cfg.Capture.QueueMemory = 1 // the floor: two batches a queue
	d := e.start(t, cfg)
	st := e.blast(t, 200_000, 100, 4096)
	time.Sleep(300 * time.Millisecond) // the rings drain
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	a, err := d.Account()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d; %+v", st.Sent, a)
	if a.RingDrops+a.QueueDrops == 0 {
		t.Fatalf("nothing was dropped: the test did not overload the pipeline (%+v)", a)
	}
	if a.Redirected == 0 || a.Redirected > st.Sent {
		t.Fatalf("redirected %d of %d sent", a.Redirected, st.Sent)
	}
	if a.Redirected != a.Received+a.RingDrops {
		t.Errorf("redirected %d != received %d + ring drops %d", a.Redirected, a.Received, a.RingDrops)
	}
	if a.Fragments != 0 {
		t.Fatalf("%d fragments in unfragmented traffic", a.Fragments)
	}
	if a.Received != a.Written+a.QueueDrops+sum(a.WriterDrops) {
		t.Errorf("received %d != written %d + queue drops %d + writer drops %v", a.Received, a.Written, a.QueueDrops, a.WriterDrops)
	}
	if got := countFilePackets(t, e.out); got != a.Written {
		t.Errorf("files hold %d packets, the writers say %d", got, a.Written)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `msg="capture stopped"`) || !strings.Contains(logs, "dropped_queue=") || !strings.Contains(logs, "dropped_ring=") {
		t.Errorf("no stop line with the drops by reason:\n%s", logs)
	}
}

// TestBurstDefaultConfig sends one burst of 16384 back-to-back frames (a
// single live-frames call: nothing reads the ring meanwhile) to the daemon
// with the default capture config: all of them reach the files.
func TestBurstDefaultConfig(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	def := config.Default().Capture
	if cfg.Capture.FramesPerQueue != def.FramesPerQueue || cfg.Capture.QueueMemory != def.QueueMemory {
		t.Fatalf("not the default capture config: %+v", cfg.Capture)
	}
	d := e.start(t, cfg)
	const burst = 16384
	refused0 := e.vethRefused(t)
	st := e.blast(t, burst, 1000, burst)
	if st.Sent != burst {
		t.Fatalf("sent %d, want one burst of %d", st.Sent, burst)
	}
	// The lab's own limit, not jmxdp's: veth's ring between the two ends.
	refused := e.vethRefused(t) - refused0
	time.Sleep(300 * time.Millisecond)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	a, err := d.Account()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a burst of %d: veth refused %d; %+v", burst, refused, a)
	if a.Redirected+refused != burst || refused > burst/100 {
		t.Errorf("a burst of %d: %d reached the program, veth refused %d", burst, a.Redirected, refused)
	}
	if a.RingDrops != 0 || a.QueueDrops != 0 || sum(a.WriterDrops) != 0 || a.Written != a.Redirected {
		t.Errorf("a burst of %d: %+v", burst, a)
	}
	if got := countFilePackets(t, e.out); got != a.Written {
		t.Errorf("files hold %d packets, want %d", got, a.Written)
	}
}

// A mistyped interface is refused before anything is pinned or created
// (issue 13, item 3): no pinned maps, no output directory, no lock file.
func TestUnknownInterfaceLeavesNothing(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Interface = e.lab.HostIface + "x"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, nil)
	if err == nil {
		d.Stop()
		t.Fatal("started on an interface that does not exist")
	}
	if !strings.Contains(err.Error(), cfg.Interface) {
		t.Errorf("error %q does not name the interface", err)
	}
	for _, p := range []string{e.pinDir, e.out} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is there after a refused start (%v)", p, err)
		}
	}
}
