package loader_test

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// runBoth runs frames through the kernel program and the Go engine, with
// the same configuration, and returns the candidates each found.
func runBoth(t *testing.T, cfg loader.Config, frames [][]byte) (kernel, goEngine []vocab.Candidate) {
	t.Helper()
	p := loadProgram(t, cfg)
	ports := cfg.Ports
	if len(ports) == 0 {
		ports = []uint16{loader.DefaultPort}
	}
	e := jmirror.NewEngine(jmirror.Config{Ports: ports, DefaultAction: cfg.DefaultAction}, nil)
	for i, f := range frames {
		v, err := p.Run(f)
		if err != nil {
			t.Fatal(err)
		}
		r := e.Process(f)
		if v != vocab.VerdictPass || r.Verdict != vocab.VerdictPass {
			t.Fatalf("frame %d: kernel %v, Go %v: a frame on a port not decoded must pass", i, v, r.Verdict)
		}
	}
	kernel, err := p.Maps.Candidates()
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if gc := e.Counters(); c != gc {
		t.Fatalf("counters differ:\n kernel %v\n Go     %v", c, gc)
	}
	var sum uint64
	for _, k := range kernel {
		sum += k.Packets
	}
	if sum != c[vocab.StatCandidate] {
		t.Errorf("candidate map holds %d packets, the counter %d", sum, c[vocab.StatCandidate])
	}
	return kernel, e.Candidates()
}

// Protocols that resemble Jmirror (an 8-byte header before an IP packet,
// or source port == destination port with no checksum) are never reported
// as candidates, on the ports they really use nor on random ones.
func TestDiscoveryIgnoresLookalikes(t *testing.T) {
	src4, dst4 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.1")
	src6, dst6 := netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::1")
	r := rand.New(rand.NewPCG(7, 7))
	var frames [][]byte
	for kind := range gen.Lookalikes {
		for _, port := range []uint16{0, uint16(1024 + r.IntN(60000)), uint16(1024 + r.IntN(60000))} {
			for _, addrs := range [][2]netip.Addr{{src4, dst4}, {src6, dst6}} {
				f, err := gen.LookalikeFrames(kind, port, addrs[0], addrs[1], 300, uint64(len(frames)))
				if err != nil {
					t.Fatal(err)
				}
				frames = append(frames, f...)
			}
		}
	}
	kernel, goc := runBoth(t, loader.Config{}, frames)
	if len(kernel) != 0 || len(goc) != 0 {
		t.Errorf("%d look-alike frames gave candidates: kernel %v, Go %v", len(frames), kernel, goc)
	}
}

// Jmirror sent to ports nobody configured is found, per port, with every
// inner kind, over IPv4 and IPv6, while the configured port decodes.
func TestDiscoveryFindsJmirrorOnOtherPorts(t *testing.T) {
	ports := []uint16{6502, 5000, 54301, 41234}
	inners := [][]byte{
		gen.InnerIPv4ICMPEcho(subA, subB, 1, 1, 40),
		gen.InnerIPv6ICMPEcho(netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:1::2"), 1, 1, 40),
		gen.InnerLCPEcho(1, 0x01020304),
		gen.InnerPPP(gen.PPPIPv4, gen.InnerIPv4ICMPEcho(subA, subB, 1, 2, 20)),
	}
	routers := []netip.Addr{router1, netip.MustParseAddr("2001:db8::7")}
	var frames [][]byte
	want := map[uint16]uint64{}
	for i, port := range ports {
		for j, in := range inners {
			m := gen.Mirror{Router: routers[(i+j)%2], Collector: collector, MID: 9, SID: uint32(j), Port: port, Inner: in}
			if m.Router.Is6() {
				m.Collector = netip.MustParseAddr("2001:db8::1")
			}
			f, err := m.Frame()
			if err != nil {
				t.Fatal(err)
			}
			frames = append(frames, f, f)
			want[port] += 2
		}
	}
	// Decoded on the default port: not a candidate.
	frames = append(frames, frame(t, mirror(1, 1, ipv4Echo())))
	kernel, goc := runBoth(t, loader.Config{}, frames)
	if !slices.Equal(kernel, goc) {
		t.Errorf("kernel %v, Go %v", kernel, goc)
	}
	got := map[uint16]uint64{}
	for _, c := range kernel {
		got[c.Port] = c.Packets
	}
	for p, n := range want {
		if got[p] != n {
			t.Errorf("port %d: %d candidate packets, want %d (all: %v)", p, got[p], n, kernel)
		}
	}
	if len(got) != len(want) {
		t.Errorf("candidates %v, want only %v", got, want)
	}
}
