package filter

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func inner(counts map[vocab.Inner]uint64) (out [vocab.NumInner]uint64) {
	for k, n := range counts {
		out[k] = n
	}
	return out
}

// The streams the tests filter, by letter: the real captures' three (A is
// the ipv6_ppp one, seen from two routers), an IPv6 router with mixed
// kinds, and one with no router or packet.
var testStreams = map[byte]Stream{
	'A': {MID: 0x8000, SID: 1, Routers: addrs("64.230.45.123", "64.230.56.119"),
		Inner: inner(map[vocab.Inner]uint64{vocab.InnerPPP: 100}), Packets: 100, Bytes: 6858},
	'B': {MID: 2, SID: 0x10f447, Routers: addrs("67.70.219.162"),
		Inner: inner(map[vocab.Inner]uint64{vocab.InnerIPv4: 38}), Packets: 38, Bytes: 2280},
	'C': {MID: 0x3039, SID: 0x1e240, Routers: addrs("10.15.6.50"),
		Inner: inner(map[vocab.Inner]uint64{vocab.InnerPPP: 6}), Packets: 6, Bytes: 72},
	'D': {MID: 0x3fffffff, SID: 0xffffffff, Routers: addrs("2001:db8::1"),
		Inner: inner(map[vocab.Inner]uint64{vocab.InnerIPv6: 5, vocab.InnerUnknown: 1, vocab.InnerEmpty: 1}), Packets: 7, Bytes: 1_000_000},
	'E': {MID: 100, SID: 100000},
}

// matches is the letters of the test streams f matches, in order.
func matches(f *Filter) string {
	var out []byte
	for _, k := range []byte("ABCDE") {
		if f.Match(testStreams[k]) {
			out = append(out, k)
		}
	}
	return string(out)
}

type matchCase struct{ expr, want string }

func runMatches(t *testing.T, cases []matchCase) {
	t.Helper()
	for _, c := range cases {
		f, err := Compile(c.expr)
		if err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		if got := matches(f); got != c.want {
			t.Errorf("%q matches %q, want %q", c.expr, got, c.want)
		}
	}
}

func TestNumericOperators(t *testing.T) {
	runMatches(t, []matchCase{
		{"mid == 2", "B"},
		{"mid != 2", "ACDE"},
		{"mid < 100", "B"},
		{"mid <= 100", "BE"},
		{"mid > 100", "ACD"},
		{"mid >= 100", "ACDE"},
		{"sid == 1", "A"},
		{"sid >= 100000", "BCDE"},
		{"sid > 4294967294", "D"},
		{"packets > 38", "A"},
		{"packets >= 38", "AB"},
		{"packets == 0", "E"},
		{"bytes < 2280", "CE"},
		{"bytes >= 1000000", "D"},
		{"bytes != 72", "ABDE"},
		// The name on the right: flipped.
		{"100 < mid", "ACD"},
		{"38 <= packets", "AB"},
		{"2 == mid", "B"},
		{"2 != mid", "ACDE"},
		// Chained: 100 <= sid and sid < 200000.
		{"100 <= sid < 200000", "CE"},
		// Ranges and lists.
		{"mid in 2..100", "BE"},
		{"mid in 3..99", ""},
		{"sid in 100000..123456", "CE"},
		{"mid not in 2..100", "ACD"},
		{"mid in [2, 0x3039]", "BC"},
		{"mid not in [2, 0x3039]", "ADE"},
		{"mid in 2", "B"},
		{"packets in 0..7", "CDE"},
		{"sid in 0xffffffff..0xffffffff", "D"},
		{"true", "ABCDE"},
		{"false", ""},
	})
}

func TestHexAndDecimal(t *testing.T) {
	runMatches(t, []matchCase{
		{"mid == 0x3039", "C"},
		{"mid == 0X3039", "C"},
		{"mid == 12345", "C"},
		{"mid == 12_345", "C"},
		{"mid == 0o30071", "C"},
		{"mid == 0b11000000111001", "C"},
		{"mid == 0x8000 and sid == 0x1", "A"},
		{"sid == 0x1e240", "C"},
		{"sid == 123456", "C"},
		{"mid == 0x3fffffff", "D"},
		{"sid == 0xFFFFFFFF", "D"},
		{"sid == 0xffff_ffff", "D"},
		{"mid == 0x3039 and sid >= 100000", "C"},
	})
}

