package reasm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// header builds an IPv4 header with the given options (padded to 4 bytes).
func header(id uint16, src byte, opts []byte) []byte {
	for len(opts)%4 != 0 {
		opts = append(opts, 0) // End of Option List padding
	}
	h := make([]byte, 20+len(opts))
	h[0] = 0x40 | byte(len(h)/4)
	binary.BigEndian.PutUint16(h[4:6], id)
	h[8] = 64
	h[9] = 17
	copy(h[12:16], []byte{192, 0, 2, src})
	copy(h[16:20], []byte{198, 51, 100, 7})
	copy(h[20:], opts)
	return h
}

// datagram joins a header and payload into a valid unfragmented datagram.
func datagram(h, payload []byte) []byte {
	d := append(append([]byte(nil), h...), payload...)
	binary.BigEndian.PutUint16(d[2:4], uint16(len(d)))
	setChecksum(d[:len(h)])
	return d
}

func setChecksum(h []byte) {
	binary.BigEndian.PutUint16(h[10:12], 0)
	binary.BigEndian.PutUint16(h[10:12], checksum(h))
}

// udpPayload is a UDP header and n bytes of patterned data; the
// reassembler does not look inside, but it makes a realistic first fragment.
func udpPayload(n int) []byte {
	p := make([]byte, 8+n)
	binary.BigEndian.PutUint16(p[0:2], 30030)
	binary.BigEndian.PutUint16(p[2:4], 30030)
	binary.BigEndian.PutUint16(p[4:6], uint16(len(p)))
	for i := range n {
		p[8+i] = byte(i*7 + i>>8)
	}
	return p
}

// copiedOptions keeps the options RFC 791 says go into every fragment (the
// copied flag, 0x80, is set) and drops the rest, as a router does.
func copiedOptions(opts []byte) []byte {
	var out []byte
	for i := 0; i < len(opts); {
		switch t := opts[i]; t {
		case 0:
			return out
		case 1:
			i++
			continue
		default:
			l := int(opts[i+1])
			if t&0x80 != 0 {
				out = append(out, opts[i:i+l]...)
			}
			i += l
		}
	}
	return out
}

// fragment splits a header (options unpadded, passed separately) and
// payload into fragments that fit mtu, the way RFC 791 describes.
func fragment(id uint16, src byte, opts, payload []byte, mtu int) [][]byte {
	var frags [][]byte
	for off := 0; off < len(payload); {
		h := header(id, src, opts)
		if off > 0 {
			h = header(id, src, copiedOptions(opts))
		}
		n := min(len(payload)-off, (mtu-len(h))&^7)
		f := append(h, payload[off:off+n]...)
		binary.BigEndian.PutUint16(f[2:4], uint16(len(f)))
		fo := uint16(off / 8)
		if off+n < len(payload) {
			fo |= flagMF
		}
		binary.BigEndian.PutUint16(f[6:8], fo)
		setChecksum(f[:len(h)])
		frags = append(frags, f)
		off += n
	}
	return frags
}

var (
	// Record Route (not copied) and Router Alert (copied): the first
	// fragment carries both, the others only Router Alert.
	testOpts = []byte{0x07, 0x07, 0x04, 0, 0, 0, 0, 0x94, 0x04, 0, 0}
)

func checkInvariants(t *testing.T, r *Reassembler) {
	t.Helper()
	s := r.Stats()
	if s.Pending > uint64(r.cfg.MaxDatagrams) || s.PendingBytes > uint64(r.cfg.MaxBytes) {
		t.Fatalf("bounds exceeded: %+v with %+v", s, r.cfg)
	}
	sum := 0
	for k, d := range r.pending {
		if d.key != k {
			t.Fatalf("datagram under the wrong key")
		}
		sum += d.mem
		if d.mem != len(d.buf)+len(d.header) {
			t.Fatalf("%v: charged %d, holds %d", k, d.mem, len(d.buf)+len(d.header))
		}
	}
	if sum != r.pendingBytes || r.order.Len() != len(r.pending) {
		t.Fatalf("accounting: sum %d vs %d, list %d vs map %d", sum, r.pendingBytes, r.order.Len(), len(r.pending))
	}
}

