package loader_test

import (
	"bytes"
	"fmt"
	"log/slog"
	stdmaps "maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/capture"
	"github.com/jmxdp/jmxdp/userspace/forward"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
	"github.com/jmxdp/jmxdp/userspace/tools/send"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

var (
	// fcollMiss: a target whose neighbour entry is deleted after the rule.
	fcollMiss = netip.MustParseAddr("198.19.80.51")
	fcoll4    = netip.MustParseAddr("198.19.80.50")
	fcoll6    = netip.MustParseAddr("2001:db8:80::50")
)

func sysctlIn(t *testing.T, ns, key, val string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", key+"="+val).CombinedOutput(); err != nil {
		t.Fatalf("sysctl %s in %s: %v: %s", key, ns, err, out)
	}
}

// TestForwardNamespaces: a router namespace sends Jmirror through a veth
// to the jmxdp host namespace, whose program forwards two intercepts out
// of a second veth to a collector namespace, where UDP sockets must
// receive exactly each forwarded datagram (Jmirror header + mirrored
// packet), byte for byte, from every outer shape and from a fragmented
// datagram; a captured stream is counted and not forwarded; the host's
// ip_forward stays 0. The collector's veth end has a trivial XDP_PASS
// program: a veth only receives redirected frames when its peer has an
// XDP program (docs/forward.md).
func TestForwardNamespaces(t *testing.T) {
	testenv.RequireRoot(t)
	id := os.Getpid() % 100000
	R, H, C := fmt.Sprintf("jmfr%d", id), fmt.Sprintf("jmfh%d", id), fmt.Sprintf("jmfc%d", id)
	for _, ns := range []string{R, H, C} {
		if err := netns.Add(ns); err != nil {
			t.Fatalf("add namespace: %v", err)
		}
		t.Cleanup(func() { _ = netns.Delete(ns) })
	}
	ipIn(t, H, "link", "add", "h0", "type", "veth", "peer", "name", "r0", "netns", R)
	ipIn(t, H, "link", "add", "h1", "type", "veth", "peer", "name", "c0", "netns", C)
	ipIn(t, H, "link", "add", "jmfib", "type", "veth", "peer", "name", "jmfibp")
	sysctlIn(t, H, "net.ipv4.conf.jmfib.forwarding", "1")
	sysctlIn(t, H, "net.ipv6.conf.jmfib.forwarding", "1")
	for _, l := range []string{"h0", "h1", "lo"} {
		ipIn(t, H, "link", "set", l, "up")
	}
	ipIn(t, R, "link", "set", "r0", "up")
	ipIn(t, C, "link", "set", "c0", "up")
	ipIn(t, C, "link", "set", "lo", "up")
	ipIn(t, H, "addr", "add", "198.19.80.1/24", "dev", "h1")
	ipIn(t, H, "addr", "add", "2001:db8:80::1/64", "dev", "h1", "nodad")
	ipIn(t, C, "addr", "add", fcoll4.String()+"/24", "dev", "c0")
	ipIn(t, C, "addr", "add", fcoll6.String()+"/64", "dev", "c0", "nodad")

	p, err := loader.Load(loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// The trivial program on the collector's end: see the doc comment.
	passProg, err := lab.PassProgram()
	if err != nil {
		t.Fatal(err)
	}
	defer passProg.Close()
	var passLink link.Link
	err = netns.Do(C, func() error {
		ifc, err := net.InterfaceByName("c0")
		if err != nil {
			return err
		}
		passLink, err = link.AttachXDP(link.XDPOptions{Program: passProg, Interface: ifc.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		t.Fatalf("attach XDP_PASS on the collector's veth: %v", err)
	}
	defer passLink.Close()

	const port4, port6b = 30031, 30032
	rules := []vocab.PolicyRule{
		{MID: 60, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fcoll4, port4)},
		{MID: 61, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fcoll6, 0)},
		{MID: 63, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fcollMiss, port4)},
		{MID: 64, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fcoll6, port6b)},
	}
	ipIn(t, C, "addr", "add", fcollMiss.String()+"/24", "dev", "c0")
	err = netns.Do(H, func() error {
		if err := p.Configure(loader.Config{Policies: rules, ForwardLookupInterface: "jmfib"}); err != nil {
			return err
		}
		_, err := p.Attach("h0", loader.ModeDriver)
		return err
	})
	if err != nil {
		t.Fatalf("configure and attach in the host namespace: %v", err)
	}
	// Configure started resolving the collector's neighbour entries.
	waitNeigh(t, H, fcoll4, fcoll6, fcollMiss)
	// The capture pipeline, with the sender for what the program hands
	// to userspace; its sockets opened in the host namespace.
	sink := &recordSink{written: map[writer.Key]int{}}
	sender := forward.NewSender(p.Maps)
	defer sender.Close()
	var capt *capture.Capture
	err = netns.Do(H, func() error {
		if err := sender.Open(false, port4); err != nil {
			return err
		}
		if err := sender.Open(true, port6b); err != nil {
			return err
		}
		// mid 61's target port is the stream's own: early fragments'
		// datagrams are sent from userspace to it.
		if err := sender.Open(true, gen.DefaultPort); err != nil {
			return err
		}
		var err error
		capt, err = capture.Start(capture.Config{Ifname: "h0", Queues: []uint32{0}, Forward: sender, Logger: slog.New(slog.DiscardHandler)}, p.Maps, sink)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Stop()

	// The collector's sockets.
	var c4, c6, cMiss, c6b *net.UDPConn
	err = netns.Do(C, func() error {
		var err error
		if c4, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fcoll4, port4))); err != nil {
			return err
		}
		if cMiss, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fcollMiss, port4))); err != nil {
			return err
		}
		if c6b, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fcoll6, port6b))); err != nil {
			return err
		}
		c6, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fcoll6, gen.DefaultPort)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	defer c6.Close()
	defer cMiss.Close()
	defer c6b.Close()

	snd, err := send.Open("r0", R)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()

	echo := ipv4Echo()
	big := gen.InnerIPv4UDP(subA, subB, 1000, 2000, make([]byte, 3000))
	shapes := []gen.Mirror{
		{Router: router1, Collector: collector},
		{Router: router1, Collector: collector, VLANs: []gen.VLAN{{ID: 10}}},
		{Router: router1, Collector: collector, VLANs: []gen.VLAN{{TPID: gen.TPID8021AD, ID: 20}, {ID: 30}}},
		{Router: router1, Collector: collector, IPOptions: []byte{1, 1, 1, 1, 1, 1, 1, 1}},
		{Router: router6, Collector: coll6, UDPChecksum: true, IPv6Ext: []gen.ExtHeader{ext(gen.ExtHopByHop), ext(gen.ExtDstOpts)}},
	}
	for _, tg := range []struct {
		mid  uint32
		conn *net.UDPConn
	}{{60, c4}, {61, c6}} {
		for i, m := range shapes {
			m.MID, m.SID, m.Inner, m.IPID = tg.mid, uint32(100+i), echo, uint16(1000+i)
			sendAndExpect(t, snd, tg.conn, []gen.Mirror{m})
		}
		// A fragmented datagram, in order, to the IPv4 target: every
		// fragment is forwarded and the collector's kernel reassembles.
		if tg.mid == 60 {
			m := gen.Mirror{Router: router1, Collector: collector, MID: 60, SID: 200, Inner: big, MTU: 1500, IPID: 4242}
			sendAndExpect(t, snd, tg.conn, []gen.Mirror{m})
		}
		// And an IPv6 one to the IPv6 target: the collector's kernel
		// reassembles it and checks the first fragment's UDP checksum,
		// which the program updated for the new addresses and ports.
		if tg.mid == 61 {
			m := gen.Mirror{Router: router6, Collector: coll6, MID: 61, SID: 201, Inner: big, MTU: 1500, UDPChecksum: true, IPv6FragID: 0x4243}
			sendAndExpect(t, snd, tg.conn, []gen.Mirror{m})
		}
	}
	// A missing neighbour: the program hands the frame to userspace
	// (forward_neigh_miss), whose socket sends it; the kernel resolves the
	// entry on the way. The entry goes after the rule was added.
	ipIn(t, H, "neigh", "del", fcollMiss.String(), "dev", "h1")
	miss := gen.Mirror{Router: router1, Collector: collector, MID: 63, SID: 3, Inner: echo}
	sendAndExpect(t, snd, cMiss, []gen.Mirror{miss})
	for end := time.Now().Add(time.Second); sender.Stats().Sent < 1 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := sender.Stats(); st.Sent != 1 {
		t.Errorf("userspace sender: %+v, want 1 sent", st)
	}
	fs, err := p.Maps.ForwardStreams()
	if err != nil {
		t.Fatal(err)
	}
	if got := fs[vocab.StreamKey{Router: router1, MID: 63, SID: 3}].Userspace[vocab.FwdNeighMiss]; got != 1 {
		t.Errorf("mid 63: forward_neigh_miss %d, want 1 (%v)", got, fs)
	}

	// A fragmented IPv4 datagram to an IPv6 target: the program cannot
	// rewrite its fragments (forward_frag_family), userspace reassembles
	// the datagram and sends it from a socket.
	famChange := gen.Mirror{Router: router1, Collector: collector, MID: 64, SID: 4, Inner: big, MTU: 1500, IPID: 4343}
	sendAndExpect(t, snd, c6b, []gen.Mirror{famChange})
	// The count follows the send the collector already saw: wait for it.
	for end := time.Now().Add(time.Second); sender.Stats().Sent < 2 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := sender.Stats(); st.Sent != 2 || st.Reassembled != 1 || st.Fragments != 3 {
		t.Errorf("userspace sender: %+v, want 2 sent, 3 fragments reassembled into 1", st)
	}

	// Forwarded datagrams whose later fragments come before the first,
	// outer IPv4 to the IPv4 target and outer IPv6 to the IPv6 one: the
	// pairs sent only forwarded fragmented Jmirror above, so the early
	// fragments are held in userspace; the first finds their mark, goes
	// to userspace with the rest (forward_frag_early), and the datagram
	// is reassembled there and sent from a socket.
	early4 := gen.Mirror{Router: router1, Collector: collector, MID: 60, SID: 202, Inner: big, MTU: 1500, IPID: 4444}
	early6 := gen.Mirror{Router: router6, Collector: coll6, MID: 61, SID: 203, Inner: big, MTU: 1500, UDPChecksum: true, IPv6FragID: 0x4545}
	for _, e := range []struct {
		m    gen.Mirror
		conn *net.UDPConn
	}{{early4, c4}, {early6, c6}} {
		fs := frames(t, e.m)
		if len(fs) != 3 {
			t.Fatalf("mid %d: %d fragments, want 3", e.m.MID, len(fs))
		}
		slices.Reverse(fs)
		sendFramesAndExpect(t, snd, e.conn, e.m, fs)
	}
	for end := time.Now().Add(time.Second); sender.Stats().Sent < 4 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := sender.Stats(); st.Sent != 4 || st.Reassembled != 3 || st.Fragments != 9 {
		t.Errorf("userspace sender: %+v, want 4 sent, 9 fragments reassembled into 3", st)
	}
	// The sender's counts per stream, by the reason each was handed over.
	socket := sender.Streams()
	for _, w := range []struct {
		k      vocab.StreamKey
		reason vocab.FwdReason
		inner  int
	}{
		{vocab.StreamKey{Router: router1, MID: 63, SID: 3}, vocab.FwdNeighMiss, len(echo)},
		{vocab.StreamKey{Router: router1, MID: 64, SID: 4}, vocab.FwdFragFamily, len(big)},
		{vocab.StreamKey{Router: router1, MID: 60, SID: 202}, vocab.FwdFragEarly, len(big)},
		{vocab.StreamKey{Router: router6, MID: 61, SID: 203}, vocab.FwdFragEarly, len(big)},
	} {
		var want forward.StreamCounts
		want.Sent[w.reason], want.Bytes[w.reason] = 1, uint64(16+w.inner)
		if got := socket[w.k]; got != want {
			t.Errorf("sender's counts of %v: %+v, want %+v", w.k, got, want)
		}
	}
	if len(socket) != 4 {
		t.Errorf("sender's counts for %d streams, want 4: %v", len(socket), socket)
	}
	if fs, err := p.Maps.ForwardStreams(); err != nil {
		t.Error(err)
	} else {
		for _, k := range []vocab.StreamKey{{Router: router1, MID: 60, SID: 202}, {Router: router6, MID: 61, SID: 203}} {
			if st := fs[k]; st.Userspace[vocab.FwdFragEarly] != 1 || st.Packets != 0 {
				t.Errorf("%v: %+v, want its first fragment handed over as frag_early, nothing sent by the program", k, st)
			}
		}
	}

	// A captured stream: counted, never forwarded.
	cap := gen.Mirror{Router: router1, Collector: collector, MID: 62, SID: 1, Inner: echo}
	f := frame(t, cap)
	if _, err := snd.Send([][]byte{f}); err != nil {
		t.Fatal(err)
	}
	for _, conn := range []*net.UDPConn{c4, c6} {
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 65536)
		if n, _, err := conn.ReadFromUDPAddrPort(buf); err == nil {
			t.Errorf("the collector received %d bytes that were not forwarded: %x", n, buf[:n])
		}
	}
	c, err := p.Maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// action_capture: the captured frame and the 4 held early fragments
	// (redirected by the same path).
	if c[vocab.StatActionCapture] != 5 || c[vocab.StatFwdUserspace] != 6 || c[vocab.StatFwdNeighMiss] != 1 ||
		c[vocab.StatFwdFragFamily] != 3 || c[vocab.StatFwdFragEarly] != 2 || c[vocab.StatFragHeld] != 4 ||
		c[vocab.StatCaptureFailed] != 0 {
		t.Errorf("counters: %v", named(c))
	}
	// Only the captured stream reached the sink (the files): no frame of
	// a forwarded stream did.
	deadline := time.Now().Add(3 * time.Second)
	for sink.count(writer.Key{MID: 62, SID: 1}) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := sink.snapshot(); len(got) != 1 || got[writer.Key{MID: 62, SID: 1}] != 1 {
		t.Errorf("written to the sink: %v, want only mid 62 sid 1 once", got)
	}
	st, ok, err := p.Maps.Stream(vocab.StreamKey{Router: router1, MID: 62, SID: 1})
	if err != nil || !ok || st.Packets != 1 {
		t.Errorf("captured stream: %+v %v %v", st, ok, err)
	}
	fwd, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	err2 := netns.Do(H, func() error {
		var err error
		fwd, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return err
	})
	if err != nil || err2 != nil || strings.TrimSpace(string(fwd)) != "0" {
		t.Errorf("host ip_forward = %q (%v %v), want 0", fwd, err, err2)
	}
}

