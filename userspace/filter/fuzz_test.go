package filter

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCompile: no filter text makes Compile or Match panic; a bad one is
// an *Error placed inside the text, a good one matches deterministically.
func FuzzCompile(f *testing.F) {
	for _, c := range errCases {
		f.Add(c.expr)
	}
	for _, s := range []string{
		"mid == 0x3039 and sid >= 100000", "router in 64.230.0.0/16 and inner == ppp",
		"not mid == 1 or router in [10.0.0.0/8, 2001:db8::/32]", "100 <= sid < 200 && !(inner in [ppp, ipv4])",
		"router == ::ffff:1.2.3.4 or router not in ::/0", "packets > 10 and bytes <= 0x10000",
		`router == "10.0.0.1" /* c */ // d`, "mid in 1..0x3fffffff", "((mid == 1))", "router in 1.2.3.4/",
		"router in 1.2.3.4.5", "a.b.c == 1", "::", "1::2::3", "`raw` == mid", "mid == 1\n\tand sid == 2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := Compile(s)
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("%q: %T %v, want *Error", s, err, err)
			}
			if fe.Pos < -1 || fe.Pos > utf8.RuneCountInString(s) || fe.Expr != s {
				t.Fatalf("%q: error at %d of %d: %v", s, fe.Pos, utf8.RuneCountInString(s), err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "bad filter: ") || fe.Msg == "" {
				t.Fatalf("%q: message %q", s, msg)
			}
			return
		}
		if flt.String() != s {
			t.Fatalf("String() = %q, want %q", flt.String(), s)
		}
		first := matches(flt) // panics if the program fails to run
		if again := matches(MustCompile(s)); again != first {
			t.Fatalf("%q matches %q, then %q", s, first, again)
		}
	})
}
