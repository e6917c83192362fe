// Package filter selects Jmirror streams with expressions such as
// `mid == 0x3039 and sid >= 100000` or `router in 64.230.0.0/16 and inner == ppp`,
// for `jmxdp decode --filter` and `jmxdp stats --filter`. docs/filters.md
// describes the language.
//
// Parsing, type checking and evaluation are github.com/expr-lang/expr's: a
// filter is an expr expression over a typed environment (mid, sid, router,
// inner, packets, bytes), restricted to comparisons combined with and, or
// and not. This package adds what expr lacks: bare address and prefix
// literals (rewritten to strings before parsing, with error positions
// mapped back to the user's text), the inner kinds as constants, `not`
// applying to a whole comparison, ranges and lists after `in`, and error
// messages that name the filter's names and point at the error.
package filter

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strings"
	"unicode"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Stream is what a filter sees of a stream.
type Stream struct {
	MID, SID uint32
	// Routers are the outer source addresses that sent the stream: `router
	// == A` and `router in P` hold if any of them is A or is in P, and
	// `router != A` and `router not in P` if none is. A stream with no
	// router matches neither == nor in.
	Routers []netip.Addr
	// Inner counts the mirrored packets by kind, indexed by vocab.Inner:
	// `inner == ppp` holds if the stream carried any PPP packet.
	Inner          [vocab.NumInner]uint64
	Packets, Bytes uint64
}

// StreamOf is the Stream of one entry of the kernel's stream table: one
// router's share of a (mid, sid).
func StreamOf(s vocab.Stream) Stream {
	return Stream{MID: s.MID, SID: s.SID, Routers: []netip.Addr{s.Router}, Inner: s.Inner, Packets: s.Packets, Bytes: s.Bytes}
}

// Filter is a compiled filter expression. It is safe for concurrent use.
type Filter struct {
	src     string
	program *vm.Program
	used    map[string]bool
}

// The names a filter can use, in the order messages list them.
const (
	nameMID     = "mid"
	nameSID     = "sid"
	nameRouter  = "router"
	nameInner   = "inner"
	namePackets = "packets"
	nameBytes   = "bytes"
)

var names = []string{nameMID, nameSID, nameRouter, nameInner, namePackets, nameBytes}

// Names are the names a filter can refer to.
func Names() []string { return append([]string(nil), names...) }

// KindNames are the inner kinds, the values `inner` compares with, in
// vocab.Inner order.
func KindNames() []string {
	out := make([]string, vocab.NumInner)
	for k := range out {
		out[k] = vocab.Inner(k).String()
	}
	return out
}

// env is the typed environment the expression is compiled against and run
// in. The numbers are int64 so that every uint32 id fits on any platform.
type env struct {
	MID     int64        `expr:"mid"`
	SID     int64        `expr:"sid"`
	Router  []netip.Addr `expr:"router"`
	Inner   kindSet      `expr:"inner"`
	Packets int64        `expr:"packets"`
	Bytes   int64        `expr:"bytes"`
}

// kindSet is a set of inner kinds, bit k for vocab.Inner(k).
type kindSet uint8

// prefixSet is what router is compared with; an address is a /32 or /128.
type prefixSet []netip.Prefix

// The functions comparisons with router and inner are lowered to. Filters
// cannot call functions themselves (check rejects calls), so these are
// reachable only through the lowering.
const (
	fnRouterIn = "routerIn"
	fnInnerHas = "innerHas"
)

func routerIn(routers []netip.Addr, set prefixSet) bool {
	for _, a := range routers {
		for _, p := range set {
			if p.Contains(a) {
				return true
			}
		}
	}
	return false
}

var options = []expr.Option{
	expr.Env(env{}),
	expr.AsBool(),
	expr.DisableAllBuiltins(),
	expr.Function(fnRouterIn, func(params ...any) (any, error) {
		return routerIn(params[0].([]netip.Addr), params[1].(prefixSet)), nil
	}, new(func([]netip.Addr, prefixSet) bool)),
	expr.Function(fnInnerHas, func(params ...any) (any, error) {
		return params[0].(kindSet)&params[1].(kindSet) != 0, nil
	}, new(func(kindSet, kindSet) bool)),
	expr.Patch(normalize{}),
	expr.Patch(lower{}),
}

