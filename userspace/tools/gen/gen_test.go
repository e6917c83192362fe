package gen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/testenv"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

var (
	r4 = netip.MustParseAddr("192.0.2.1")
	c4 = netip.MustParseAddr("203.0.113.10")
	r6 = netip.MustParseAddr("2001:db8::1")
	c6 = netip.MustParseAddr("2001:db8:ffff::10")
	s4 = netip.MustParseAddr("100.64.0.2")
	p4 = netip.MustParseAddr("198.51.100.20")
	s6 = netip.MustParseAddr("2001:db8:100::2")
	p6 = netip.MustParseAddr("2001:db8:beef::20")
)

func decode(t *testing.T, frame []byte) gopacket.Packet {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("decode: %v\n%x", el.Error(), frame)
	}
	return p
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func TestMirrorFrame(t *testing.T) {
	ping := InnerIPv4ICMPEcho(s4, p4, 1, 2, 32)
	tests := []struct {
		name  string
		m     Mirror
		ihl   uint8 // 0 for IPv6
		ports [2]uint16
	}{
		{"ipv4", Mirror{Router: r4, Collector: c4, MID: 2, SID: 0x10f447, Inner: ping, IPID: 0x31c3}, 5, [2]uint16{DefaultPort, DefaultPort}},
		{"ipv4 options padded", Mirror{Router: r4, Collector: c4, Port: 6502, MID: 0x3039, SID: 0x1e240, Inner: InnerLCPEcho(1, 0xdeadbeef), IPOptions: []byte{1, 1, 1}}, 6, [2]uint16{6502, 6502}},
		{"ipv4 max options", Mirror{Router: r4, Collector: c4, Port: 5000, Inner: ping, IPOptions: append(IPv4OptRouterAlert(), IPv4OptTimestamp(8)...)}, 15, [2]uint16{5000, 5000}},
		{"one vlan", Mirror{Router: r4, Collector: c4, VLANs: []VLAN{{ID: 100}}, MID: 1, SID: 1, Inner: ping}, 5, [2]uint16{DefaultPort, DefaultPort}},
		{"qinq", Mirror{Router: r4, Collector: c4, VLANs: []VLAN{{TPID: TPID8021AD, ID: 200, PCP: 5}, {TPID: TPID8021Q, ID: 4095}}, MID: MaxMID, SID: 0xffffffff, Version: 3, Inner: ping}, 5, [2]uint16{DefaultPort, DefaultPort}},
		{"ipv6", Mirror{Router: r6, Collector: c6, Port: 54301, MID: 0x8000, SID: 1, Inner: InnerPPP(PPPIPv6, InnerIPv6UDP(s6, p6, 1, 2, []byte("x")))}, 0, [2]uint16{54301, 54301}},
		{"empty inner padded", Mirror{Router: r4, Collector: c4, MID: 7, SID: 8}, 5, [2]uint16{DefaultPort, DefaultPort}},
		{"ipv6 udp checksum", Mirror{Router: r6, Collector: c6, MID: 9, SID: 9, Inner: InnerIPv6ICMPEcho(s6, p6, 1, 1, 11), UDPChecksum: true}, 0, [2]uint16{DefaultPort, DefaultPort}},
		{"ipv4 udp checksum", Mirror{Router: r4, Collector: c4, MID: 9, SID: 9, Inner: []byte{0x60}, IPOptions: IPv4OptRouterAlert(), UDPChecksum: true}, 6, [2]uint16{DefaultPort, DefaultPort}},
		{"ipv6 empty inner", Mirror{Router: r6, Collector: c6, MID: 7, SID: 8, TTL: 64}, 0, [2]uint16{DefaultPort, DefaultPort}},
		{"src port", Mirror{Router: r4, Collector: c4, Port: 30030, SrcPort: 4242, Inner: []byte{0}, TTL: 9, SrcMAC: net.HardwareAddr{0, 9, 0xe9, 0x24, 0x28, 0x0a}, DstMAC: net.HardwareAddr{0, 0x15, 0x17, 0x8b, 0x63, 0xb3}}, 5, [2]uint16{4242, 30030}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			frames, err := m.Frames()
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) != 1 {
				t.Fatalf("got %d frames, want 1", len(frames))
			}
			f := frames[0]
			p := decode(t, f)

			eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			wantSrc, wantDst := m.SrcMAC, m.DstMAC
			if wantSrc == nil {
				wantSrc, wantDst = DefaultSrcMAC(), DefaultDstMAC()
			}
			if !bytes.Equal(eth.SrcMAC, wantSrc) || !bytes.Equal(eth.DstMAC, wantDst) {
				t.Errorf("MACs %v -> %v, want %v -> %v", eth.SrcMAC, eth.DstMAC, wantSrc, wantDst)
			}
			var tags []*layers.Dot1Q
			for _, l := range p.Layers() {
				if d, ok := l.(*layers.Dot1Q); ok {
					tags = append(tags, d)
				}
			}
			if len(tags) != len(m.VLANs) {
				t.Fatalf("%d VLAN tags decoded, want %d", len(tags), len(m.VLANs))
			}
			for i, v := range m.VLANs {
				tpid := binary.BigEndian.Uint16(f[12+4*i:])
				want := v.TPID
				if want == 0 {
					want = TPID8021Q
				}
				if tpid != want || tags[i].VLANIdentifier != v.ID || tags[i].Priority != v.PCP {
					t.Errorf("tag %d: TPID %#x id %d pcp %d, want %#x %d %d", i, tpid, tags[i].VLANIdentifier, tags[i].Priority, want, v.ID, v.PCP)
				}
			}

			l3 := 14 + 4*len(m.VLANs)
			dgram, err := m.Datagram()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(f[l3:l3+len(dgram)], dgram) {
				t.Error("frame does not carry Datagram()")
			}
			udpLen := 16 + len(m.Inner)
			wantTTL := m.TTL
			if wantTTL == 0 {
				wantTTL = 255
			}
			var ipHL int
			if tc.ihl > 0 {
				ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				ipHL = int(ip.IHL) * 4
				if ip.IHL != tc.ihl || ip.TTL != wantTTL || ip.Protocol != layers.IPProtocolUDP || ip.Flags != 0 || ip.FragOffset != 0 || ip.Id != m.IPID {
					t.Errorf("IPv4 ihl %d ttl %d proto %v flags %v frag %d id %#x", ip.IHL, ip.TTL, ip.Protocol, ip.Flags, ip.FragOffset, ip.Id)
				}
				if addrOf(ip.SrcIP) != m.Router || addrOf(ip.DstIP) != m.Collector {
					t.Errorf("IPv4 %v -> %v", ip.SrcIP, ip.DstIP)
				}
				if int(ip.Length) != ipHL+udpLen || len(dgram) != int(ip.Length) {
					t.Errorf("IPv4 total length %d, datagram %d, want %d", ip.Length, len(dgram), ipHL+udpLen)
				}
				if _, v := ip.VerifyChecksum(); !v.Valid {
					t.Errorf("IPv4 header checksum %#x invalid", ip.Checksum)
				}
				opts := make([]byte, ipHL-20)
				copy(opts, m.IPOptions)
				if !bytes.Equal(ip.Contents[20:], opts) {
					t.Errorf("options %x, want %x", ip.Contents[20:], opts)
				}
			} else {
				ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				ipHL = 40
				if ip.HopLimit != wantTTL || ip.NextHeader != layers.IPProtocolUDP || int(ip.Length) != udpLen {
					t.Errorf("IPv6 hop limit %d next %v payload length %d", ip.HopLimit, ip.NextHeader, ip.Length)
				}
				if addrOf(ip.SrcIP) != m.Router || addrOf(ip.DstIP) != m.Collector {
					t.Errorf("IPv6 %v -> %v", ip.SrcIP, ip.DstIP)
				}
			}
			udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if uint16(udp.SrcPort) != tc.ports[0] || uint16(udp.DstPort) != tc.ports[1] || int(udp.Length) != udpLen {
				t.Errorf("UDP %d -> %d len %d, want %v len %d", udp.SrcPort, udp.DstPort, udp.Length, tc.ports, udpLen)
			}
			if m.UDPChecksum {
				if err := udp.SetNetworkLayerForChecksum(p.NetworkLayer()); err != nil {
					t.Fatal(err)
				}
				if _, v := udp.VerifyChecksum(); udp.Checksum == 0 || !v.Valid {
					t.Errorf("UDP checksum %#x, want %#x", udp.Checksum, v.Correct)
				}
			} else if udp.Checksum != 0 {
				t.Errorf("UDP checksum %#x, want 0 as routers send", udp.Checksum)
			}

			off := l3 + ipHL + 8
			if got := m.HeaderOffset(); got != off {
				t.Errorf("HeaderOffset %d, want %d", got, off)
			}
			w0, w1 := binary.BigEndian.Uint32(f[off:]), binary.BigEndian.Uint32(f[off+4:])
			if w0>>30 != uint32(m.Version) || w0&0x3fffffff != m.MID || w1 != m.SID {
				t.Errorf("Jmirror words %#x %#x, want V %d mid %#x sid %#x", w0, w1, m.Version, m.MID, m.SID)
			}
			if !bytes.Equal(udp.Payload[8:], m.Inner) || !bytes.Equal(f[off+8:off+8+len(m.Inner)], m.Inner) {
				t.Error("inner packet not carried verbatim")
			}
			end := off + 8 + len(m.Inner)
			if len(f) != max(end, 60) {
				t.Errorf("frame length %d, want %d", len(f), max(end, 60))
			}
			if bytes.ContainsFunc(f[end:], func(r rune) bool { return r != 0 }) {
				t.Errorf("padding not zero: %x", f[end:])
			}
		})
	}
}

