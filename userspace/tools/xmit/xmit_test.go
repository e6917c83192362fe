package xmit

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

var (
	router  = netip.MustParseAddr("192.0.2.1")
	router2 = netip.MustParseAddr("192.0.2.2")
)

func mirrorFrame(t *testing.T, m gen.Mirror) []byte {
	t.Helper()
	if !m.Collector.IsValid() {
		m.Collector = netip.MustParseAddr("198.51.100.1")
	}
	if m.Inner == nil {
		m.Inner = gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, 32)
	}
	f, err := m.Frame()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestXmitCheckTemplate(t *testing.T) {
	v6 := gen.Mirror{Router: netip.MustParseAddr("2001:db8::1"), Collector: netip.MustParseAddr("2001:db8::2")}
	big := make([]byte, 2000)
	frags, err := gen.Mirror{Router: router, Collector: netip.MustParseAddr("198.51.100.1"), Inner: big, MTU: 1500}.Frames()
	if err != nil || len(frags) != 2 {
		t.Fatalf("fragments: %v, %d", err, len(frags))
	}
	for _, c := range []struct {
		name  string
		frame []byte
		port  uint16
		err   string
	}{
		{"ipv4", mirrorFrame(t, gen.Mirror{Router: router}), gen.DefaultPort, ""},
		{"port", mirrorFrame(t, gen.Mirror{Router: router, Port: 6502}), 6502, ""},
		{"qinq", mirrorFrame(t, gen.Mirror{Router: router, VLANs: []gen.VLAN{{TPID: gen.TPID8021AD, ID: 10}, {ID: 20}}}), gen.DefaultPort, ""},
		{"ipv4 options", mirrorFrame(t, gen.Mirror{Router: router, IPOptions: []byte{1, 1, 1, 1}}), gen.DefaultPort, ""},
		{"ipv6 needs a checksum", mirrorFrame(t, gen.Mirror{Router: v6.Router, Collector: v6.Collector, UDPChecksum: true}), 0, "checksum"},
		{"ipv4 checksum", mirrorFrame(t, gen.Mirror{Router: router, UDPChecksum: true}), 0, "checksum"},
		{"first fragment", frags[0], 0, "fragment"},
		{"later fragment", frags[1], 0, "fragment"},
		{"not udp", gen.NotJmirrorTCPSyn(router, netip.MustParseAddr("198.51.100.1"), 40000, 22), 0, "not UDP"},
		{"short", make([]byte, 10), 0, "bytes"},
		{"too long", make([]byte, MaxFrameLen+1), 0, "bytes"},
	} {
		port, err := CheckTemplate(c.frame)
		switch {
		case c.err == "" && (err != nil || port != c.port):
			t.Errorf("%s: port %d, %v; want %d", c.name, port, err, c.port)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %v; want an error about %q", c.name, err, c.err)
		}
	}
}

func TestXmitPerStream(t *testing.T) {
	st := Stats{PerCPU: []uint64{7, 0, 12}, Intercepts: 2, Sessions: 3, BaseMID: MaxMID - 1, BaseSID: 10}
	// CPU 0: streams 0..5 once, then 0; CPU 2: 0..5 twice.
	want := map[Stream]uint64{
		{MaxMID - 1, 10}: 4, {MaxMID - 1, 11}: 3, {MaxMID - 1, 12}: 3,
		{MaxMID, 10}: 3, {MaxMID, 11}: 3, {MaxMID, 12}: 3,
	}
	if got := st.PerStream(); !maps.Equal(got, want) {
		t.Errorf("PerStream %v, want %v", got, want)
	}
	// Streams of its own per CPU: CPU c's session ids start at 10 + 3c.
	own := st
	own.StreamsPerCPU = true
	wantOwn := map[Stream]uint64{
		{MaxMID - 1, 10}: 2, {MaxMID - 1, 11}: 1, {MaxMID - 1, 12}: 1, {MaxMID, 10}: 1, {MaxMID, 11}: 1, {MaxMID, 12}: 1,
		{MaxMID - 1, 16}: 2, {MaxMID - 1, 17}: 2, {MaxMID - 1, 18}: 2, {MaxMID, 16}: 2, {MaxMID, 17}: 2, {MaxMID, 18}: 2,
	}
	if got := own.PerStream(); !maps.Equal(got, wantOwn) {
		t.Errorf("PerStream, streams per CPU: %v, want %v", got, wantOwn)
	}
	few := Stats{PerCPU: []uint64{2}, Intercepts: 4, Sessions: 4}
	if got := few.PerStream(); !maps.Equal(got, map[Stream]uint64{{0, 0}: 1, {0, 1}: 1}) {
		t.Errorf("PerStream %v", got)
	}
}