// Compile parses and checks a filter. Its errors are *Error, which point
// at the mistake in the expression.
func Compile(s string) (*Filter, error) {
	if strings.TrimSpace(s) == "" {
		return nil, &Error{Expr: s, Pos: 0, Msg: "empty filter: want a condition such as mid == 1"}
	}
	src, err := rewrite(s)
	if err != nil {
		return nil, err
	}
	// Check the expression first, on its own parse, to give messages in the
	// filter's terms; expr then compiles the same text with the same
	// normalization and the lowering.
	tree, perr := parser.Parse(src.text)
	if perr != nil {
		return nil, src.exprError(perr)
	}
	root := tree.Node
	walkNormalize(&root)
	c := checker{src: src, used: map[string]bool{}}
	if err := c.condition(root); err != nil {
		return nil, err
	}
	program, cerr := expr.Compile(src.text, options...)
	if cerr != nil {
		return nil, src.exprError(cerr)
	}
	return &Filter{src: s, program: program, used: c.used}, nil
}

// MustCompile is Compile for filters known to be good; it panics on an
// error.
func MustCompile(s string) *Filter {
	f, err := Compile(s)
	if err != nil {
		panic(err)
	}
	return f
}

// Match reports whether the stream passes the filter. A nil filter passes
// every stream.
func (f *Filter) Match(s Stream) bool {
	if f == nil {
		return true
	}
	e := env{
		MID: int64(s.MID), SID: int64(s.SID), Router: s.Routers,
		Packets: saturate(s.Packets), Bytes: saturate(s.Bytes),
	}
	for k, n := range s.Inner {
		if n > 0 {
			e.Inner |= 1 << k
		}
	}
	out, err := expr.Run(f.program, e)
	if err != nil {
		// The program was type checked against env and calls nothing that
		// fails: an error here is a bug.
		panic("filter " + f.src + ": " + err.Error())
	}
	return out.(bool)
}

// saturate keeps a counter an int64; no counter gets near 2^63.
func saturate(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

// String is the filter as it was given.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	return f.src
}

// Uses reports whether the filter refers to name (mid, sid, router, inner,
// packets or bytes).
func (f *Filter) Uses(name string) bool { return f != nil && f.used[name] }

// UsesTotals reports whether the filter refers to packets or bytes, which
// are only known once the whole capture has been read.
func (f *Filter) UsesTotals() bool { return f.Uses(namePackets) || f.Uses(nameBytes) }

// OnlyIDs reports whether the filter refers to nothing but mid and sid, so
// that a stream's first packet decides it. Filters on router or inner can
// change their answer as a stream goes on: a second router, a first PPP
// packet.
func (f *Filter) OnlyIDs() bool {
	for n := range f.used {
		if n != nameMID && n != nameSID {
			return false
		}
	}
	return true
}

// exprError turns an error of expr's parser or compiler into an *Error at
// the same place in the user's text.
func (s *source) exprError(err error) *Error {
	var fe *file.Error
	if errors.As(err, &fe) {
		if fe.Message == "unexpected token EOF" { // placed on the last token
			return &Error{Expr: s.orig, Pos: len([]rune(strings.TrimRightFunc(s.orig, unicode.IsSpace))), Msg: parserMessage(fe.Message)}
		}
		if m := badNumber.FindStringSubmatch(fe.Message); m != nil {
			// Placed after the number: find it.
			return s.errorAt(s.lastBefore(m[1], fe.From), fmt.Sprintf("bad number %s: %s", m[1], strings.TrimPrefix(m[2], "value ")))
		}
		return s.errorAt(fe.From, parserMessage(fe.Message))
	}
	return &Error{Expr: s.orig, Pos: -1, Msg: err.Error()}
}

var badNumber = regexp.MustCompile(`^invalid \w+ literal: strconv\.Parse\w+: parsing "(.*)": (.*)$`)

// lastBefore is the offset of the last number w in the text that starts at
// or before offset at, underscores apart; at itself if there is none.
func (s *source) lastBefore(w string, at int) int {
	r := []rune(s.text)
	for i := min(at, len(r)-1); i >= 0; i-- {
		if i > 0 && wordRune(r[i-1]) {
			continue
		}
		j := i
		for j < len(r) && (wordRune(r[j]) || r[j] == '.') {
			j++
		}
		if strings.ReplaceAll(string(r[i:j]), "_", "") == w {
			return i
		}
	}
	return at
}

var unexpectedToken = regexp.MustCompile(`^unexpected token \w+\((".*")\)$`)

// parserMessage words expr's commonest syntax errors in the filter's terms:
// `unexpected token Identifier("andd")` is `unexpected "andd"`.
func parserMessage(m string) string {
	switch {
	case m == "unexpected token EOF":
		return "unexpected end of the filter"
	case strings.Contains(m, "exceeds maximum allowed nodes"):
		return "the filter is too long"
	case unexpectedToken.MatchString(m):
		return "unexpected " + unexpectedToken.FindStringSubmatch(m)[1]
	}
	return m
}