func TestLogic(t *testing.T) {
	runMatches(t, []matchCase{
		{"mid == 2 or mid == 0x3039", "BC"},
		{"mid == 2 || mid == 0x3039", "BC"},
		{"mid > 2 and packets > 6", "AD"},
		{"mid > 2 && packets > 6", "AD"},
		{"not mid == 2", "ACDE"},
		{"!mid == 2", "ACDE"},
		{"not (mid == 2)", "ACDE"},
		{"!(mid == 2)", "ACDE"},
		{"not not mid == 2", "B"},
		{"not (mid == 2 or mid == 100)", "ACD"},
		{"(mid == 2 or mid == 100) and sid == 100000", "E"},
		{"mid == 2 or (mid == 100 and sid == 100000)", "BE"},
	})
}

// not binds tighter than and, and tighter than or: each expression
// matches what its parenthesized form does.
func TestPrecedence(t *testing.T) {
	for _, c := range []struct{ bare, explicit string }{
		{"mid == 2 or mid == 100 and sid == 1", "mid == 2 or (mid == 100 and sid == 1)"},
		{"mid == 100 and sid == 1 or mid == 2", "(mid == 100 and sid == 1) or mid == 2"},
		{"not mid == 2 and packets > 6", "(not (mid == 2)) and packets > 6"},
		{"not mid == 2 or packets > 6", "(not (mid == 2)) or packets > 6"},
		{"packets > 6 and not mid == 2", "packets > 6 and (not (mid == 2))"},
		{"mid == 2 or not mid == 0x8000 and packets > 0", "mid == 2 or ((not (mid == 0x8000)) and packets > 0)"},
		{"not inner == ppp and router in 64.230.0.0/16", "(not (inner == ppp)) and (router in 64.230.0.0/16)"},
		{"! router in 10.0.0.0/8 || mid == 2", "(!(router in 10.0.0.0/8)) || mid == 2"},
		{"mid == 2 || mid == 100 && sid == 1", "mid == 2 || (mid == 100 && sid == 1)"},
	} {
		bare, err := Compile(c.bare)
		if err != nil {
			t.Fatalf("%q: %v", c.bare, err)
		}
		explicit, err := Compile(c.explicit)
		if err != nil {
			t.Fatalf("%q: %v", c.explicit, err)
		}
		// The two differ on some stream when the other grouping is taken.
		if matches(bare) != matches(explicit) {
			t.Errorf("%q matches %q but %q matches %q", c.bare, matches(bare), c.explicit, matches(explicit))
		}
	}
	// The groupings do differ on the test streams, so the test can fail.
	runMatches(t, []matchCase{
		{"mid == 2 or mid == 100 and sid == 1", "B"},
		{"(mid == 2 or mid == 100) and sid == 1", ""},
		{"not mid == 2 or packets > 6", "ABCDE"},
		{"not (mid == 2 or packets > 6)", "CE"},
		{"not mid == 2 and packets > 6", "AD"},
		{"not (mid == 2 and packets > 6)", "ACDE"},
	})
}

func TestRouter(t *testing.T) {
	runMatches(t, []matchCase{
		{"router in 64.230.0.0/16", "A"},
		{"router in 64.230.56.0/24", "A"}, // one of A's two routers
		{"router in 64.230.45.0/24", "A"}, // the other
		{"router not in 64.230.0.0/16", "BCDE"},
		{"router == 64.230.56.119", "A"},
		{"router == 64.230.56.120", ""},
		{"router != 64.230.56.119", "BCDE"}, // none of its routers
		{"router in 64.230.56.119", "A"},
		{"router == 64.230.0.0/16", "A"},    // == with a prefix: in
		{"router in 64.230.56.119/16", "A"}, // host bits ignored
		{"router in 10.0.0.0/8", "C"},
		{"router in 0.0.0.0/0", "ABC"},
		{"router in ::/0", "D"},
		{"router in 2001:db8::/32", "D"},
		{"router == 2001:db8::1", "D"},
		{"router == 2001:0db8:0:0:0:0:0:1", "D"},
		{"router in 2001:DB8::/32", "D"},
		{"router == ::ffff:10.15.6.50", "C"}, // IPv4-mapped: the IPv4 router
		{"router in ::ffff:10.0.0.0/104", "C"},
		{"router in [10.0.0.0/8, 2001:db8::/32]", "CD"},
		{"router not in [10.0.0.0/8, 2001:db8::/32]", "ABE"},
		{"router in [67.70.219.162, 10.15.6.50]", "BC"},
		{`router == "67.70.219.162"`, "B"},
		{`router in "64.230.0.0/16"`, "A"},
		{"router in 64.230.0.0/16 and inner == ppp", "A"},
		{"mid == 0x8000 and router in 64.230.56.0/24", "A"},
		{"router in 64.230.0.0/16 or router in 2001:db8::/32", "AD"},
		{"router==10.15.6.50", "C"},
		{"(router in 10.0.0.0/8)", "C"},
		{"router in 10.0.0.0/8// a comment 1.2.3.4/8", "C"},
		{"router in 10.0.0.0/8 /* 1.2.3.4/8 */ or mid == 2", "BC"},
	})
}

