package gen

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"
)

// DemoConfig parameterises Demo.
type DemoConfig struct {
	Seed          int64
	Intercepts    int       // distinct mids
	SessionsPer   int       // sids per mid; one stream per (mid, sid)
	PacketsPer    int       // Jmirror datagrams per stream
	Port          uint16    // UDP port; 0 means DefaultPort
	Start         time.Time // first timestamp; zero means 2025-01-06 09:00 UTC
	FragmentEvery int       // every Nth IPv4-outer stream sends one datagram larger than DemoMTU, fragmented; 0: none
	NoiseEvery    int       // a non-Jmirror frame after every N Jmirror datagrams; 0: none
}

// DemoMTU is the link MTU the demo fragments at.
const DemoMTU = 1500

// defaultDemoStart is the first timestamp when DemoConfig.Start is zero.
func defaultDemoStart() time.Time { return time.Date(2025, 1, 6, 9, 0, 0, 0, time.UTC) }

// DemoNet is the demo's addressing plan (documentation prefixes). Routers
// A and B share the PPP streams' (mid, sid), as in the ipv6_ppp sample.
type DemoNet struct {
	RouterA, RouterB netip.Addr // untagged
	RouterC          netip.Addr // behind QinQ: 802.1ad 200 / 802.1Q 300
	Router6          netip.Addr // outer IPv6, behind 802.1Q 100
	Collector        netip.Addr // the mediation host
	Collector6       netip.Addr
	CollectorMAC     net.HardwareAddr
	Gateway          netip.Addr // noise sources
	Admin            netip.Addr
	Resolver         netip.Addr
	NTP6             netip.Addr
}

// DemoNetwork returns the demo's addresses; a function so nobody can change
// them for everyone.
func DemoNetwork() DemoNet {
	return DemoNet{
		RouterA:      netip.MustParseAddr("192.0.2.1"),
		RouterB:      netip.MustParseAddr("192.0.2.2"),
		RouterC:      netip.MustParseAddr("198.51.100.7"),
		Router6:      netip.MustParseAddr("2001:db8::1"),
		Collector:    netip.MustParseAddr("203.0.113.10"),
		Collector6:   netip.MustParseAddr("2001:db8:ffff::10"),
		CollectorMAC: DefaultDstMAC(),
		Gateway:      netip.MustParseAddr("203.0.113.1"),
		Admin:        netip.MustParseAddr("203.0.113.50"),
		Resolver:     netip.MustParseAddr("203.0.113.53"),
		NTP6:         netip.MustParseAddr("2001:db8:ffff::123"),
	}
}

// DefaultDemo is 4 intercepts x 2 sessions x 40 datagrams: every inner kind,
// a (mid, sid) shared by two routers, outer IPv6, VLAN and QinQ tags, three
// fragmented datagrams and some noise.
func DefaultDemo() DemoConfig {
	return DemoConfig{
		Seed:          1,
		Intercepts:    4,
		SessionsPer:   2,
		PacketsPer:    40,
		Port:          DefaultPort,
		Start:         defaultDemoStart(),
		FragmentEvery: 2,
		NoiseEvery:    8,
	}
}

// StreamID identifies a Jmirror stream; the same id may come from several
// routers.
type StreamID struct{ MID, SID uint32 }

// StreamCount is what a decoder should count for one stream.
type StreamCount struct {
	Packets, Bytes uint64                   // datagrams, and the sum of their inner packet lengths
	ByRouter       map[netip.Addr][2]uint64 // router -> {packets, bytes}
	Inner          [NumInnerKinds]uint64    // datagrams per InnerKind
}

// Summary is the ground truth of a generated capture.
// Frames == JmirrorDatagrams + Fragments + NotJmirror.
type Summary struct {
	Streams          map[StreamID]StreamCount
	Frames           int // all frames
	JmirrorDatagrams int // Jmirror datagrams, each counted once however it was fragmented
	NotJmirror       int // noise frames, including a non-Jmirror fragment
	Fragments        int // non-first fragments of Jmirror datagrams
	Fragmented       int // Jmirror datagrams sent as fragments
	Malformed        int // malformed Jmirror datagrams (Traffic), in no stream
}

