package gen

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
)

// Corpus frame kinds. Frames of kind CorpusJmirror are valid single-frame
// Jmirror datagrams on one of the corpus ports; CorpusFragment frames are
// valid fragments of one. Everything else is noise or a mutant whose
// validity depends on what the mutation hit: a differential test compares
// verdicts, it does not assume them.
const (
	CorpusJmirror           = "jmirror"
	CorpusFragment          = "fragment"            // part of a complete set, in order or shuffled
	CorpusFragmentOrphan    = "fragment-orphan"     // non-first fragments whose first never comes
	CorpusFragmentFirstOnly = "fragment-first-only" // a first fragment whose rest never comes
	CorpusFragmentReversed  = "fragment-reversed"   // a complete set, last fragment first
	// A complete set in which the first fragment (and sometimes another)
	// arrives more than once: a datagram counted once however many copies.
	CorpusFragmentDuplicated = "fragment-duplicated"
	CorpusNoise              = "noise"
	CorpusMutFlip            = "mutant-flip"
	CorpusMutTruncate        = "mutant-truncate"
	CorpusMutUDPLen          = "mutant-udp-length"
	CorpusMutShortPayload    = "mutant-short-payload" // consistent lengths, UDP payload < 8
	CorpusMutIPLen           = "mutant-ip-length"
	CorpusMutIHL             = "mutant-ihl"
	CorpusMutVLAN3           = "mutant-vlan3"
	CorpusMutEtherType       = "mutant-ethertype"
	CorpusMutPort            = "mutant-port"
	CorpusMutProto           = "mutant-proto"
	CorpusMutFragFlags       = "mutant-frag-flags"

	// A valid Jmirror datagram over IPv6 from a source that embeds an IPv4
	// address (IPv4-mapped, IPv4-compatible, :: or ::1), which is never a
	// router.
	CorpusV4Embedded = "v4-embedded-source"
)

// CorpusIPv6Ext: Jmirror over IPv6 behind any chain of extension headers,
// sound or not, within the bound or past it.
const CorpusIPv6Ext = "ipv6-ext-chain"

// CorpusFrame is one corpus frame and how it was made, for failure messages.
type CorpusFrame struct {
	Kind string
	Data []byte
}

// maxCorpusInner keeps a single-frame datagram within a 1500-byte MTU even
// with 40 bytes of IPv4 options.
const maxCorpusInner = 1400

// Corpus returns n Ethernet frames for differential testing; see CorpusLabeled.
func Corpus(seed int64, n int, ports []uint16) [][]byte {
	fs := CorpusLabeled(seed, n, ports)
	out := make([][]byte, len(fs))
	for i, f := range fs {
		out[i] = f.Data
	}
	return out
}

// CorpusLabeled returns n frames, deterministic for seed: valid Jmirror
// frames to ports (DefaultPort if empty), fragment sets, noise and mutants.
// Every frame is at least 14 bytes and at most 1514 plus 4 per VLAN tag.
func CorpusLabeled(seed int64, n int, ports []uint16) []CorpusFrame {
	if len(ports) == 0 {
		ports = []uint16{DefaultPort}
	}
	c := corpusGen{rng: newRand(seed), ports: ports}
	out := make([]CorpusFrame, 0, n)
	for len(out) < n {
		switch r := c.rng.IntN(100); {
		case r < 28:
			out = append(out, CorpusFrame{CorpusJmirror, c.valid(c.mirror())})
		case r < 30:
			out = append(out, CorpusFrame{CorpusV4Embedded, c.valid(c.v4Embedded())})
		case r < 40:
			out = append(out, c.fragments()...)
		case r < 42:
			out = append(out, CorpusFrame{CorpusIPv6Ext, c.valid(c.ext6Mirror())})
		case r < 55:
			out = append(out, CorpusFrame{CorpusNoise, c.noise()})
		default:
			out = append(out, c.mutant())
		}
	}
	return out[:n]
}

type corpusGen struct {
	rng   *rand.Rand
	ports []uint16
}

