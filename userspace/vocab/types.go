// Package vocab holds the words every part of jmxdp speaks: actions, inner
// kinds, counters, stream keys, policy rules and settings. It imports no BPF
// object, so that packages which only need these words (pcapng, filter,
// config, jmirror) do not embed the program. The values are the kernel
// program's enums; a test in package bpf checks them against the generated
// ones.
package vocab

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Action is what the program does with a stream's frames.
type Action uint32

const (
	ActionCapture Action = 0
	ActionCount   Action = 1
	ActionPass    Action = 2
	// ActionForward re-originates the stream's frames to the rule's
	// Target (docs/forward.md).
	ActionForward Action = 5
	// ActionUntrusted and ActionNotJmirror are the fragment table's marks,
	// never a policy. ActionUntrusted marks fragments of untrusted datagrams.
	ActionUntrusted Action = 3
	// ActionNotJmirror marks fragments of a datagram whose first fragment
	// was not Jmirror, from a pair whose early fragments are held: its
	// later fragments pass, never held. Never a policy.
	ActionNotJmirror Action = 4
	// ActionEarly marks a datagram one of whose later fragments came
	// before its first and is held in userspace; ActionForwardUser, a
	// forwarded datagram with such fragments, all of whose frames go to
	// userspace to be reassembled and sent from a socket.
	ActionEarly       Action = 6
	ActionForwardUser Action = 7
)

var actionNames = map[Action]string{ActionCapture: "capture", ActionCount: "count", ActionPass: "pass", ActionForward: "forward"}

func (a Action) String() string {
	if s, ok := actionNames[a]; ok {
		return s
	}
	return fmt.Sprintf("action(%d)", uint32(a))
}

// ParseAction accepts capture, count, pass or forward.
func ParseAction(s string) (Action, error) {
	for a, name := range actionNames {
		if strings.EqualFold(s, name) {
			return a, nil
		}
	}
	return 0, fmt.Errorf("unknown action %q (want capture, count, pass or forward)", s)
}

// Sanitize maps a value read from the kernel onto what the program does with
// it: anything unknown is passed.
func (a Action) Sanitize() Action {
	if a > ActionPass && a != ActionForward {
		return ActionPass
	}
	return a
}

// Inner is the kind of the mirrored packet.
type Inner int

const (
	InnerIPv4    Inner = 0
	InnerIPv6    Inner = 1
	InnerPPP     Inner = 2
	InnerUnknown Inner = 3
	InnerEmpty   Inner = 4
	NumInner           = 5
)

var innerNames = [NumInner]string{"ipv4", "ipv6", "ppp", "unknown", "empty"}

func (k Inner) String() string {
	if k >= 0 && int(k) < NumInner {
		return innerNames[k]
	}
	return fmt.Sprintf("inner(%d)", int(k))
}

// Stat indexes the global counters.
type Stat int

const (
	StatFrames             Stat = 0
	StatNotJmirror         Stat = 1
	StatJmirror            Stat = 2
	StatJmirrorBytes       Stat = 3
	StatMalformedShort     Stat = 4
	StatMalformedTruncated Stat = 5
	StatFragFirst          Stat = 6
	StatFragTracked        Stat = 7
	StatFragUnmatched      Stat = 8
	StatUntrusted          Stat = 9
	StatActionCapture      Stat = 10
	StatActionCount        Stat = 11
	StatActionPass         Stat = 12
	StatCaptureFailed      Stat = 13
	StatStreamNew          Stat = 14
	StatVersionNonzero     Stat = 15
	StatCandidate          Stat = 16
	// StatUntrustedMapped counts Jmirror datagrams over IPv6 from a source
	// that embeds an IPv4 address (IPv4-mapped or -compatible): dropped,
	// and counted in StatUntrusted too.
	StatUntrustedMapped Stat = 17
	// StatFragDuplicate counts copies of a first fragment already counted:
	// given their datagram's action, not counted into the stream again.
	StatFragDuplicate Stat = 18
	// StatFragHeld counts later fragments that came before their first,
	// from a pair sending only captured fragmented Jmirror: redirected for
	// userspace to hold until the first arrives.
	StatFragHeld Stat = 19
	// StatIPv6ExtLong counts outer IPv6 frames whose extension-header
	// chain goes on past the walked bound (JM_IPV6_MAX_EXT): passed.
	StatIPv6ExtLong Stat = 20
	// The forward action (docs/forward.md): frames given it, frames the
	// program sent, and frames handed to userspace, by reason (their sum
	// is StatFwdUserspace).
	StatActionForward  Stat = 21
	StatFwdSent        Stat = 22
	StatFwdNeighMiss   Stat = 23
	StatFwdNoRoute     Stat = 24
	StatFwdTooBig      Stat = 25
	StatFwdFragFamily  Stat = 26
	StatFwdNoSource    Stat = 27
	StatFwdUnsupported Stat = 28
	StatFwdUserspace   Stat = 29
	// StatFwdFragEarly counts a forwarded datagram's fragments sent to
	// userspace because some came before the first and are held there.
	StatFwdFragEarly Stat = 30
	// StatStreamFull counts packets whose stream found the stream table
	// full: folded into their router's overflow total (RouterTotals).
	// StatStreamLost counts those that found the overflow totals full too.
	StatStreamFull Stat = 31
	StatStreamLost Stat = 32
	NumStats            = 33
)