// feed adds frags in order and returns what the last Add returned; every
// earlier Add must return nothing.
func feed(t *testing.T, r *Reassembler, now time.Time, frags [][]byte) ([]byte, bool, error) {
	t.Helper()
	for i, f := range frags {
		d, ok, err := r.Add(now, f)
		checkInvariants(t, r)
		if i == len(frags)-1 {
			return d, ok, err
		}
		if d != nil || ok || err != nil {
			t.Fatalf("fragment %d of %d: Add = %d bytes, %v, %v; want nothing yet", i+1, len(frags), len(d), ok, err)
		}
	}
	return nil, false, nil
}

func TestReassembleOrders(t *testing.T) {
	payload := udpPayload(3000 - 20 - 8)
	for _, opts := range [][]byte{nil, testOpts} {
		orig := datagram(header(0x1234, 1, opts), payload)
		for _, mtu := range []int{1500, 1280, 576, 68} {
			frags := fragment(0x1234, 1, opts, payload, mtu)
			if len(frags) < 3 {
				t.Fatalf("mtu %d: only %d fragments", mtu, len(frags))
			}
			rng := rand.New(rand.NewPCG(uint64(mtu), uint64(len(opts))))
			orders := map[string][][]byte{
				"in-order": frags,
				"reverse":  reversed(frags),
				"shuffled": shuffled(rng, frags),
				// Every fragment twice, the copy arriving later; the
				// datagram completes at the last original.
				"duplicates": dupes(rng, frags),
			}
			for name, order := range orders {
				t.Run(fmt.Sprintf("opts%d/mtu%d/%s", len(opts), mtu, name), func(t *testing.T) {
					r := New(Config{})
					got, ok, err := feed(t, r, t0, order)
					if err != nil || !ok {
						t.Fatalf("mtu %d opts %d: Add = %v, %v", mtu, len(opts), ok, err)
					}
					if !bytes.Equal(got, orig) {
						t.Fatalf("mtu %d opts %d: reassembled\n%x\nwant\n%x", mtu, len(opts), got, orig)
					}
					s := r.Stats()
					if s.Reassembled != 1 || s.Pending != 0 || s.PendingBytes != 0 || s.Fragments != uint64(len(order)) {
						t.Fatalf("stats %+v", s)
					}
				})
			}
		}
	}
}

func reversed(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	for i, f := range in {
		out[len(in)-1-i] = f
	}
	return out
}

