package gen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"time"
)

// SizeWeight is one entry of an inner packet size mix: Size bytes (the
// mirrored packet's length) drawn with probability Weight/sum(weights).
type SizeWeight struct {
	Size   int
	Weight int
}

// KindWeight is one entry of an inner kind mix. Kind is KindIPv4, KindIPv6 or
// KindPPP (PPP carrying IPv4 or IPv6).
type KindWeight struct {
	Kind   InnerKind
	Weight int
}

// TrafficMTU is the outer link MTU Traffic fragments at.
const TrafficMTU = 1500

// TrafficConfig parameterises Traffic, a statistical traffic model for
// tests, demos and benchmarks.
type TrafficConfig struct {
	Seed                    uint64
	Intercepts, SessionsPer int          // Intercepts x SessionsPer streams
	Packets                 int          // total Jmirror datagrams, malformed ones included
	Routers                 int          // routers sending; stream i is sent by router i%Routers
	Port                    uint16       // UDP port; 0 means DefaultPort
	Sizes                   []SizeWeight // inner size mix; nil: SimpleIMIX()
	Kinds                   []KindWeight // inner kind mix; nil: 60% IPv4, 30% IPv6, 10% PPP
	// FragmentRatio is the share of (well-formed) datagrams whose inner
	// packet is made larger than TrafficMTU allows, so that they are sent
	// as two outer IPv4 fragments.
	FragmentRatio float64
	// MalformedRatio is the share of datagrams sent malformed: UDP length
	// below the Jmirror header (short) or beyond the packet (truncated),
	// alternately. They count in Summary.Malformed, not in any stream.
	MalformedRatio float64
	// NoiseRatio is the number of non-Jmirror frames per datagram (ARP,
	// SSH, DNS, NTP, ping, UDP next to the Jmirror port), mixed in randomly.
	NoiseRatio float64
	Start      time.Time // first timestamp; zero: 2025-01-06 09:00 UTC
	Rate       float64   // frames per second of pcap time; 0: 100000
	// MTU is the outer link's (0: TrafficMTU): fragmented datagrams are
	// made larger than it, the others fit it. 1280..65535.
	MTU int
	// IPv6 is the share of routers that send over outer IPv6 (from
	// 2001:db8:ff::/64 to DemoNetwork's Collector6), with the extension
	// headers IPv6Ext; their fragmented datagrams are RFC 8200 fragments.
	IPv6    float64
	IPv6Ext []ExtHeader
}

// SimpleIMIX is the simple IMIX size mix: 7 x 64, 4 x 576, 1 x 1400 bytes.
func SimpleIMIX() []SizeWeight {
	return []SizeWeight{{Size: 64, Weight: 7}, {Size: 576, Weight: 4}, {Size: 1400, Weight: 1}}
}

// DefaultKinds is the default inner kind mix: 60% IPv4, 30% IPv6, 10% PPP.
func DefaultKinds() []KindWeight {
	return []KindWeight{{KindIPv4, 60}, {KindIPv6, 30}, {KindPPP, 10}}
}

// DefaultTraffic is 8 intercepts x 4 sessions over 4 routers, 10000
// datagrams of simple IMIX, 1% fragmented, 0.5% malformed, 2% noise.
func DefaultTraffic() TrafficConfig {
	return TrafficConfig{
		Seed:           1,
		Intercepts:     8,
		SessionsPer:    4,
		Packets:        10000,
		Routers:        4,
		Port:           DefaultPort,
		Sizes:          SimpleIMIX(),
		Kinds:          DefaultKinds(),
		FragmentRatio:  0.01,
		MalformedRatio: 0.005,
		NoiseRatio:     0.02,
		Start:          defaultDemoStart(),
		Rate:           100000,
	}
}