func TestMirrorErrors(t *testing.T) {
	big := make([]byte, 3000)
	tests := map[string]Mirror{
		"no router":          {Collector: c4},
		"mixed families":     {Router: r4, Collector: c6},
		"mid over 30 bits":   {Router: r4, Collector: c4, MID: 1 << 30},
		"version over 3":     {Router: r4, Collector: c4, Version: 4},
		"options too long":   {Router: r4, Collector: c4, IPOptions: make([]byte, 41)},
		"options on ipv6":    {Router: r6, Collector: c6, IPOptions: []byte{1}},
		"ipv6 mtu too small": {Router: r6, Collector: c6, Inner: big, MTU: 55},
		"ext on ipv4":        {Router: r4, Collector: c4, IPv6Ext: []ExtHeader{{Type: ExtHopByHop}}},
		"ext length":         {Router: r6, Collector: c6, IPv6Ext: []ExtHeader{{Type: ExtRouting, Len: 12}}},
		"ext ESP":            {Router: r6, Collector: c6, IPv6Ext: []ExtHeader{{Type: ExtESP}}},
		"mtu too small":      {Router: r4, Collector: c4, Inner: big, MTU: 27},
		"udp too long":       {Router: r4, Collector: c4, Inner: make([]byte, 65535-15)},
		"ipv4 total > 64k":   {Router: r4, Collector: c4, Inner: make([]byte, 65535-16-19)},
		"vlan id too large":  {Router: r4, Collector: c4, VLANs: []VLAN{{ID: 4096}}},
		"bad mac":            {Router: r4, Collector: c4, SrcMAC: net.HardwareAddr{1, 2, 3}},
	}
	for name, m := range tests {
		if _, err := m.Frames(); err == nil {
			t.Errorf("%s: Frames succeeded", name)
		}
	}
	// Datagram ignores the Ethernet-only fields and the MTU.
	if _, err := (Mirror{Router: r6, Collector: c6, Inner: big, MTU: 1500}).Datagram(); err != nil {
		t.Errorf("Datagram of an oversize IPv6 mirror: %v", err)
	}
	if _, err := (Mirror{Router: r4, Collector: c4, Inner: big, MTU: 1500}).Frame(); err == nil {
		t.Error("Frame of a fragmented datagram succeeded")
	}
}

type ipv4Frag struct {
	hl, off int
	mf, df  bool
	id      uint16
	pkt     []byte // the IPv4 packet, without padding
}

func parseFrag(t *testing.T, pkt []byte) ipv4Frag {
	t.Helper()
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
	ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok {
		t.Fatalf("not IPv4: %x", pkt)
	}
	if _, v := ip.VerifyChecksum(); !v.Valid {
		t.Errorf("fragment header checksum %#x invalid", ip.Checksum)
	}
	return ipv4Frag{
		hl: int(ip.IHL) * 4, off: int(ip.FragOffset) * 8, id: ip.Id,
		mf: ip.Flags&layers.IPv4MoreFragments != 0, df: ip.Flags&layers.IPv4DontFragment != 0,
		pkt: pkt[:ip.Length],
	}
}