func (c *corpusGen) port() uint16 { return c.ports[c.rng.IntN(len(c.ports))] }

// otherPort is a port that is not a Jmirror port.
func (c *corpusGen) otherPort() uint16 {
	for {
		p := uint16(1 + c.rng.IntN(0xffff))
		if !slices.Contains(c.ports, p) {
			return p
		}
	}
}

func (c *corpusGen) addr4() netip.Addr {
	pool := []netip.Addr{
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("10.15.6.50"), netip.MustParseAddr("203.0.113.10"),
	}
	if c.rng.IntN(3) > 0 {
		return pool[c.rng.IntN(len(pool))]
	}
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], c.rng.Uint32())
	return netip.AddrFrom4(a)
}

func (c *corpusGen) addr6() netip.Addr {
	a := [16]byte{0x20, 0x01, 0x0d, 0xb8}
	binary.BigEndian.PutUint64(a[8:], c.rng.Uint64()%4) // few distinct routers
	if c.rng.IntN(3) == 0 {
		binary.BigEndian.PutUint64(a[8:], c.rng.Uint64())
	}
	return netip.AddrFrom16(a)
}

// v4Embedded is a valid mirror over IPv6 whose source embeds an IPv4
// address, often one of addr4's routers: what a forger sends to pass as an
// IPv4 router the kernel keys as ::ffff:a.b.c.d.
func (c *corpusGen) v4Embedded() Mirror {
	m := c.mirror()
	a := c.addr4().As16()
	switch c.rng.IntN(4) {
	case 0: // IPv4-compatible ::a.b.c.d
		a[10], a[11] = 0, 0
	case 1:
		a = netip.IPv6Unspecified().As16()
	case 2:
		a = netip.IPv6Loopback().As16()
	} // else IPv4-mapped ::ffff:a.b.c.d
	m.Router, m.Collector = netip.AddrFrom16(a), c.addr6()
	m.IPOptions = nil
	return m
}

func (c *corpusGen) vlans(n int) []VLAN {
	v := make([]VLAN, n)
	for i := range v {
		v[i] = VLAN{TPID: TPID8021Q, ID: uint16(c.rng.IntN(4096)), PCP: uint8(c.rng.IntN(8))}
	}
	if n > 1 && c.rng.IntN(2) == 0 {
		v[0].TPID = TPID8021AD
	}
	return v
}

// options returns up to 40 bytes of well-formed IPv4 options.
func (c *corpusGen) options() []byte {
	var o []byte
	for range c.rng.IntN(4) {
		var opt []byte
		switch c.rng.IntN(4) {
		case 0:
			opt = []byte{1} // NOP
		case 1:
			opt = IPv4OptRouterAlert()
		case 2:
			opt = IPv4OptRecordRoute(1 + c.rng.IntN(9))
		default:
			opt = IPv4OptTimestamp(1 + c.rng.IntN(9))
		}
		if len(o)+len(opt) <= maxIPv4Opts {
			o = append(o, opt...)
		}
	}
	return o
}

// mirror returns a random valid single-frame Jmirror datagram description.
func (c *corpusGen) mirror() Mirror {
	m := Mirror{
		VLANs:   c.vlans(c.rng.IntN(3)),
		Port:    c.port(),
		IPID:    uint16(c.rng.Uint32()),
		Version: 0,
		SID:     c.rng.Uint32(),
	}
	if c.rng.IntN(10) == 0 {
		m.Version = uint8(1 + c.rng.IntN(3))
	}
	switch c.rng.IntN(4) {
	case 0:
		m.MID = uint32(c.rng.IntN(16))
	case 1:
		m.MID = MaxMID
	default:
		m.MID = c.rng.Uint32() & MaxMID
	}
	if c.rng.IntN(4) == 0 {
		m.TTL = uint8(1 + c.rng.IntN(255))
	}
	if c.rng.IntN(10) < 7 {
		m.Router, m.Collector = c.addr4(), c.addr4()
		if c.rng.IntN(2) == 0 {
			m.IPOptions = c.options()
		}
		m.UDPChecksum = c.rng.IntN(10) == 0
	} else {
		m.Router, m.Collector = c.addr6(), c.addr6()
		m.UDPChecksum = c.rng.IntN(2) == 0
	}
	m.Inner = c.inner(InnerKind(c.rng.IntN(int(NumInnerKinds))), c.rng.IntN(maxCorpusInner+1))
	if !m.Router.Is4() && c.rng.IntN(3) == 0 {
		m.IPv6Ext = c.ext6(1+c.rng.IntN(MaxIPv6Ext), true)
		// Within a 1500-byte MTU still.
		if room := 1500 - ipv6HeaderLen - extLen(m.IPv6Ext) - udpHeaderLen - HeaderLen; len(m.Inner) > room {
			m.Inner = m.Inner[:room]
		}
	}
	return m
}

