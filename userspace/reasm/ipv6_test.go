package reasm

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/tools/gen"
)

// ipv6Frags is a Jmirror datagram over IPv6 behind hop-by-hop and routing
// headers, whole and as RFC 8200 fragments (without Ethernet).
func ipv6Frags(t testing.TB, id uint32, n int) (whole []byte, frags [][]byte) {
	t.Helper()
	m := gen.Mirror{Router: netip.MustParseAddr("2001:db8::1"), Collector: netip.MustParseAddr("2001:db8::100"),
		MID: 1, SID: 2, Inner: udpPayload(n), UDPChecksum: true, IPv6FragID: id,
		IPv6Ext: []gen.ExtHeader{{Type: gen.ExtHopByHop}, {Type: gen.ExtRouting, Len: 24}}}
	whole, err := m.Datagram()
	if err != nil {
		t.Fatal(err)
	}
	m.MTU = 1280
	fs, err := m.Frames()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		frags = append(frags, f[14:])
	}
	return whole, frags
}

// TestIPv6Reassembly: outer IPv6 fragments in any order come back as the
// datagram byte for byte, their fragment header taken out and the
// unfragmentable part (hop-by-hop, routing) kept; copies are duplicates.
func TestIPv6Reassembly(t *testing.T) {
	whole, frags := ipv6Frags(t, 0xabcdef01, 5000)
	if len(frags) != 5 {
		t.Fatalf("%d fragments", len(frags))
	}
	for name, in := range map[string][][]byte{
		"in order": frags, "reversed": reversed(frags),
		"with copies": {frags[0], frags[2], frags[0], frags[1], frags[4], frags[2], frags[3]},
	} {
		t.Run(name, func(t *testing.T) {
			r := New(Config{})
			got, ok, err := feed(t, r, t0, in)
			if err != nil || !ok {
				t.Fatalf("complete %v, err %v", ok, err)
			}
			if !bytes.Equal(got, whole) {
				t.Fatalf("reassembled %d bytes differ from the %d-byte datagram", len(got), len(whole))
			}
			s := r.Stats()
			if s.Reassembled != 1 || s.Pending != 0 || s.Duplicates != uint64(len(in)-len(frags)) {
				t.Errorf("stats %+v", s)
			}
			checkInvariants(t, r)
		})
	}
}

// TestIPv6KeysAndBounds: IPv6 and IPv4 datagrams are kept apart, ids are
// 32 bits, the timeout and malformed counts apply to IPv6 as to IPv4, an
// IPv6 packet without a fragment header comes straight back and an atomic
// fragment comes back without its fragment header.
func TestIPv6KeysAndBounds(t *testing.T) {
	r := New(Config{Timeout: time.Second})
	_, a := ipv6Frags(t, 0x00010001, 3000)
	_, b := ipv6Frags(t, 0x00020001, 3000) // same low 16 bits
	for _, f := range [][]byte{a[0], b[1]} {
		if _, ok, err := r.Add(t0, f); ok || err != nil {
			t.Fatalf("complete %v, err %v", ok, err)
		}
	}
	if s := r.Stats(); s.Pending != 2 {
		t.Fatalf("pending %d, want 2 (ids differ above 16 bits)", s.Pending)
	}
	r.Expire(t0.Add(time.Second))
	if s := r.Stats(); s.Timeouts != 2 || s.Pending != 0 {
		t.Fatalf("stats after expiry %+v", s)
	}

	whole, _ := ipv6Frags(t, 1, 100)
	got, ok, err := r.Add(t0, append(bytes.Clone(whole), 0, 0, 0)) // link padding
	if !ok || err != nil || !bytes.Equal(got, whole) {
		t.Fatalf("unfragmented: complete %v, err %v, %d bytes", ok, err, len(got))
	}

	m := gen.Mirror{Router: netip.MustParseAddr("2001:db8::1"), Collector: netip.MustParseAddr("2001:db8::100"),
		MID: 1, SID: 2, Inner: udpPayload(50), UDPChecksum: true}
	plain, _ := m.Datagram()
	m.IPv6Ext = []gen.ExtHeader{{Type: gen.ExtFragment, ID: 5}}
	atomic, _ := m.Datagram()
	got, ok, err = r.Add(t0, atomic)
	if !ok || err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("atomic fragment: complete %v, err %v\n got  % x\n want % x", ok, err, got, plain)
	}

	long := bytes.Clone(a[0])
	long[4], long[5] = 0xff, 0xff
	before := r.Stats().Malformed
	if _, _, err := r.Add(t0, long); !errors.Is(err, ErrMalformed) {
		t.Fatalf("payload length past the packet: %v", err)
	}
	if r.Stats().Malformed != before+1 {
		t.Errorf("malformed not counted")
	}
	checkInvariants(t, r)
}

// TestHolderIPv6: later IPv6 fragments held ahead of their first are keyed
// by (src, dst, 32-bit id) through the extension headers, apart from
// another datagram's and from an IPv4 datagram's, and reassemble once their
// first fragment comes. A packet without a fragment header has no key.
func TestHolderIPv6(t *testing.T) {
	whole, a := ipv6Frags(t, 0x10000001, 3000)
	_, b := ipv6Frags(t, 0x20000001, 3000)
	v4 := fragment(1, 1, nil, udpPayload(3000), 1500)
	key := func(f []byte) Key { return mustKey(t, f) }
	if key(a[0]) != key(a[2]) || key(a[0]) == key(b[0]) || key(a[0]) == key(v4[0]) {
		t.Fatal("IPv6 keys: fragments of one datagram differ, or two datagrams meet")
	}
	if _, ok := KeyOf(whole); ok {
		t.Fatal("an IPv6 packet without a fragment header has a key")
	}
	if _, ok := KeyOf(a[0][:ipv6HeaderLen+4]); ok {
		t.Fatal("a cut extension chain has a key")
	}
	h := NewHolder(Config{})
	for _, f := range [][]byte{a[2], a[1], b[2]} {
		h.Hold(t0, key(f), f, 1)
	}
	got := h.Take(key(a[0]))
	if len(got) != 2 || h.Len() != 1 {
		t.Fatalf("Take: %d frames, %d left", len(got), h.Len())
	}
	r := New(Config{})
	out, ok, err := feed(t, r, t0, [][]byte{got[0].Frame, got[1].Frame, a[0]})
	if !ok || err != nil || !bytes.Equal(out, whole) {
		t.Fatalf("held IPv6 fragments do not reassemble to the datagram: %v %v", ok, err)
	}
}