// sendAndExpect sends ms' frames and expects conn to receive exactly each
// one's UDP payload: the Jmirror header and the mirrored packet.
func sendAndExpect(t *testing.T, snd *send.Sender, conn *net.UDPConn, ms []gen.Mirror) {
	t.Helper()
	for _, m := range ms {
		sendFramesAndExpect(t, snd, conn, m, frames(t, m))
	}
}

// sendFramesAndExpect sends fs, m's frames in any order, and expects conn
// to receive m's UDP payload once.
func sendFramesAndExpect(t *testing.T, snd *send.Sender, conn *net.UDPConn, m gen.Mirror, fs [][]byte) {
	t.Helper()
	if _, err := snd.Send(fs); err != nil {
		t.Fatal(err)
	}
	want := append(jmirrorHeader(m), m.Inner...)
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 65536)
	n, from, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("mid %d sid %d (%d frames, %d VLANs, %d option bytes, outer %s): collector received nothing: %v",
			m.MID, m.SID, len(fs), len(m.VLANs), len(m.IPOptions), m.Router, err)
	}
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("mid %d sid %d: collector received\n%x\nwant\n%x", m.MID, m.SID, buf[:n], want)
	}
	if from.Port() != conn.LocalAddr().(*net.UDPAddr).AddrPort().Port() {
		t.Errorf("mid %d: source port %d, want the target port", m.MID, from.Port())
	}
}