// Add counts one Jmirror datagram; decoders' tests can use it to build the
// Summary they observed.
func (s *Summary) Add(router netip.Addr, mid, sid uint32, inner []byte) {
	if s.Streams == nil {
		s.Streams = make(map[StreamID]StreamCount)
	}
	id := StreamID{MID: mid & MaxMID, SID: sid}
	c := s.Streams[id]
	if c.ByRouter == nil {
		c.ByRouter = make(map[netip.Addr][2]uint64)
	}
	n := uint64(len(inner))
	c.Packets++
	c.Bytes += n
	r := c.ByRouter[router]
	r[0]++
	r[1] += n
	c.ByRouter[router] = r
	c.Inner[Classify(inner)]++
	s.Streams[id] = c
	s.JmirrorDatagrams++
}

type demoProfile int

const (
	profileIPv4  demoProfile = iota // bare IPv4 inners
	profileIPv6                     // bare IPv6 inners, outer IPv6
	profilePPP                      // PPP with IPv6/LCP/IPv4, two routers
	profileMixed                    // IPv4, IPv6, unknown and empty inners
	numProfiles
)

type demoStream struct {
	id           StreamID
	profile      demoProfile
	router, alt  netip.Addr // alt, if valid, sends some of the stream too
	sub4, peer4  netip.Addr
	sub6, peer6  netip.Addr
	sent, total  int
	bigAt        int // index of the datagram larger than the MTU; -1: none
	magic        uint32
	lcpID        uint8
	sport, dport uint16 // the subscriber's UDP flow
}

type demoRouterL2 struct {
	mac   net.HardwareAddr
	vlans []VLAN
}

func (cfg DemoConfig) validate() error {
	switch {
	case cfg.Intercepts < 1 || cfg.SessionsPer < 1 || cfg.PacketsPer < 1:
		return errors.New("intercepts, sessions and packets per stream must be positive")
	case cfg.FragmentEvery < 0 || cfg.NoiseEvery < 0:
		return errors.New("FragmentEvery and NoiseEvery must not be negative")
	case cfg.Intercepts > 1<<20 || cfg.SessionsPer > 1<<20:
		return errors.New("too many intercepts or sessions")
	case cfg.Intercepts*cfg.SessionsPer*cfg.PacketsPer > 50_000_000:
		return errors.New("more than 50M datagrams requested")
	}
	return nil
}

// Demo generates a deterministic, time-ordered capture for cfg and the
// counts a correct decoder must arrive at.
func Demo(cfg DemoConfig) ([]Packet, Summary, error) {
	pkts, sum, _, err := demo(cfg)
	return pkts, sum, err
}

