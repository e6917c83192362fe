package jmirror_test

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/reasm"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
)

func TestParseJmirror(t *testing.T) {
	f, inner, ok := jmirror.ParseJmirror([]byte{0xc0, 0, 0, 5, 0, 0, 0, 6, 0x45})
	if !ok || f.MID != 5 || f.SID != 6 || f.Version != 3 || !bytes.Equal(inner, []byte{0x45}) {
		t.Errorf("got %+v %x %v", f, inner, ok)
	}
	if _, _, ok := jmirror.ParseJmirror(make([]byte, 7)); ok {
		t.Error("7 bytes parsed")
	}
}

// TestUnwrap takes whole frames and fragments to their mirrored packets:
// a whole frame is its own, fragments give theirs at the last one, behind
// the first's link-layer header, and a datagram that is not Jmirror once
// complete gives none.
func TestUnwrap(t *testing.T) {
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	m := gen.Mirror{Router: netip.MustParseAddr("192.0.2.1"), Collector: netip.MustParseAddr("198.51.100.1"), MID: 7, SID: 9,
		Inner: gen.InnerIPv4ICMPEcho(src, dst, 1, 1, 64), VLANs: []gen.VLAN{{ID: 5}}}
	port30030 := func(p uint16) bool { return p == 30030 }
	r := reasm.New(reasm.Config{})
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

	whole, err := m.Frame()
	if err != nil {
		t.Fatal(err)
	}
	u := jmirror.Unwrap(whole, port30030, r, now)
	if !u.OK || u.Fragment || u.Packet.MID != 7 || u.Packet.SID != 9 || !bytes.Equal(u.Payload(), m.Inner) {
		t.Errorf("whole frame: %+v, payload %x", u, u.Payload())
	}

	m.Inner = gen.InnerIPv4UDP(src, dst, 1, 2, make([]byte, 3000))
	m.MTU, m.IPID = 1500, 0x4242
	frags, err := m.Frames()
	if err != nil {
		t.Fatal(err)
	}
	if len(frags) < 3 {
		t.Fatalf("%d fragments", len(frags))
	}
	for i, f := range frags {
		u := jmirror.Unwrap(f, port30030, r, now)
		last := i == len(frags)-1
		if !u.Fragment || u.Complete != last || u.OK != last {
			t.Fatalf("fragment %d: fragment %v complete %v ok %v", i, u.Fragment, u.Complete, u.OK)
		}
		if i == 0 && (u.Class != jmirror.ClassJmirror || !u.Header.FirstFragment || u.Header.MID != 7) {
			t.Errorf("first fragment's own decode: class %v %+v", u.Class, u.Header)
		}
		if last {
			if !bytes.Equal(u.Payload(), m.Inner) || u.Packet.SID != 9 || !bytes.Equal(u.Frame[:u.Packet.IPOffset], f[:u.Header.IPOffset]) {
				t.Errorf("reassembled: %+v, %d bytes of payload, want %d", u.Packet, len(u.Payload()), len(m.Inner))
			}
		}
	}

	m.Port, m.IPID = 9999, 0x4343
	if frags, err = m.Frames(); err != nil {
		t.Fatal(err)
	}
	for i, f := range frags {
		u := jmirror.Unwrap(f, port30030, r, now)
		if u.OK || u.Complete != (i == len(frags)-1) {
			t.Errorf("fragment %d of a datagram to a port not decoded: complete %v ok %v", i, u.Complete, u.OK)
		}
	}
	if u := jmirror.Unwrap(slices.Clone(whole[:20]), port30030, r, now); u.OK || u.Fragment {
		t.Errorf("a cut frame: %+v", u)
	}
}
