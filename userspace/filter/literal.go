package filter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
)

// source is a filter with its bare address and prefix literals quoted, the
// form expr parses: `router in 10.0.0.0/8` becomes `router in "10.0.0.0/8"`.
type source struct {
	orig string
	text string
	// pos maps a character offset in text to one in orig; it has an entry
	// for the end of text too.
	pos []int
}

// errorAt is an Error at offset p of the rewritten text.
func (s *source) errorAt(p int, msg string) *Error {
	switch {
	case p < 0:
		p = 0
	case p >= len(s.pos):
		p = len(s.pos) - 1
	}
	return &Error{Expr: s.orig, Pos: s.pos[p], Msg: msg}
}

// rewrite quotes the bare address and prefix literals of a filter. This is
// not a parser: it only finds words that read as an IPv4 address (digits
// and three dots), or an IPv6 one (hex digits and colons, at least two),
// each with an optional /bits, outside strings and comments. Anything else
// is left for expr's parser.
func rewrite(in string) (*source, *Error) {
	r := []rune(in)
	s := &source{orig: in}
	var out []rune
	emit := func(c rune, from int) {
		out = append(out, c)
		s.pos = append(s.pos, from)
	}
	copyTo := func(i, end int) int {
		for ; i < end; i++ {
			emit(r[i], i)
		}
		return end
	}
	for i := 0; i < len(r); {
		c := r[i]
		switch {
		case c == '"' || c == '\'':
			i = copyTo(i, quotedEnd(r, i))
		case c == '`':
			i = copyTo(i, rawEnd(r, i))
		case c == '/' && i+1 < len(r) && r[i+1] == '/':
			i = copyTo(i, lineEnd(r, i))
		case c == '/' && i+1 < len(r) && r[i+1] == '*':
			i = copyTo(i, commentEnd(r, i))
		case addrRune(c) && (i == 0 || !wordRune(r[i-1]) && r[i-1] != '.' && r[i-1] != ':'):
			end := literalEnd(r, i)
			lit := string(r[i:end])
			if !looksLikeAddr(lit) {
				emit(c, i)
				i++
				continue
			}
			if _, err := parseAddrOrPrefix(lit); err != nil {
				return nil, &Error{Expr: in, Pos: i, Msg: err.Error()}
			}
			emit('"', i)
			copyTo(i, end)
			emit('"', end-1)
			i = end
		default:
			emit(c, i)
			i++
		}
	}
	s.pos = append(s.pos, len(r))
	s.text = string(out)
	return s, nil
}

// quotedEnd is the end of the "..." or '...' string starting at i, or of
// the line if it is not terminated: expr reports that.
func quotedEnd(r []rune, i int) int {
	q := r[i]
	for j := i + 1; j < len(r); j++ {
		switch r[j] {
		case '\\':
			j++
		case q:
			return j + 1
		case '\n':
			return j
		}
	}
	return len(r)
}

func rawEnd(r []rune, i int) int {
	for j := i + 1; j < len(r); j++ {
		if r[j] == '`' {
			return j + 1
		}
	}
	return len(r)
}

func lineEnd(r []rune, i int) int {
	for j := i; j < len(r); j++ {
		if r[j] == '\n' {
			return j
		}
	}
	return len(r)
}

func commentEnd(r []rune, i int) int {
	for j := i + 2; j+1 < len(r); j++ {
		if r[j] == '*' && r[j+1] == '/' {
			return j + 2
		}
	}
	return len(r)
}

// literalEnd is the end of the address-like word at i, with its /bits;
// i itself when it runs into a longer word (0x10, abc_d).
func literalEnd(r []rune, i int) int {
	j := i
	for j < len(r) && addrRune(r[j]) {
		j++
	}
	if j+1 < len(r) && r[j] == '/' && isDigit(r[j+1]) {
		j++
		for j < len(r) && isDigit(r[j]) {
			j++
		}
	}
	if j < len(r) && wordRune(r[j]) {
		return i
	}
	return j
}

func isDigit(c rune) bool { return '0' <= c && c <= '9' }

// addrRune is a character of an address: hex digits, dots and colons.
func addrRune(c rune) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == '.' || c == ':'
}

// wordRune is a character of an expr identifier or number.
func wordRune(c rune) bool { return c == '_' || c == '$' || unicode.IsLetter(c) || unicode.IsDigit(c) }

// looksLikeAddr tells an address-like word from a number, a range (1..5)
// or an identifier (dead): an IPv4 address is digits with three dots, an
// IPv6 one has two colons or more.
func looksLikeAddr(w string) bool {
	a, _, _ := strings.Cut(w, "/")
	if strings.Count(a, ":") >= 2 {
		return true
	}
	return strings.Count(a, ".") == 3 && !strings.Contains(a, "..") &&
		strings.Trim(a, "0123456789.") == ""
}

// parseAddrOrPrefix reads an address (a /32 or /128) or a prefix, whose
// host bits are ignored. IPv4-mapped IPv6 forms (of /96 or longer) become
// IPv4, as routers' addresses are.
func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	a, bits, hasBits := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(a)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q: %s", a, netipReason(err))
	}
	if addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q: a router address has no zone", a)
	}
	n := addr.BitLen()
	if hasBits {
		v, err := strconv.Atoi(bits)
		if err != nil || v < 0 || v > addr.BitLen() || bits != strconv.Itoa(v) {
			return netip.Prefix{}, fmt.Errorf("bad prefix %q: the length must be 0 to %d", s, addr.BitLen())
		}
		n = v
	}
	if addr.Is4In6() && n >= 96 {
		addr, n = addr.Unmap(), n-96
	}
	return netip.PrefixFrom(addr, n).Masked(), nil
}

// netipReason is the reason in a net/netip error, without the call it
// repeats: `ParseAddr("1.2.3.256"): IPv4 field has value >255`.
func netipReason(err error) string {
	m := err.Error()
	if i := strings.LastIndex(m, "): "); i >= 0 {
		return m[i+3:]
	}
	return m
}