func (cfg TrafficConfig) validate() error {
	ratio := func(r float64) bool { return r >= 0 && r <= 1 }
	switch {
	case cfg.Intercepts < 1 || cfg.SessionsPer < 1 || cfg.Routers < 1 || cfg.Packets < 0:
		return errors.New("intercepts, sessions and routers must be positive, packets not negative")
	case cfg.Intercepts > 1<<20 || cfg.SessionsPer > 1<<20 || cfg.Intercepts*cfg.SessionsPer > 1<<22:
		return errors.New("too many intercepts or sessions")
	case cfg.Routers > 1<<16:
		return errors.New("more than 65536 routers")
	case cfg.Packets > 50_000_000:
		return errors.New("more than 50M datagrams requested")
	case !ratio(cfg.FragmentRatio) || !ratio(cfg.MalformedRatio) || cfg.NoiseRatio < 0 || cfg.NoiseRatio > 100:
		return errors.New("fragment and malformed ratios must be in [0, 1], noise in [0, 100]")
	case cfg.Rate < 0:
		return errors.New("rate must not be negative")
	case cfg.MTU != 0 && (cfg.MTU < 1280 || cfg.MTU > 65535):
		return fmt.Errorf("MTU %d: want 1280 to 65535", cfg.MTU)
	case !ratio(cfg.IPv6):
		return errors.New("the IPv6 share must be in [0, 1]")
	}
	if _, _, err := extChain(cfg.IPv6Ext, protoUDP); err != nil {
		return fmt.Errorf("IPv6 extension headers: %w", err)
	}
	for _, s := range cfg.Sizes {
		if s.Size < 0 || s.Size > 9000 || s.Weight < 0 {
			return fmt.Errorf("size %d weight %d: sizes must be in [0, 9000], weights not negative", s.Size, s.Weight)
		}
	}
	for _, k := range cfg.Kinds {
		if k.Kind != KindIPv4 && k.Kind != KindIPv6 && k.Kind != KindPPP || k.Weight < 0 {
			return fmt.Errorf("kind %v weight %d: kinds must be ipv4, ipv6 or ppp, weights not negative", k.Kind, k.Weight)
		}
	}
	return nil
}

// weighted draws indexes by weight with one IntN call.
type weighted struct {
	cum []int
}

func newWeighted(ws []int) (weighted, error) {
	w := weighted{cum: make([]int, len(ws))}
	sum := 0
	for i, x := range ws {
		sum += x
		w.cum[i] = sum
	}
	if sum == 0 {
		return w, errors.New("weights sum to 0")
	}
	return w, nil
}

func (w weighted) draw(rng *rand.Rand) int {
	r := rng.IntN(w.cum[len(w.cum)-1])
	return sort.SearchInts(w.cum, r+1)
}

type trafficStream struct {
	id     StreamID
	router int
	sub4   netip.Addr
	sub6   netip.Addr
	count  StreamCount // ByRouter is filled at the end
	sport  uint16
	seq    uint16
	peer4  netip.Addr
	peer6  netip.Addr
	dport  uint16
}