// demo is Demo, also returning the stream picker's probes: the work of
// choosing streams, which TestDemoPickLinear holds to O(log streams) per
// datagram.
func demo(cfg DemoConfig) ([]Packet, Summary, int, error) {
	if err := cfg.validate(); err != nil {
		return nil, Summary{}, 0, fmt.Errorf("demo: %w", err)
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Start.IsZero() {
		cfg.Start = defaultDemoStart()
	}
	rng := newRand(cfg.Seed)
	dn := DemoNetwork()
	streams := demoStreams(rng, cfg, dn)
	l2 := map[netip.Addr]demoRouterL2{
		dn.RouterA: {mac: net.HardwareAddr{2, 0, 0, 0, 1, 1}},
		dn.RouterB: {mac: net.HardwareAddr{2, 0, 0, 0, 1, 2}},
		dn.RouterC: {mac: net.HardwareAddr{2, 0, 0, 0, 1, 3}, vlans: []VLAN{{TPID: TPID8021AD, ID: 200}, {TPID: TPID8021Q, ID: 300}}},
		dn.Router6: {mac: net.HardwareAddr{2, 0, 0, 0, 1, 6}, vlans: []VLAN{{TPID: TPID8021Q, ID: 100}}},
	}
	ipid := map[netip.Addr]uint16{}
	for _, r := range []netip.Addr{dn.RouterA, dn.RouterB, dn.RouterC} {
		ipid[r] = uint16(rng.Uint32())
	}

	var (
		pkts      []Packet
		sum       = Summary{Streams: make(map[StreamID]StreamCount)}
		now       = cfg.Start
		remaining = len(streams) * cfg.PacketsPer
		noiseN    int
	)
	emit := func(gap time.Duration, data []byte) {
		now = now.Add(gap)
		pkts = append(pkts, Packet{Time: now, Data: data})
	}
	picker := newStreamPicker(streams)
	for remaining > 0 {
		s := streams[picker.pick(rng.IntN(remaining))]
		remaining--
		k := s.sent
		s.sent++
		router := s.router
		if s.alt.IsValid() && rng.IntN(5) == 0 {
			router = s.alt
		}
		collector := dn.Collector
		if router.Is6() {
			collector = dn.Collector6
		}
		inner := s.inner(rng, k, k == s.bigAt)
		m := Mirror{
			SrcMAC: l2[router].mac, DstMAC: dn.CollectorMAC, VLANs: l2[router].vlans,
			Router: router, Collector: collector, Port: cfg.Port,
			MID: s.id.MID, SID: s.id.SID, Inner: inner,
			IPID: ipid[router], MTU: DemoMTU, UDPChecksum: router.Is6(),
		}
		ipid[router]++
		frames, err := m.Frames()
		if err != nil {
			return nil, Summary{}, 0, fmt.Errorf("demo stream %#x/%#x datagram %d: %w", s.id.MID, s.id.SID, k, err)
		}
		emit(time.Duration(5_000+rng.IntN(400_000)), frames[0])
		for _, f := range frames[1:] {
			emit(time.Duration(1_000+rng.IntN(2_000)), f)
		}
		sum.Add(router, s.id.MID, s.id.SID, inner)
		if len(frames) > 1 {
			sum.Fragmented++
			sum.Fragments += len(frames) - 1
		}
		if cfg.NoiseEvery > 0 && sum.JmirrorDatagrams%cfg.NoiseEvery == 0 {
			emit(time.Duration(1_000+rng.IntN(100_000)), demoNoise(rng, dn, noiseN, cfg.Port))
			noiseN++
			sum.NotJmirror++
		}
	}
	sum.Frames = len(pkts)
	return pkts, sum, picker.probes, nil
}

func newRand(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x6a6d78647067656e)) // "jmxdpgen"
}

func demoStreams(rng *rand.Rand, cfg DemoConfig, dn DemoNet) []*demoStream {
	var streams []*demoStream
	mids := map[uint32]bool{}
	outer4 := 0
	for range cfg.Intercepts {
		mid := uniqueID(rng, mids, func() uint32 {
			if rng.IntN(4) == 0 {
				return rng.Uint32() & MaxMID // exercise the high bits of the 30
			}
			return 1 + uint32(rng.IntN(0xffff))
		})
		sids := map[uint32]bool{}
		for range cfg.SessionsPer {
			idx := len(streams)
			s := &demoStream{
				id:      StreamID{MID: mid, SID: uniqueID(rng, sids, rng.Uint32)},
				profile: demoProfile(idx % int(numProfiles)),
				sub4:    netip.AddrFrom4([4]byte{100, 64, byte(idx >> 8), byte(idx + 2)}),
				peer4:   netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + rng.IntN(200))}),
				sub6:    netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 14: byte(idx >> 8), 15: byte(idx + 2)}),
				peer6:   netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xbe, 0xef, 15: byte(10 + rng.IntN(200))}),
				total:   cfg.PacketsPer,
				bigAt:   -1,
				magic:   rng.Uint32(),
				sport:   uint16(49152 + rng.IntN(16000)),
				dport:   []uint16{443, 51820, 8801, 50000, 40000}[rng.IntN(5)], // ports Wireshark leaves alone or dissects leniently
			}
			switch s.profile {
			case profileIPv4:
				s.router = []netip.Addr{dn.RouterA, dn.RouterC}[(idx/int(numProfiles))%2]
			case profileIPv6:
				s.router = dn.Router6
			case profilePPP:
				s.router, s.alt = dn.RouterA, dn.RouterB
			case profileMixed:
				s.router = []netip.Addr{dn.RouterB, dn.RouterC}[(idx/int(numProfiles))%2]
			}
			if s.router.Is4() {
				outer4++
				if cfg.FragmentEvery > 0 && outer4%cfg.FragmentEvery == 0 {
					s.bigAt = rng.IntN(cfg.PacketsPer)
				}
			}
			streams = append(streams, s)
		}
	}
	return streams
}

