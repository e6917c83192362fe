// Package reasm reassembles fragmented IPv4 and IPv6 datagrams within fixed memory
// bounds. Jmirror rides on UDP, and only the first fragment of a fragmented
// datagram carries the UDP header, so the live path hands every fragment of
// a captured stream to userspace to be put back together here.
package reasm

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"sort"
	"time"
)

// Config bounds a Reassembler. Zero or negative fields take the defaults.
type Config struct {
	// MaxDatagrams is the number of datagrams pending at once (default 4096).
	MaxDatagrams int
	// MaxBytes bounds the memory held for pending datagrams (default 64 MiB).
	MaxBytes int
	// Timeout is how long a datagram may wait for its missing fragments,
	// counted from its first fragment (default 30s, the kernel's
	// ipfrag_time).
	Timeout time.Duration
}

const (
	defaultMaxDatagrams = 4096
	defaultMaxBytes     = 64 << 20
	defaultTimeout      = 30 * time.Second

	minHeaderLen = 20
	maxDatagram  = 65535
	// maxPayload is the most payload any datagram can have: a 20-byte
	// header plus this is the IPv4 maximum.
	maxPayload = maxDatagram - minHeaderLen

	flagMF     = 0x2000
	offsetMask = 0x1fff

	// maxDigests bounds what a datagram remembers of its fragments for
	// telling later copies of them (45 fragments make a 64 KiB datagram at
	// a 1500-byte MTU); a datagram of more is not remembered.
	maxDigests = 64
)

// Errors returned by Add, wrapped with details; test with errors.Is.
var (
	// ErrMalformed: the packet is not a sound IPv4 or IPv6 packet or fragment.
	ErrMalformed = errors.New("malformed IP packet")
	// ErrTooBig: the fragments describe a datagram over 65535 bytes.
	ErrTooBig = errors.New("reassembled IPv4 datagram over 65535 bytes")
	// ErrOverlap: a fragment overlaps received data with different bytes, or
	// disagrees about where the datagram ends; the datagram is dropped.
	ErrOverlap = errors.New("inconsistent overlapping IPv4 fragments")
)

// Stats are the Reassembler's counters. Duplicates are fragments
// discarded as exact copies, of data a pending datagram already has or of
// a fragment of a datagram completed within Timeout (a copy of its first
// fragment, say): never written twice, never left to time out.
type Stats struct {
	Fragments    uint64 // well-formed fragments received
	Reassembled  uint64 // datagrams completed
	Timeouts     uint64 // datagrams dropped by Timeout
	Evicted      uint64 // datagrams dropped to stay within MaxDatagrams or MaxBytes
	Overlaps     uint64 // datagrams dropped for inconsistent fragments
	TooBig       uint64 // datagrams dropped for exceeding 65535 bytes
	Malformed    uint64 // packets refused as malformed
	Pending      uint64 // datagrams waiting for fragments now
	PendingBytes uint64 // memory held for them now, in bytes
	Duplicates   uint64 // fragments discarded as copies
}

// key is an IPv4 datagram's (src, dst, id, proto), or an IPv6 one's (src,
// dst, id) with v6 set: RFC 8200 keys no protocol.
type key struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	v6       bool
}

func (k key) String() string {
	if k.v6 {
		return fmt.Sprintf("%v->%v id %#08x", netip.AddrFrom16(k.src), netip.AddrFrom16(k.dst), k.id)
	}
	return fmt.Sprintf("%v->%v id %#04x proto %d", netip.AddrFrom4([4]byte(k.src[:4])), netip.AddrFrom4([4]byte(k.dst[:4])), k.id, k.proto)
}

// span is a received byte range [start, end) of a datagram's payload.
type span struct{ start, end int }

