package afxdp_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/afxdp"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

var (
	router    = netip.MustParseAddr("192.0.2.1")
	collector = netip.MustParseAddr("198.51.100.1")
)

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v %s", strings.Join(args, " "), err, out)
	}
}

// pair is a veth pair: rx stays in the test's (root) namespace and gets
// the XDP program and the AF_XDP socket; tx lives in a namespace of its
// own, from which the test sends.
type pair struct {
	rx    *net.Interface
	ns    string // namespace of tx
	tx    string
	txMAC net.HardwareAddr
}

func newPair(t testing.TB) pair {
	t.Helper()
	testenv.RequireRoot(t)
	ns := uniqueName("jmxdp-afxdp-")
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	rx := "afx" + ns[len(ns)-8:]
	tx := rx + "p"
	run(t, "ip", "link", "add", rx, "type", "veth", "peer", "name", tx, "netns", ns)
	// Deleting one end deletes both; the namespace going also takes tx.
	t.Cleanup(func() { exec.Command("ip", "link", "del", rx).Run() })
	run(t, "ip", "link", "set", rx, "up")
	run(t, "ip", "-n", ns, "link", "set", tx, "up")
	ifc, err := net.InterfaceByName(rx)
	if err != nil {
		t.Fatal(err)
	}
	p := pair{rx: ifc, ns: ns, tx: tx}
	inNetns(t, ns, func() {
		txc, err := net.InterfaceByName(tx)
		if err != nil {
			t.Fatal(err)
		}
		p.txMAC = txc.HardwareAddr
	})
	return p
}

// inNetns runs fn on a thread switched into the named namespace. Sockets
// fn creates stay in that namespace after the thread switches back.
func inNetns(t testing.TB, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer unix.Close(orig)
	target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns %s: %v", ns, err)
	}
	defer func() {
		// A thread that cannot go back must die with its goroutine: stay
		// locked so the runtime discards it.
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns back: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

// packetSocket opens an AF_PACKET socket bound to ifname in ns, to send
// frames exactly as built.
func packetSocket(t testing.TB, ns, ifname string) int {
	t.Helper()
	fd := -1
	inNetns(t, ns, func() {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			t.Fatal(err)
		}
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
			unix.Close(s)
			t.Fatal(err)
		}
		fd = s
	})
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func send(t testing.TB, fd int, frames ...[]byte) {
	t.Helper()
	for i, f := range frames {
		if _, err := unix.Write(fd, f); err != nil {
			t.Fatalf("send frame %d: %v", i, err)
		}
	}
}