// Traffic generates cfg.Packets Jmirror datagrams (some fragmented, some
// malformed) plus noise, deterministically for cfg.Seed, and the counts a
// correct decoder must arrive at. Outer packets are IPv4 from the routers
// 192.0.2.0/24 (then 198.18.0.0/15) to DemoNetwork's Collector.
func Traffic(cfg TrafficConfig) ([]Packet, Summary, error) {
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Sizes == nil {
		cfg.Sizes = SimpleIMIX()
	}
	if cfg.Kinds == nil {
		cfg.Kinds = DefaultKinds()
	}
	if cfg.Start.IsZero() {
		cfg.Start = defaultDemoStart()
	}
	if cfg.Rate == 0 {
		cfg.Rate = 100000
	}
	if cfg.MTU == 0 {
		cfg.MTU = TrafficMTU
	}
	if err := cfg.validate(); err != nil {
		return nil, Summary{}, fmt.Errorf("traffic: %w", err)
	}
	sizeW := make([]int, len(cfg.Sizes))
	for i, s := range cfg.Sizes {
		sizeW[i] = s.Weight
	}
	sizes, err := newWeighted(sizeW)
	if err != nil {
		return nil, Summary{}, fmt.Errorf("traffic: sizes: %w", err)
	}
	kindW := make([]int, len(cfg.Kinds))
	for i, k := range cfg.Kinds {
		kindW[i] = k.Weight
	}
	kinds, err := newWeighted(kindW)
	if err != nil {
		return nil, Summary{}, fmt.Errorf("traffic: kinds: %w", err)
	}

	rng := rand.New(rand.NewPCG(cfg.Seed, 0x74726166666963)) // "traffic"
	dn := DemoNetwork()
	routers := make([]netip.Addr, cfg.Routers)
	routerMACs := make([]net.HardwareAddr, cfg.Routers)
	ipids := make([]uint16, cfg.Routers)
	for i := range routers {
		if i < 254 {
			routers[i] = netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
		} else {
			routers[i] = netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		}
		routerMACs[i] = net.HardwareAddr{2, 0, 0, 1, byte(i >> 8), byte(i)}
		ipids[i] = uint16(rng.Uint32())
	}
	if cfg.IPv6 > 0 {
		// A separate stream, so that IPv4-only traffic stays what it was
		// for a seed.
		r6 := rand.New(rand.NewPCG(cfg.Seed, 0x69707636)) // "ipv6"
		for i := range routers {
			if r6.Float64() < cfg.IPv6 {
				routers[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 14: byte((i + 1) >> 8), 15: byte(i + 1)})
			}
		}
	}

	streams := make([]trafficStream, 0, cfg.Intercepts*cfg.SessionsPer)
	mids := make(map[uint32]bool, cfg.Intercepts)
	for range cfg.Intercepts {
		mid := uniqueID(rng, mids, func() uint32 {
			if rng.IntN(4) == 0 {
				return rng.Uint32() & MaxMID
			}
			return 1 + uint32(rng.IntN(0xffff))
		})
		sids := make(map[uint32]bool, cfg.SessionsPer)
		for range cfg.SessionsPer {
			idx := len(streams)
			streams = append(streams, trafficStream{
				id:     StreamID{MID: mid, SID: uniqueID(rng, sids, rng.Uint32)},
				router: idx % cfg.Routers,
				sub4:   netip.AddrFrom4([4]byte{100, 64 + byte(idx>>16&63), byte(idx >> 8), byte(idx)}),
				sub6:   netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 12: byte(idx >> 24), 13: byte(idx >> 16), 14: byte(idx >> 8), 15: byte(idx)}),
				peer4:  netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + rng.IntN(200))}),
				peer6:  netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xbe, 0xef, 15: byte(10 + rng.IntN(200))}),
				sport:  uint16(49152 + rng.IntN(16000)),
				dport:  []uint16{443, 51820, 8801, 50000, 40000}[rng.IntN(5)],
			})
		}
	}

	expect := cfg.Packets + int(float64(cfg.Packets)*(cfg.NoiseRatio+cfg.FragmentRatio)) + 16
	pkts := make([]Packet, 0, expect)
	sum := Summary{}
	step := time.Duration(float64(time.Second) / cfg.Rate)
	now := cfg.Start
	emit := func(data []byte) {
		pkts = append(pkts, Packet{Time: now, Data: data})
		now = now.Add(step)
	}
	noiseN := 0
	var payload []byte // scratch for inner payloads
	// Unfragmented datagrams, nearly all of them, are built in place in
	// shared chunks rather than through Mirror.Frames' copies.
	var frameArena arena
	var one [1][]byte
	for n := range cfg.Packets {
		s := &streams[rng.IntN(len(streams))]
		ri := s.router
		malformed := cfg.MalformedRatio > 0 && rng.Float64() < cfg.MalformedRatio
		frag := !malformed && cfg.FragmentRatio > 0 && rng.Float64() < cfg.FragmentRatio
		size := cfg.Sizes[sizes.draw(rng)].Size
		v4 := routers[ri].Is4()
		overhead := ipv4HeaderLen + udpHeaderLen + HeaderLen
		if !v4 {
			overhead = ipv6HeaderLen + extLen(cfg.IPv6Ext) + udpHeaderLen + HeaderLen
		}
		if frag {
			// Outer headers + inner > MTU: two fragments (or more with a
			// large MTU's own fragment headers).
			size = cfg.MTU - overhead + 1 + rng.IntN(1400)
		}
		kind := cfg.Kinds[kinds.draw(rng)].Kind
		var inner []byte
		inner, payload = s.trafficInner(rng, kind, size, payload)
		m := Mirror{
			SrcMAC: routerMACs[ri], DstMAC: dn.CollectorMAC,
			Router: routers[ri], Collector: dn.Collector, Port: cfg.Port,
			MID: s.id.MID, SID: s.id.SID, Inner: inner,
			IPID: ipids[ri], MTU: cfg.MTU,
		}
		if !v4 {
			m.Collector, m.UDPChecksum, m.IPv6Ext = dn.Collector6, true, cfg.IPv6Ext
			m.IPv6FragID = uint32(ipids[ri])<<16 | uint32(n&0xffff)
		}
		ipids[ri]++
		var frames [][]byte
		if outerLen := overhead + len(inner); v4 && outerLen <= m.MTU {
			one[0] = frameArena.mirrorFrame(&m, outerLen)
			frames = one[:]
		} else if frames, err = m.Frames(); err != nil {
			return nil, Summary{}, fmt.Errorf("traffic datagram %d: %w", n, err)
		}
		if malformed {
			// Unfragmented by construction: sizes above the MTU are only
			// drawn when the user's mix has them; patch the first frame.
			f := frames[0]
			off := m.HeaderOffset() - udpHeaderLen
			if sum.Malformed%2 == 0 || len(frames) > 1 {
				binary.BigEndian.PutUint16(f[off+4:], uint16(udpHeaderLen+HeaderLen-1-rng.IntN(8))) // short
			} else {
				binary.BigEndian.PutUint16(f[off+4:], uint16(min(0xffff, udpHeaderLen+HeaderLen+len(inner)+1+rng.IntN(64)))) // truncated
			}
			// A too-short first fragment (a user's size above the MTU) is
			// sent alone: no decoder would track its later fragments.
			emit(f)
			sum.Malformed++
		} else {
			for _, f := range frames {
				emit(f)
			}
			c := &s.count
			c.Packets++
			c.Bytes += uint64(len(inner))
			c.Inner[Classify(inner)]++
			sum.JmirrorDatagrams++
			if len(frames) > 1 {
				sum.Fragmented++
				sum.Fragments += len(frames) - 1
			}
		}
		// floor(NoiseRatio) noise frames, and one more with probability
		// its fraction: NoiseRatio per datagram on average.
		noise := int(cfg.NoiseRatio)
		if frac := cfg.NoiseRatio - float64(noise); frac > 0 && rng.Float64() < frac {
			noise++
		}
		for range noise {
			// Noise kinds of the demo, without the stray fragment (kind 5),
			// which decoders count as an unmatched fragment.
			k := noiseN % 6
			if k >= 5 {
				k++
			}
			emit(demoNoise(rng, dn, k, cfg.Port))
			noiseN++
			sum.NotJmirror++
		}
	}
	sum.Frames = len(pkts)
	sum.Streams = make(map[StreamID]StreamCount, len(streams))
	for i := range streams {
		s := &streams[i]
		if s.count.Packets == 0 {
			continue
		}
		c := s.count
		c.ByRouter = map[netip.Addr][2]uint64{routers[s.router]: {c.Packets, c.Bytes}}
		sum.Streams[s.id] = c
	}
	return pkts, sum, nil
}