func TestInner(t *testing.T) {
	runMatches(t, []matchCase{
		{"inner == ppp", "AC"},
		{"inner != ppp", "BDE"},
		{"inner == ipv4", "B"},
		{"inner == ipv6", "D"},
		{"inner == unknown", "D"},
		{"inner == empty", "D"},
		{"inner in [ipv4, ipv6]", "BD"},
		{"inner not in [ipv4, ipv6]", "ACE"},
		{"inner in ppp", "AC"},
		{"ppp == inner", "AC"},
		{"inner == ipv6 and inner == empty", "D"},
		{"not inner in [ipv4, ipv6, ppp, unknown, empty]", "E"},
	})
}

func TestKindNames(t *testing.T) {
	want := []string{"ipv4", "ipv6", "ppp", "unknown", "empty"}
	if got := KindNames(); !slices.Equal(got, want) {
		t.Errorf("KindNames() = %v, want %v", got, want)
	}
	if got := Names(); !slices.Equal(got, []string{"mid", "sid", "router", "inner", "packets", "bytes"}) {
		t.Errorf("Names() = %v", got)
	}
}

func TestUses(t *testing.T) {
	for _, c := range []struct {
		expr            string
		totals, onlyIDs bool
		uses            []string
	}{
		{"mid == 1", false, true, []string{"mid"}},
		{"mid == 1 and sid in 1..5", false, true, []string{"mid", "sid"}},
		{"true", false, true, nil},
		{"packets > 1", true, false, []string{"packets"}},
		{"mid == 1 or bytes > 1", true, false, []string{"mid", "bytes"}},
		{"router in 10.0.0.0/8", false, false, []string{"router"}},
		{"inner == ppp", false, false, []string{"inner"}},
		{"100 < packets", true, false, []string{"packets"}},
	} {
		f := MustCompile(c.expr)
		if f.UsesTotals() != c.totals || f.OnlyIDs() != c.onlyIDs {
			t.Errorf("%q: UsesTotals %v OnlyIDs %v, want %v %v", c.expr, f.UsesTotals(), f.OnlyIDs(), c.totals, c.onlyIDs)
		}
		for _, n := range Names() {
			if f.Uses(n) != slices.Contains(c.uses, n) {
				t.Errorf("%q: Uses(%s) = %v", c.expr, n, f.Uses(n))
			}
		}
	}
	var none *Filter
	if !none.Match(Stream{}) || none.String() != "" || none.UsesTotals() {
		t.Error("a nil filter does not pass everything")
	}
}

func TestString(t *testing.T) {
	const e = "  router in 64.230.0.0/16 and inner == ppp "
	if got := MustCompile(e).String(); got != e {
		t.Errorf("String() = %q, want %q", got, e)
	}
}

func TestStreamOf(t *testing.T) {
	var s vocab.Stream
	s.Router, s.MID, s.SID, s.Packets, s.Bytes = netip.MustParseAddr("192.0.2.1"), 7, 9, 3, 30
	s.Inner[vocab.InnerPPP] = 3
	fs := StreamOf(s)
	if !MustCompile("router == 192.0.2.1 and mid == 7 and sid == 9 and packets == 3 and bytes == 30 and inner == ppp and inner != ipv4").Match(fs) {
		t.Errorf("StreamOf(%+v) = %+v", s, fs)
	}
}

// errCase is a filter that must not compile: the message it gives, and
// where the caret goes: at the first occurrence of at in the filter, or
// at its end when at is "$".
type errCase struct{ expr, msg, at string }