// reassemble rebuilds the datagram from IPv4 fragments (any order), checking
// RFC 791's rules on the way.
func reassemble(frags []ipv4Frag) ([]byte, error) {
	if len(frags) == 0 {
		return nil, errors.New("no fragments")
	}
	frags = slices.Clone(frags)
	slices.SortFunc(frags, func(a, b ipv4Frag) int { return a.off - b.off })
	var data []byte
	for i, f := range frags {
		if f.off != len(data) {
			return nil, fmt.Errorf("fragment %d at offset %d, want %d", i, f.off, len(data))
		}
		if f.id != frags[0].id {
			return nil, fmt.Errorf("fragment %d has id %#x, want %#x", i, f.id, frags[0].id)
		}
		last := i == len(frags)-1
		if f.mf == last {
			return nil, fmt.Errorf("fragment %d: MF %v, last %v", i, f.mf, last)
		}
		payload := f.pkt[f.hl:]
		if !last && len(payload)%8 != 0 {
			return nil, fmt.Errorf("non-last fragment %d carries %d bytes, not a multiple of 8", i, len(payload))
		}
		data = append(data, payload...)
	}
	first := frags[0]
	d := append(slices.Clone(first.pkt[:first.hl]), data...)
	binary.BigEndian.PutUint16(d[2:4], uint16(len(d)))
	binary.BigEndian.PutUint16(d[6:8], 0)
	binary.BigEndian.PutUint16(d[10:12], 0)
	binary.BigEndian.PutUint16(d[10:12], (gopacket.FoldChecksum(gopacket.ComputeChecksum(d[:first.hl], 0))))
	return d, nil
}

func TestFragments(t *testing.T) {
	inner := InnerIPv4UDP(s4, p4, 1000, 2000, bytes.Repeat([]byte("0123456789abcdef"), 180)) // 2908 bytes
	rr := IPv4OptRecordRoute(2)                                                              // 11 bytes, copied flag clear
	tests := []struct {
		name      string
		mtu       int
		opts      []byte
		laterOpts []byte // padded options expected in non-first fragments
		vlans     []VLAN
	}{
		{"mtu 1500 record route", 1500, rr, nil, nil},
		{"mtu 576 timestamp qinq", 576, IPv4OptTimestamp(3), nil, []VLAN{{TPID: TPID8021AD, ID: 1}, {ID: 2}}},
		{"mtu 1280 no options", 1280, nil, nil, nil},
		{"mtu 68 minimum", 68, nil, nil, nil},
		{"router alert is copied", 1000, append(slices.Clone(rr), IPv4OptRouterAlert()...), IPv4OptRouterAlert(), nil},
		{"mtu 1499 odd", 1499, []byte{1, 1, 1, 1, 1}, nil, []VLAN{{ID: 7}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Mirror{Router: r4, Collector: c4, VLANs: tc.vlans, MID: 42, SID: 43, IPID: 0xbeef, Inner: inner, IPOptions: tc.opts, MTU: tc.mtu}
			frames, err := m.Frames()
			if err != nil {
				t.Fatal(err)
			}
			dgram, err := m.Datagram()
			if err != nil {
				t.Fatal(err)
			}
			if want := (len(dgram) + tc.mtu - 1) / tc.mtu; len(frames) < want {
				t.Fatalf("%d fragments for %d bytes at MTU %d, want at least %d", len(frames), len(dgram), tc.mtu, want)
			}
			l3 := 14 + 4*len(tc.vlans)
			firstHL := 20 + pad4(len(tc.opts))
			var frags []ipv4Frag
			for i, f := range frames {
				p := decode(t, f)
				if n := len(p.Layers()); n < 2+len(tc.vlans) {
					t.Fatalf("fragment %d decoded into %d layers", i, n)
				}
				fr := parseFrag(t, f[l3:])
				if len(fr.pkt) > tc.mtu {
					t.Errorf("fragment %d is %d bytes, over MTU %d", i, len(fr.pkt), tc.mtu)
				}
				if fr.off%8 != 0 || fr.df {
					t.Errorf("fragment %d: offset %d, DF %v", i, fr.off, fr.df)
				}
				if fr.mf != (i < len(frames)-1) {
					t.Errorf("fragment %d: MF %v", i, fr.mf)
				}
				wantOpts := tc.laterOpts
				if i == 0 {
					wantOpts = tc.opts
				}
				padded := make([]byte, pad4(len(wantOpts)))
				copy(padded, wantOpts)
				if got := fr.pkt[20:fr.hl]; !bytes.Equal(got, padded) {
					t.Errorf("fragment %d options %x, want %x", i, got, padded)
				}
				if i == 0 && fr.hl != firstHL {
					t.Errorf("first fragment IHL %d bytes, want %d", fr.hl, firstHL)
				}
				if len(f) < 60 {
					t.Errorf("fragment %d frame is %d bytes", i, len(f))
				}
				frags = append(frags, fr)
			}
			// The first fragment carries the UDP and Jmirror headers.
			udp := frames[0][l3+firstHL:]
			if binary.BigEndian.Uint16(udp[4:6]) != uint16(16+len(inner)) || binary.BigEndian.Uint32(udp[8:12]) != 42 || binary.BigEndian.Uint32(udp[12:16]) != 43 {
				t.Errorf("first fragment UDP/Jmirror header %x", udp[:16])
			}
			// Reassemble in reverse to show order does not matter.
			slices.Reverse(frags)
			got, err := reassemble(frags)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, dgram) {
				t.Errorf("reassembled datagram differs from Datagram()\n got %x\nwant %x", got[:64], dgram[:64])
			}
		})
	}

	t.Run("fits the MTU", func(t *testing.T) {
		m := Mirror{Router: r4, Collector: c4, Inner: make([]byte, 1464), MTU: 1500}
		frames, err := m.Frames()
		if err != nil || len(frames) != 1 {
			t.Fatalf("got %d frames, %v; want 1", len(frames), err)
		}
		m.MTU = 0
		if whole, _ := m.Frame(); !bytes.Equal(whole, frames[0]) {
			t.Error("MTU changed an unfragmented frame")
		}
	})

	t.Run("refragment a middle fragment", func(t *testing.T) {
		m := Mirror{Router: r4, Collector: c4, Inner: inner}
		d, _ := m.Datagram()
		frags, err := FragmentIPv4(d, 1500)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := FragmentIPv4(frags[0], 500)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range sub {
			f := parseFrag(t, s)
			if !f.mf {
				t.Errorf("piece %d of a non-last fragment lost MF", i)
			}
		}
	})
}