func TestXmitOptionsRefused(t *testing.T) {
	good := Options{Iface: "lo", Templates: [][]byte{mirrorFrame(t, gen.Mirror{Router: router})}, Packets: 1}
	for _, c := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"no limit", func(o *Options) { o.Packets = 0 }, "duration or a packet count"},
		{"no templates", func(o *Options) { o.Templates = nil }, "no template"},
		{"bad template", func(o *Options) { o.Templates = append(o.Templates, make([]byte, 20)) }, "template 1"},
		{"mid overflow", func(o *Options) { o.BaseMID, o.Intercepts = MaxMID, 2 }, "30 bits"},
		{"sid overflow", func(o *Options) { o.BaseSID, o.Sessions = 1<<32-1, 2 }, "32 bits"},
		{"batch", func(o *Options) { o.Batch = 1000 }, "batch"},
		{"rate", func(o *Options) { o.Rate = -1 }, "rate"},
		{"cpu", func(o *Options) { o.CPUs = []int{runtime.NumCPU()} }, "CPUs"},
		{"sid overflow per CPU", func(o *Options) { o.BaseSID, o.Sessions, o.StreamsPerCPU = 1<<32-1, 1, true }, "32 bits"},
	} {
		o := good
		c.mod(&o)
		if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error about %q", c.name, err, c.want)
		}
	}
}

// routerXmit reads the driver statistics of the lab's router end: its
// tx_queue_N_xdp_xmit counts the frames redirected to it that entered
// the host end's ring, tx_queue_N_xdp_xmit_errors those the full ring
// refused.
func routerXmit(t *testing.T, l *lab.Lab) (in, refused uint64) {
	t.Helper()
	var st map[string]uint64
	if err := netns.Do(l.Name, func() (err error) { st, err = DeviceStats(l.RouterIface); return err }); err != nil {
		t.Fatal(err)
	}
	for k, v := range st {
		switch {
		case strings.HasPrefix(k, "tx_queue_") && strings.HasSuffix(k, "_xdp_xmit"):
			in += v
		case strings.HasPrefix(k, "tx_queue_") && strings.HasSuffix(k, "_xdp_xmit_errors"):
			refused += v
		}
	}
	return in, refused
}