func uniqueID(rng *rand.Rand, seen map[uint32]bool, draw func() uint32) uint32 {
	for {
		v := draw()
		if !seen[v] {
			seen[v] = true
			return v
		}
	}
}

// streamPicker chooses the next stream weighted by what it still has to
// send, which interleaves streams the way a busy collector sees them. It is a
// Fenwick tree over the datagrams each stream has left, so a draw costs
// O(log streams): the linear scan it replaced made the demo quadratic in
// streams (30k streams: 36 s). pick(r) is the stream that scan chose for the
// same r, so the output is the same bytes for the same seed.
type streamPicker struct {
	tree   []int // 1-based: tree[i] sums the counts left of streams (i - lowbit(i), i]
	top    int   // the highest power of two <= len(tree)-1
	probes int   // tree nodes examined by pick, for the test
}

func newStreamPicker(streams []*demoStream) *streamPicker {
	n := len(streams)
	p := &streamPicker{tree: make([]int, n+1), top: 1}
	for i, s := range streams {
		p.tree[i+1] = s.total - s.sent
	}
	for i := 1; i <= n; i++ { // O(n) construction: push each sum to its parent
		if j := i + i&-i; j <= n {
			p.tree[j] += p.tree[i]
		}
	}
	for p.top*2 <= n {
		p.top *= 2
	}
	return p
}

// pick returns the index of the stream holding datagram r (0 <= r < the
// datagrams left, counted stream by stream in order), and takes that
// datagram from it.
func (p *streamPicker) pick(r int) int {
	pos := 0
	for step := p.top; step > 0; step /= 2 {
		p.probes++
		if next := pos + step; next < len(p.tree) && p.tree[next] <= r {
			pos = next
			r -= p.tree[next]
		}
	}
	if pos >= len(p.tree)-1 {
		panic("gen: streamPicker: remaining count out of sync") // unreachable by construction
	}
	for i := pos + 1; i < len(p.tree); i += i & -i {
		p.tree[i]--
	}
	return pos
}

// imixSize draws an inner IP packet size like simple IMIX: 7 small, 4
// medium, 1 large out of 12; large ones still fit a 1500 MTU with 56 bytes
// of outer IPv6/UDP/Jmirror headers and 4 bytes of PPP.
func imixSize(rng *rand.Rand) int {
	switch r := rng.IntN(12); {
	case r < 7:
		return 40 + rng.IntN(25)
	case r < 11:
		return 552 + rng.IntN(49)
	default:
		return 1300 + rng.IntN(121)
	}
}

// bigSize is an inner size that pushes an outer IPv4 datagram past DemoMTU.
func bigSize(rng *rand.Rand) int { return 1470 + rng.IntN(31) }

func (s *demoStream) inner(rng *rand.Rand, k int, big bool) []byte {
	size := imixSize(rng)
	if big {
		size = bigSize(rng)
	}
	switch s.profile {
	case profileIPv4:
		return s.ipv4(rng, size, k)
	case profileIPv6:
		return s.ipv6(rng, size, k)
	case profilePPP:
		switch r := rng.IntN(100); {
		case r < 68 || big:
			return InnerPPP(PPPIPv6, s.ipv6(rng, size-4, k))
		case r < 96:
			s.lcpID++
			if s.lcpID%2 == 1 {
				return InnerLCPEcho(s.lcpID, s.magic)
			}
			return InnerLCPEchoReply(s.lcpID-1, s.magic^0x5a5a5a5a)
		default:
			return InnerPPP(PPPIPv4, s.ipv4(rng, size-4, k))
		}
	}
	switch {
	case k%8 == 1 && !big:
		return s.unknown(rng, k)
	case k%8 == 2 && !big:
		return nil
	case rng.IntN(2) == 0:
		return s.ipv4(rng, size, k)
	}
	return s.ipv6(rng, size, k)
}

// ipv4 is an ICMP echo or a UDP packet of the subscriber, of size bytes (at
// least 28), in either direction.
func (s *demoStream) ipv4(rng *rand.Rand, size, k int) []byte {
	return s.ip(rng, size, k, demoIPv4)
}