func verifyL4(t *testing.T, name string, p gopacket.Packet) {
	t.Helper()
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("%s: %v", name, el.Error())
	}
	nl := p.NetworkLayer()
	if ip4, ok := nl.(*layers.IPv4); ok {
		if _, v := ip4.VerifyChecksum(); !v.Valid {
			t.Errorf("%s: IPv4 checksum invalid", name)
		}
		if nl == p.Layers()[0] && int(ip4.Length) != len(p.Data()) {
			t.Errorf("%s: IPv4 length %d for %d bytes", name, ip4.Length, len(p.Data()))
		}
	}
	if ip6, ok := nl.(*layers.IPv6); ok && nl == p.Layers()[0] && int(ip6.Length)+40 != len(p.Data()) {
		t.Errorf("%s: IPv6 payload length %d for %d bytes", name, ip6.Length, len(p.Data()))
	}
	type verifier interface {
		VerifyChecksum() (error, gopacket.ChecksumVerificationResult)
	}
	type pseudo interface {
		SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
	}
	found := false
	for _, lt := range []gopacket.LayerType{layers.LayerTypeUDP, layers.LayerTypeTCP, layers.LayerTypeICMPv4, layers.LayerTypeICMPv6} {
		l := p.Layer(lt)
		if l == nil {
			continue
		}
		found = true
		if ps, ok := l.(pseudo); ok {
			if err := ps.SetNetworkLayerForChecksum(nl); err != nil {
				t.Fatal(err)
			}
		}
		err, v := l.(verifier).VerifyChecksum()
		if err != nil || !v.Valid || v.Actual == 0 {
			t.Errorf("%s: %v checksum %#x invalid (want %#x), %v", name, lt, v.Actual, v.Correct, err)
		}
	}
	if !found {
		t.Errorf("%s: no transport layer", name)
	}
}

func TestInnerBuilders(t *testing.T) {
	tests := []struct {
		name  string
		b     []byte
		first gopacket.LayerType
		size  int
	}{
		{"ipv4 icmp", InnerIPv4ICMPEcho(s4, p4, 512, 29773, 32), layers.LayerTypeIPv4, 60},
		{"ipv4 icmp empty", InnerIPv4ICMPEcho(s4, p4, 1, 1, 0), layers.LayerTypeIPv4, 28},
		{"ipv4 udp", InnerIPv4UDP(s4, p4, 40000, 40001, []byte("query")), layers.LayerTypeIPv4, 33},
		{"ipv4 udp odd", InnerIPv4UDP(s4, p4, 1, 2, []byte{0xff}), layers.LayerTypeIPv4, 29},
		{"ipv4 options", InnerIPv4WithOptions(s4, p4, IPv4OptRecordRoute(3), 7, 8, []byte("opt")), layers.LayerTypeIPv4, 20 + 16 + 8 + 3},
		{"ipv6 udp", InnerIPv6UDP(s6, p6, 443, 50000, []byte("quic!")), layers.LayerTypeIPv6, 53},
		{"ipv6 icmp", InnerIPv6ICMPEcho(s6, p6, 9, 10, 56), layers.LayerTypeIPv6, 104},
		{"ipv4 icmp reply", InnerIPv4ICMPEchoReply(p4, s4, 1, 2, 3), layers.LayerTypeIPv4, 31},
		{"ipv6 icmp reply", InnerIPv6ICMPEchoReply(p6, s6, 1, 2, 3), layers.LayerTypeIPv6, 51},
	}
	for _, tc := range tests {
		if len(tc.b) != tc.size {
			t.Errorf("%s: %d bytes, want %d", tc.name, len(tc.b), tc.size)
		}
		verifyL4(t, tc.name, gopacket.NewPacket(tc.b, tc.first, gopacket.Default))
	}

	p := gopacket.NewPacket(tests[4].b, layers.LayerTypeIPv4, gopacket.Default)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip.IHL != 9 || len(ip.Options) == 0 || ip.Options[0].OptionType != 7 {
		t.Errorf("options packet: IHL %d options %+v", ip.IHL, ip.Options)
	}
	echo := gopacket.NewPacket(tests[0].b, layers.LayerTypeIPv4, gopacket.Default).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if echo.TypeCode.Type() != layers.ICMPv4TypeEchoRequest || echo.Id != 512 || echo.Seq != 29773 || string(echo.Payload) != "abcdefghijklmnopqrstuvwabcdefghi" {
		t.Errorf("echo %v id %d seq %d payload %q", echo.TypeCode, echo.Id, echo.Seq, echo.Payload)
	}
	echo6 := gopacket.NewPacket(tests[6].b, layers.LayerTypeIPv6, gopacket.Default).Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if echo6.TypeCode.Type() != layers.ICMPv6TypeEchoRequest {
		t.Errorf("ICMPv6 type %v", echo6.TypeCode)
	}
	reply := gopacket.NewPacket(tests[7].b, layers.LayerTypeIPv4, gopacket.Default).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	reply6 := gopacket.NewPacket(tests[8].b, layers.LayerTypeIPv6, gopacket.Default).Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if reply.TypeCode.Type() != layers.ICMPv4TypeEchoReply || reply6.TypeCode.Type() != layers.ICMPv6TypeEchoReply {
		t.Errorf("echo reply types %v, %v", reply.TypeCode, reply6.TypeCode)
	}

	if got, want := InnerPPP(PPPIPv4, []byte{0x45}), []byte{0xff, 0x03, 0x00, 0x21, 0x45}; !bytes.Equal(got, want) {
		t.Errorf("InnerPPP = %x, want %x", got, want)
	}
	// The l2tp sample's LCP echo: FF 03 C0 21 09 id 00 08 magic.
	if got, want := InnerLCPEcho(0x2a, 0x01020304), []byte{0xff, 0x03, 0xc0, 0x21, 0x09, 0x2a, 0x00, 0x08, 1, 2, 3, 4}; !bytes.Equal(got, want) {
		t.Errorf("InnerLCPEcho = %x, want %x", got, want)
	}
	if got := InnerLCPEchoReply(1, 0); got[4] != 10 {
		t.Errorf("InnerLCPEchoReply code %d, want 10", got[4])
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("InnerIPv4UDP with IPv6 addresses did not panic")
			}
		}()
		InnerIPv4UDP(s6, p6, 1, 2, nil)
	}()
}

