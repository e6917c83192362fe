package reasm

import (
	"container/list"
	"encoding/binary"
	"time"
)

// Key identifies an outer datagram as the kernel's defragmenter and the
// XDP program key it: IPv4 source, destination, IP id and protocol; IPv6
// source, destination and the fragment header's 32-bit id.
type Key struct{ k key }

// KeyOf reads the datagram key of an IPv4 packet or IPv6 fragment
// (starting at the IP header); false if pkt is too short, neither, or an
// IPv6 packet without a fragment header within maxIPv6Ext headers.
func KeyOf(pkt []byte) (Key, bool) {
	if len(pkt) >= ipv6HeaderLen && pkt[0]>>4 == 6 {
		return keyOf6(pkt)
	}
	if len(pkt) < minHeaderLen || pkt[0]>>4 != 4 {
		return Key{}, false
	}
	var k key
	copy(k.src[:], pkt[12:16])
	copy(k.dst[:], pkt[16:20])
	k.id = uint32(binary.BigEndian.Uint16(pkt[4:6]))
	k.proto = pkt[9]
	return Key{k}, true
}

// keyOf6 walks an IPv6 packet's extension headers to its fragment header,
// as add6 does.
func keyOf6(pkt []byte) (Key, bool) {
	next, pos := int(pkt[6]), ipv6HeaderLen
	for range maxIPv6Ext {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if pos+2 > len(pkt) {
				return Key{}, false
			}
			next, pos = int(pkt[pos]), pos+(int(pkt[pos+1])+1)*8
		case 44:
			if pos+ipv6FragHdrLen > len(pkt) {
				return Key{}, false
			}
			k := key{v6: true, id: binary.BigEndian.Uint32(pkt[pos+4 : pos+8])}
			copy(k.src[:], pkt[8:24])
			copy(k.dst[:], pkt[24:40])
			return Key{k}, true
		default:
			return Key{}, false
		}
	}
	return Key{}, false
}

func (k Key) String() string { return k.k.String() }

// Held is a frame kept by a Holder, with the caller's receive stamp.
type Held struct {
	Frame []byte
	Stamp int64
}

// HoldStats count fragments, not datagrams:
// Held = Released + Expired + Evicted + Pending.
type HoldStats struct {
	Held     uint64 // fragments taken to hold
	Released uint64 // given back when their first fragment came
	Expired  uint64 // dropped: no first fragment within Timeout
	Evicted  uint64 // dropped to stay within MaxDatagrams or MaxBytes
	Pending  uint64 // held now
	// PendingBytes is the memory held now.
	PendingBytes uint64
}

// Add adds o's counts to s.
func (s *HoldStats) Add(o HoldStats) {
	s.Held += o.Held
	s.Released += o.Released
	s.Expired += o.Expired
	s.Evicted += o.Evicted
	s.Pending += o.Pending
	s.PendingBytes += o.PendingBytes
}

// Holder keeps the later fragments of datagrams whose first fragment has
// not come yet, when whoever reassembles them is only known from the first
// fragment (the live capture: the first fragment names the stream, and so
// the writer, whose reassembler takes the datagram). It is bounded like a
// Reassembler by cfg: datagrams held at once, bytes, and time since a
// datagram's first held fragment. It is not safe for concurrent use.
type Holder struct {
	cfg    Config
	groups map[key]*heldGroup
	order  *list.List // of *heldGroup, oldest first
	bytes  int
	frames int
	stats  HoldStats
}

type heldGroup struct {
	key     key
	created time.Time
	elem    *list.Element
	frames  []Held
	mem     int
}

// NewHolder returns a Holder bounded by cfg (zero fields take the
// Reassembler's defaults).
func NewHolder(cfg Config) *Holder {
	r := New(cfg) // for the defaults
	return &Holder{cfg: r.cfg, groups: make(map[key]*heldGroup), order: list.New()}
}

// Hold keeps a copy of frame, a fragment of the datagram k, until Take(k)
// or expiry.
func (h *Holder) Hold(now time.Time, k Key, frame []byte, stamp int64) {
	h.Expire(now)
	h.stats.Held++
	if len(frame) > h.cfg.MaxBytes {
		h.stats.Evicted++
		return
	}
	g := h.groups[k.k]
	if g == nil {
		for len(h.groups) >= h.cfg.MaxDatagrams {
			h.drop(h.order.Front().Value.(*heldGroup), &h.stats.Evicted)
		}
		g = &heldGroup{key: k.k, created: now}
		g.elem = h.order.PushBack(g)
		h.groups[k.k] = g
	}
	for h.bytes+len(frame) > h.cfg.MaxBytes {
		victim := h.order.Front().Value.(*heldGroup)
		if victim == g && h.order.Len() > 1 {
			victim = h.order.Front().Next().Value.(*heldGroup)
		}
		h.drop(victim, &h.stats.Evicted)
		if victim == g {
			g = &heldGroup{key: k.k, created: now}
			g.elem = h.order.PushBack(g)
			h.groups[k.k] = g
		}
	}
	g.frames = append(g.frames, Held{Frame: append([]byte(nil), frame...), Stamp: stamp})
	g.mem += len(frame)
	h.bytes += len(frame)
	h.frames++
}

// Take returns and forgets what is held for k, oldest first; nil if
// nothing is.
func (h *Holder) Take(k Key) []Held {
	g := h.groups[k.k]
	if g == nil {
		return nil
	}
	out := g.frames
	h.stats.Released += uint64(len(out))
	h.drop(g, nil)
	return out
}

// Len is the number of fragments held.
func (h *Holder) Len() int { return h.frames }

// Expire drops the datagrams whose first held fragment came Timeout or
// more before now, oldest first.
func (h *Holder) Expire(now time.Time) {
	for e := h.order.Front(); e != nil; e = h.order.Front() {
		g := e.Value.(*heldGroup)
		if now.Sub(g.created) < h.cfg.Timeout {
			return
		}
		h.drop(g, &h.stats.Expired)
	}
}

// drop forgets g, counting its frames in why (nil: not a loss).
func (h *Holder) drop(g *heldGroup, why *uint64) {
	if why != nil {
		*why += uint64(len(g.frames))
	}
	h.frames -= len(g.frames)
	h.bytes -= g.mem
	delete(h.groups, g.key)
	h.order.Remove(g.elem)
}

// Stats returns the counters.
func (h *Holder) Stats() HoldStats {
	s := h.stats
	s.Pending = uint64(h.frames)
	s.PendingBytes = uint64(h.bytes)
	return s
}