var errCases = []errCase{
	// Unknown names.
	{"mid == 1 and sidd > 3", `unknown name "sidd" (known: mid, sid, router, inner, packets, bytes)`, "sidd"},
	{"3 < sidd", `unknown name "sidd"`, "sidd"},
	{"MID == 1", `unknown name "MID"`, "MID"},
	{"router in 64.230.0.0/16 and sidd == 1", `unknown name "sidd"`, "sidd"},
	{"router in 2001:db8::/32 and sidd == 1", `unknown name "sidd"`, "sidd"},
	{"router in [10.0.0.0/8, 192.168.0.0/16] or x", `unknown name "x"`, "x"},
	{`router == "10.0.0.1" and nope`, `unknown name "nope"`, "nope"},
	{"mid == 1 and é == 2", `unknown name "é"`, "é"},
	{"inner == pppp", `unknown inner kind "pppp" (known: ipv4, ipv6, ppp, unknown, empty)`, "pppp"},
	{"mid == x", `unknown name "x": mid is compared with a number`, "x"},
	{"router == x", `unknown name "x": router is compared with an address or prefix`, "x"},
	// Not conditions.
	{"mid", "mid is a number, not a condition: compare it, as in mid == 1", "mid"},
	{"router", "router is an address, not a condition", "router"},
	{"inner", "inner is the kinds of the mirrored packets, not a condition", "inner"},
	{"ppp", "ppp is a kind of mirrored packet, not a condition: compare inner with it, as in inner == ppp", "ppp"},
	{"1", "want a condition, such as mid == 1, not the number 1", "1"},
	{`"abc"`, `want a condition, such as mid == 1, not the string "abc"`, `"`},
	{"10.0.0.0/8", "want a condition, such as mid == 1, not the prefix 10.0.0.0/8", "10"},
	{"mid == 1 and 5", "want a condition, such as mid == 1, not the number 5", "5"},
	{"mid == 1 and packets", "packets is a number, not a condition", "packets"},
	{"[1, 2]", "want a condition, such as mid == 1, not a list", "["},
	{"1..5", "want a condition, such as mid == 1, not a range", ".."},
	// Wrong values.
	{"mid == ppp", "mid is compared with a number, not the inner kind ppp", "ppp"},
	{"mid == 1.5", "mid is compared with a whole number, not 1.5", "1.5"},
	{"packets > 1e6", "packets is compared with a whole number, not 1e6", "1e6"},
	{"mid == 10.0.0.1", "mid is compared with a number, not the address 10.0.0.1", "10"},
	{"mid == -1", "mid is never negative", "-"},
	{"mid == 0x40000000", "0x40000000 is out of range: mid is at most 0x3fffffff (1073741823)", "0x4"},
	{"sid == 0x100000000", "0x100000000 is out of range: sid is at most 0xffffffff (4294967295)", "0x1"},
	{"sid >= 1_0000_0000_0000", "1_0000_0000_0000 is out of range: sid is at most 0xffffffff", "1_"},
	{"sid == 0xffff_ffff_ffff_ffff_ff", `bad number 0xffffffffffffffffff: out of range`, "0x"},
	{"mid == 1 or sid == 99999999999999999999 or mid == 2", `bad number 99999999999999999999: out of range`, "999"},
	{`mid == "1"`, `mid is compared with a number, not the string "1"`, `"`},
	{"mid == 1..5", "a range goes after in, as in mid in 1..5", ".."},
	{"mid in 5..1", "empty range 5..1: the lower bound comes first", "5"},
	{"mid in []", "empty list", "["},
	{"mid == [1, 2]", "a list goes after in, as in mid in [...]", "["},
	{"mid in [1, ppp]", "mid is compared with a number, not the inner kind ppp", "ppp"},
	{"mid == sid", "compare mid with a value, not with sid", "sid"},
	{"mid in [1, sid]", "compare mid with a value, not with sid", "sid"},
	{"router in [10.0.0.0/8, mid]", "compare router with a value, not with mid", "mid"},
	{"inner in [ppp, router]", "compare inner with a value, not with router", "router"},
	{"1 in mid", "in takes a name on its left, as in mid in 1..5", "1"},
	{"1 == 1", "a comparison needs one of mid, sid, router, inner, packets, bytes on one side", "1"},
	{"router < 10.0.0.1", "router is compared with ==, != or in, not <", "<"},
	{"inner >= ppp", "inner is compared with ==, != or in, not >=", ">="},
	{"router == 5", "router is compared with an address or prefix such as 192.0.2.1 or 10.0.0.0/8, not the number 5", "5"},
	{"router in [10.0.0.0/8, 5]", "not the number 5", "5"},
	{"router in [[10.0.0.0/8]]", "a list in a list", "[1"},
	{"router in []", "empty list", "["},
	{"inner == 4", "inner is compared with a kind (ipv4, ipv6, ppp, unknown, empty), not the number 4", "4"},
	{"inner == 10.0.0.1", "not the address 10.0.0.1", "10"},
	// Bad addresses and prefixes, bare and quoted.
	{"router in 64.230.0.0/33", `bad prefix "64.230.0.0/33": the length must be 0 to 32`, "64"},
	{"router in 2001:db8::/129", `bad prefix "2001:db8::/129": the length must be 0 to 128`, "2001"},
	{"router == 1.2.3.256", `bad address "1.2.3.256": IPv4 field has value >255`, "1.2"},
	{"mid == 1 and router == 1.2.3.256", `bad address "1.2.3.256"`, "1.2"},
	{"router == 1:2:3", `bad address "1:2:3"`, "1:2"},
	{`router == "fe80::1%eth0"`, `bad address "fe80::1%eth0": a router address has no zone`, `"`},
	{`router == "example.com"`, `bad address "example.com"`, `"`},
	// Syntax.
	{"mid == 1 andd sid == 2", `unexpected "andd"`, "andd"},
	{"mid == 1 ||", "unexpected end of the filter", "$"},
	{"mid ==", "unexpected end of the filter", "$"},
	{"router in 10.0.0.0/8 and", "unexpected end of the filter", "$"},
	{"(mid == 1", "unexpected end of the filter", "$"},
	{"mid == 1)", `unexpected ")"`, ")"},
	{"mid === 1", `unexpected "="`, "= 1"},
	{"mid == 'a", "literal not terminated", "$"},
	// What expr has and filters do not.
	{"mid + 1 == 2", "operator + is not supported in a filter", "+"},
	{"mid * 2 > 4", "operator * is not supported in a filter", "*"},
	{"len(router) > 1", "a function call is not supported in a filter", "len"},
	{"now() == 1", "a function call is not supported in a filter", "now"},
	{"routerIn(router, 1)", "a function call is not supported in a filter", "routerIn"},
	{"mid.x == 1", "a member access (.) is not supported in a filter", "mid"},
	{"mid == 1 ? true : false", "a conditional (?: or if) is not supported in a filter", "mid"},
	{"let x = 1; mid == x", "let is not supported in a filter", "x"}, // expr places it at the name
	{"mid == 1; sid == 2", "a sequence (;) is not supported in a filter", "mid"},
	{"{a: 1} == 1", "a map is not supported in a filter", "{"},
	{`mid matches "1"`, "operator matches is not supported in a filter", "matches"},
	{"mid == nil", "mid is compared with a number, not nil", "nil"},
	{"mid ?? 1", "operator ?? is not supported in a filter", "??"},
	{"mid == 1 and if mid == 1 { true } else { false }", "", "if"},
	{"", "empty filter: want a condition such as mid == 1", "$"},
	{"  \n ", "empty filter", ""},
}