// partial is a datagram waiting for the rest of its fragments.
type partial struct {
	key     key
	created time.Time
	elem    *list.Element // in Reassembler.order
	header  []byte        // the first fragment's header, once it arrived
	buf     []byte        // payload bytes at their offsets; holes are zero
	spans   []span        // received ranges: sorted, disjoint, not adjacent
	total   int           // payload length, or -1 until the last fragment arrived
	mem     int           // bytes charged to Reassembler.pendingBytes
	digests []digest      // of each distinct fragment, nil past maxDigests
	noDig   bool          // more than maxDigests fragments: not remembered
	frags   int           // fragments taken (not counting duplicates)
	// suspect: every fragment so far copies one of a datagram of this key
	// completed within Timeout. Complete, expired or evicted, a suspect
	// datagram is counted as duplicates, never written or lost.
	suspect bool
}

// digest identifies one fragment: where it lies, whether more follow, and
// a hash of its payload.
type digest struct {
	off, end int
	mf       bool
	sum      uint64
}

// done is a datagram completed within Timeout, remembered so that a copy
// of one of its fragments is discarded rather than started again as a new
// datagram that can only time out.
type done struct {
	key     key
	at      time.Time
	elem    *list.Element // in Reassembler.doneOrder
	digests []digest
}

// Reassembler holds pending fragments. It is not safe for concurrent use.
type Reassembler struct {
	cfg          Config
	pending      map[key]*partial
	order        *list.List // of *partial, oldest first
	pendingBytes int
	stats        Stats
	// done and doneOrder (oldest first) remember at most MaxDatagrams
	// completed datagrams for Timeout, about 40 bytes a fragment.
	done      map[key]*done
	doneOrder *list.List
	seed      maphash.Seed
}

// New returns a Reassembler bounded by cfg.
func New(cfg Config) *Reassembler {
	if cfg.MaxDatagrams <= 0 {
		cfg.MaxDatagrams = defaultMaxDatagrams
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = defaultMaxBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	return &Reassembler{cfg: cfg, pending: make(map[key]*partial), order: list.New(),
		done: make(map[key]*done), doneOrder: list.New(), seed: maphash.MakeSeed()}
}

// Stats returns the counters.
func (r *Reassembler) Stats() Stats {
	s := r.stats
	s.Pending = uint64(len(r.pending))
	s.PendingBytes = uint64(r.pendingBytes)
	return s
}

// Add takes one IPv4 packet, starting at the IP header. A packet that is not
// a fragment comes straight back (complete, sharing pkt's memory, cut to its
// total length to drop link-layer padding). A fragment is kept until its
// datagram is whole; the fragment that completes it returns the datagram in
// a new buffer: the first fragment's header, options included, with the
// fragment fields cleared, total length set and checksum recomputed,
// followed by the payload. Header checksums of incoming packets are not
// verified. now drives timeouts; pending datagrams older than the Timeout
// are dropped first.
func (r *Reassembler) Add(now time.Time, pkt []byte) (datagram []byte, complete bool, err error) {
	r.Expire(now)
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		return r.add6(now, pkt)
	}

	if len(pkt) < minHeaderLen {
		return r.malformed("%d bytes, shorter than an IPv4 header", len(pkt))
	}
	if v := pkt[0] >> 4; v != 4 {
		return r.malformed("IP version %d", v)
	}
	hl := int(pkt[0]&0x0f) * 4
	if hl < minHeaderLen {
		return r.malformed("header length %d", hl)
	}
	tot := int(binary.BigEndian.Uint16(pkt[2:4]))
	if tot < hl {
		return r.malformed("total length %d shorter than the %d-byte header", tot, hl)
	}
	if tot > len(pkt) {
		return r.malformed("total length %d but only %d bytes", tot, len(pkt))
	}
	pkt = pkt[:tot]

	frag := binary.BigEndian.Uint16(pkt[6:8])
	mf := frag&flagMF != 0
	off := int(frag&offsetMask) * 8
	if !mf && off == 0 {
		return pkt, true, nil
	}

	var k key
	copy(k.src[:], pkt[12:16])
	copy(k.dst[:], pkt[16:20])
	k.id = uint32(binary.BigEndian.Uint16(pkt[4:6]))
	k.proto = pkt[9]
	return r.addFragment(now, k, off, mf, pkt[hl:], pkt[:hl])
}