// ext6Mirror is a mirror over IPv6 behind a chain that may be unsound or
// longer than jmxdp walks.
func (c *corpusGen) ext6Mirror() Mirror {
	m := c.mirror()
	if m.Router.Is4() {
		m.Router, m.Collector = c.addr6(), c.addr6()
		m.IPOptions, m.UDPChecksum = nil, true
	}
	m.IPv6Ext = c.ext6(1+c.rng.IntN(MaxIPv6Ext+3), c.rng.IntN(2) == 0)
	if room := 1500 - ipv6HeaderLen - extLen(m.IPv6Ext) - udpHeaderLen - HeaderLen; len(m.Inner) > room {
		m.Inner = m.Inner[:room]
	}
	return m
}

// MaxIPv6Ext is the most outer IPv6 extension headers jmxdp walks
// (JM_IPV6_MAX_EXT): the corpus goes one or two past it.
const MaxIPv6Ext = 8

// ext6 is a chain of n outer IPv6 extension headers of random types (an
// atomic fragment header among them at times) and small lengths. A sound
// one has hop-by-hop only first and no fragment header (tshark and
// gopacket stop at one); an unsound one any order: hop-by-hop in the
// wrong place and two fragment headers occur.
func (c *corpusGen) ext6(n int, sound bool) []ExtHeader {
	types := []uint8{ExtHopByHop, ExtDstOpts, ExtDstOpts, ExtRouting, ExtAH, ExtFragment}
	out := make([]ExtHeader, n)
	for i := range out {
		x := ExtHeader{Type: types[c.rng.IntN(len(types))]}
		if i == 0 && c.rng.IntN(2) == 0 {
			x.Type = ExtHopByHop
		}
		if sound && ((i > 0 && x.Type == ExtHopByHop) || x.Type == ExtFragment) {
			x.Type = ExtDstOpts
		}
		switch x.Type {
		case ExtAH:
			x.Len = 16 + 8*c.rng.IntN(3)
		case ExtFragment:
			x.ID = c.rng.Uint32()
		default:
			x.Len = 8 * (1 + c.rng.IntN(4))
		}
		out[i] = x
	}
	return out
}