func shuffled(rng *rand.Rand, in [][]byte) [][]byte {
	out := append([][]byte(nil), in...)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func dupes(rng *rand.Rand, in [][]byte) [][]byte {
	s := shuffled(rng, in)
	// Duplicates of all but the final piece first, then all originals, so
	// only the very last Add completes the datagram.
	out := append([][]byte(nil), s[:len(s)-1]...)
	return append(out, s...)
}

// Fragments cut at different MTUs overlap with identical bytes; together
// they must still give back the original.
func TestIdenticalOverlapsFromRefragmentation(t *testing.T) {
	payload := udpPayload(3000)
	orig := datagram(header(7, 1, testOpts), payload)
	big := fragment(7, 1, testOpts, payload, 1500)
	small := fragment(7, 1, testOpts, payload, 576)
	// The first large piece and the small pieces from the second onwards:
	// they overlap, and neither set alone is complete.
	frags := append([][]byte{big[0]}, small[1:]...)
	r := New(Config{})
	got, ok, err := feed(t, r, t0, frags)
	if err != nil || !ok || !bytes.Equal(got, orig) {
		t.Fatalf("Add = %v, %v, equal %v", ok, err, bytes.Equal(got, orig))
	}
}

func TestOverlapDifferentData(t *testing.T) {
	payload := udpPayload(3000)
	frags := fragment(9, 1, nil, payload, 1500)
	evil := bytes.Clone(frags[1])
	evil[len(evil)-1] ^= 0xff
	r := New(Config{})
	if _, _, err := r.Add(t0, frags[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Add(t0, frags[1]); err != nil {
		t.Fatal(err)
	}
	d, ok, err := r.Add(t0, evil)
	if !errors.Is(err, ErrOverlap) || ok || d != nil {
		t.Fatalf("Add(conflicting) = %d bytes, %v, %v; want ErrOverlap", len(d), ok, err)
	}
	checkInvariants(t, r)
	if s := r.Stats(); s.Overlaps != 1 || s.Pending != 0 || s.PendingBytes != 0 {
		t.Fatalf("stats %+v", s)
	}
	// The datagram is gone: the rest alone cannot complete it.
	if d, ok, err := r.Add(t0, frags[2]); ok || d != nil || err != nil {
		t.Fatalf("Add after drop = %v, %v", ok, err)
	}
}

func TestInconsistentEnds(t *testing.T) {
	payload := udpPayload(3000)
	frags := fragment(9, 1, nil, payload, 1500)
	last := frags[len(frags)-1]
	// The same last fragment one 8-byte unit shorter: a second, different end.
	short := bytes.Clone(last[:len(last)-8])
	binary.BigEndian.PutUint16(short[2:4], uint16(len(short)))
	setChecksum(short[:20])
	// The middle fragment claiming to be last, with frags[2] beyond it.
	noMF := bytes.Clone(frags[1])
	binary.BigEndian.PutUint16(noMF[6:8], uint16(1480/8))
	setChecksum(noMF[:20])
	// A non-final fragment reaching past the known end.
	past := bytes.Clone(frags[1])
	binary.BigEndian.PutUint16(past[6:8], flagMF|uint16((len(payload)-8)/8))
	setChecksum(past[:20])
	for name, seq := range map[string][][]byte{
		"two-ends":              {last, short},
		"data-beyond-end":       {frags[2], noMF},
		"fragment-past-the-end": {short, past},
	} {
		t.Run(name, func(t *testing.T) {
			r := New(Config{})
			_, _, err := feed(t, r, t0, seq)
			if !errors.Is(err, ErrOverlap) {
				t.Fatalf("err = %v, want ErrOverlap", err)
			}
			if s := r.Stats(); s.Overlaps != 1 || s.Pending != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	payload := udpPayload(3000)
	frags := fragment(1, 1, nil, payload, 1500)
	r := New(Config{})
	if _, _, err := feed(t, r, t0, frags[:len(frags)-1]); err != nil {
		t.Fatal(err)
	}
	r.Expire(t0.Add(30*time.Second - 1))
	if s := r.Stats(); s.Pending != 1 || s.Timeouts != 0 {
		t.Fatalf("expired early: %+v", s)
	}
	r.Expire(t0.Add(30 * time.Second))
	if s := r.Stats(); s.Pending != 0 || s.PendingBytes != 0 || s.Timeouts != 1 {
		t.Fatalf("not expired: %+v", s)
	}
	// The late last fragment starts a new, incomplete datagram.
	if d, ok, err := r.Add(t0.Add(31*time.Second), frags[len(frags)-1]); d != nil || ok || err != nil {
		t.Fatalf("late last fragment: %v, %v", ok, err)
	}
}

func TestTimeoutInsideAdd(t *testing.T) {
	a := fragment(1, 1, nil, udpPayload(3000), 1500)
	b := fragment(2, 1, nil, udpPayload(3000), 1500)
	r := New(Config{Timeout: time.Second})
	if _, _, err := r.Add(t0, a[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Add(t0.Add(time.Second), b[0]); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.Pending != 1 || s.Timeouts != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestEvictByCount(t *testing.T) {
	var sets [][][]byte
	for i := range 3 {
		sets = append(sets, fragment(uint16(100+i), 1, nil, udpPayload(2000), 1500))
	}
	r := New(Config{MaxDatagrams: 2})
	for i, s := range sets {
		if _, _, err := r.Add(t0.Add(time.Duration(i)), s[0]); err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, r)
	}
	if s := r.Stats(); s.Pending != 2 || s.Evicted != 1 {
		t.Fatalf("stats %+v", s)
	}
	// The oldest (sets[0]) went; the other two still complete.
	for i := 1; i < 3; i++ {
		if _, ok, err := r.Add(t0, sets[i][1]); !ok || err != nil {
			t.Fatalf("datagram %d: %v, %v", i, ok, err)
		}
	}
	if _, ok, _ := r.Add(t0, sets[0][1]); ok {
		t.Fatal("evicted datagram completed")
	}
	if s := r.Stats(); s.Pending != 1 || s.Evicted != 1 || s.Reassembled != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestEvictByBytes(t *testing.T) {
	var sets [][][]byte
	for i := range 3 {
		sets = append(sets, fragment(uint16(200+i), 1, nil, udpPayload(2000), 1500))
	}
	// The first fragment of each holds 1480 payload bytes and a 20-byte
	// header: room for exactly two.
	r := New(Config{MaxBytes: 3000})
	for i, s := range sets {
		if _, _, err := r.Add(t0.Add(time.Duration(i)), s[0]); err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, r)
	}
	if s := r.Stats(); s.Pending != 2 || s.Evicted != 1 || s.PendingBytes != 3000 {
		t.Fatalf("stats %+v", s)
	}
	// Completing sets[1] needs 508 more bytes: sets[2], now the oldest
	// other datagram, makes room.
	if _, ok, err := r.Add(t0, sets[1][1]); !ok || err != nil {
		t.Fatalf("datagram 1: %v, %v", ok, err)
	}
	checkInvariants(t, r)
	for _, i := range []int{0, 2} {
		if _, ok, _ := r.Add(t0, sets[i][1]); ok {
			t.Fatalf("evicted datagram %d completed", i)
		}
		checkInvariants(t, r)
	}
	// A lone last fragment reserves its datagram's whole 2008 bytes, so the
	// one for sets[2] evicted the one for sets[0]: three evictions.
	if s := r.Stats(); s.Evicted != 3 || s.Reassembled != 1 || s.Pending != 1 || s.PendingBytes != 2008 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTooBigForMaxBytesAlone(t *testing.T) {
	frags := fragment(3, 1, nil, udpPayload(5000), 1500)
	r := New(Config{MaxBytes: 2000})
	_, _, err := feed(t, r, t0, frags[:2])
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.Pending != 0 || s.PendingBytes != 0 || s.Evicted != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTooBig(t *testing.T) {
	t.Run("fragment-beyond-65535", func(t *testing.T) {
		r := New(Config{})
		first := fragment(5, 1, nil, udpPayload(3000), 1500)[0]
		if _, _, err := r.Add(t0, first); err != nil {
			t.Fatal(err)
		}
		f := datagram(header(5, 1, nil), make([]byte, 16))
		binary.BigEndian.PutUint16(f[6:8], 65528/8) // last fragment at the highest offset
		setChecksum(f[:20])
		d, ok, err := r.Add(t0, f)
		if !errors.Is(err, ErrTooBig) || ok || d != nil {
			t.Fatalf("Add = %v, %v; want ErrTooBig", ok, err)
		}
		// The pending datagram it belonged to is dropped with it.
		if s := r.Stats(); s.TooBig != 1 || s.Pending != 0 || s.PendingBytes != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("header-makes-it-too-big", func(t *testing.T) {
		// 65480 payload bytes fit behind a 20-byte header but not behind
		// the first fragment's 60-byte one.
		opts := make([]byte, 40)
		for i := range opts {
			opts[i] = 1 // No Operation, not copied to later fragments
		}
		payload := make([]byte, 65480)
		frags := fragment(6, 1, opts, payload, 9000)
		r := New(Config{})
		d, ok, err := feed(t, r, t0, frags)
		if !errors.Is(err, ErrTooBig) || ok || d != nil {
			t.Fatalf("Add = %v, %v; want ErrTooBig", ok, err)
		}
		if s := r.Stats(); s.TooBig != 1 || s.Pending != 0 || s.PendingBytes != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestMalformed(t *testing.T) {
	good := fragment(8, 1, nil, udpPayload(3000), 1500)[0]
	mod := func(f func(p []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for name, pkt := range map[string][]byte{
		"empty":     nil,
		"short":     good[:19],
		"version-5": mod(func(p []byte) []byte { p[0] = 0x55; return p }),
		"ihl-4":     mod(func(p []byte) []byte { p[0] = 0x44; return p }),
		"ihl-15":    mod(func(p []byte) []byte { p[0] = 0x4f; binary.BigEndian.PutUint16(p[2:4], 40); return p[:40] }),
		"tot-lt-hl": mod(func(p []byte) []byte { binary.BigEndian.PutUint16(p[2:4], 19); return p }),
		"tot-gt-len": mod(func(p []byte) []byte {
			return p[:100]
		}),
		"empty-fragment": mod(func(p []byte) []byte { binary.BigEndian.PutUint16(p[2:4], 20); return p[:20] }),
		"odd-non-final": mod(func(p []byte) []byte {
			binary.BigEndian.PutUint16(p[2:4], 20+1001)
			return p[:20+1001]
		}),
	} {
		t.Run(name, func(t *testing.T) {
			r := New(Config{})
			d, ok, err := r.Add(t0, pkt)
			if !errors.Is(err, ErrMalformed) || ok || d != nil {
				t.Fatalf("Add = %d bytes, %v, %v; want ErrMalformed", len(d), ok, err)
			}
			if s := r.Stats(); s.Malformed != 1 || s.Fragments != 0 || s.Pending != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestPassthrough(t *testing.T) {
	orig := datagram(header(10, 1, testOpts), udpPayload(100))
	padded := append(bytes.Clone(orig), 0, 0, 0, 0) // Ethernet minimum-frame padding
	r := New(Config{})
	d, ok, err := r.Add(t0, padded)
	if err != nil || !ok || !bytes.Equal(d, orig) {
		t.Fatalf("Add = %x, %v, %v", d, ok, err)
	}
	if &d[0] != &padded[0] {
		t.Error("non-fragment was copied")
	}
	// DF alone does not make a fragment.
	df := bytes.Clone(orig)
	df[6] |= 0x40
	if d, ok, err := r.Add(t0, df); err != nil || !ok || !bytes.Equal(d, df) {
		t.Fatalf("DF packet: %v, %v", ok, err)
	}
	if s := r.Stats(); s.Fragments != 0 || s.Pending != 0 || s.Reassembled != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// Fragments of datagrams that differ only in source or ID must not mix.
func TestKeysKeptApart(t *testing.T) {
	pa, pb := udpPayload(2500), udpPayload(2500)
	pb[100] ^= 1
	a := fragment(11, 1, nil, pa, 1500)
	b := fragment(11, 2, nil, pb, 1500)
	c := fragment(12, 1, nil, pb, 1500)
	r := New(Config{})
	var done [][]byte
	for i := range a {
		for _, f := range [][]byte{a[i], b[i], c[i]} {
			d, ok, err := r.Add(t0, f)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				done = append(done, d)
			}
		}
	}
	want := [][]byte{datagram(header(11, 1, nil), pa), datagram(header(11, 2, nil), pb), datagram(header(12, 1, nil), pb)}
	if len(done) != 3 {
		t.Fatalf("%d datagrams completed", len(done))
	}
	for i := range want {
		if !bytes.Equal(done[i], want[i]) {
			t.Errorf("datagram %d differs", i)
		}
	}
}

func TestDFKeptFromFirstFragment(t *testing.T) {
	frags := fragment(13, 1, nil, udpPayload(3000), 1500)
	frags[0][6] |= 0x40
	setChecksum(frags[0][:20])
	d, ok, err := feed(t, New(Config{}), t0, frags)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if d[6] != 0x40 || d[7] != 0 {
		t.Fatalf("flags/offset %02x%02x, want 4000", d[6], d[7])
	}
	if checksum(d[:20]) != 0 {
		t.Fatal("bad header checksum")
	}
}

func FuzzAdd(f *testing.F) {
	// Seeds: length-prefixed packet sequences, see split.
	var seq []byte
	for _, fr := range fragment(1, 1, testOpts, udpPayload(700), 256) {
		seq = binary.BigEndian.AppendUint16(seq, uint16(len(fr)))
		seq = append(seq, fr...)
	}
	f.Add(seq)
	f.Add(append(bytes.Clone(seq), seq...))
	// IPv6 fragments behind hop-by-hop and routing headers.
	var seq6 []byte
	_, frags6 := ipv6Frags(f, 7, 2000)
	for _, fr := range frags6 {
		seq6 = binary.BigEndian.AppendUint16(seq6, uint16(len(fr)))
		seq6 = append(seq6, fr...)
	}
	f.Add(seq6)
	f.Add([]byte{0, 20, 0x45, 0, 0, 20, 0, 1, 0x20, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := New(Config{MaxDatagrams: 3, MaxBytes: 2048, Timeout: 4 * time.Second})
		now := t0
		for _, pkt := range split(data) {
			now = now.Add(time.Second)
			d, ok, err := r.Add(now, pkt)
			checkInvariants(t, r)
			if err != nil && (ok || d != nil) {
				t.Fatalf("error %v with a datagram", err)
			}
			if ok && len(d) > 0 && d[0]>>4 == 6 {
				if len(d) < ipv6HeaderLen || int(binary.BigEndian.Uint16(d[4:6]))+ipv6HeaderLen != len(d) {
					t.Fatalf("bad IPv6 datagram %x", d)
				}
				continue
			}
			if ok {
				if len(d) < 20 || int(binary.BigEndian.Uint16(d[2:4])) != len(d) {
					t.Fatalf("bad datagram %x", d)
				}
				if binary.BigEndian.Uint16(d[6:8])&(flagMF|offsetMask) != 0 {
					t.Fatalf("returned a fragment: %x", d)
				}
			}
		}
	})
}

// split cuts data into packets, each prefixed by a 2-byte length.
func split(data []byte) [][]byte {
	var out [][]byte
	for len(data) >= 2 {
		n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
		out = append(out, data[2:2+n])
		data = data[2+n:]
	}
	return out
}

// Issue 19 item 9: a copy of a fragment that arrives after its datagram
// completed (a duplicated first fragment, say) started a new datagram that
// could only time out. It is discarded as a duplicate, whichever fragment
// it copies, and so is a copy of data a pending datagram already has.
func TestDuplicatesOfACompletedDatagram(t *testing.T) {
	payload := udpPayload(3000)
	frags := fragment(0x77, 1, testOpts, payload, 1500)
	orig := datagram(header(0x77, 1, testOpts), payload)
	r := New(Config{})
	// The first fragment twice before the datagram completes: one
	// duplicate, one datagram.
	order := append([][]byte{frags[0]}, frags...)
	got, ok, err := feed(t, r, t0, order)
	if err != nil || !ok || !bytes.Equal(got, orig) {
		t.Fatalf("reassembled %v, %v", ok, err)
	}
	if s := r.Stats(); s.Duplicates != 1 || s.Reassembled != 1 {
		t.Fatalf("stats %+v: want 1 duplicate, 1 datagram", s)
	}
	// Copies of every fragment afterwards, the first with another TTL (a
	// copy that took another path): nothing new, nothing pending, nothing
	// written again.
	for i, f := range frags {
		c := bytes.Clone(f)
		if i == 0 {
			c[8]--
			setChecksum(c[:int(c[0]&0x0f)*4])
		}
		if d, ok, err := r.Add(t0.Add(time.Second), c); d != nil || ok || err != nil {
			t.Fatalf("copy of fragment %d: %d bytes, %v, %v", i, len(d), ok, err)
		}
		checkInvariants(t, r)
	}
	s := r.Stats()
	if s.Duplicates != 1+uint64(len(frags)) || s.Pending != 0 || s.Reassembled != 1 || s.Timeouts != 0 {
		t.Fatalf("after the copies: %+v", s)
	}
	r.Expire(t0.Add(time.Hour))
	if s := r.Stats(); s.Timeouts != 0 {
		t.Fatalf("a copy was left to time out: %+v", s)
	}
}

// Another datagram that reuses the IP id of one just completed is not a
// copy: it is reassembled as itself. After Timeout a completed datagram is
// forgotten, and a copy of its fragment is a datagram of its own again.
func TestReusedIDIsNotADuplicate(t *testing.T) {
	a := udpPayload(3000)
	b := udpPayload(3000)
	b[100] ^= 0xff
	r := New(Config{Timeout: 10 * time.Second})
	if _, ok, err := feed(t, r, t0, fragment(9, 1, nil, a, 1500)); !ok || err != nil {
		t.Fatalf("first datagram: %v %v", ok, err)
	}
	got, ok, err := feed(t, r, t0.Add(time.Second), reversed(fragment(9, 1, nil, b, 1500)))
	if !ok || err != nil || !bytes.Equal(got, datagram(header(9, 1, nil), b)) {
		t.Fatalf("second datagram with the same id: %v %v", ok, err)
	}
	if s := r.Stats(); s.Reassembled != 2 || s.Duplicates != 0 {
		t.Fatalf("stats %+v", s)
	}
	// A late copy of the second's first fragment waits as a suspect; a
	// third datagram with the same id disagrees with it and replaces it.
	c := udpPayload(3000)
	c[0] ^= 0xff
	if _, _, err := r.Add(t0.Add(2*time.Second), fragment(9, 1, nil, b, 1500)[0]); err != nil {
		t.Fatal(err)
	}
	got, ok, err = feed(t, r, t0.Add(2*time.Second), fragment(9, 1, nil, c, 1500))
	if !ok || err != nil || !bytes.Equal(got, datagram(header(9, 1, nil), c)) {
		t.Fatalf("third datagram after a copy of the second's first fragment: %v %v", ok, err)
	}
	if s := r.Stats(); s.Reassembled != 3 || s.Duplicates != 1 || s.Overlaps != 0 || s.Pending != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Forgotten after Timeout: the copy now starts a datagram.
	r.Expire(t0.Add(13 * time.Second))
	if _, _, err := r.Add(t0.Add(13*time.Second), fragment(9, 1, nil, c, 1500)[0]); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.Pending != 1 || s.Duplicates != 1 || len(r.done) != 0 {
		t.Fatalf("after Timeout: %+v, %d remembered", s, len(r.done))
	}
}

// What a Reassembler remembers of completed datagrams is bounded by
// MaxDatagrams.
func TestCompletedMemoryBounded(t *testing.T) {
	r := New(Config{MaxDatagrams: 3})
	for i := range 10 {
		if _, ok, err := feed(t, r, t0, fragment(uint16(i), 1, nil, udpPayload(2000), 1500)); !ok || err != nil {
			t.Fatal(err)
		}
	}
	if len(r.done) != 3 || r.doneOrder.Len() != 3 {
		t.Fatalf("%d completed datagrams remembered, want 3", len(r.done))
	}
	// The oldest are forgotten, the newest remembered: a copy of the
	// newest's first fragment waits as a suspect and expires as a
	// duplicate, one of the oldest's as a datagram that timed out.
	for _, id := range []uint16{9, 0} {
		if _, _, err := r.Add(t0, fragment(id, 1, nil, udpPayload(2000), 1500)[0]); err != nil {
			t.Fatal(err)
		}
	}
	r.Expire(t0.Add(time.Minute))
	if s := r.Stats(); s.Duplicates != 1 || s.Timeouts != 1 || s.Pending != 0 {
		t.Fatalf("copies of the newest and the oldest: %+v", s)
	}
}

// mustKey is KeyOf(f), which must find one.
func mustKey(t *testing.T, f []byte) Key {
	t.Helper()
	k, ok := KeyOf(f)
	if !ok {
		t.Fatal("no key")
	}
	return k
}

func TestHolder(t *testing.T) {
	a := fragment(1, 1, nil, udpPayload(3000), 1500)
	b := fragment(2, 1, nil, udpPayload(3000), 1500)
	key := func(f []byte) Key { return mustKey(t, f) }
	h := NewHolder(Config{})
	h.Hold(t0, key(a[2]), a[2], 2)
	h.Hold(t0, key(a[1]), a[1], 1)
	h.Hold(t0, key(b[2]), b[2], 3)
	if h.Len() != 3 {
		t.Fatalf("holding %d", h.Len())
	}
	got := h.Take(key(a[0]))
	if len(got) != 2 || !bytes.Equal(got[0].Frame, a[2]) || got[0].Stamp != 2 || !bytes.Equal(got[1].Frame, a[1]) {
		t.Fatalf("Take: %d frames", len(got))
	}
	if h.Take(key(a[0])) != nil {
		t.Fatal("taken twice")
	}
	// The rest reassemble with their first fragment.
	r := New(Config{})
	if _, ok, err := feed(t, r, t0, append([][]byte{got[0].Frame, got[1].Frame}, a[0])); !ok || err != nil {
		t.Fatalf("held fragments do not reassemble: %v %v", ok, err)
	}
	h.Expire(t0.Add(30*time.Second - 1))
	if s := h.Stats(); s.Pending != 1 || s.Expired != 0 {
		t.Fatalf("expired early: %+v", s)
	}
	h.Expire(t0.Add(30 * time.Second))
	s := h.Stats()
	if s != (HoldStats{Held: 3, Released: 2, Expired: 1}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestHolderBounds(t *testing.T) {
	var sets [][][]byte
	for i := range 4 {
		sets = append(sets, fragment(uint16(i), 1, nil, udpPayload(3000), 1500))
	}
	h := NewHolder(Config{MaxDatagrams: 2})
	for _, s := range sets {
		k, _ := KeyOf(s[1])
		h.Hold(t0, k, s[1], 0)
		h.Hold(t0, k, s[2], 0)
	}
	if s := h.Stats(); s.Pending != 4 || s.Evicted != 4 || s.Held != 8 {
		t.Fatalf("by count: %+v", s)
	}
	// Bytes: room for two fragments; the third evicts the oldest datagram.
	n := len(sets[0][1])
	h = NewHolder(Config{MaxBytes: 2 * n})
	for i := range 3 {
		k, _ := KeyOf(sets[i][1])
		h.Hold(t0, k, sets[i][1], 0)
	}
	if s := h.Stats(); s.Pending != 2 || s.Evicted != 1 || s.PendingBytes != uint64(2*n) {
		t.Fatalf("by bytes: %+v", s)
	}
	// One datagram alone over the bound keeps its newest fragments.
	h = NewHolder(Config{MaxBytes: n + 10})
	k, _ := KeyOf(sets[0][1])
	h.Hold(t0, k, sets[0][1], 0)
	h.Hold(t0, k, sets[0][1], 0)
	if s := h.Stats(); s.Pending != 1 || s.Evicted != 1 || s.PendingBytes > uint64(n+10) {
		t.Fatalf("one datagram over the bound: %+v", s)
	}
	s := h.Stats()
	if s.Held != s.Released+s.Expired+s.Evicted+s.Pending {
		t.Fatalf("fragments not conserved: %+v", s)
	}
}