// addFragment takes one fragment of datagram k: its payload at off, mf,
// and header, the datagram's header to keep if this is its first fragment
// (for IPv6 the unfragmentable part, its last next header already set to
// what the fragment header named).
func (r *Reassembler) addFragment(now time.Time, k key, off int, mf bool, payload, header []byte) ([]byte, bool, error) {
	hl := len(header)
	if len(payload) == 0 {
		return r.malformed("%v: empty fragment at offset %d", k, off)
	}
	// Only the last fragment may end off the 8-byte grid the offsets use.
	if mf && len(payload)%8 != 0 {
		return r.malformed("%v: non-final fragment of %d bytes, not a multiple of 8", k, len(payload))
	}
	end := off + len(payload)
	if end > maxPayload {
		r.drop(r.pending[k])
		r.stats.TooBig++
		return nil, false, fmt.Errorf("%v: fragment ends at payload byte %d: %w", k, end, ErrTooBig)
	}
	r.stats.Fragments++

	dg := digest{off: off, end: end, mf: mf, sum: maphash.Bytes(r.seed, payload)}
	// A copy of a fragment of a datagram completed lately is most likely
	// a duplicate, but it may be a new datagram that reuses the IP id with
	// the same bytes there: it is kept, as a suspect, and discarded as a
	// duplicate only if nothing else joins it (see partial.suspect).
	copied := r.copyOfDone(k, dg)
	d := r.pending[k]
	if d == nil {
		d = r.newPartial(k, now, copied)
	}
	wasSuspect := d.suspect
	dup, err := r.insert(d, off, payload, mf)
	if err != nil && wasSuspect && !copied {
		// What was pending only copied the completed datagram; this
		// fragment, which disagrees with it, starts a new one.
		r.dropDuplicate(d)
		d = r.newPartial(k, now, false)
		dup, err = r.insert(d, off, payload, mf)
	}
	if err != nil {
		r.drop(d)
		r.stats.Overlaps++
		return nil, false, err
	}
	if r.pending[k] != d {
		return nil, false, nil // evicted: too big for MaxBytes on its own
	}
	if off == 0 && d.header == nil {
		if !r.charge(d, hl) {
			r.evict(d)
			return nil, false, nil
		}
		d.header = append([]byte(nil), header...)
	} else if dup {
		r.stats.Duplicates++
		return nil, false, nil
	}
	d.frags++
	d.suspect = d.suspect && copied
	d.remember(dg)
	return r.complete(d, now)
}

func (r *Reassembler) newPartial(k key, now time.Time, suspect bool) *partial {
	for len(r.pending) >= r.cfg.MaxDatagrams {
		r.evict(r.order.Front().Value.(*partial))
	}
	d := &partial{key: k, created: now, total: -1, suspect: suspect}
	d.elem = r.order.PushBack(d)
	r.pending[k] = d
	return d
}

// dropDuplicate forgets a pending datagram made only of copies of one
// completed lately: its fragments were duplicates, not a loss.
func (r *Reassembler) dropDuplicate(d *partial) {
	r.stats.Duplicates += uint64(d.frags)
	r.drop(d)
}

// remember keeps the digest of a fragment d took, for copies of it that
// come after d is complete.
func (d *partial) remember(dg digest) {
	if d.noDig {
		return
	}
	if len(d.digests) >= maxDigests {
		d.digests, d.noDig = nil, true
		return
	}
	d.digests = append(d.digests, dg)
}

// copyOfDone: a datagram of key k completed within Timeout had exactly
// this fragment.
func (r *Reassembler) copyOfDone(k key, dg digest) bool {
	c := r.done[k]
	if c == nil {
		return false
	}
	for _, o := range c.digests {
		if o == dg {
			return true
		}
	}
	return false
}