// caretAt is the character offset of at in s: "$" is the end.
func caretAt(s, at string) int {
	if at == "$" {
		return len([]rune(s))
	}
	i := strings.Index(s, at)
	if i < 0 {
		return -2
	}
	return len([]rune(s[:i]))
}

func TestErrors(t *testing.T) {
	for _, c := range errCases {
		f, err := Compile(c.expr)
		if err == nil {
			t.Errorf("%q compiles (matches %q)", c.expr, matches(f))
			continue
		}
		var fe *Error
		if !errors.As(err, &fe) {
			t.Errorf("%q: %T %v, want *Error", c.expr, err, err)
			continue
		}
		if !strings.Contains(fe.Msg, c.msg) {
			t.Errorf("%q: message %q, want %q", c.expr, fe.Msg, c.msg)
		}
		if c.at != "" {
			if want := caretAt(c.expr, c.at); fe.Pos != want {
				t.Errorf("%q: error at %d, want %d (%q):\n%v", c.expr, fe.Pos, want, c.at, err)
			}
		}
		if fe.Expr != c.expr || !strings.HasPrefix(err.Error(), "bad filter: ") {
			t.Errorf("%q: %+v", c.expr, fe)
		}
	}
}

// The message: the filter's line with a caret under the error, whatever
// comes before it on the line (a rewritten literal, other characters).
func TestErrorMessage(t *testing.T) {
	for _, c := range []struct{ expr, want string }{
		{"mid == 1 and sidd > 3", `bad filter: unknown name "sidd" (known: mid, sid, router, inner, packets, bytes)
  mid == 1 and sidd > 3
               ^`},
		{"router in 64.230.0.0/16 and sidd > 3", `bad filter: unknown name "sidd" (known: mid, sid, router, inner, packets, bytes)
  router in 64.230.0.0/16 and sidd > 3
                              ^`},
		{"router in [2001:db8::/32, 10.0.0.0/8] and mid == 0x40000000", `bad filter: 0x40000000 is out of range: mid is at most 0x3fffffff (1073741823)
  router in [2001:db8::/32, 10.0.0.0/8] and mid == 0x40000000
                                                   ^`},
		{"router in 10.0.0.0/8 andd", `bad filter: unexpected "andd"
  router in 10.0.0.0/8 andd
                       ^`},
		{"é == 1", `bad filter: unknown name "é" (known: mid, sid, router, inner, packets, bytes)
  é == 1
  ^`},
		{"ééé == 1 or sidd == 2", `bad filter: unknown name "ééé" (known: mid, sid, router, inner, packets, bytes)
  ééé == 1 or sidd == 2
  ^`},
		{"mid == 'é' or sidd == 2", `bad filter: mid is compared with a number, not the string "é"
  mid == 'é' or sidd == 2
         ^`},
		{"mid ==\n  1 and\tsidd == 2", `bad filter: line 2: unknown name "sidd" (known: mid, sid, router, inner, packets, bytes)
    1 and sidd == 2
          ^`},
		{"mid == 1 ||", `bad filter: unexpected end of the filter
  mid == 1 ||
             ^`},
	} {
		_, err := Compile(c.expr)
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\n%v\nwant\n%s", c.expr, err, c.want)
		}
	}
}