// inner returns a mirrored packet of kind and (about) size bytes; real
// packets where size allows, else bytes that merely classify as kind.
func (c *corpusGen) inner(kind InnerKind, size int) []byte {
	a4, b4 := c.addr4(), c.addr4()
	a6, b6 := c.addr6(), c.addr6()
	sport, dport := uint16(c.rng.Uint32()), uint16(c.rng.Uint32())
	switch kind {
	case KindEmpty:
		return nil
	case KindIPv4:
		switch {
		case size < 28:
			return c.prefixed([]byte{0x40 | byte(c.rng.IntN(16))}, size)
		case c.rng.IntN(3) == 0:
			return InnerIPv4ICMPEcho(a4, b4, sport, dport, size-28)
		case c.rng.IntN(3) == 0 && size >= 36:
			o := c.options()
			return InnerIPv4WithOptions(a4, b4, o, sport, dport, randomBytes(c.rng, max(0, size-28-pad4(len(o)))))
		}
		return InnerIPv4UDP(a4, b4, sport, dport, randomBytes(c.rng, size-28))
	case KindIPv6:
		switch {
		case size < 48:
			return c.prefixed([]byte{0x60 | byte(c.rng.IntN(16))}, size)
		case c.rng.IntN(2) == 0:
			return InnerIPv6ICMPEcho(a6, b6, sport, dport, size-48)
		}
		return InnerIPv6UDP(a6, b6, sport, dport, randomBytes(c.rng, size-48))
	case KindPPP:
		size = max(size, 4)
		switch c.rng.IntN(5) {
		case 0:
			return InnerLCPEcho(uint8(sport), c.rng.Uint32())
		case 1:
			return InnerPPP(PPPIPv4, c.inner(KindIPv4, size-4))
		case 2:
			return InnerPPP(PPPIPv6, c.inner(KindIPv6, size-4))
		}
		protos := []uint16{PPPLCP, PPPIPCP, PPPIPv6CP, PPPPAP, PPPCHAP, uint16(c.rng.Uint32())}
		return InnerPPP(protos[c.rng.IntN(len(protos))], randomBytes(c.rng, size-4))
	}
	// Unknown: anything whose first bytes are not 4x, 6x or FF 03.
	size = max(size, 1)
	firsts := []byte{0x00, 0x01, 0x20, 0x5f, 0x7e, 0x80, 0xc0, 0xff}
	b := c.prefixed([]byte{firsts[c.rng.IntN(len(firsts))]}, size)
	if b[0] == 0xff && len(b) > 1 && b[1] == 0x03 {
		b[1] = 0x04
	}
	return b
}

// prefixed is prefix followed by random bytes, size bytes in all (at least
// the prefix).
func (c *corpusGen) prefixed(prefix []byte, size int) []byte {
	return append(slices.Clone(prefix), randomBytes(c.rng, max(0, size-len(prefix)))...)
}

// valid frames a Mirror; the corpus only builds descriptions that are valid.
func (c *corpusGen) valid(m Mirror) []byte {
	f, err := m.Frame()
	if err != nil {
		panic("gen: corpus built an invalid mirror: " + err.Error())
	}
	return f
}

// fragments returns a fragmented IPv4 datagram: the whole set in order,
// shuffled, reversed or with copies of its first fragment, only some
// non-first fragments, or only the first.
func (c *corpusGen) fragments() []CorpusFrame {
	m := c.mirror()
	if c.rng.IntN(3) == 0 {
		// Outer IPv6 fragments, behind up to two extension headers.
		m.Router, m.Collector = c.addr6(), c.addr6()
		m.IPOptions, m.UDPChecksum = nil, true
		m.IPv6Ext = nil
		if c.rng.IntN(2) == 0 {
			m.IPv6Ext = c.ext6(1+c.rng.IntN(2), true)
		}
		m.IPv6FragID = c.rng.Uint32()
	} else if !m.Router.Is4() {
		m.Router, m.Collector = c.addr4(), c.addr4()
		m.IPv6Ext = nil
	}
	var d []byte
	for len(d) < 300 { // an LCP echo is too short to fragment
		m.Inner = c.inner(InnerKind(c.rng.IntN(3)), 300+c.rng.IntN(2700))
		var err error
		if d, err = m.Datagram(); err != nil {
			panic("gen: corpus built an invalid mirror: " + err.Error())
		}
	}
	m.MTU = 256 + c.rng.IntN(min(DemoMTU, len(d)-1)-256+1)
	frames, err := m.Frames()
	if err != nil {
		panic("gen: corpus fragmentation failed: " + err.Error())
	}
	kind := CorpusFragment
	switch r := c.rng.IntN(20); {
	case r < 9:
	case r < 12:
		c.rng.Shuffle(len(frames), func(i, j int) { frames[i], frames[j] = frames[j], frames[i] })
	case r < 14:
		kind = CorpusFragmentReversed
		slices.Reverse(frames)
	case r < 16:
		kind = CorpusFragmentDuplicated
		frames = c.duplicated(frames)
	case r < 18:
		kind = CorpusFragmentOrphan
		rest := frames[1:]
		c.rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
		frames = rest[:1+c.rng.IntN(len(rest))]
	default:
		kind = CorpusFragmentFirstOnly
		frames = frames[:1]
	}
	out := make([]CorpusFrame, len(frames))
	for i, f := range frames {
		out[i] = CorpusFrame{kind, f}
	}
	return out
}