var statNames = [NumStats]string{
	"frames", "not_jmirror", "jmirror", "jmirror_bytes", "malformed_short",
	"malformed_truncated", "frag_first", "frag_tracked", "frag_unmatched",
	"untrusted", "action_capture", "action_count", "action_pass",
	"capture_failed", "stream_new", "version_nonzero", "candidate",
	"untrusted_mapped", "frag_duplicate", "frag_held", "ipv6_ext_too_long",
	"action_forward", "forward_sent", "forward_neigh_miss", "forward_no_route",
	"forward_too_big", "forward_frag_family", "forward_no_source",
	"forward_unsupported", "forward_userspace", "forward_frag_early",
	"stream_full", "stream_lost",
}

// Candidate is Jmirror-looking traffic to a UDP port that is not decoded
// (port discovery).
type Candidate struct {
	Port    uint16
	Packets uint64
	Bytes   uint64 // UDP length - 16, as if it were Jmirror
}

func (s Stat) String() string {
	if s >= 0 && int(s) < NumStats {
		return statNames[s]
	}
	return fmt.Sprintf("stat(%d)", int(s))
}

// ActionStat is the counter of frames given action a.
func ActionStat(a Action) Stat {
	switch a.Sanitize() {
	case ActionCapture:
		return StatActionCapture
	case ActionCount:
		return StatActionCount
	case ActionForward:
		return StatActionForward
	default:
		return StatActionPass
	}
}

// Counters are the global counters, summed over CPUs.
type Counters [NumStats]uint64

// StreamKey identifies a stream as one router sends it.
type StreamKey struct {
	Router netip.Addr
	MID    uint32
	SID    uint32
}

// StreamStats are a stream's counters. Times are CLOCK_MONOTONIC_COARSE
// readings (jiffy resolution).
type StreamStats struct {
	Packets   uint64
	Bytes     uint64
	FirstSeen time.Duration
	LastSeen  time.Duration
	Inner     [NumInner]uint64
}

// Stream is one entry of the stream table.
type Stream struct {
	StreamKey
	StreamStats
}

// SortStreams orders streams by (mid, sid, router).
func SortStreams(s []Stream) {
	slices.SortFunc(s, func(a, b Stream) int {
		if c := cmp.Compare(a.MID, b.MID); c != 0 {
			return c
		}
		if c := cmp.Compare(a.SID, b.SID); c != 0 {
			return c
		}
		return a.Router.Compare(b.Router)
	})
}

// SortRules orders rules by mid, a mid's any-sid rule first, then by sid.
func SortRules(rules []PolicyRule) {
	slices.SortFunc(rules, func(a, b PolicyRule) int {
		if a.MID != b.MID {
			return cmp.Compare(a.MID, b.MID)
		}
		if a.AnySID != b.AnySID {
			if a.AnySID {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.SID, b.SID)
	})
}

// PolicyRule sets the action of (MID, SID), or of every SID of MID when
// AnySID is set.
type PolicyRule struct {
	MID    uint32
	SID    uint32
	AnySID bool
	Action Action
	// Target is where ActionForward sends the stream (set only with it);
	// port 0 means the stream's own destination port.
	Target netip.AddrPort
}

func (r PolicyRule) String() string {
	act := r.Action.String()
	if r.Action == ActionForward {
		act += " to " + FormatTarget(r.Target)
	}
	if r.AnySID {
		return fmt.Sprintf("mid=%d sid=* %s", r.MID, act)
	}
	return fmt.Sprintf("mid=%d sid=%d %s", r.MID, r.SID, act)
}

// FormatTarget writes a forward target as --to takes it: IP:PORT or
// [v6]:PORT, the bare address when the port is the stream's own (0).
func FormatTarget(t netip.AddrPort) string {
	if t.Port() == 0 {
		return t.Addr().String()
	}
	return t.String()
}

// ParseTarget reads a forward target: 198.19.50.50:30031,
// [2001:db8::50]:30030, or an address alone (the stream's own port).
func ParseTarget(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return checkTarget(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("forward target %q: want IP:PORT, [IPv6]:PORT or an address alone", s)
	}
	return checkTarget(netip.AddrPortFrom(a.Unmap(), 0))
}

// checkTarget refuses addresses a collector cannot have.
func checkTarget(t netip.AddrPort) (netip.AddrPort, error) {
	a := t.Addr()
	if a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("forward target %s: zones are not supported", t)
	}
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() ||
		(a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		return netip.AddrPort{}, fmt.Errorf("forward target %s: not a unicast address", t)
	}
	return t, nil
}