func TestClassify(t *testing.T) {
	tests := []struct {
		b    []byte
		want InnerKind
	}{
		{nil, KindEmpty},
		{[]byte{}, KindEmpty},
		{[]byte{0x45}, KindIPv4},
		{[]byte{0x4f, 0}, KindIPv4},
		{[]byte{0x60}, KindIPv6},
		{[]byte{0x6f, 0xff}, KindIPv6},
		{[]byte{0xff, 0x03}, KindPPP},
		{InnerLCPEcho(1, 2), KindPPP},
		{[]byte{0xff}, KindUnknown},
		{[]byte{0xff, 0x04}, KindUnknown},
		{[]byte{0x00, 0x1b}, KindUnknown},
		{[]byte{0x50}, KindUnknown},
	}
	for _, tc := range tests {
		if got := Classify(tc.b); got != tc.want {
			t.Errorf("Classify(%x) = %v, want %v", tc.b, got, tc.want)
		}
	}
}

func TestNoise(t *testing.T) {
	arp := decode(t, NotJmirrorARP(s4, p4)).Layer(layers.LayerTypeARP).(*layers.ARP)
	if arp.Operation != layers.ARPRequest || !bytes.Equal(arp.SourceProtAddress, s4.AsSlice()) || !bytes.Equal(arp.DstProtAddress, p4.AsSlice()) {
		t.Errorf("ARP %+v", arp)
	}
	for _, a := range [][2]netip.Addr{{s4, p4}, {s6, p6}} {
		p := decode(t, NotJmirrorTCPSyn(a[0], a[1], 40000, 22))
		verifyL4(t, "syn", p)
		tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !tcp.SYN || tcp.ACK || tcp.DstPort != 22 {
			t.Errorf("TCP SYN %v ack %v port %d", tcp.SYN, tcp.ACK, tcp.DstPort)
		}
		verifyL4(t, "udp", decode(t, NotJmirrorUDP(a[0], a[1], 30031, 30031, []byte("syslog"))))
		verifyL4(t, "icmp", decode(t, NotJmirrorICMPEcho(a[0], a[1], 1, 2, 56)))
	}
	p := decode(t, NotJmirrorDNSQuery(s4, p4, 0x1234, "mediation.example.net"))
	verifyL4(t, "dns", p)
	dns, ok := p.Layer(layers.LayerTypeDNS).(*layers.DNS)
	if !ok || dns.ID != 0x1234 || dns.QR || len(dns.Questions) != 1 || string(dns.Questions[0].Name) != "mediation.example.net" || dns.Questions[0].Type != layers.DNSTypeA {
		t.Errorf("DNS %+v", dns)
	}
	f := NotJmirrorIPv4Fragment(s4, c4, 7, 1480, true, make([]byte, 100))
	fr := parseFrag(t, f[14:])
	if fr.off != 1480 || !fr.mf || fr.id != 7 || f[14+9] != 17 {
		t.Errorf("fragment offset %d MF %v id %d proto %d", fr.off, fr.mf, fr.id, f[14+9])
	}
}

func TestEthernetFrame(t *testing.T) {
	f, err := EthernetFrame(nil, nil, []VLAN{{ID: 1}, {ID: 2}, {ID: 3}}, EtherTypeIPv4, []byte{0x45})
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != 60 || binary.BigEndian.Uint16(f[24:26]) != EtherTypeIPv4 || f[26] != 0x45 {
		t.Errorf("three-tag frame %x", f)
	}
	if _, err := EthernetFrame(net.HardwareAddr{1}, nil, nil, 0, nil); err == nil {
		t.Error("short MAC accepted")
	}
}

// observed is a test decoder's view of a capture, built with gopacket and
// hand reassembly, independently of how Demo counted.
func observe(t *testing.T, pkts []Packet, port uint16) Summary {
	t.Helper()
	sum := Summary{Streams: map[StreamID]StreamCount{}}
	type key struct {
		src, dst netip.Addr
		id       uint16
	}
	pending := map[key][]ipv4Frag{}
	var order []key
	jmirror := func(pkt []byte, first gopacket.LayerType) bool {
		p := gopacket.NewPacket(pkt, first, gopacket.Default)
		udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok || uint16(udp.DstPort) != port || len(udp.Payload) < 8 {
			return false
		}
		router := addrOf(net.IP(p.NetworkLayer().NetworkFlow().Src().Raw()))
		pl := udp.Payload
		sum.Add(router, binary.BigEndian.Uint32(pl[0:4]), binary.BigEndian.Uint32(pl[4:8]), pl[8:])
		return true
	}
	for _, pk := range pkts {
		sum.Frames++
		p := decode(t, pk.Data)
		if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && (ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0) {
			k := key{addrOf(ip.SrcIP), addrOf(ip.DstIP), ip.Id}
			if pending[k] == nil {
				order = append(order, k)
			}
			off := l3Offset(p)
			pending[k] = append(pending[k], parseFrag(t, pk.Data[off:off+int(ip.Length)]))
			continue
		}
		if !jmirror(pk.Data, layers.LayerTypeEthernet) {
			sum.NotJmirror++
		}
	}
	for _, k := range order {
		frags := pending[k]
		d, err := reassemble(frags)
		if err == nil && jmirror(d, layers.LayerTypeIPv4) {
			sum.Fragmented++
			sum.Fragments += len(frags) - 1
			continue
		}
		sum.NotJmirror += len(frags)
	}
	return sum
}

// l3Offset is where the first network layer starts in a decoded frame.
func l3Offset(p gopacket.Packet) int {
	off := 0
	for _, l := range p.Layers() {
		if l == p.NetworkLayer() {
			break
		}
		off += len(l.LayerContents())
	}
	return off
}