// duplicated adds one or two copies of the first fragment, and sometimes a
// copy of another, at random places after the original or before it; the
// set is in order or reversed.
func (c *corpusGen) duplicated(frames [][]byte) [][]byte {
	first := frames[0] // Frames puts the first fragment first
	if c.rng.IntN(2) == 0 {
		slices.Reverse(frames)
		frames = slices.Clone(frames)
	}
	copies := [][]byte{first}
	if c.rng.IntN(2) == 0 {
		copies = append(copies, first)
	}
	if c.rng.IntN(3) == 0 {
		copies = append(copies, frames[c.rng.IntN(len(frames))])
	}
	for _, f := range copies {
		i := c.rng.IntN(len(frames) + 1)
		frames = slices.Insert(frames, i, slices.Clone(f))
	}
	return frames
}

// isFirstFragment: an untagged IPv4 frame with MF set and offset 0.
func isFirstFragment(f []byte) bool {
	off := ipv4Offset(f)
	return off > 0 && binary.BigEndian.Uint16(f[off+6:])&0x3fff == 0x2000
}

// ipv4Offset is where the IPv4 header starts behind up to two VLAN tags,
// or -1 for a frame that is not IPv4.
func ipv4Offset(f []byte) int {
	off, et := 14, binary.BigEndian.Uint16(f[12:])
	for range 2 {
		if et != 0x8100 && et != 0x88a8 {
			break
		}
		et = binary.BigEndian.Uint16(f[off+2:])
		off += 4
	}
	if et != EtherTypeIPv4 {
		return -1
	}
	return off
}

// noise returns a random non-Jmirror frame, sometimes VLAN-tagged.
func (c *corpusGen) noise() []byte {
	a4, b4 := c.addr4(), c.addr4()
	a6, b6 := c.addr6(), c.addr6()
	var f []byte
	switch c.rng.IntN(9) {
	case 0:
		f = NotJmirrorARP(a4, b4)
	case 1:
		f = NotJmirrorTCPSyn(a4, b4, uint16(c.rng.Uint32()), 22)
	case 2:
		// TCP to a Jmirror port: right port, wrong protocol.
		f = NotJmirrorTCPSyn(a4, b4, c.port(), c.port())
	case 3:
		f = NotJmirrorDNSQuery(a4, b4, uint16(c.rng.Uint32()), "example.org")
	case 4:
		f = NotJmirrorUDP(a6, b6, uint16(c.rng.Uint32()), c.otherPort(), randomBytes(c.rng, c.rng.IntN(200)))
	case 5:
		f = NotJmirrorICMPEcho(a4, b4, uint16(c.rng.Uint32()), uint16(c.rng.Uint32()), c.rng.IntN(100))
	case 6:
		f = NotJmirrorICMPEcho(a6, b6, uint16(c.rng.Uint32()), uint16(c.rng.Uint32()), c.rng.IntN(100))
	case 7:
		f = NotJmirrorIPv4Fragment(a4, b4, uint16(c.rng.Uint32()), 8*(1+c.rng.IntN(500)), c.rng.IntN(2) == 0, randomBytes(c.rng, 8+c.rng.IntN(400)))
	default:
		// A Jmirror-looking payload to a port that is not configured.
		m := c.mirror()
		m.Port = c.otherPort()
		m.VLANs = nil // tagged below
		f = c.valid(m)
	}
	if n := c.rng.IntN(3); n > 0 {
		f = retag(f, c.vlans(n))
	}
	return f
}