// capture loads jmxdp (default action capture) and attaches it to p.rx.
//
// Nothing is attached to the sending end: frames a veth transmits run
// through the peer's native XDP program (veth NAPI) and XDP_REDIRECT into
// an XSKMAP works from there. An XDP program on the peer is only needed
// to redirect *into* a veth through a DEVMAP (ndo_xdp_xmit).
func capture(t testing.TB, p pair, mode loader.Mode) *loader.Program {
	t.Helper()
	prog, err := loader.Load(loader.Options{MaxStreams: 4096, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	if err := prog.Configure(loader.Config{}); err != nil {
		t.Fatal(err)
	}
	if got, err := prog.Attach(p.rx.Name, mode); err != nil {
		t.Fatal(err)
	} else if mode == loader.ModeAuto && got != loader.ModeDriver {
		t.Errorf("veth supports driver mode, got %s", got)
	}
	return prog
}

func openSocket(t testing.TB, cfg afxdp.Config) *afxdp.Socket {
	t.Helper()
	s, err := afxdp.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mirrors(t testing.TB, p pair, mid uint32, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for i := range n {
		m := gen.Mirror{SrcMAC: p.txMAC, DstMAC: p.rx.HardwareAddr, Router: router, Collector: collector,
			MID: mid, SID: uint32(i), Inner: gen.InnerIPv4ICMPEcho(router, collector, 1, uint16(i), i%200)}
		f, err := m.Frame()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// receiveCopy collects frames until it has want of them or the deadline
// passes.
func receiveCopy(t testing.TB, s *afxdp.Socket, want int, deadline time.Duration) [][]byte {
	t.Helper()
	var got [][]byte
	end := time.Now().Add(deadline)
	for len(got) < want && time.Now().Before(end) {
		if _, err := s.Poll(50 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		s.ReceiveCopy(func(b []byte) { got = append(got, bytes.Clone(b)) })
	}
	return got
}

func counters(t testing.TB, prog *loader.Program) vocab.Counters {
	t.Helper()
	c, err := prog.Maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sameFrames(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("received %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs:\n got  %x\n want %x", i, got[i], want[i])
		}
	}
}

// Jmirror frames sent into a veth reach the AF_XDP socket through jmxdp's
// capture action byte for byte; other traffic does not. Native (driver)
// and generic XDP both redirect to a copy-mode socket.
func TestCaptureEndToEnd(t *testing.T) {
	for _, mode := range []loader.Mode{loader.ModeAuto, loader.ModeGeneric} {
		t.Run(string(mode), func(t *testing.T) { testCapture(t, mode) })
	}
}

func testCapture(t *testing.T, mode loader.Mode) {
	p := newPair(t)
	prog := capture(t, p, mode)
	s := openSocket(t, afxdp.Config{Ifindex: p.rx.Index, ZeroCopy: true})
	if s.Mode() != afxdp.ModeCopy {
		t.Errorf("veth has no zero-copy support, yet mode %q", s.Mode())
	}
	if err := prog.Maps.SetXSK(0, s.FD()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Maps.DeleteXSK(0) })
	tx := packetSocket(t, p.ns, p.tx)

	want := mirrors(t, p, 7, 100)
	send(t, tx, want...)
	got := receiveCopy(t, s, len(want), 5*time.Second)
	sameFrames(t, got, want)

	c := counters(t, prog)
	if c[vocab.StatActionCapture] != uint64(len(want)) || c[vocab.StatCaptureFailed] != 0 {
		t.Errorf("capture counters: %d captured, %d failed; want %d, 0",
			c[vocab.StatActionCapture], c[vocab.StatCaptureFailed], len(want))
	}

	// Not Jmirror: the program passes them to the stack, not to us.
	other := gen.Mirror{SrcMAC: p.txMAC, DstMAC: p.rx.HardwareAddr, Router: router, Collector: collector, Port: 30031, MID: 1}
	otherFrame, err := other.Frame()
	if err != nil {
		t.Fatal(err)
	}
	before := c[vocab.StatNotJmirror]
	send(t, tx, otherFrame, gen.NotJmirrorICMPEcho(router, collector, 1, 1, 56))
	for end := time.Now().Add(5 * time.Second); counters(t, prog)[vocab.StatNotJmirror] < before+2; {
		if time.Now().After(end) {
			t.Fatal("the program never saw the non-Jmirror frames")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if extra := receiveCopy(t, s, 1, 200*time.Millisecond); len(extra) != 0 {
		t.Errorf("non-Jmirror traffic reached the socket: %x", extra)
	}
	if c := counters(t, prog); c[vocab.StatActionCapture] != uint64(len(want)) {
		t.Errorf("capture counter moved to %d", c[vocab.StatActionCapture])
	}

	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RxDropped != 0 || st.RxInvalidDescs != 0 || st.RxRingFull != 0 {
		t.Errorf("socket dropped frames: %+v", st)
	}
}

// receiveLent sends want through tx, burst frames at a time, and collects
// them with Receive, Frame and Release, within 10 s; released, if set, sees
// each batch once it is given back.
func receiveLent(t *testing.T, s *afxdp.Socket, tx int, want [][]byte, burst int, released func([]afxdp.Desc)) [][]byte {
	t.Helper()
	batch := make([]afxdp.Desc, 8)
	var got [][]byte
	end := time.Now().Add(10 * time.Second)
	for sent := 0; len(got) < len(want); {
		if time.Now().After(end) {
			t.Fatalf("timed out with %d of %d frames", len(got), len(want))
		}
		if sent == len(got) {
			n := min(burst, len(want)-sent)
			send(t, tx, want[sent:sent+n]...)
			sent += n
		}
		if _, err := s.Poll(50 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		n := s.Receive(batch)
		for _, d := range batch[:n] {
			got = append(got, bytes.Clone(s.Frame(d)))
		}
		if err := s.Release(batch[:n]...); err != nil {
			t.Fatal(err)
		}
		if released != nil {
			released(batch[:n])
		}
	}
	return got
}

// The batch API: frames stay out until released, each exactly once, and
// far more frames than the UMEM holds pass through as they are recycled.
func TestReceiveRelease(t *testing.T) {
	p := newPair(t)
	prog := capture(t, p, loader.ModeAuto)
	const frames = 32
	s := openSocket(t, afxdp.Config{Ifindex: p.rx.Index, NumFrames: frames, RxSize: 16, FillSize: 16})
	if err := prog.Maps.SetXSK(0, s.FD()); err != nil {
		t.Fatal(err)
	}
	tx := packetSocket(t, p.ns, p.tx)

	want := mirrors(t, p, 9, 20*frames)
	// Bursts below the fill ring size: nothing may be dropped.
	got := receiveLent(t, s, tx, want, 8, func(released []afxdp.Desc) {
		if len(released) > 0 {
			if err := s.Release(released[0]); err == nil {
				t.Fatal("a second release of the same frame was accepted")
			}
		}
	})
	sameFrames(t, got, want)
	if err := s.Release(afxdp.Desc{Addr: 1 << 40}); err == nil {
		t.Error("release of an address outside the UMEM was accepted")
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RxDropped != 0 || st.RxRingFull != 0 || st.RxInvalidDescs != 0 {
		t.Errorf("socket dropped frames: %+v", st)
	}
	if c := counters(t, prog); c[vocab.StatActionCapture] != uint64(len(want)) || c[vocab.StatCaptureFailed] != 0 {
		t.Errorf("capture counters: %d captured, %d failed", c[vocab.StatActionCapture], c[vocab.StatCaptureFailed])
	}
}

func TestStatsAndClose(t *testing.T) {
	p := newPair(t)
	s, err := afxdp.Open(afxdp.Config{Ifindex: p.rx.Index})
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode() != afxdp.ModeCopy || s.FD() < 0 {
		t.Errorf("mode %q fd %d", s.Mode(), s.FD())
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st != (afxdp.Stats{}) {
		t.Errorf("fresh socket has counters: %+v", st)
	}
	if ok, err := s.Poll(10 * time.Millisecond); ok || err != nil {
		t.Errorf("poll on an idle socket: %v %v", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.Stats(); !errors.Is(err, afxdp.ErrClosed) {
		t.Errorf("stats after close: %v", err)
	}
	if _, err := s.Poll(0); !errors.Is(err, afxdp.ErrClosed) {
		t.Errorf("poll after close: %v", err)
	}
	if n := s.ReceiveCopy(func([]byte) { t.Error("frame after close") }); n != 0 {
		t.Errorf("receive after close: %d", n)
	}
}

func TestOpenErrors(t *testing.T) {
	p := newPair(t)
	n, err := afxdp.RxQueues(p.rx.Name)
	if err != nil || n != 1 {
		t.Fatalf("RxQueues(%s) = %d, %v; veth has 1", p.rx.Name, n, err)
	}
	for _, tc := range []struct {
		cfg  afxdp.Config
		want string
	}{
		{afxdp.Config{Ifindex: 0}, "invalid ifindex"},
		{afxdp.Config{Ifindex: 1 << 30}, "no such interface"},
		{afxdp.Config{Ifindex: p.rx.Index, Queue: 5}, fmt.Sprintf("%s (ifindex %d) queue 5 in copy mode: invalid argument: the interface has 1 RX queues", p.rx.Name, p.rx.Index)},
		{afxdp.Config{Ifindex: p.rx.Index, Queue: 5, ZeroCopy: true}, "zero-copy attempt"},
		{afxdp.Config{Ifindex: p.rx.Index, Queue: 5, SG: true}, "copy XDP_USE_SG attempt"},
		{afxdp.Config{Ifindex: p.rx.Index, MaxChain: 65}, "MaxChain 65"},
		{afxdp.Config{Ifindex: p.rx.Index, FrameSize: 3000}, "FrameSize 3000"},
		{afxdp.Config{Ifindex: p.rx.Index, RxSize: 1000}, "powers of two"},
	} {
		s, err := afxdp.Open(tc.cfg)
		if err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", tc.cfg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v): %v; want it to mention %q", tc.cfg, err, tc.want)
		}
	}
	// One socket per queue.
	openSocket(t, afxdp.Config{Ifindex: p.rx.Index})
	if s2, err := afxdp.Open(afxdp.Config{Ifindex: p.rx.Index}); err == nil {
		s2.Close()
		t.Error("second socket on the same queue was accepted")
	} else {
		t.Logf("second socket: %v", err)
	}
	if _, err := afxdp.RxQueues("jmxdp-no-such-if"); err == nil {
		t.Error("RxQueues of a missing interface")
	}
	if _, err := afxdp.RxQueues("../x"); err == nil {
		t.Error("RxQueues accepted a path")
	}
}

// The whole path, veth transmit included: jmxdp redirecting to the socket
// and ReceiveCopy handing each frame over. Frames go in bursts well below
// the ring sizes, so none is dropped and the loop is bounded by b.N.
func BenchmarkCaptureVeth(b *testing.B) {
	p := newPair(b)
	prog := capture(b, p, loader.ModeAuto)
	s := openSocket(b, afxdp.Config{Ifindex: p.rx.Index})
	if err := prog.Maps.SetXSK(0, s.FD()); err != nil {
		b.Fatal(err)
	}
	tx := packetSocket(b, p.ns, p.tx)
	frames := mirrors(b, p, 3, 64)
	var sink [2048]byte
	b.SetBytes(int64(len(frames[0])))
	b.ResetTimer()
	for i := 0; i < b.N; i += len(frames) {
		burst := frames[:min(len(frames), b.N-i)]
		send(b, tx, burst...)
		got := 0
		for end := time.Now().Add(5 * time.Second); got < len(burst); {
			if time.Now().After(end) {
				b.Fatalf("received %d of %d", got, len(burst))
			}
			if _, err := s.Poll(100 * time.Millisecond); err != nil {
				b.Fatal(err)
			}
			got += s.ReceiveCopy(func(d []byte) { copy(sink[:], d) })
		}
	}
}

// The lending API on a real multi-buffer socket: at MTU 9000 jumbo Jmirror
// frames, which the kernel splits over several 2 KiB UMEM frames, come out
// of Receive as one Desc each, byte for byte, between small ones, in driver
// and generic mode; every chain is counted joined, and the UMEM's frames
// all come back (far more frames pass than the UMEM holds).
func TestReceiveJumboLive(t *testing.T) {
	for _, mode := range []loader.Mode{loader.ModeDriver, loader.ModeGeneric} {
		t.Run(string(mode), func(t *testing.T) {
			p := newPair(t)
			run(t, "ip", "link", "set", p.rx.Name, "mtu", "9000")
			run(t, "ip", "-n", p.ns, "link", "set", p.tx, "mtu", "9000")
			prog := capture(t, p, mode)
			const frames = 64
			s := openSocket(t, afxdp.Config{Ifindex: p.rx.Index, NumFrames: frames, RxSize: 32, FillSize: 32, SG: true})
			if !s.SG() {
				testenv.SkipOrFail(t, "no XDP_USE_SG socket on this kernel or driver")
			}
			if err := prog.Maps.SetXSK(0, s.FD()); err != nil {
				t.Fatal(err)
			}
			tx := packetSocket(t, p.ns, p.tx)
			var want [][]byte
			for i := range 40 {
				n := 20
				if i%2 == 0 {
					n = 8900 // a 9000-byte frame, with the headers
				}
				payload := make([]byte, n)
				for j := range payload {
					payload[j] = byte(i + j)
				}
				m := gen.Mirror{SrcMAC: p.txMAC, DstMAC: p.rx.HardwareAddr, Router: router, Collector: collector,
					MID: 15, SID: uint32(i), Inner: gen.InnerIPv4UDP(router, collector, 1000, 2000, payload)}
				f, err := m.Frame()
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, f)
			}
			// Two at a time: a jumbo frame takes 5 UMEM frames and the
			// fill ring holds 32.
			got := receiveLent(t, s, tx, want, 2, nil)
			sameFrames(t, got, want)
			if c := s.Chains(); c.Joined != uint64(len(want)/2) || c.Dropped != 0 {
				t.Errorf("chains %+v: want %d joined, none dropped", c, len(want)/2)
			}
			st, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.RxDropped != 0 || st.RxRingFull != 0 || st.RxInvalidDescs != 0 {
				t.Errorf("socket dropped frames: %+v", st)
			}
		})
	}
}