// trafficInner builds an inner packet of kind and (at least the minimum)
// size, reusing payload as scratch space.
func (s *trafficStream) trafficInner(rng *rand.Rand, kind InnerKind, size int, payload []byte) ([]byte, []byte) {
	s.seq++
	ppp := kind == KindPPP
	v6 := kind == KindIPv6
	if ppp {
		v6 = rng.IntN(2) == 0
		size -= 4
	}
	hdr := 28
	if v6 {
		hdr = 48
	}
	n := max(size-hdr, 0)
	if cap(payload) < n {
		payload = make([]byte, n, max(n, 4096))
	}
	payload = payload[:n]
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := i; j < min(i+8, n); j++ {
			payload[j] = byte(v)
			v >>= 8
		}
	}
	if len(payload) >= 2 {
		binary.BigEndian.PutUint16(payload, s.seq)
	}
	src4, dst4, src6, dst6, sport, dport := s.sub4, s.peer4, s.sub6, s.peer6, s.sport, s.dport
	if s.seq%2 == 0 {
		src4, dst4, src6, dst6, sport, dport = dst4, src4, dst6, src6, dport, sport
	}
	var ip []byte
	if v6 {
		ip = InnerIPv6UDP(src6, dst6, sport, dport, payload)
	} else {
		ip = InnerIPv4UDP(src4, dst4, sport, dport, payload)
	}
	if ppp {
		proto := uint16(PPPIPv4)
		if v6 {
			proto = PPPIPv6
		}
		return InnerPPP(proto, ip), payload
	}
	return ip, payload
}

// arena hands out frames carved from shared chunks: one allocation per
// chunk instead of one per frame. Each frame's capacity ends where it
// does, so an append to one cannot write into the next.
type arena struct{ buf []byte }

const arenaChunk = 1 << 20

func (a *arena) take(n int) []byte {
	if len(a.buf) < n {
		a.buf = make([]byte, max(arenaChunk, n))
	}
	b := a.buf[:n:n]
	a.buf = a.buf[n:]
	return b
}

// mirrorFrame builds the frame Mirror.Frames would for m as Traffic makes
// it (outer IPv4 without options, no VLAN, UDP checksum 0, default TTL,
// unfragmented: outerLen, the IPv4 packet's length, is within the MTU),
// byte for byte, in the arena.
func (a *arena) mirrorFrame(m *Mirror, outerLen int) []byte {
	b := a.take(max(ethHeaderLen+outerLen, MinFrameLen)) // zeroed: the padding
	copy(b[0:6], m.DstMAC)
	copy(b[6:12], m.SrcMAC)
	binary.BigEndian.PutUint16(b[12:14], EtherTypeIPv4)
	ip := b[ethHeaderLen : ethHeaderLen+outerLen]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(outerLen))
	binary.BigEndian.PutUint16(ip[4:6], m.IPID)
	ip[8] = m.ttl()
	ip[9] = protoUDP
	src, dst := m.Router.As4(), m.Collector.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip[:ipv4HeaderLen], 0))
	u := ip[ipv4HeaderLen:]
	sport, dport := m.ports()
	binary.BigEndian.PutUint16(u[0:2], sport)
	binary.BigEndian.PutUint16(u[2:4], dport)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	h := m.Header()
	copy(u[8:16], h[:])
	copy(u[16:], m.Inner)
	return b
}