// retag inserts VLAN tags into an untagged frame.
func retag(f []byte, vlans []VLAN) []byte {
	et := binary.BigEndian.Uint16(f[12:14])
	return ethernet(f[6:12], f[0:6], vlans, et, f[ethHeaderLen:])
}

// layout is where the headers of a frame built from m start.
type layout struct {
	ip, udp, jm int
	v4          bool
}

func layoutOf(m Mirror) layout {
	l := layout{ip: ethHeaderLen + vlanTagLen*len(m.VLANs), v4: m.Router.Is4()}
	l.jm = m.HeaderOffset()
	l.udp = l.jm - udpHeaderLen
	return l
}

func (l layout) fixIPv4Checksum(f []byte) {
	hl := int(f[l.ip]&0x0f) * 4
	if hl < ipv4HeaderLen || l.ip+hl > len(f) {
		return
	}
	f[l.ip+10], f[l.ip+11] = 0, 0
	binary.BigEndian.PutUint16(f[l.ip+10:], checksum(f[l.ip:l.ip+hl], 0))
}

// mutant returns a valid frame broken in one way.
func (c *corpusGen) mutant() CorpusFrame {
	m := c.mirror()
	if c.rng.IntN(3) == 0 {
		m.Inner = m.Inner[:min(len(m.Inner), c.rng.IntN(40))] // short frames hit padding cases
	}
	kinds := []string{
		CorpusMutFlip, CorpusMutTruncate, CorpusMutUDPLen, CorpusMutShortPayload, CorpusMutIPLen,
		CorpusMutIHL, CorpusMutVLAN3, CorpusMutEtherType, CorpusMutPort, CorpusMutProto, CorpusMutFragFlags,
	}
	kind := kinds[c.rng.IntN(len(kinds))]
	if !m.Router.Is4() && (kind == CorpusMutIHL || kind == CorpusMutFragFlags) {
		kind = CorpusMutIPLen
	}
	if kind == CorpusMutVLAN3 {
		m.VLANs = c.vlans(3)
		return CorpusFrame{kind, c.valid(m)}
	}
	// Retry mutations that happened to change nothing (a field set to its
	// own value, two flips cancelling), so every mutant differs from a valid
	// frame.
	orig := c.valid(m)
	for range 8 {
		if f := c.mutate(kind, m, slices.Clone(orig)); !bytes.Equal(f, orig) {
			return CorpusFrame{kind, f}
		}
	}
	f := slices.Clone(orig)
	f[ethHeaderLen+c.rng.IntN(len(f)-ethHeaderLen)] ^= 0xff
	return CorpusFrame{CorpusMutFlip, f}
}