func (r *Reassembler) rememberDone(d *partial, now time.Time) {
	if d.noDig {
		return
	}
	if old := r.done[d.key]; old != nil {
		r.forgetDone(old)
	}
	for len(r.done) >= r.cfg.MaxDatagrams {
		r.forgetDone(r.doneOrder.Front().Value.(*done))
	}
	c := &done{key: d.key, at: now, digests: d.digests}
	c.elem = r.doneOrder.PushBack(c)
	r.done[d.key] = c
}

func (r *Reassembler) forgetDone(c *done) {
	delete(r.done, c.key)
	r.doneOrder.Remove(c.elem)
}

func (r *Reassembler) malformed(format string, args ...any) ([]byte, bool, error) {
	r.stats.Malformed++
	return nil, false, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// insert records payload at off. Repeated bytes are fine as long as they
// match what arrived before (duplicates); anything else poisons the whole
// datagram, as RFC 5722 asks for IPv6 and Linux does for IPv4.
func (r *Reassembler) insert(d *partial, off int, payload []byte, mf bool) (dup bool, err error) {
	end := off + len(payload)
	// Like the kernel: the last fragment fixes the length, nothing may
	// lie beyond it, and a second last fragment must agree.
	switch {
	case !mf && d.total >= 0 && end != d.total:
		return false, fmt.Errorf("%v: last fragment ends at %d, an earlier one at %d: %w", d.key, end, d.total, ErrOverlap)
	case !mf && len(d.spans) > 0 && d.spans[len(d.spans)-1].end > end:
		return false, fmt.Errorf("%v: last fragment ends at %d, data already received up to %d: %w", d.key, end, d.spans[len(d.spans)-1].end, ErrOverlap)
	case mf && d.total >= 0 && end > d.total:
		return false, fmt.Errorf("%v: fragment ends at %d, past the last fragment's end %d: %w", d.key, end, d.total, ErrOverlap)
	}

	// First span that ends after off: the earliest that can overlap.
	i := sort.Search(len(d.spans), func(i int) bool { return d.spans[i].end > off })
	for j := i; j < len(d.spans) && d.spans[j].start < end; j++ {
		lo, hi := max(off, d.spans[j].start), min(end, d.spans[j].end)
		if string(d.buf[lo:hi]) != string(payload[lo-off:hi-off]) {
			return false, fmt.Errorf("%v: fragment at %d-%d differs from data received at %d-%d: %w", d.key, off, end, lo, hi, ErrOverlap)
		}
	}
	if !mf {
		d.total = end
	}
	if i < len(d.spans) && d.spans[i].start <= off && end <= d.spans[i].end {
		return true, nil // a duplicate: nothing new
	}

	if end > len(d.buf) && !r.grow(d, end) {
		r.evict(d)
		return false, nil
	}
	copy(d.buf[off:], payload)

	// Merge [off, end) with every span it touches or overlaps, including
	// ones that merely abut it, so a complete datagram is a single span.
	lo := i
	if lo > 0 && d.spans[lo-1].end == off {
		lo--
	}
	hi := lo
	merged := span{off, end}
	for hi < len(d.spans) && d.spans[hi].start <= end {
		merged.start = min(merged.start, d.spans[hi].start)
		merged.end = max(merged.end, d.spans[hi].end)
		hi++
	}
	switch {
	case hi > lo:
		d.spans[lo] = merged
		d.spans = append(d.spans[:lo+1], d.spans[hi:]...)
	default:
		d.spans = append(d.spans, span{})
		copy(d.spans[lo+1:], d.spans[lo:])
		d.spans[lo] = merged
	}
	return false, nil
}

// grow makes d.buf hold at least n bytes. Once the last fragment is known
// the buffer is sized exactly; before that it doubles so that in-order
// arrival costs few copies.
func (r *Reassembler) grow(d *partial, n int) bool {
	size := d.total
	if size < 0 {
		size = max(n, min(2*len(d.buf), maxPayload))
	}
	if !r.charge(d, size-len(d.buf)) {
		return false
	}
	buf := make([]byte, size)
	copy(buf, d.buf)
	d.buf = buf
	return true
}

// charge accounts n more bytes to d, evicting the oldest other datagrams
// while the total would exceed MaxBytes. It fails if d alone is too big.
func (r *Reassembler) charge(d *partial, n int) bool {
	for e := r.order.Front(); r.pendingBytes+n > r.cfg.MaxBytes; {
		if e == nil {
			return false
		}
		victim := e.Value.(*partial)
		e = e.Next()
		if victim != d {
			r.evict(victim)
		}
	}
	r.pendingBytes += n
	d.mem += n
	return true
}

func (r *Reassembler) complete(d *partial, now time.Time) ([]byte, bool, error) {
	if d.header == nil || d.total < 0 || len(d.spans) != 1 || d.spans[0] != (span{0, d.total}) {
		return nil, false, nil
	}
	if d.suspect {
		// Every fragment a copy: the datagram was written already.
		r.dropDuplicate(d)
		return nil, false, nil
	}
	r.drop(d)
	if d.key.v6 {
		return r.complete6(d, now)
	}
	hl := len(d.header)
	if hl+d.total > maxDatagram {
		r.stats.TooBig++
		return nil, false, fmt.Errorf("%v: %d-byte header and %d bytes of payload: %w", d.key, hl, d.total, ErrTooBig)
	}
	out := make([]byte, hl+d.total)
	copy(out, d.header)
	copy(out[hl:], d.buf[:d.total])
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	// Keep DF (and the reserved bit) as the first fragment had them.
	binary.BigEndian.PutUint16(out[6:8], binary.BigEndian.Uint16(out[6:8])&^(flagMF|offsetMask))
	binary.BigEndian.PutUint16(out[10:12], 0)
	binary.BigEndian.PutUint16(out[10:12], checksum(out[:hl]))
	r.stats.Reassembled++
	r.rememberDone(d, now)
	return out, true, nil
}

// Expire drops the datagrams whose first fragment arrived Timeout or more
// before now. Datagrams are checked oldest first and the scan stops at the
// first one still young, so a clock stepping backwards only delays expiry.
func (r *Reassembler) Expire(now time.Time) {
	for e := r.doneOrder.Front(); e != nil; e = r.doneOrder.Front() {
		c := e.Value.(*done)
		if now.Sub(c.at) < r.cfg.Timeout {
			break
		}
		r.forgetDone(c)
	}
	for e := r.order.Front(); e != nil; e = r.order.Front() {
		d := e.Value.(*partial)
		if now.Sub(d.created) < r.cfg.Timeout {
			return
		}
		if d.suspect {
			r.dropDuplicate(d)
			continue
		}
		r.drop(d)
		r.stats.Timeouts++
	}
}

func (r *Reassembler) evict(d *partial) {
	if d.suspect {
		r.dropDuplicate(d)
		return
	}
	r.drop(d)
	r.stats.Evicted++
}

// drop forgets d, if it is still pending, and releases its memory.
func (r *Reassembler) drop(d *partial) {
	if d == nil || r.pending[d.key] != d {
		return
	}
	delete(r.pending, d.key)
	r.order.Remove(d.elem)
	r.pendingBytes -= d.mem
}

// checksum is the Internet checksum (RFC 1071) of b, whose length is even.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Add adds o's counts to s: the totals of several reassemblers.
func (s *Stats) Add(o Stats) {
	s.Fragments += o.Fragments
	s.Reassembled += o.Reassembled
	s.Timeouts += o.Timeouts
	s.Evicted += o.Evicted
	s.Overlaps += o.Overlaps
	s.TooBig += o.TooBig
	s.Malformed += o.Malformed
	s.Duplicates += o.Duplicates
	s.Pending += o.Pending
	s.PendingBytes += o.PendingBytes
}

// IPv6 (RFC 8200 section 4.5).
const (
	ipv6HeaderLen  = 40
	ipv6FragHdrLen = 8
	maxIPv6Payload = 65535
	// maxIPv6Ext bounds the headers walked to the fragment header, as the
	// XDP program's JM_IPV6_MAX_EXT.
	maxIPv6Ext = 8
)

// add6 takes an IPv6 packet: one without a fragment header comes straight
// back, cut to its payload length; a fragment is kept as IPv4 ones are,
// its unfragmentable part (the headers before the fragment header) the
// datagram's header.
func (r *Reassembler) add6(now time.Time, pkt []byte) ([]byte, bool, error) {
	if len(pkt) < ipv6HeaderLen {
		return r.malformed("%d bytes, shorter than an IPv6 header", len(pkt))
	}
	tot := ipv6HeaderLen + int(binary.BigEndian.Uint16(pkt[4:6]))
	if tot > len(pkt) {
		return r.malformed("payload length %d but only %d bytes", tot-ipv6HeaderLen, len(pkt)-ipv6HeaderLen)
	}
	pkt = pkt[:tot]
	// Walk to the fragment header; nextAt is where the byte naming the
	// current header lies.
	next, nextAt, pos := int(pkt[6]), 6, ipv6HeaderLen
	for i := 0; ; i++ {
		if i == maxIPv6Ext {
			return r.malformed("more than %d IPv6 extension headers", maxIPv6Ext)
		}
		var n int
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if pos+2 > len(pkt) {
				return r.malformed("IPv6 extension header cut at byte %d", pos)
			}
			n = (int(pkt[pos+1]) + 1) * 8
		case 44:
			if pos+ipv6FragHdrLen > len(pkt) {
				return r.malformed("IPv6 fragment header cut at byte %d", pos)
			}
			return r.frag6(now, pkt, nextAt, pos)
		default:
			return pkt, true, nil // not a fragment
		}
		if pos+n > len(pkt) {
			return r.malformed("IPv6 extension header of %d bytes cut at byte %d", n, pos)
		}
		next, nextAt, pos = int(pkt[pos]), pos, pos+n
	}
}