func TestDemo(t *testing.T) {
	cfg := DefaultDemo()
	pkts, sum, err := Demo(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, sum2, err := Demo(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pkts, again) || !reflect.DeepEqual(sum, sum2) {
		t.Fatal("Demo is not deterministic")
	}
	cfg.Seed++
	other, _, err := Demo(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(pkts, other) {
		t.Error("seeds 1 and 2 give the same capture")
	}

	for i := 1; i < len(pkts); i++ {
		if !pkts[i].Time.After(pkts[i-1].Time) {
			t.Fatalf("packet %d at %v is not after %v", i, pkts[i].Time, pkts[i-1].Time)
		}
	}
	if pkts[0].Time.Before(DefaultDemo().Start) {
		t.Errorf("first packet at %v before start", pkts[0].Time)
	}

	got := observe(t, pkts, DefaultPort)
	if !reflect.DeepEqual(got, sum) {
		t.Errorf("recount differs from Summary:\n got %+v\nwant %+v", got, sum)
	}

	d := DefaultDemo()
	if sum.Frames != len(pkts) || sum.Frames != sum.JmirrorDatagrams+sum.Fragments+sum.NotJmirror {
		t.Errorf("frame counts don't add up: %+v", sum)
	}
	if want := d.Intercepts * d.SessionsPer * d.PacketsPer; sum.JmirrorDatagrams != want {
		t.Errorf("%d datagrams, want %d", sum.JmirrorDatagrams, want)
	}
	if len(sum.Streams) != d.Intercepts*d.SessionsPer {
		t.Errorf("%d streams, want %d", len(sum.Streams), d.Intercepts*d.SessionsPer)
	}
	if sum.NotJmirror != sum.JmirrorDatagrams/d.NoiseEvery {
		t.Errorf("%d noise frames, want %d", sum.NotJmirror, sum.JmirrorDatagrams/d.NoiseEvery)
	}
	if sum.Fragmented != 3 || sum.Fragments < 3 {
		t.Errorf("%d fragmented datagrams with %d non-first fragments, want 3 and >= 3", sum.Fragmented, sum.Fragments)
	}
	var kinds [NumInnerKinds]uint64
	shared, mids := 0, map[uint32]bool{}
	for id, c := range sum.Streams {
		mids[id.MID] = true
		for k, n := range c.Inner {
			kinds[k] += n
		}
		if len(c.ByRouter) == 2 {
			shared++
		}
	}
	for k, n := range kinds {
		if n == 0 {
			t.Errorf("no %v inner packets", InnerKind(k))
		}
	}
	if shared == 0 {
		t.Error("no (mid, sid) comes from two routers")
	}
	if len(mids) != d.Intercepts {
		t.Errorf("%d mids, want %d", len(mids), d.Intercepts)
	}

	// IMIX-like sizes, outer IPv6, VLAN tags.
	var small, medium, large, v6, tagged int
	for _, pk := range pkts {
		switch n := len(pk.Data); {
		case n < 150:
			small++
		case n >= 550 && n < 700:
			medium++
		case n > 1300:
			large++
		}
		p := decode(t, pk.Data)
		if p.Layer(layers.LayerTypeIPv6) != nil && p.Layer(layers.LayerTypeIPv6) == p.NetworkLayer() {
			v6++
		}
		// Outer UDP checksums: 0 over IPv4 as routers send, valid over IPv6
		// where 0 is not allowed.
		if udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && udp.DstPort == DefaultPort {
			_, isV6 := p.NetworkLayer().(*layers.IPv6)
			if err := udp.SetNetworkLayerForChecksum(p.NetworkLayer()); err != nil {
				t.Fatal(err)
			}
			if _, v := udp.VerifyChecksum(); isV6 != (udp.Checksum != 0) || !v.Valid {
				t.Errorf("outer UDP checksum %#x (IPv6 %v, valid %v)", udp.Checksum, isV6, v.Valid)
			}
		}
		if p.Layer(layers.LayerTypeDot1Q) != nil {
			tagged++
		}
	}
	if small < len(pkts)/3 || medium == 0 || large == 0 || v6 == 0 || tagged == 0 {
		t.Errorf("frame mix: %d small, %d medium, %d large, %d outer IPv6, %d tagged of %d", small, medium, large, v6, tagged, len(pkts))
	}
}

func TestDemoConfigs(t *testing.T) {
	small := DemoConfig{Seed: 9, Intercepts: 1, SessionsPer: 1, PacketsPer: 3, FragmentEvery: 1, NoiseEvery: 1, Port: 6502}
	pkts, sum, err := Demo(small)
	if err != nil {
		t.Fatal(err)
	}
	if sum.JmirrorDatagrams != 3 || sum.Fragmented != 1 || sum.NotJmirror != 3 {
		t.Errorf("small demo summary %+v", sum)
	}
	if got := observe(t, pkts, 6502); !reflect.DeepEqual(got, sum) {
		t.Errorf("recount differs:\n got %+v\nwant %+v", got, sum)
	}
	for _, bad := range []DemoConfig{{}, {Intercepts: 1, SessionsPer: 1}, {Intercepts: 1, SessionsPer: 1, PacketsPer: 1, NoiseEvery: -1}} {
		if _, _, err := Demo(bad); err == nil {
			t.Errorf("Demo(%+v) succeeded", bad)
		}
	}
}

func TestWritePcap(t *testing.T) {
	pkts, _, err := Demo(DefaultDemo())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WritePcap(&buf, pkts); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	if magic := binary.LittleEndian.Uint32(raw[0:4]); magic != 0xa1b23c4d {
		t.Errorf("magic %#x, want little-endian nanosecond pcap", magic)
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet || r.Resolution() != gopacket.TimestampResolutionNanosecond {
		t.Errorf("link type %v resolution %v", r.LinkType(), r.Resolution())
	}
	for i := range pkts {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !ci.Timestamp.Equal(pkts[i].Time) || !bytes.Equal(data, pkts[i].Data) || ci.Length != len(data) {
			t.Fatalf("packet %d differs after the round trip: %v vs %v", i, ci.Timestamp, pkts[i].Time)
		}
	}
	if _, _, err := r.ReadPacketData(); err != io.EOF {
		t.Errorf("after the last packet: %v, want EOF", err)
	}
	for _, bad := range []time.Time{time.Unix(-1, 0), {}, time.Unix(1<<32, 0)} {
		if err := WritePcap(io.Discard, []Packet{{Time: bad, Data: []byte{1}}}); err == nil {
			t.Errorf("time %v was written", bad)
		}
	}
	if err := WritePcap(failWriter{}, pkts); err == nil {
		t.Error("a write error was not reported")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func tshark(t *testing.T, args ...string) [][]string {
	t.Helper()
	bin := testenv.Tool(t, "tshark")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user profile
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %v: %v\n%s", args, err, stderr.String())
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		rows = append(rows, strings.Split(line, "\t"))
	}
	return rows
}

func writeDemoPcap(t *testing.T, cfg DemoConfig) (string, []Packet, Summary) {
	t.Helper()
	pkts, sum, err := Demo(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "demo.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePcap(f, pkts); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, pkts, sum
}

func TestTsharkPcap(t *testing.T) {
	path, pkts, _ := writeDemoPcap(t, DefaultDemo())
	rows := tshark(t, "-r", path, "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len")
	if len(rows) != len(pkts) {
		t.Fatalf("tshark read %d frames, wrote %d", len(rows), len(pkts))
	}
	for i, r := range rows {
		want := fmt.Sprintf("%d.%09d", pkts[i].Time.Unix(), pkts[i].Time.Nanosecond())
		if r[0] != want || r[1] != strconv.Itoa(len(pkts[i].Data)) {
			t.Fatalf("frame %d: tshark %v, want %s %d", i, r, want, len(pkts[i].Data))
		}
	}
}

// TestTsharkDemo has Wireshark account for every Jmirror datagram of the
// demo. Wireshark 4.0's dissector declines datagrams whose inner packet is
// neither IP nor PPP (they show as data), so those are read from data.data.
func TestTsharkDemo(t *testing.T) {
	path, _, sum := writeDemoPcap(t, DefaultDemo())
	rows := tshark(t, "-r", path, "-d", "udp.port==30030,jmirror", "-E", "occurrence=f", "-T", "fields",
		"-e", "udp.dstport", "-e", "udp.length", "-e", "jmirror.mid", "-e", "jmirror.sid", "-e", "data.data")
	got := map[StreamID][2]uint64{}
	dissected, asData := 0, 0
	for _, r := range rows {
		if len(r) != 5 || r[0] != "30030" {
			continue // not Jmirror, or a fragment tshark is still reassembling
		}
		ulen, err := strconv.ParseUint(r[1], 0, 16)
		if err != nil {
			t.Fatalf("tshark row %q: %v", r, err)
		}
		var mid, sid uint64
		if r[2] != "" {
			m, err1 := strconv.ParseUint(r[2], 0, 32)
			s, err2 := strconv.ParseUint(r[3], 0, 32)
			if err := errors.Join(err1, err2); err != nil {
				t.Fatalf("tshark row %q: %v", r, err)
			}
			mid, sid = m, s
			dissected++
		} else {
			if len(r[4]) < 16 {
				t.Fatalf("tshark row %q: no Jmirror header", r)
			}
			m, err1 := strconv.ParseUint(r[4][:8], 16, 32)
			s, err2 := strconv.ParseUint(r[4][8:16], 16, 32)
			if err := errors.Join(err1, err2); err != nil {
				t.Fatalf("tshark row %q: %v", r, err)
			}
			mid, sid = m, s
			asData++
		}
		if mid>>30 != 0 {
			t.Errorf("mid word %#x has V set; the demo sends V = 0", mid)
		}
		id := StreamID{MID: uint32(mid) & MaxMID, SID: uint32(sid)}
		c := got[id]
		c[0]++
		c[1] += ulen - 16
		got[id] = c
	}
	want := map[StreamID][2]uint64{}
	var odd uint64
	for id, c := range sum.Streams {
		want[id] = [2]uint64{c.Packets, c.Bytes}
		odd += c.Inner[KindUnknown] + c.Inner[KindEmpty]
	}
	if dissected+asData != sum.JmirrorDatagrams || uint64(asData) != odd {
		t.Errorf("tshark: %d dissected + %d as data, want %d datagrams of which %d unknown/empty", dissected, asData, sum.JmirrorDatagrams, odd)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tshark streams {packets, bytes}:\n got %v\nwant %v", got, want)
	}
}

func TestCorpus(t *testing.T) {
	ports := []uint16{30030, 6502, 54301}
	const n = 4000
	labeled := CorpusLabeled(7, n, ports)
	if len(labeled) != n {
		t.Fatalf("%d frames, want %d", len(labeled), n)
	}
	plain := Corpus(7, n, ports)
	for i := range plain {
		if !bytes.Equal(plain[i], labeled[i].Data) {
			t.Fatalf("Corpus and CorpusLabeled differ at %d", i)
		}
	}
	if again := Corpus(7, n, ports); !reflect.DeepEqual(again, plain) {
		t.Fatal("Corpus is not deterministic")
	}
	if reflect.DeepEqual(Corpus(8, n, ports), plain) {
		t.Error("seeds 7 and 8 give the same corpus")
	}
	if got := Corpus(1, 3, nil); len(got) != 3 {
		t.Errorf("Corpus with no ports: %d frames", len(got))
	}

	kinds := map[string]int{}
	var inner [NumInnerKinds]int
	vlanCounts := map[int]int{}
	var v4opts, v6, versions, checksummed int
	var fragFrames []ipv4Frag
	dupFirsts := map[string]int{}
	v6frags := 0
	for i, f := range labeled {
		kinds[f.Kind]++
		if len(f.Data) < 14 || len(f.Data) > 1514+4*3 {
			t.Errorf("frame %d (%s) is %d bytes", i, f.Kind, len(f.Data))
		}
		switch f.Kind {
		case CorpusJmirror:
			p := decode(t, f.Data)
			tags := 0
			for _, l := range p.Layers() {
				if l.LayerType() == layers.LayerTypeDot1Q {
					tags++
				}
			}
			vlanCounts[tags]++
			if len(f.Data) > 1514+4*tags {
				t.Errorf("frame %d: %d bytes with %d tags", i, len(f.Data), tags)
			}
			udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if !ok || !slices.Contains(ports, uint16(udp.DstPort)) || udp.SrcPort != udp.DstPort || len(udp.Payload) < 8 || int(udp.Length) != len(udp.Payload)+8 {
				t.Fatalf("frame %d is not a valid Jmirror frame: %x", i, f.Data)
			}
			if udp.Checksum != 0 {
				checksummed++
				if err := udp.SetNetworkLayerForChecksum(p.NetworkLayer()); err != nil {
					t.Fatal(err)
				}
				if _, v := udp.VerifyChecksum(); !v.Valid {
					t.Errorf("frame %d: UDP checksum %#x invalid", i, udp.Checksum)
				}
			}
			inner[Classify(udp.Payload[8:])]++
			if ip, ok := p.NetworkLayer().(*layers.IPv4); ok {
				if ip.IHL > 5 {
					v4opts++
				}
				if _, v := ip.VerifyChecksum(); !v.Valid {
					t.Errorf("frame %d: bad IPv4 checksum", i)
				}
			} else {
				v6++
			}
			if udp.Payload[0]>>6 != 0 {
				versions++
			}
		case CorpusV4Embedded:
			p := decode(t, f.Data)
			ip, ok := p.NetworkLayer().(*layers.IPv6)
			if !ok || p.Layer(layers.LayerTypeUDP) == nil {
				t.Fatalf("frame %d: not Jmirror over IPv6: %x", i, f.Data)
			}
			if src := ip.SrcIP.To16(); !bytes.Equal(src[:10], make([]byte, 10)) || !(src[10] == src[11] && (src[10] == 0 || src[10] == 0xff)) {
				t.Errorf("frame %d: source %v embeds no IPv4 address", i, ip.SrcIP)
			}
		case CorpusFragmentDuplicated:
			if isFirstFragment(f.Data) {
				off := ipv4Offset(f.Data)
				dupFirsts[string(f.Data[off+4:off+6])+string(f.Data[off+12:off+20])]++
			}
		case CorpusFragment, CorpusFragmentReversed:
			p := decode(t, f.Data)
			ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if !ok {
				if p.Layer(layers.LayerTypeIPv6Fragment) == nil {
					t.Fatalf("frame %d: a fragment neither IPv4 nor IPv6: %x", i, f.Data)
				}
				v6frags++
				continue
			}
			off := l3Offset(p)
			fragFrames = append(fragFrames, parseFrag(t, f.Data[off:off+int(ip.Length)]))
		}
	}
	if v6frags == 0 {
		t.Error("no outer IPv6 fragments")
	}
	for _, k := range []string{CorpusIPv6Ext, CorpusJmirror, CorpusV4Embedded, CorpusFragment, CorpusFragmentOrphan, CorpusFragmentFirstOnly,
		CorpusFragmentReversed, CorpusFragmentDuplicated, CorpusNoise,
		CorpusMutFlip, CorpusMutTruncate, CorpusMutUDPLen, CorpusMutShortPayload, CorpusMutIPLen, CorpusMutIHL,
		CorpusMutVLAN3, CorpusMutEtherType, CorpusMutPort, CorpusMutProto, CorpusMutFragFlags} {
		if kinds[k] == 0 {
			t.Errorf("no %s frames", k)
		}
	}
	for k, c := range inner {
		if c == 0 {
			t.Errorf("no valid Jmirror frame with a %v inner", InnerKind(k))
		}
	}
	if vlanCounts[0] == 0 || vlanCounts[1] == 0 || vlanCounts[2] == 0 || v4opts == 0 || v6 == 0 || versions == 0 || checksummed == 0 {
		t.Errorf("valid frame mix: tags %v, %d IPv4 with options, %d IPv6, %d with V != 0, %d with UDP checksums", vlanCounts, v4opts, v6, versions, checksummed)
	}

	copied := 0
	for _, n := range dupFirsts {
		if n > 1 {
			copied++
		}
	}
	if copied == 0 {
		t.Errorf("no duplicated set has its first fragment twice: %v", dupFirsts)
	}

	// Complete fragment sets reassemble into Jmirror datagrams.
	sets := map[uint64][]ipv4Frag{}
	for _, f := range fragFrames {
		k := uint64(binary.BigEndian.Uint32(f.pkt[12:16]))<<32 | uint64(binary.BigEndian.Uint32(f.pkt[16:20]))<<16 ^ uint64(f.id)
		sets[k] = append(sets[k], f)
	}
	complete := 0
	for _, fs := range sets {
		d, err := reassemble(fs)
		if err != nil {
			continue // an id collision between two sets; rare and harmless
		}
		p := gopacket.NewPacket(d, layers.LayerTypeIPv4, gopacket.Default)
		if udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); !ok || !slices.Contains(ports, uint16(udp.DstPort)) || int(udp.Length) != len(udp.Payload)+8 {
			t.Errorf("reassembled corpus datagram is not Jmirror")
		}
		complete++
	}
	if complete < len(sets)*9/10 {
		t.Errorf("only %d of %d fragment sets reassemble", complete, len(sets))
	}
}

// TestIPv6Fragments: RFC 8200 fragments of an outer IPv6 datagram behind
// extension headers carry the unfragmentable part each, offsets on the
// 8-byte grid, M on all but the last, and put back together give the
// datagram's UDP bytes.
func TestIPv6Fragments(t *testing.T) {
	m := Mirror{Router: netip.MustParseAddr("2001:db8::1"), Collector: netip.MustParseAddr("2001:db8::100"),
		MID: 1, SID: 2, Inner: make([]byte, 4000), MTU: 1500, IPv6FragID: 0xdeadbeef,
		IPv6Ext: []ExtHeader{{Type: ExtHopByHop}, {Type: ExtRouting, Len: 24}}}
	for i := range m.Inner {
		m.Inner[i] = byte(i)
	}
	fs, err := m.Frames()
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 3 {
		t.Fatalf("%d fragments, want 3", len(fs))
	}
	var udp []byte
	for i, f := range fs {
		ip := f[ethHeaderLen:]
		if len(ip) > 1500 || ip[6] != ExtHopByHop || ip[40] != ExtRouting || ip[48] != ExtFragment {
			t.Fatalf("fragment %d: %d bytes, chain %d %d %d", i, len(ip), ip[6], ip[40], ip[48])
		}
		fh := ip[72:80]
		off, more := int(binary.BigEndian.Uint16(fh[2:])&0xfff8), fh[3]&1 == 1
		if fh[0] != protoUDP || binary.BigEndian.Uint32(fh[4:]) != 0xdeadbeef || off != len(udp) || more != (i < 2) {
			t.Fatalf("fragment %d: header % x, offset %d, have %d", i, fh, off, len(udp))
		}
		pl := int(binary.BigEndian.Uint16(ip[4:]))
		udp = append(udp, ip[80:40+pl]...)
	}
	if m.HeaderOffset() != ethHeaderLen+80+udpHeaderLen {
		t.Errorf("HeaderOffset %d", m.HeaderOffset())
	}
	m.MTU = 0
	d, err := m.Datagram()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(udp, d[72:]) {
		t.Errorf("reassembled fragments differ from the datagram's UDP")
	}
}