func TestErrorLineColumn(t *testing.T) {
	_, err := Compile("mid == 1 and\n  sidd == 2")
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatal(err)
	}
	if l, c := fe.LineColumn(); l != 2 || c != 3 {
		t.Errorf("line %d column %d, want 2 3", l, c)
	}
	if l, c := (&Error{Pos: -1, Msg: "x"}).LineColumn(); l != 0 || c != 0 {
		t.Errorf("no position: line %d column %d", l, c)
	}
	if got := (&Error{Expr: "mid", Pos: -1, Msg: "x"}).Error(); got != "bad filter: x" {
		t.Errorf("no position: %q", got)
	}
}

// Matching is concurrency safe: a filter is shared by goroutines.
func TestConcurrentMatch(t *testing.T) {
	f := MustCompile("router in 64.230.0.0/16 and inner == ppp or mid in 2..100")
	done := make(chan string)
	for range 8 {
		go func() {
			var got string
			for range 200 {
				got = matches(f)
			}
			done <- got
		}()
	}
	for range 8 {
		if got := <-done; got != "ABE" {
			t.Errorf("matches %q", got)
		}
	}
}

// docs/filters.md: its examples compile, and its error table gives the
// messages Compile does.
func TestDocs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "filters.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, m := range regexp.MustCompile(`--filter '([^']+)'`).FindAllStringSubmatch(doc, -1) {
		if _, err := Compile(m[1]); err != nil {
			t.Errorf("docs example %q: %v", m[1], err)
		}
	}
	_, errorsPart, _ := strings.Cut(doc, "## Errors")
	rows := regexp.MustCompile("(?m)^\\| `([^`]+)` \\| `([^`]+)` \\|$").FindAllStringSubmatch(errorsPart, -1)
	if len(rows) < 10 {
		t.Fatalf("%d rows in the error table", len(rows))
	}
	for _, r := range rows {
		_, err := Compile(r[1])
		var fe *Error
		if !errors.As(err, &fe) || fe.Msg != r[2] {
			t.Errorf("docs: %q gives %v, docs say %q", r[1], err, r[2])
		}
	}
	for _, e := range []string{
		"not mid == 1 and sid == 2 or bytes > 0", "((not (mid == 1)) and sid == 2) or bytes > 0",
		"router == 64.230.56.119 and router == 64.230.45.123", "inner == ppp and inner == ipv4",
		"100 <= sid < 200", "router in ::ffff:10.0.0.0/104", "sid in 100000..199999",
	} {
		if _, err := Compile(e); err != nil {
			t.Errorf("docs example %q: %v", e, err)
		}
	}
}
