package loader_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// fwdNet is a namespace the test made: ingress "in" (the router side) and
// egress "out" (the collector side, 198.19.70.0/24 and 2001:db8:70::/64)
// with permanent neighbour entries for the targets, so that the program's
// fib lookup finds a route and MAC addresses without any traffic.
type fwdNet struct {
	ns               string
	in, out, fib     uint32 // ifindexes
	outMAC, neighMAC net.HardwareAddr
}

var (
	fwdTarget4 = netip.MustParseAddr("198.19.70.50")
	fwdTarget6 = netip.MustParseAddr("2001:db8:70::50")
	fwdSrc4    = netip.MustParseAddr("198.19.70.1")
	fwdSrc6    = netip.MustParseAddr("2001:db8:70::1")
	fwdNeigh   = net.HardwareAddr{0x02, 0, 0, 0, 0x70, 0x50}
	// fwdTargetIn is reached through the ingress interface: XDP_TX.
	fwdTargetIn = netip.MustParseAddr("198.19.71.50")
)

func ipIn(t testing.TB, ns string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}

func newFwdNet(t testing.TB) *fwdNet {
	t.Helper()
	testenv.RequireRoot(t)
	n := &fwdNet{ns: fmt.Sprintf("jmfwd%d", os.Getpid()%100000), neighMAC: fwdNeigh}
	if err := netns.Add(n.ns); err != nil {
		t.Fatalf("add namespace: %v", err)
	}
	t.Cleanup(func() { _ = netns.Delete(n.ns) })
	ipIn(t, n.ns, "link", "add", "in", "type", "veth", "peer", "name", "inp")
	ipIn(t, n.ns, "link", "add", "out", "type", "veth", "peer", "name", "outp")
	for _, l := range []string{"in", "inp", "out", "outp", "lo"} {
		ipIn(t, n.ns, "link", "set", l, "up")
	}
	// The fib lookup interface: one with forwarding on that receives
	// nothing, left down (docs/forward.md: the kernel refuses lookups from an
	// interface whose forwarding is off, and the host's stays off).
	ipIn(t, n.ns, "link", "add", "jmfib", "type", "veth", "peer", "name", "jmfibp")
	for _, k := range []string{"net.ipv4.conf.jmfib.forwarding", "net.ipv6.conf.jmfib.forwarding"} {
		if out, err := exec.Command("ip", "netns", "exec", n.ns, "sysctl", "-qw", k+"=1").CombinedOutput(); err != nil {
			t.Fatalf("sysctl %s: %v: %s", k, err, out)
		}
	}
	ipIn(t, n.ns, "addr", "add", "198.19.71.1/24", "dev", "in")
	ipIn(t, n.ns, "neigh", "replace", fwdTargetIn.String(), "lladdr", fwdNeigh.String(), "dev", "in", "nud", "permanent")
	ipIn(t, n.ns, "addr", "add", fwdSrc4.String()+"/24", "dev", "out")
	ipIn(t, n.ns, "addr", "add", fwdSrc6.String()+"/64", "dev", "out", "nodad")
	ipIn(t, n.ns, "neigh", "replace", fwdTarget4.String(), "lladdr", fwdNeigh.String(), "dev", "out", "nud", "permanent")
	ipIn(t, n.ns, "neigh", "replace", fwdTarget6.String(), "lladdr", fwdNeigh.String(), "dev", "out", "nud", "permanent")
	err := netns.Do(n.ns, func() error {
		in, err := net.InterfaceByName("in")
		if err != nil {
			return err
		}
		out, err := net.InterfaceByName("out")
		if err != nil {
			return err
		}
		fib, err := net.InterfaceByName("jmfib")
		if err != nil {
			return err
		}
		n.in, n.out, n.outMAC, n.fib = uint32(in.Index), uint32(out.Index), out.HardwareAddr, uint32(fib.Index)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// run runs p on in as received on the lab's ingress, inside its
// namespace (the fib lookup and the devmap see the lab's interfaces).
func (n *fwdNet) run(t *testing.T, p *loader.Program, in []byte) (vocab.Verdict, []byte) {
	t.Helper()
	var v vocab.Verdict
	var out []byte
	if err := netns.Do(n.ns, func() error {
		var err error
		v, out, err = p.RunOn(in, n.in)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v, out
}

// forwarded is what the target must receive for m: Ethernet from the
// egress to the neighbour, the target's IP header from the egress's
// address, UDP from and to port, and m's Jmirror header and mirrored
// packet unchanged.
func forwarded(t *testing.T, n *fwdNet, m gen.Mirror, target netip.Addr, id uint16, port uint16) []byte {
	t.Helper()
	f := frame(t, m)
	payload := f[m.HeaderOffset() : m.HeaderOffset()+gen.HeaderLen+len(m.Inner)]
	udpLen := 8 + len(payload)
	var b []byte
	b = append(b, n.neighMAC...)
	b = append(b, n.outMAC...)
	if target.Is4() {
		b = append(b, 0x08, 0x00)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+udpLen))
		binary.BigEndian.PutUint16(ip[4:], id)
		ip[8], ip[9] = 64, 17
		s4, d4 := fwdSrc4.As4(), target.As4()
		copy(ip[12:], s4[:])
		copy(ip[16:], d4[:])
		binary.BigEndian.PutUint16(ip[10:], ^onesSum(ip))
		b = append(b, ip...)
		b = binary.BigEndian.AppendUint16(b, port)
		b = binary.BigEndian.AppendUint16(b, port)
		b = binary.BigEndian.AppendUint16(b, uint16(udpLen))
		b = append(b, 0, 0)
		return append(b, payload...)
	}
	b = append(b, 0x86, 0xdd)
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(udpLen))
	ip[6], ip[7] = 17, 64
	s6, d6 := fwdSrc6.As16(), target.As16()
	copy(ip[8:], s6[:])
	copy(ip[24:], d6[:])
	b = append(b, ip...)
	udp := make([]byte, 8, udpLen)
	binary.BigEndian.PutUint16(udp[0:], port)
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen))
	udp = append(udp, payload...)
	pseudo := append(append(append([]byte{}, s6[:]...), d6[:]...), 0, 0, byte(udpLen>>8), byte(udpLen), 0, 0, 0, 17)
	c := ^onesSum(append(pseudo, udp...))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return append(b, udp...)
}