// ipv6 is the IPv6 counterpart of ipv4 (at least 48 bytes).
func (s *demoStream) ipv6(rng *rand.Rand, size, k int) []byte {
	return s.ip(rng, size, k, demoIPv6)
}

// demoFamily is what ip builds an IPv4 or an IPv6 packet with.
type demoFamily struct {
	v6              bool
	headers         int // IP and ICMP or UDP headers
	echo, echoReply func(src, dst netip.Addr, id, seq uint16, payloadLen int) []byte
	udp             func(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte
}

var (
	demoIPv4 = demoFamily{false, 28, InnerIPv4ICMPEcho, InnerIPv4ICMPEchoReply, InnerIPv4UDP}
	demoIPv6 = demoFamily{true, 48, InnerIPv6ICMPEcho, InnerIPv6ICMPEchoReply, InnerIPv6UDP}
)

func (s *demoStream) ip(rng *rand.Rand, size, k int, f demoFamily) []byte {
	size = max(size, f.headers)
	src, dst, sport, dport := s.sub4, s.peer4, s.sport, s.dport
	if f.v6 {
		src, dst = s.sub6, s.peer6
	}
	reply := rng.IntN(2) == 0
	if reply {
		src, dst, sport, dport = dst, src, dport, sport
	}
	if rng.IntN(3) == 0 {
		if reply {
			return f.echoReply(src, dst, uint16(s.id.SID), uint16(k), size-f.headers)
		}
		return f.echo(src, dst, uint16(s.id.SID), uint16(k), size-f.headers)
	}
	return f.udp(src, dst, sport, dport, randomBytes(rng, size-f.headers))
}

// unknown is an inner that is neither IP nor PPP: here an Ethernet frame
// (first byte 0x00), as a bridged subscriber's traffic would be mirrored.
func (s *demoStream) unknown(rng *rand.Rand, k int) []byte {
	ip := s.ipv4(rng, 28+rng.IntN(40), k)
	return ethernetNoPad(net.HardwareAddr{0, 0x1b, 0x21, 0, 1, byte(k)}, net.HardwareAddr{0, 0x1b, 0x21, 0, 0, byte(k)}, EtherTypeIPv4, ip)
}

// ethernetNoPad is an Ethernet frame as a mirrored payload: no padding.
func ethernetNoPad(src, dst net.HardwareAddr, et uint16, payload []byte) []byte {
	b := make([]byte, 0, ethHeaderLen+len(payload))
	b = append(b, dst...)
	b = append(b, src...)
	b = append(b, byte(et>>8), byte(et))
	return append(b, payload...)
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := i; j < min(i+8, n); j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
	return b
}

// demoNoise returns the n-th noise frame: traffic a mediation host's NIC
// also sees, none of it Jmirror.
func demoNoise(rng *rand.Rand, dn DemoNet, n int, port uint16) []byte {
	switch n % 7 {
	case 0:
		return NotJmirrorARP(dn.Gateway, dn.Collector)
	case 1:
		return NotJmirrorTCPSyn(dn.Admin, dn.Collector, uint16(50000+rng.IntN(10000)), 22)
	case 2:
		return NotJmirrorDNSQuery(dn.Admin, dn.Resolver, uint16(rng.Uint32()), "mediation.example.net")
	case 3:
		return NotJmirrorUDP(dn.NTP6, dn.Collector6, 123, 123, ntpReply())
	case 4:
		return NotJmirrorICMPEcho(dn.Gateway, dn.Collector, 1, uint16(n), 56)
	case 5:
		return NotJmirrorIPv4Fragment(dn.Admin, dn.Collector, uint16(rng.Uint32()), 1480, false, randomBytes(rng, 100))
	}
	// Same router and collector, a port next to the Jmirror one.
	other := port + 1
	if port == 0xffff {
		other = port - 1
	}
	return NotJmirrorUDP(dn.RouterA, dn.Collector, other, other, randomBytes(rng, 60))
}

// ntpReply is a minimal NTPv4 server reply (48 bytes), well-formed enough
// for Wireshark.
func ntpReply() []byte {
	b := make([]byte, 48)
	b[0] = 0x24 // LI 0, version 4, mode 4 (server)
	b[1] = 2    // stratum
	return b
}