// frag6 takes the IPv6 fragment whose fragment header is at pos, named by
// the next-header byte at nextAt.
func (r *Reassembler) frag6(now time.Time, pkt []byte, nextAt, pos int) ([]byte, bool, error) {
	fh := pkt[pos : pos+ipv6FragHdrLen]
	v := binary.BigEndian.Uint16(fh[2:4])
	off, mf := int(v&0xfff8), v&1 != 0
	if off == 0 && !mf {
		// An atomic fragment (RFC 6946): the datagram, its fragment
		// header taken out.
		out := make([]byte, 0, len(pkt)-ipv6FragHdrLen)
		out = append(out, pkt[:pos]...)
		out = append(out, pkt[pos+ipv6FragHdrLen:]...)
		out[nextAt] = fh[0]
		binary.BigEndian.PutUint16(out[4:6], uint16(len(out)-ipv6HeaderLen))
		return out, true, nil
	}
	k := key{v6: true, id: binary.BigEndian.Uint32(fh[4:8])}
	copy(k.src[:], pkt[8:24])
	copy(k.dst[:], pkt[24:40])
	var header []byte
	if off == 0 {
		header = append([]byte(nil), pkt[:pos]...)
		header[nextAt] = fh[0]
	}
	return r.addFragment(now, k, off, mf, pkt[pos+ipv6FragHdrLen:], header)
}

func (r *Reassembler) complete6(d *partial, now time.Time) ([]byte, bool, error) {
	hl := len(d.header)
	if hl-ipv6HeaderLen+d.total > maxIPv6Payload {
		r.stats.TooBig++
		return nil, false, fmt.Errorf("%v: %d-byte header and %d bytes of payload: %w", d.key, hl, d.total, ErrTooBig)
	}
	out := make([]byte, hl+d.total)
	copy(out, d.header)
	copy(out[hl:], d.buf[:d.total])
	binary.BigEndian.PutUint16(out[4:6], uint16(len(out)-ipv6HeaderLen))
	r.stats.Reassembled++
	r.rememberDone(d, now)
	return out, true, nil
}