// fwdTargetCase is a rule of the test-run tests: mid 50 to the IPv4
// target at a port, mid 51 to the IPv6 one at the stream's own.
type fwdTargetCase struct {
	mid    uint32
	target netip.Addr
	port   uint16
}

func fwdTargetCases(port uint16) []fwdTargetCase {
	return []fwdTargetCase{{50, fwdTarget4, port}, {51, fwdTarget6, gen.DefaultPort}}
}

// forwarded is what the target must receive for m, sent as tg's stream:
// the IPv4 id is kept from IPv4 to IPv4 only.
func (tg fwdTargetCase) forwarded(t *testing.T, n *fwdNet, m gen.Mirror) []byte {
	var id uint16
	if m.Router.Is4() && tg.target.Is4() {
		id = m.IPID
	}
	return forwarded(t, n, m, tg.target, id, tg.port)
}

func onesSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// TestForwardTestRun: BPF_PROG_TEST_RUN on each outer shape of a
// forwarded stream (VLAN, QinQ, IPv4 options, IPv6 with extension
// headers), to an IPv4 and an IPv6 target: frame in, the exact frame out,
// XDP_REDIRECT (egress is another interface) and the forward counters.
func TestForwardTestRun(t *testing.T) {
	n := newFwdNet(t)
	p, err := loader.Load(loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const port = 30031
	rules := []vocab.PolicyRule{
		{MID: 50, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fwdTarget4, port)},
		{MID: 51, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fwdTarget6, 0)},
		{MID: 53, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fwdTargetIn, 0)},
	}
	if err := netns.Do(n.ns, func() error {
		return p.Configure(loader.Config{Policies: rules, ForwardLookupInterface: "jmfib"})
	}); err != nil {
		t.Fatalf("configure: %v", err)
	}
	echo := ipv4Echo()
	shapes := []struct {
		name string
		m    gen.Mirror
	}{
		{"plain IPv4", gen.Mirror{Router: router1, Collector: collector, IPID: 7}},
		{"802.1Q", gen.Mirror{Router: router1, Collector: collector, IPID: 8, VLANs: []gen.VLAN{{ID: 10}}}},
		{"QinQ", gen.Mirror{Router: router1, Collector: collector, IPID: 9, VLANs: []gen.VLAN{{TPID: gen.TPID8021AD, ID: 20}, {ID: 30}}}},
		{"IPv4 options", gen.Mirror{Router: router1, Collector: collector, IPID: 10, IPOptions: []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}}},
		{"IPv6 with extension headers", gen.Mirror{Router: router6, Collector: coll6, UDPChecksum: true,
			IPv6Ext: []gen.ExtHeader{ext(gen.ExtHopByHop), ext(gen.ExtDstOpts), ext(gen.ExtRouting)}}},
	}
	for _, sh := range shapes {
		for _, tg := range fwdTargetCases(port) {
			t.Run(fmt.Sprintf("%s to %s", sh.name, tg.target), func(t *testing.T) {
				m := sh.m
				m.MID, m.SID, m.Inner = tg.mid, 77, echo
				in := frame(t, m)
				want := tg.forwarded(t, n, m)
				v, out := n.run(t, p, in)
				if v != vocab.VerdictRedirect { // XDP_REDIRECT
					c, _ := p.Maps.Counters()
					neigh, _ := exec.Command("ip", "-n", n.ns, "neigh").CombinedOutput()
					t.Fatalf("verdict %v, want XDP_REDIRECT; counters %v; neighbours:\n%s", v, named(c), neigh)
				}
				if !bytes.Equal(out, want) {
					t.Fatalf("frame out:\n got %x\nwant %x", out, want)
				}
			})
		}
	}
	c, err := p.Maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	nf := uint64(2 * len(shapes))
	if c[vocab.StatActionForward] != nf || c[vocab.StatFwdSent] != nf || c[vocab.StatFwdUserspace] != 0 {
		t.Errorf("counters: %v", named(c))
	}
	fs, err := p.Maps.ForwardStreams()
	if err != nil {
		t.Fatal(err)
	}
	var pk uint64
	for _, s := range fs {
		pk += s.Packets
	}
	if pk != nf {
		t.Errorf("per-stream forwarded packets %d, want %d (%v)", pk, nf, fs)
	}

	// A target behind the ingress interface: the frame goes back out of
	// it (XDP_TX), from the ingress interface's address and MAC.
	{
		m := gen.Mirror{Router: router1, Collector: collector, MID: 53, SID: 1, Inner: echo}
		in := frame(t, m)
		v, out := n.run(t, p, in)
		if v != vocab.VerdictTX || len(out) < 34 || !bytes.Equal(out[26:30], []byte{198, 19, 71, 1}) || !bytes.Equal(out[30:34], fwdTargetIn.AsSlice()) {
			t.Errorf("target behind the ingress: verdict %v (want XDP_TX), frame %x", v, out)
		}
	}

	// A target with no route refuses the configuration, and changes
	// nothing.
	noRoute := append(slices.Clone(rules), vocab.PolicyRule{MID: 52, AnySID: true, Action: vocab.ActionForward,
		Target: netip.MustParseAddrPort("203.0.113.9:30030")})
	err = netns.Do(n.ns, func() error {
		return p.Configure(loader.Config{Policies: noRoute, ForwardLookupInterface: "jmfib"})
	})
	if err == nil || !strings.Contains(err.Error(), "no route") {
		t.Errorf("a target with no route: %v, want a no route error", err)
	}
	if got, err := p.Maps.Policies(); err != nil || len(got) != len(rules) {
		t.Errorf("after the refused configuration: %v %v, want the %d rules before", got, err, len(rules))
	}

	// MTU: a frame that no longer fits once re-encapsulated (outer IPv4,
	// 20 bytes more as IPv6) is counted and handed to userspace as it
	// came, never dropped. Without an AF_XDP socket here it falls back to
	// XDP_PASS, counted capture_failed.
	ipIn(t, n.ns, "link", "set", "out", "mtu", "1300")
	m := gen.Mirror{Router: router1, Collector: collector, MID: 51, SID: 9,
		Inner: gen.InnerIPv4UDP(subA, subB, 1, 2, make([]byte, 1290-20-8-16-28))}
	in := frame(t, m)
	v, out := n.run(t, p, in)
	c2, err := p.Maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// BPF_PROG_TEST_RUN returns the metadata written for userspace in
	// front of the frame.
	const metaLen = 32
	same := len(out) == len(in)+metaLen && bytes.Equal(out[metaLen:], in)
	if v != vocab.VerdictPass || !same || c2[vocab.StatFwdTooBig] != 1 || c2[vocab.StatFwdUserspace] != 1 || c2[vocab.StatCaptureFailed] != 1 {
		t.Errorf("too big: verdict %v, frame unchanged %v (%d bytes out, %d in), counters %v", v, same, len(out), len(in), named(c2))
	}
}
