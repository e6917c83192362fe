package pcapng

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"
)

// A section carries its packets with their routers and kinds, in order,
// and is a pcapng stream of its own: pcapgo reads it without context.
func TestSectionRoundTrip(t *testing.T) {
	s := NewSection(7, 9, true)
	r1, r2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	want := []SectionPacket{
		{NS: 1_700_000_000_123456789, Router: r1, Kind: LinkRawIP, Data: []byte{0x45, 1, 2}},
		{NS: 1_700_000_001_000000001, Router: r2, Kind: LinkPPPHDLC, Data: []byte{0xff, 0x03, 0, 0x21, 5}},
		{NS: 1_700_000_002_000000000, Router: r1, Kind: LinkRawIP, Data: bytes.Repeat([]byte{0x60}, 1500)},
	}
	for _, p := range want {
		if err := s.Add(p.NS, p.Router, p.Kind, p.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(1, netip.Addr{}, LinkRawIP, nil); err == nil {
		t.Fatal("a packet without a router was taken")
	}
	if s.Packets() != 3 || s.First() != want[0].NS {
		t.Fatalf("packets %d first %d", s.Packets(), s.First())
	}
	var got []SectionPacket
	mid, sid, err := DecodeSection(s.Bytes(), func(p SectionPacket) error { got = append(got, p); return nil })
	if err != nil || mid != 7 || sid != 9 {
		t.Fatalf("decode: %d %d %v", mid, sid, err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].NS != want[i].NS || got[i].Router != want[i].Router || got[i].Kind != want[i].Kind || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("packet %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(s.Bytes()), pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		data, ci, err := r.ReadPacketData()
		if err != nil || !bytes.Equal(data, want[i].Data) || uint64(ci.Timestamp.UnixNano()) != want[i].NS {
			t.Fatalf("pcapgo packet %d: %v %x %v", i, err, data, ci.Timestamp.UnixNano())
		}
	}
	s.Reset()
	if s.Packets() != 0 {
		t.Fatal("reset kept packets")
	}
	if _, _, err := DecodeSection(s.Bytes(), func(SectionPacket) error { return nil }); err != nil {
		t.Fatalf("an empty section: %v", err)
	}
}

// Damaged input is refused before any packet is handed on.
func TestDecodeSectionRefuses(t *testing.T) {
	s := NewSection(1, 2, false)
	for i := range 3 {
		s.Add(uint64(i+1), netip.MustParseAddr("192.0.2.1"), LinkRawIP, []byte{0x45, byte(i)})
	}
	b := s.Bytes()
	calls := 0
	count := func(SectionPacket) error { calls++; return nil }
	for _, bad := range [][]byte{b[:len(b)-3], b[28:], append(append([]byte{}, b...), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)} {
		if _, _, err := DecodeSection(bad, count); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%d bytes: %v, want ErrCorrupt", len(bad), err)
		}
	}
	if calls != 0 {
		t.Fatalf("%d packets handed on from damaged input", calls)
	}
}
