package bpf

import (
	"testing"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// TestVocabularyMatchesProgram checks userspace/vocab, which holds the
// program's enums written out so that it needs no BPF object, against the
// enums bpf2go generated from the C. A value appended in C without its Go
// word fails here through the Num* counts.
func TestVocabularyMatchesProgram(t *testing.T) {
	for _, c := range []struct {
		name      string
		vocab, jm int64
	}{
		{"ActionCapture", int64(vocab.ActionCapture), int64(jmxdpJmActionJM_ACTION_CAPTURE)},
		{"ActionCount", int64(vocab.ActionCount), int64(jmxdpJmActionJM_ACTION_COUNT)},
		{"ActionPass", int64(vocab.ActionPass), int64(jmxdpJmActionJM_ACTION_PASS)},
		{"ActionForward", int64(vocab.ActionForward), int64(jmxdpJmActionJM_ACTION_FORWARD)},
		{"ActionUntrusted", int64(vocab.ActionUntrusted), int64(jmxdpJmActionJM_ACTION_UNTRUSTED)},
		{"ActionNotJmirror", int64(vocab.ActionNotJmirror), int64(jmxdpJmActionJM_ACTION_NOT_JMIRROR)},
		{"InnerIPv4", int64(vocab.InnerIPv4), int64(jmxdpJmInnerJM_INNER_IPV4)},
		{"InnerIPv6", int64(vocab.InnerIPv6), int64(jmxdpJmInnerJM_INNER_IPV6)},
		{"InnerPPP", int64(vocab.InnerPPP), int64(jmxdpJmInnerJM_INNER_PPP)},
		{"InnerUnknown", int64(vocab.InnerUnknown), int64(jmxdpJmInnerJM_INNER_UNKNOWN)},
		{"InnerEmpty", int64(vocab.InnerEmpty), int64(jmxdpJmInnerJM_INNER_EMPTY)},
		{"NumInner", int64(vocab.NumInner), int64(jmxdpJmInnerJM_INNER_MAX)},
		{"StatFrames", int64(vocab.StatFrames), int64(jmxdpJmStatJM_STAT_FRAMES)},
		{"StatNotJmirror", int64(vocab.StatNotJmirror), int64(jmxdpJmStatJM_STAT_NOT_JMIRROR)},
		{"StatJmirror", int64(vocab.StatJmirror), int64(jmxdpJmStatJM_STAT_JMIRROR)},
		{"StatJmirrorBytes", int64(vocab.StatJmirrorBytes), int64(jmxdpJmStatJM_STAT_JMIRROR_BYTES)},
		{"StatMalformedShort", int64(vocab.StatMalformedShort), int64(jmxdpJmStatJM_STAT_MALFORMED_SHORT)},
		{"StatMalformedTruncated", int64(vocab.StatMalformedTruncated), int64(jmxdpJmStatJM_STAT_MALFORMED_TRUNCATED)},
		{"StatFragFirst", int64(vocab.StatFragFirst), int64(jmxdpJmStatJM_STAT_FRAG_FIRST)},
		{"StatFragTracked", int64(vocab.StatFragTracked), int64(jmxdpJmStatJM_STAT_FRAG_TRACKED)},
		{"StatFragUnmatched", int64(vocab.StatFragUnmatched), int64(jmxdpJmStatJM_STAT_FRAG_UNMATCHED)},
		{"StatUntrusted", int64(vocab.StatUntrusted), int64(jmxdpJmStatJM_STAT_UNTRUSTED)},
		{"StatActionCapture", int64(vocab.StatActionCapture), int64(jmxdpJmStatJM_STAT_ACTION_CAPTURE)},
		{"StatActionCount", int64(vocab.StatActionCount), int64(jmxdpJmStatJM_STAT_ACTION_COUNT)},
		{"StatActionPass", int64(vocab.StatActionPass), int64(jmxdpJmStatJM_STAT_ACTION_PASS)},
		{"StatCaptureFailed", int64(vocab.StatCaptureFailed), int64(jmxdpJmStatJM_STAT_CAPTURE_FAILED)},
		{"StatStreamNew", int64(vocab.StatStreamNew), int64(jmxdpJmStatJM_STAT_STREAM_NEW)},
		{"StatVersionNonzero", int64(vocab.StatVersionNonzero), int64(jmxdpJmStatJM_STAT_VERSION_NONZERO)},
		{"StatCandidate", int64(vocab.StatCandidate), int64(jmxdpJmStatJM_STAT_CANDIDATE)},
		{"StatUntrustedMapped", int64(vocab.StatUntrustedMapped), int64(jmxdpJmStatJM_STAT_UNTRUSTED_MAPPED)},
		{"StatFragDuplicate", int64(vocab.StatFragDuplicate), int64(jmxdpJmStatJM_STAT_FRAG_DUPLICATE)},
		{"StatFragHeld", int64(vocab.StatFragHeld), int64(jmxdpJmStatJM_STAT_FRAG_HELD)},
		{"StatIPv6ExtLong", int64(vocab.StatIPv6ExtLong), int64(jmxdpJmStatJM_STAT_IPV6EXT_LONG)},
		{"StatActionForward", int64(vocab.StatActionForward), int64(jmxdpJmStatJM_STAT_ACTION_FORWARD)},
		{"StatFwdSent", int64(vocab.StatFwdSent), int64(jmxdpJmStatJM_STAT_FWD_SENT)},
		{"StatFwdNeighMiss", int64(vocab.StatFwdNeighMiss), int64(jmxdpJmStatJM_STAT_FWD_NEIGH_MISS)},
		{"StatFwdNoRoute", int64(vocab.StatFwdNoRoute), int64(jmxdpJmStatJM_STAT_FWD_NO_ROUTE)},
		{"StatFwdTooBig", int64(vocab.StatFwdTooBig), int64(jmxdpJmStatJM_STAT_FWD_TOO_BIG)},
		{"StatFwdFragFamily", int64(vocab.StatFwdFragFamily), int64(jmxdpJmStatJM_STAT_FWD_FRAG_FAMILY)},
		{"StatFwdNoSource", int64(vocab.StatFwdNoSource), int64(jmxdpJmStatJM_STAT_FWD_NO_SOURCE)},
		{"StatFwdUnsupported", int64(vocab.StatFwdUnsupported), int64(jmxdpJmStatJM_STAT_FWD_UNSUPPORTED)},
		{"StatFwdUserspace", int64(vocab.StatFwdUserspace), int64(jmxdpJmStatJM_STAT_FWD_USERSPACE)},
		{"NumStats", int64(vocab.NumStats), int64(jmxdpJmStatJM_STAT_MAX)},
		{"FwdNeighMiss", int64(vocab.FwdNeighMiss), int64(jmxdpJmFwdReasonJM_FWD_REASON_NEIGH_MISS)},
		{"FwdNoRoute", int64(vocab.FwdNoRoute), int64(jmxdpJmFwdReasonJM_FWD_REASON_NO_ROUTE)},
		{"FwdTooBig", int64(vocab.FwdTooBig), int64(jmxdpJmFwdReasonJM_FWD_REASON_TOO_BIG)},
		{"FwdFragFamily", int64(vocab.FwdFragFamily), int64(jmxdpJmFwdReasonJM_FWD_REASON_FRAG_FAMILY)},
		{"FwdNoSource", int64(vocab.FwdNoSource), int64(jmxdpJmFwdReasonJM_FWD_REASON_NO_SOURCE)},
		{"FwdUnsupported", int64(vocab.FwdUnsupported), int64(jmxdpJmFwdReasonJM_FWD_REASON_UNSUPPORTED)},
		{"NumFwdReasons", int64(vocab.NumFwdReasons), int64(jmxdpJmFwdReasonJM_FWD_REASON_MAX)},
		{"StatFwdFragEarly", int64(vocab.StatFwdFragEarly), int64(jmxdpJmStatJM_STAT_FWD_FRAG_EARLY)},
		{"StatStreamFull", int64(vocab.StatStreamFull), int64(jmxdpJmStatJM_STAT_STREAM_FULL)},
		{"StatStreamLost", int64(vocab.StatStreamLost), int64(jmxdpJmStatJM_STAT_STREAM_LOST)},
		{"FwdFragEarly", int64(vocab.FwdFragEarly), int64(jmxdpJmFwdReasonJM_FWD_REASON_FRAG_EARLY)},
		{"ActionEarly", int64(vocab.ActionEarly), int64(jmxdpJmActionJM_ACTION_EARLY)},
		{"ActionForwardUser", int64(vocab.ActionForwardUser), int64(jmxdpJmActionJM_ACTION_FORWARD_USER)},
		{"ScopeExact", int64(ScopeExact), int64(jmxdpJmPolicyScopeJM_SCOPE_EXACT)},
		{"ScopeMID", int64(ScopeMID), int64(jmxdpJmPolicyScopeJM_SCOPE_MID)},
	} {
		if c.vocab != c.jm {
			t.Errorf("%s = %d in userspace/vocab, %d in the program", c.name, c.vocab, c.jm)
		}
	}
}
