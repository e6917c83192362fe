package capture_test

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/capture"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
	"github.com/jmxdp/jmxdp/userspace/tools/send"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// slowSink stands for a disk that cannot keep up: every write takes delay.
type slowSink struct {
	delay time.Duration

	mu      sync.Mutex
	written map[writer.Key]int
	dropped map[writer.Key]int
	ts      []time.Time
}

func (s *slowSink) SetClock(time.Time) {}

func (s *slowSink) WriteAt(k writer.Key, ns uint64, _ netip.Addr, _ pcapng.LinkKind, _ []byte) bool {
	ts := time.Unix(0, int64(ns))
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written[k]++
	s.ts = append(s.ts, ts)
	return true
}

func (s *slowSink) Drop(k writer.Key, reason writer.DropReason, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reason == writer.DropQueue {
		s.dropped[k] += n
	}
}

func (s *slowSink) Tick() {}

func (s *slowSink) totals() (w, d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.written {
		w += n
	}
	for _, n := range s.dropped {
		d += n
	}
	return w, d
}

func setup(t *testing.T) (*lab.Lab, *loader.Program) {
	t.Helper()
	l := labtest.New(t, "jxc")
	prog, err := loader.Load(loader.Options{MaxStreams: 4096, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	if err := prog.Configure(loader.Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := prog.Attach(l.HostIface, loader.ModeAuto); err != nil {
		t.Fatal(err)
	}
	return l, prog
}

func mirrors(t *testing.T, l *lab.Lab, n, streams int) [][]byte {
	t.Helper()
	var out [][]byte
	for i := range n {
		m := gen.Mirror{SrcMAC: l.RouterMAC, DstMAC: l.HostMAC, Router: l.RouterAddr.Addr(), Collector: l.HostAddr.Addr(),
			MID: 7, SID: uint32(i % streams), Inner: gen.InnerIPv4ICMPEcho(l.RouterAddr.Addr(), l.HostAddr.Addr(), 1, uint16(i), 64)}
		f, err := m.Frame()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// A sink slower than the traffic does not stall the ring: the bounded batch
// pool runs dry, the frames that do not fit are dropped and reported to
// the sink per stream, and every frame taken off the ring is accounted for,
// written or dropped.
func TestSlowSinkDropsInsteadOfBlocking(t *testing.T) {
	l, prog := setup(t)
	sink := &slowSink{delay: 2 * time.Millisecond, written: map[writer.Key]int{}, dropped: map[writer.Key]int{}}
	// The smallest pool: two batches.
	c, err := capture.Start(capture.Config{Ifname: l.HostIface, QueueMemory: 1, Logger: slog.New(slog.DiscardHandler)}, prog.Maps, sink)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	s, err := l.Sender()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Paced, so that the ring never overflows in the kernel: what is lost
	// is lost in the pipeline, where it is counted.
	frames := mirrors(t, l, 3000, 3)
	if rep, err := s.Run(context.Background(), frames, send.Options{Rate: 3000, Loops: 1}); err != nil || rep.Sent != uint64(len(frames)) {
		t.Fatalf("sent %d: %v", rep.Sent, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		cs := c.Stats()
		var taken uint64
		for _, q := range cs.Queues {
			taken += q.Frames
		}
		w, d := sink.totals()
		if taken > 0 && uint64(w+d) == taken && cs.QueueDrops == uint64(d) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("frames taken %d, written %d, dropped %d (stats %d): not all accounted for", taken, w, d, cs.QueueDrops)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w, d := sink.totals()
	if d == 0 {
		t.Fatalf("a 2 ms/packet sink kept up with %d frames: nothing was dropped (written %d)", len(frames), w)
	}
	sink.mu.Lock()
	for k, n := range sink.dropped {
		if k.MID != 7 || k.SID > 2 || n == 0 {
			t.Errorf("drops attributed to %+v (%d)", k, n)
		}
	}
	sink.mu.Unlock()
	cnt, err := prog.Maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if cnt[vocab.StatCaptureFailed] != 0 {
		t.Errorf("%d capture failures: the socket was registered all along", cnt[vocab.StatCaptureFailed])
	}
	t.Logf("3000 frames: %d written, %d dropped for a slow sink", w, d)
}

// Stop drains: frames already on the ring when Stop is called reach the
// sink, and the kernel stamps each with its receive time.
func TestStopDrainsAndTimestamps(t *testing.T) {
	l, prog := setup(t)
	sink := &slowSink{written: map[writer.Key]int{}, dropped: map[writer.Key]int{}}
	c, err := capture.Start(capture.Config{Ifname: l.HostIface, Logger: slog.New(slog.DiscardHandler)}, prog.Maps, sink)
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Sender()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := time.Now()
	frames := mirrors(t, l, 500, 5)
	if n, err := s.Send(frames); err != nil || n != len(frames) {
		t.Fatalf("sent %d: %v", n, err)
	}
	after := time.Now()
	// Wait for the kernel to have redirected everything, then stop.
	deadline := time.Now().Add(10 * time.Second)
	for {
		cnt, err := prog.Maps.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if cnt[vocab.StatActionCapture] == uint64(len(frames)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kernel captured %d of %d", cnt[vocab.StatActionCapture], len(frames))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if w, d := sink.totals(); w != len(frames) || d != 0 {
		t.Fatalf("after Stop: %d written, %d dropped, want all %d written", w, d, len(frames))
	}
	cs := c.Stats()
	if cs.NoMetadata != 0 {
		t.Errorf("%d frames without the kernel's timestamp", cs.NoMetadata)
	}
	for i, ts := range sink.ts {
		if ts.Before(before.Add(-50*time.Millisecond)) || ts.After(after.Add(50*time.Millisecond)) {
			t.Fatalf("frame %d stamped %v, sent between %v and %v", i, ts, before, after)
		}
		if i > 0 && ts.Before(sink.ts[i-1]) {
			t.Fatalf("frame %d stamped before frame %d", i, i-1)
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}