// mutate applies one mutation of kind to f, a valid frame built from m.
func (c *corpusGen) mutate(kind string, m Mirror, f []byte) []byte {
	l := layoutOf(m)
	dgramEnd := l.udp + udpHeaderLen + HeaderLen + len(m.Inner) // end of the IP packet in f
	switch kind {
	case CorpusMutFlip:
		hi := len(f)
		if c.rng.IntN(4) > 0 {
			hi = min(hi, l.jm+HeaderLen+16) // mostly in the headers
		}
		for range 1 + c.rng.IntN(4) {
			f[12+c.rng.IntN(hi-12)] ^= byte(1 + c.rng.IntN(255))
		}
	case CorpusMutTruncate:
		hi := len(f)
		if c.rng.IntN(2) == 0 {
			hi = min(hi, l.jm+HeaderLen+2)
		}
		f = f[:ethHeaderLen+c.rng.IntN(hi-ethHeaderLen)]
	case CorpusMutUDPLen:
		actual := dgramEnd - l.udp
		var v int
		switch c.rng.IntN(4) {
		case 0: // larger than the frame holds
			v = len(f) - l.udp + 1 + c.rng.IntN(200)
		case 1: // smaller than sent but a whole header
			v = 16 + c.rng.IntN(max(1, actual-16))
		case 2: // UDP header plus part of a Jmirror header
			v = 8 + c.rng.IntN(8)
		default: // less than a UDP header
			v = c.rng.IntN(8)
		}
		binary.BigEndian.PutUint16(f[l.udp+4:], uint16(min(v, 0xffff)))
	case CorpusMutShortPayload:
		k := c.rng.IntN(8)
		end := l.udp + udpHeaderLen + k
		binary.BigEndian.PutUint16(f[l.udp+4:], uint16(udpHeaderLen+k))
		if l.v4 {
			binary.BigEndian.PutUint16(f[l.ip+2:], uint16(end-l.ip))
			l.fixIPv4Checksum(f)
		} else {
			binary.BigEndian.PutUint16(f[l.ip+4:], uint16(end-l.udp))
		}
		f = padFrame(f[:end])
	case CorpusMutIPLen:
		off, cur := l.ip+2, dgramEnd-l.ip
		if !l.v4 {
			off, cur = l.ip+4, dgramEnd-l.udp
		}
		v := c.rng.IntN(cur)
		if c.rng.IntN(2) == 0 {
			v = cur + 1 + c.rng.IntN(300)
		}
		binary.BigEndian.PutUint16(f[off:], uint16(v))
		if l.v4 && c.rng.IntN(2) == 0 {
			l.fixIPv4Checksum(f)
		}
	case CorpusMutIHL:
		switch c.rng.IntN(3) {
		case 0: // below the minimum
			f[l.ip] = 0x40 | byte(c.rng.IntN(5))
		case 1: // longer than the frame
			f[l.ip] = 0x4f
			f = f[:min(len(f), l.ip+ipv4HeaderLen+c.rng.IntN(40))]
		default: // wrong but inside the frame
			f[l.ip] = 0x40 | byte(6+c.rng.IntN(10))
		}
		if c.rng.IntN(2) == 0 {
			l.fixIPv4Checksum(f)
		}
	case CorpusMutEtherType:
		at := l.ip - 2
		if len(m.VLANs) > 0 && c.rng.IntN(3) == 0 {
			at = 12 + vlanTagLen*c.rng.IntN(len(m.VLANs)) // a TPID
		}
		types := []uint16{EtherTypeIPv4, EtherTypeIPv6, EtherTypeARP, TPID8021Q, TPID8021AD, 0x9100, 0x8847, 0x88cc, uint16(c.rng.Uint32())}
		binary.BigEndian.PutUint16(f[at:], types[c.rng.IntN(len(types))])
	case CorpusMutPort:
		switch c.rng.IntN(3) {
		case 0:
			binary.BigEndian.PutUint16(f[l.udp+2:], c.otherPort())
		case 1: // source differs from destination
			binary.BigEndian.PutUint16(f[l.udp:], c.otherPort())
		default: // swap in a Jmirror port as source only
			binary.BigEndian.PutUint16(f[l.udp:], c.port())
			binary.BigEndian.PutUint16(f[l.udp+2:], c.otherPort())
		}
	case CorpusMutProto:
		if l.v4 {
			f[l.ip+9] = []byte{protoTCP, protoICMP, 0, 136, 255}[c.rng.IntN(5)] // 136: UDP-Lite
			l.fixIPv4Checksum(f)
		} else {
			f[l.ip+6] = []byte{0, 43, 44, 59, protoTCP, 136}[c.rng.IntN(6)] // extension headers, no next, TCP, UDP-Lite
		}
	case CorpusMutFragFlags:
		var fo uint16
		switch c.rng.IntN(3) {
		case 0: // looks like a first fragment
			fo = ipv4FlagMF
		case 1: // looks like a last fragment
			fo = uint16(1 + c.rng.IntN(0x1fff))
		default: // DF and MF together
			fo = ipv4FlagDF | ipv4FlagMF
		}
		binary.BigEndian.PutUint16(f[l.ip+6:], fo)
		l.fixIPv4Checksum(f)
	}
	return f
}

func padFrame(f []byte) []byte {
	if len(f) >= MinFrameLen {
		return f
	}
	return append(f, make([]byte, MinFrameLen-len(f))...)
}