// MaxMID is the largest 30-bit intercept id.
const MaxMID = 1<<30 - 1

// Validate refuses ids the wire format cannot carry and unknown actions.
func (r PolicyRule) Validate() error {
	if r.MID > MaxMID {
		return fmt.Errorf("mid %d out of range: intercept ids have 30 bits (max %d)", r.MID, MaxMID)
	}
	if r.AnySID && r.SID != 0 {
		return fmt.Errorf("mid %d: a rule for any sid cannot name sid %d", r.MID, r.SID)
	}
	if _, ok := actionNames[r.Action]; !ok {
		return fmt.Errorf("mid %d: unknown action %d", r.MID, uint32(r.Action))
	}
	if r.Action == ActionForward {
		if _, err := checkTarget(r.Target); err != nil {
			return fmt.Errorf("mid %d: forward needs a target (--to IP:PORT): %w", r.MID, err)
		}
	} else if r.Target.IsValid() {
		return fmt.Errorf("mid %d: a target (%s) goes only with the forward action, not %s", r.MID, r.Target, r.Action)
	}
	return nil
}

// Settings are the program's global switches.
type Settings struct {
	DefaultAction    Action
	AllowlistEnabled bool
}

// Validate refuses a default action the program does not know.
func (s Settings) Validate() error {
	if _, ok := actionNames[s.DefaultAction]; !ok {
		return fmt.Errorf("default action: unknown action %d", uint32(s.DefaultAction))
	}
	if s.DefaultAction == ActionForward {
		return errors.New("default action: forward needs a target, so it is a per-stream rule only")
	}
	return nil
}

// FragKey identifies an outer IPv4 datagram being fragmented.
type FragKey struct {
	Src, Dst netip.Addr
	ID       uint16
	Proto    uint8
}

// FragEntry is what a first fragment recorded for the later ones.
type FragEntry struct {
	MID, SID  uint32
	Action    Action
	Untrusted bool
	// NotJmirror: the first fragment was not Jmirror (its pair's early
	// fragments are held, so its later ones need telling to pass).
	NotJmirror bool
	// InnerLen, FirstSeen (CLOCK_MONOTONIC_COARSE) and Fingerprint tell a
	// copy of the first fragment from a new datagram reusing the IP id.
	InnerLen    uint32
	FirstSeen   time.Duration
	Fingerprint uint64
}

// UntrustedSource is a source refused by the allowlist.
type UntrustedSource struct {
	Addr     netip.Addr
	Packets  uint64
	LastSeen time.Duration
}

// ForwardStats are one stream's forward counters (jm_fwd_streams).
type ForwardStats struct {
	Packets uint64 // frames the program sent to the target
	Bytes   uint64 // their IP payload bytes (UDP header, Jmirror header, mirrored packet)
	// Userspace counts frames handed to userspace to send from a socket,
	// by reason (FwdReason).
	Userspace [NumFwdReasons]uint64
}

// FwdReason is why a forwarded frame went to userspace.
type FwdReason int

const (
	FwdNeighMiss   FwdReason = 1
	FwdNoRoute     FwdReason = 2
	FwdTooBig      FwdReason = 3
	FwdFragFamily  FwdReason = 4
	FwdNoSource    FwdReason = 5
	FwdUnsupported FwdReason = 6
	FwdFragEarly   FwdReason = 7
	NumFwdReasons            = 8
)

var fwdReasonNames = [NumFwdReasons]string{"", "neigh_miss", "no_route", "too_big", "frag_family", "no_source", "unsupported", "frag_early"}

func (r FwdReason) String() string {
	if r > 0 && int(r) < NumFwdReasons {
		return fwdReasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// Verdict is an XDP action as the program returns it (or, for the Go
// engine, would return).
type Verdict uint32

// XDP actions (uapi enum xdp_action).
const (
	VerdictAborted  Verdict = 0
	VerdictDrop     Verdict = 1
	VerdictPass     Verdict = 2
	VerdictTX       Verdict = 3
	VerdictRedirect Verdict = 4
)

func (v Verdict) String() string {
	switch v {
	case VerdictAborted:
		return "XDP_ABORTED"
	case VerdictDrop:
		return "XDP_DROP"
	case VerdictPass:
		return "XDP_PASS"
	case VerdictTX:
		return "XDP_TX"
	case VerdictRedirect:
		return "XDP_REDIRECT"
	}
	return fmt.Sprintf("xdp_action(%d)", uint32(v))
}