// attachJmxdp attaches the real program to the lab's host end with every
// stream counted and dropped.
func attachJmxdp(t *testing.T, l *lab.Lab) *loader.Program {
	t.Helper()
	p, err := loader.Load(loader.Options{MaxStreams: 4096, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Configure(loader.Config{DefaultAction: vocab.ActionCount}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Attach(l.HostIface, loader.ModeDriver); err != nil {
		t.Fatal(err)
	}
	return p
}

// streamPackets sums jmxdp's stream table over routers, by (mid, sid).
func streamPackets(t *testing.T, p *loader.Program) map[Stream]uint64 {
	t.Helper()
	ss, err := p.Maps.Streams()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[Stream]uint64)
	for _, s := range ss {
		out[Stream{s.MID, s.SID}] += s.Packets
	}
	return out
}

func counted(t *testing.T, p *loader.Program) uint64 {
	t.Helper()
	c, err := p.Maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c[vocab.StatActionCount]
}

// labTemplates are Jmirror frames to the lab's host end, of several sizes,
// from two routers, one of them VLAN-tagged.
func labTemplates(t *testing.T, l *lab.Lab) [][]byte {
	c := l.HostAddr.Addr()
	inner := func(n int) []byte {
		return gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, n)
	}
	return [][]byte{
		mirrorFrame(t, gen.Mirror{DstMAC: l.HostMAC, Router: router, Collector: c, Inner: inner(32)}),
		mirrorFrame(t, gen.Mirror{DstMAC: l.HostMAC, Router: router2, Collector: c, Inner: inner(1200)}),
		mirrorFrame(t, gen.Mirror{DstMAC: l.HostMAC, Router: router, Collector: c, Inner: inner(500), VLANs: []gen.VLAN{{ID: 7}}}),
	}
}

// TestXmitCountsExactly: at a modest rate every frame xmit sends is
// counted by jmxdp, in the stream xmit says it stamped it with.
func TestXmitCountsExactly(t *testing.T) {
	l := labtest.New(t, "jmxxm")
	p := attachJmxdp(t, l)
	const k = 20011 // not a multiple of the 15 streams
	in0, refused0 := routerXmit(t, l)
	c0 := counted(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := Run(ctx, Options{
		Iface: l.RouterIface, Netns: l.Name, Templates: labTemplates(t, l),
		Intercepts: 5, Sessions: 3, BaseMID: 1000, BaseSID: 1 << 31,
		Rate: 200_000, Packets: k,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != k {
		t.Fatalf("sent %d, want %d", st.Sent, k)
	}
	if st.Elapsed < 80*time.Millisecond {
		t.Errorf("%d frames at 200k/s took %v: not paced", k, st.Elapsed)
	}
	in1, refused1 := routerXmit(t, l)
	if in1-in0 != k || refused1 != refused0 {
		t.Errorf("the host end's ring took %d frames and refused %d, want %d and 0", in1-in0, refused1-refused0, k)
	}
	if got := counted(t, p) - c0; got != k {
		t.Errorf("jmxdp counted %d, want %d", got, k)
	}
	want := st.PerStream()
	if len(want) != 15 {
		t.Fatalf("xmit reports %d streams, want 15: %v", len(want), want)
	}
	if got := streamPackets(t, p); !maps.Equal(got, want) {
		t.Errorf("jmxdp's streams %v\nwant %v", got, want)
	}
}

// TestXmitStreamsPerCPU: two threads pinned to CPUs 0 and 1, each CPU
// with streams of its own, into a veth of 2 RX queues: jmxdp's per-stream
// counts are PerStream's, and both queues received.
func TestXmitStreamsPerCPU(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU")
	}
	l := labtest.NewWith(t, "jmxxq", func(c *lab.Config) { c.Queues = 2 })
	p := attachJmxdp(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A duration, not a packet count: each thread sends its share of the
	// rate (a count could all be claimed by the first thread).
	st, err := Run(ctx, Options{
		Iface: l.RouterIface, Netns: l.Name, Templates: labTemplates(t, l),
		Intercepts: 2, Sessions: 3, BaseMID: 7, BaseSID: 100,
		Rate: 20_000, Duration: 300 * time.Millisecond, Threads: 2, CPUs: []int{0, 1}, StreamsPerCPU: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.PerCPU) < 2 || st.PerCPU[0] == 0 || st.PerCPU[1] == 0 {
		t.Fatalf("sent by CPU %v: want both CPUs 0 and 1", st.PerCPU)
	}
	want := st.PerStream()
	if len(want) != 12 {
		t.Fatalf("xmit reports %d streams, want 12 (6 a CPU): %v", len(want), want)
	}
	if got := streamPackets(t, p); !maps.Equal(got, want) {
		t.Errorf("jmxdp's streams %v\nwant %v", got, want)
	}
	hs, err := DeviceStats(l.HostIface)
	if err != nil {
		t.Fatal(err)
	}
	if hs["rx_queue_0_xdp_packets"] == 0 || hs["rx_queue_1_xdp_packets"] == 0 {
		t.Errorf("host end's queues saw %d and %d frames: want both used", hs["rx_queue_0_xdp_packets"], hs["rx_queue_1_xdp_packets"])
	}
}

// TestXmitFullSpeed: as fast as it goes, for a time. What the host end's
// ring refused is the only difference between sent and counted: usually
// none, as the ring is drained on the sending CPU between batches, but a
// NAPI run deferred to ksoftirqd lets it fill. The per-stream counts are
// exact when nothing was refused.
func TestXmitFullSpeed(t *testing.T) {
	l := labtest.New(t, "jmxxm")
	p := attachJmxdp(t, l)
	in0, refused0 := routerXmit(t, l)
	c0 := counted(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := Run(ctx, Options{
		Iface: l.RouterIface, Netns: l.Name, Templates: labTemplates(t, l),
		Intercepts: 4, Sessions: 4, Duration: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent == 0 || st.Elapsed > 3*time.Second {
		t.Fatalf("sent %d in %v", st.Sent, st.Elapsed)
	}
	in1, refused1 := routerXmit(t, l)
	in, refused := in1-in0, refused1-refused0
	// Under load the kernel may defer the host end's NAPI to ksoftirqd:
	// frames still in its ring are counted a moment later.
	got := counted(t, p) - c0
	for end := time.Now().Add(2 * time.Second); got < in && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		got = counted(t, p) - c0
	}
	t.Logf("sent %d in %v (%.2f Mpps); jmxdp counted %d; ring refused %d", st.Sent, st.Elapsed, st.Rate()/1e6, got, refused)
	if in+refused != st.Sent || got != in {
		t.Errorf("sent %d = ring %d + refused %d? jmxdp counted %d", st.Sent, in, refused, got)
	}
	if refused == 0 {
		if g := streamPackets(t, p); !maps.Equal(g, st.PerStream()) {
			t.Errorf("jmxdp's streams %v\nwant %v", g, st.PerStream())
		}
	}
}

// TestXmitDropBaseline: xdp_drop's drops, as the driver counts them, are
// the frames sent.
func TestXmitDropBaseline(t *testing.T) {
	l := labtest.New(t, "jmxxm")
	d, err := AttachDrop(l.HostIface)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d0, err := XDPDrops(l.HostIface)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const k = 100_000
	st, err := Run(ctx, Options{Iface: l.RouterIface, Netns: l.Name, Templates: labTemplates(t, l), Packets: k})
	if err != nil {
		t.Fatal(err)
	}
	d1, err := XDPDrops(l.HostIface)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != k || d1-d0 != k {
		t.Errorf("sent %d, xdp_drop dropped %d, want %d", st.Sent, d1-d0, k)
	}
}

// TestXmitStopsOnCancel: a cancelled context stops a long run promptly.
func TestXmitStopsOnCancel(t *testing.T) {
	l := labtest.New(t, "jmxxm")
	d, err := AttachDrop(l.HostIface)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	st, err := Run(ctx, Options{Iface: l.RouterIface, Netns: l.Name, Templates: labTemplates(t, l), Duration: time.Minute, Threads: 2})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 5*time.Second || st.Sent == 0 {
		t.Errorf("%v after %v, %d sent", err, time.Since(t0), st.Sent)
	}
}