func jmirrorHeader(m gen.Mirror) []byte {
	w0 := m.MID&vocab.MaxMID | uint32(m.Version)<<30
	return []byte{byte(w0 >> 24), byte(w0 >> 16), byte(w0 >> 8), byte(w0), byte(m.SID >> 24), byte(m.SID >> 16), byte(m.SID >> 8), byte(m.SID)}
}

// waitNeigh waits (bounded) for the host's neighbour entries of addrs to
// be resolved.
func waitNeigh(t *testing.T, ns string, addrs ...netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, a := range addrs {
		for {
			out, _ := exec.Command("ip", "-n", ns, "neigh", "show", a.String()).CombinedOutput()
			s := string(out)
			if strings.Contains(s, "REACHABLE") || strings.Contains(s, "STALE") || strings.Contains(s, "PERMANENT") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("neighbour %s not resolved in %s: %q", a, ns, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// recordSink records what the capture pipeline writes, per stream.
type recordSink struct {
	mu      sync.Mutex
	written map[writer.Key]int
}

func (s *recordSink) SetClock(time.Time)                      {}
func (s *recordSink) Tick()                                   {}
func (s *recordSink) Drop(writer.Key, writer.DropReason, int) {}

func (s *recordSink) WriteAt(k writer.Key, _ uint64, _ netip.Addr, _ pcapng.LinkKind, _ []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written[k]++
	return true
}

func (s *recordSink) count(k writer.Key) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written[k]
}

func (s *recordSink) snapshot() map[writer.Key]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return stdmaps.Clone(s.written)
}
