package jmirror

import (
	"net/netip"
	"slices"
	"time"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Config is the engine's equivalent of the configuration maps.
type Config struct {
	Ports         []uint16
	DefaultAction vocab.Action
	Policies      []vocab.PolicyRule
	Allowlist     []netip.Prefix
	// CaptureSocket says an AF_XDP socket serves the RX queue; without one
	// capture falls back to XDP_PASS and counts a capture failure, as the
	// kernel does (and as BPF_PROG_TEST_RUN with an empty XSKMAP does).
	CaptureSocket bool
}

type policyKey struct {
	mid, sid uint32
	anySID   bool
}

type fragEntry struct {
	mid, sid   uint32
	action     vocab.Action
	untrusted  bool
	notJmirror bool
	// What tells a copy of the first fragment (a duplicate) from a new
	// datagram reusing the IP id, as jm_frag_value.
	innerLen    int
	firstSeen   time.Duration
	fingerprint uint64
}

// FragWindow is JM_FRAG_WINDOW_NS: how long a first fragment makes its
// copies duplicates, and a pair that sent captured fragmented Jmirror has
// its early later fragments held.
const FragWindow = 30 * time.Second

// pairKey is a router -> collector pair of outer addresses: IPv4 in the
// first 4 bytes (jm_frag_pairs), or IPv6 with v6 set (jm_frag_pairs6).
type pairKey struct {
	src, dst [16]byte
	v6       bool
}

// pairSeen is jm_pair_value: when the pair last sent a fragmented
// datagram that was captured, and one that was not.
type pairSeen struct{ capture, other time.Duration }

// recent: t is set and within FragWindow before now (signed, as the
// kernel: a t a little ahead of now is recent).
func recent(now, t time.Duration) bool { return t != 0 && now-t < FragWindow }

// Result is what the engine did with one frame.
type Result struct {
	Class   Class
	Verdict vocab.Verdict
	Action  vocab.Action // for ClassJmirror and ClassFragTracked
	Header  Header
	// Candidate: not decoded, but Jmirror-looking traffic on a port that
	// is not configured (port discovery).
	Candidate bool
}

// Engine runs frames through the program's logic, keeping the state the
// kernel keeps in maps. Unlike the kernel's LRU tables it never evicts:
// the stream and fragment tables grow with the input.
type Engine struct {
	cfg        Config
	ports      map[uint16]bool
	policy     map[policyKey]vocab.Action
	streams    map[vocab.StreamKey]*vocab.StreamStats
	frags      map[FragKey]fragEntry
	frags6     map[Frag6Key]fragEntry
	pairs      map[pairKey]pairSeen
	untrusted  map[netip.Addr]uint64
	candidates map[uint16]vocab.Candidate
	counters   vocab.Counters
	clock      func() time.Duration
}

// NewEngine returns an engine with empty state. clock stands in for
// bpf_ktime_get_coarse_ns and must never read 0 (the kernel's clock runs
// from boot); nil means a monotonic reading of time.Now.
func NewEngine(cfg Config, clock func() time.Duration) *Engine {
	if clock == nil {
		start := time.Now()
		clock = func() time.Duration { return time.Since(start) + time.Nanosecond }
	}
	e := &Engine{
		cfg:        cfg,
		ports:      make(map[uint16]bool),
		policy:     make(map[policyKey]vocab.Action),
		streams:    make(map[vocab.StreamKey]*vocab.StreamStats),
		frags:      make(map[FragKey]fragEntry),
		frags6:     make(map[Frag6Key]fragEntry),
		pairs:      make(map[pairKey]pairSeen),
		untrusted:  make(map[netip.Addr]uint64),
		candidates: make(map[uint16]vocab.Candidate),
		clock:      clock,
	}
	for _, p := range cfg.Ports {
		e.ports[p] = true
	}
	for _, r := range cfg.Policies {
		e.policy[policyKey{r.MID, r.SID, r.AnySID}] = r.Action
	}
	return e
}

func (e *Engine) count(s vocab.Stat, n uint64) { e.counters[s] += n }

func (e *Engine) trusted(a netip.Addr) bool {
	if len(e.cfg.Allowlist) == 0 {
		return true
	}
	for _, p := range e.cfg.Allowlist {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (e *Engine) lookupAction(mid, sid uint32) vocab.Action {
	a, ok := e.policy[policyKey{mid, sid, false}]
	if !ok {
		a, ok = e.policy[policyKey{mid, 0, true}]
	}
	if !ok {
		a = e.cfg.DefaultAction
	}
	return a.Sanitize()
}

// pairOf is the pair of a fragment's header, IPv4 or IPv6.
func pairOf(h *Header) pairKey {
	if h.Frag6 {
		return pairKey{src: h.Frag6Key.Src, dst: h.Frag6Key.Dst, v6: true}
	}
	var pk pairKey
	copy(pk.src[:], h.Frag.Src[:])
	copy(pk.dst[:], h.Frag.Dst[:])
	return pk
}

// pairHolds: the pair sent captured fragmented Jmirror lately and nothing
// else (pair_holds, pair_holds6).
func (e *Engine) pairHolds(pk pairKey) bool {
	p, ok := e.pairs[pk]
	now := e.clock()
	return ok && recent(now, p.capture) && !recent(now, p.other)
}

func (e *Engine) notePair(pk pairKey, a vocab.Action, now time.Duration) {
	p := e.pairs[pk]
	if a == vocab.ActionCapture {
		p.capture = now
	} else {
		p.other = now
	}
	e.pairs[pk] = p
}

func (e *Engine) apply(a vocab.Action) vocab.Verdict {
	e.count(vocab.ActionStat(a), 1)
	switch a {
	case vocab.ActionCapture:
		if e.cfg.CaptureSocket {
			return vocab.VerdictRedirect
		}
		e.count(vocab.StatCaptureFailed, 1)
		return vocab.VerdictPass
	case vocab.ActionCount:
		return vocab.VerdictDrop
	}
	return vocab.VerdictPass
}

func (e *Engine) dropUntrusted(a netip.Addr) vocab.Verdict {
	e.count(vocab.StatUntrusted, 1)
	e.untrusted[a]++
	return vocab.VerdictDrop
}

// laterFragment classifies a later fragment by its first's record fe
// (found: there is one): held when its pair holds early fragments, else
// unmatched, untrusted or tracked as its first.
func (e *Engine) laterFragment(r Result, fe fragEntry, found, holdable bool) Result {
	switch {
	case !found && holdable && e.pairHolds(pairOf(&r.Header)):
		r.Class = ClassFragHeld
		r.Action = vocab.ActionCapture
		e.count(vocab.StatFragHeld, 1)
		r.Verdict = e.apply(vocab.ActionCapture)
	case !found, fe.notJmirror:
		r.Class = ClassFragUnmatched
		e.count(vocab.StatFragUnmatched, 1)
	case fe.untrusted:
		r.Class = ClassUntrusted
		r.Verdict = e.dropUntrusted(r.Header.Router)
	default:
		r.Class = ClassFragTracked
		r.Action = fe.action
		r.Header.MID, r.Header.SID = fe.mid, fe.sid
		e.count(vocab.StatFragTracked, 1)
		r.Verdict = e.apply(fe.action)
	}
	return r
}

// Process runs one Ethernet frame through the program's logic.
func (e *Engine) Process(frame []byte) Result {
	e.count(vocab.StatFrames, 1)
	h, ok := parseHeader(frame)
	r := Result{Header: h, Class: ClassNotJmirror, Verdict: vocab.VerdictPass}
	if !ok {
		e.count(vocab.StatNotJmirror, 1)
		return r
	}
	if h.ExtTooLong {
		r.Class = ClassIPv6ExtTooLong
		e.count(vocab.StatIPv6ExtLong, 1)
		return r
	}
	if h.LaterFragment {
		// As the kernel's handle_later_fragment(6). An IPv6 one is held
		// whatever the protocol (only the first fragment names it); an
		// IPv4 one only if UDP.
		var fe fragEntry
		var found bool
		holdable := true
		if h.Frag6 {
			fe, found = e.frags6[h.Frag6Key]
		} else {
			fe, found = e.frags[h.Frag]
			holdable = h.Frag.Proto == protoUDP
		}
		return e.laterFragment(r, fe, found, holdable)
	}
	// forget: a first fragment that is not Jmirror leaves no stale record,
	// or, from a pair whose early fragments are held, one saying so.
	forget := func() {
		if !h.FirstFragment {
			return
		}
		if h.Frag6 {
			if e.pairHolds(pairOf(&h)) {
				e.frags6[h.Frag6Key] = fragEntry{notJmirror: true}
			} else {
				delete(e.frags6, h.Frag6Key)
			}
			return
		}
		if h.Frag.Proto == protoUDP && e.pairHolds(pairOf(&h)) {
			e.frags[h.Frag] = fragEntry{notJmirror: true}
		} else {
			delete(e.frags, h.Frag)
		}
	}
	if !h.UDP || !e.ports[h.Port] {
		forget()
		e.count(vocab.StatNotJmirror, 1)
		if Lookalike(frame, h) {
			e.count(vocab.StatCandidate, 1)
			c := e.candidates[h.Port]
			c.Packets++
			c.Bytes += uint64(h.UDPLen - MinUDPLen)
			e.candidates[h.Port] = c
			r.Candidate = true
		}
		return r
	}
	if vocab.IPv4Embedded(h.Router) {
		// Never a router, allowlist or not; not in the untrusted table,
		// where it would read back as the IPv4 router (as the kernel).
		r.Class = ClassUntrusted
		r.Verdict = vocab.VerdictDrop
		e.count(vocab.StatUntrustedMapped, 1)
		e.count(vocab.StatUntrusted, 1)
		return r
	}
	if !e.trusted(h.Router) {
		switch {
		case h.FirstFragment && h.Frag6:
			e.frags6[h.Frag6Key] = fragEntry{untrusted: true}
		case h.FirstFragment:
			e.frags[h.Frag] = fragEntry{untrusted: true}
		}
		r.Class = ClassUntrusted
		r.Verdict = e.dropUntrusted(h.Router)
		return r
	}
	r.Class = h.lengthClass(frame)
	switch r.Class {
	case ClassMalformedShort:
		forget()
		e.count(vocab.StatMalformedShort, 1)
		return r
	case ClassMalformedTruncated:
		forget()
		e.count(vocab.StatMalformedTruncated, 1)
		return r
	}
	h.jmirrorFields(frame)
	r.Header = h
	var now time.Duration
	var fp uint64
	if h.FirstFragment {
		now, fp = e.clock(), h.Fingerprint(frame)
		fe, ok := e.frags[h.Frag]
		if h.Frag6 {
			fe, ok = e.frags6[h.Frag6Key]
		}
		if ok && !fe.untrusted && !fe.notJmirror && fe.mid == h.MID && fe.sid == h.SID &&
			fe.innerLen == h.InnerLen && fe.fingerprint == fp && recent(now, fe.firstSeen) {
			// A copy: its datagram is counted already.
			r.Class = ClassFragDuplicate
			r.Action = fe.action
			e.count(vocab.StatFragDuplicate, 1)
			r.Verdict = e.apply(fe.action)
			return r
		}
	}
	r.Action = e.lookupAction(h.MID, h.SID)
	e.countStream(&h)
	e.count(vocab.StatJmirror, 1)
	e.count(vocab.StatJmirrorBytes, uint64(h.InnerLen))
	if h.Version != 0 {
		e.count(vocab.StatVersionNonzero, 1)
	}
	if h.FirstFragment {
		e.count(vocab.StatFragFirst, 1)
		fe := fragEntry{mid: h.MID, sid: h.SID, action: r.Action,
			innerLen: h.InnerLen, firstSeen: now, fingerprint: fp}
		if h.Frag6 {
			e.frags6[h.Frag6Key] = fe
		} else {
			e.frags[h.Frag] = fe
		}
		e.notePair(pairOf(&h), r.Action, now)
	}
	r.Verdict = e.apply(r.Action)
	return r
}

func (e *Engine) countStream(h *Header) {
	k := vocab.StreamKey{Router: h.Router, MID: h.MID, SID: h.SID}
	now := e.clock()
	s, ok := e.streams[k]
	if !ok {
		s = &vocab.StreamStats{FirstSeen: now}
		e.streams[k] = s
		e.count(vocab.StatStreamNew, 1)
	}
	s.Packets++
	s.Bytes += uint64(h.InnerLen)
	s.Inner[h.Inner]++
	s.LastSeen = now
}

// Counters returns the global counters.
func (e *Engine) Counters() vocab.Counters { return e.counters }

// Streams returns the stream table sorted by (mid, sid, router).
func (e *Engine) Streams() []vocab.Stream {
	out := make([]vocab.Stream, 0, len(e.streams))
	for k, v := range e.streams {
		out = append(out, vocab.Stream{StreamKey: k, StreamStats: *v})
	}
	vocab.SortStreams(out)
	return out
}

// Candidates returns the ports with Jmirror-looking traffic that were not
// decoded, by port.
func (e *Engine) Candidates() []vocab.Candidate {
	out := make([]vocab.Candidate, 0, len(e.candidates))
	for p, c := range e.candidates {
		c.Port = p
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b vocab.Candidate) int { return int(a.Port) - int(b.Port) })
	return out
}

// Untrusted returns the sources refused by the allowlist.
func (e *Engine) Untrusted() []vocab.UntrustedSource {
	out := make([]vocab.UntrustedSource, 0, len(e.untrusted))
	for a, n := range e.untrusted {
		out = append(out, vocab.UntrustedSource{Addr: a, Packets: n})
	}
	slices.SortFunc(out, func(a, b vocab.UntrustedSource) int { return a.Addr.Compare(b.Addr) })
	return out
}
