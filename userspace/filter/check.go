package filter

import (
	"fmt"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// checker checks a parsed, normalized filter against the language
// docs/filters.md describes, a subset of expr's, and explains what is
// wrong in the filter's terms: expr's own checker would accept much more
// (arithmetic, calls, member access) and word its errors in Go types.
type checker struct {
	src  *source
	used map[string]bool // the names the filter refers to
}

// Limits of the ids: mid is 30 bits (the V bits are masked off), sid 32.
var limits = map[string]uint64{nameMID: 1<<30 - 1, nameSID: 1<<32 - 1}

var whatIs = map[string]string{
	nameMID: "a number", nameSID: "a number", namePackets: "a number", nameBytes: "a number",
	nameRouter: "an address", nameInner: "the kinds of the mirrored packets",
}

var example = map[string]string{
	nameMID: "mid == 1", nameSID: "sid >= 100000", namePackets: "packets > 100", nameBytes: "bytes > 1000000",
	nameRouter: "router in 192.0.2.0/24", nameInner: "inner == ppp",
}

// nodeError is an error about one node of the tree.
type nodeError struct {
	at  ast.Node
	msg string
}

func (e *nodeError) Error() string { return e.msg }

func (c *checker) fail(n ast.Node, format string, args ...any) error {
	return c.src.errorAt(position(n), fmt.Sprintf(format, args...))
}

// position is where an error about n points: at an operator, or at the
// start of anything else (expr places a member access at its property, a
// conditional at its last part).
func position(n ast.Node) int {
	switch n.(type) {
	case *ast.BinaryNode, *ast.UnaryNode:
		return n.Location().From
	}
	v := &leftmost{from: n.Location().From}
	ast.Walk(&n, v)
	return v.from
}

type leftmost struct{ from int }

func (v *leftmost) Visit(n *ast.Node) { v.from = min(v.from, (*n).Location().From) }

func (c *checker) nodeErr(err error) error {
	if ne, ok := err.(*nodeError); ok {
		return c.fail(ne.at, "%s", ne.msg)
	}
	return err
}

// text is the node as written, if expr recorded where it ends.
func (c *checker) text(n ast.Node) string {
	r := []rune(c.src.text)
	if l := n.Location(); 0 <= l.From && l.From < l.To && l.To <= len(r) {
		return string(r[l.From:l.To])
	}
	return n.String()
}

func (c *checker) unknownName(id *ast.IdentifierNode) error {
	return c.fail(id, "unknown name %q (known: %s)", id.Value, strings.Join(names, ", "))
}

// condition checks a node that must be true or false.
func (c *checker) condition(n ast.Node) error {
	switch n := n.(type) {
	case *ast.BoolNode:
		return nil
	case *ast.UnaryNode:
		if _, ok := isNot(n); ok {
			return c.condition(n.Node)
		}
	case *ast.BinaryNode:
		switch n.Operator {
		case "and", "or", "&&", "||":
			if err := c.condition(n.Left); err != nil {
				return err
			}
			return c.condition(n.Right)
		}
		if comparison(n.Operator) {
			return c.comparison(n)
		}
	case *ast.IdentifierNode:
		if name, ok := nameOf(n); ok {
			return c.fail(n, "%s is %s, not a condition: compare it, as in %s", name, whatIs[name], example[name])
		}
		if _, ok := kindByName(n.Value); ok {
			return c.fail(n, "%s is a kind of mirrored packet, not a condition: compare inner with it, as in inner == %s", n.Value, n.Value)
		}
		return c.unknownName(n)
	}
	if unsupported(n) {
		return c.fail(n, "%s is not supported in a filter", describe(n))
	}
	return c.fail(n, "want a condition, such as mid == 1, not %s", describe(n))
}

// comparison checks `name op value`; normalize has put any name on the
// left.
func (c *checker) comparison(b *ast.BinaryNode) error {
	name, ok := nameOf(b.Left)
	if !ok {
		for _, side := range []ast.Node{b.Left, b.Right} {
			if id, ok := side.(*ast.IdentifierNode); ok {
				if _, kind := kindByName(id.Value); !kind {
					if _, isName := nameOf(id); !isName {
						return c.unknownName(id)
					}
				}
			}
		}
		if _, ok := nameOf(b.Right); ok { // 1 in mid
			return c.fail(b.Left, "in takes a name on its left, as in mid in 1..5")
		}
		if unsupported(b.Left) {
			return c.fail(b.Left, "%s is not supported in a filter", describe(b.Left))
		}
		return c.fail(b.Left, "a comparison needs one of %s on one side", strings.Join(names, ", "))
	}
	c.used[name] = true
	if other, ok := nameOf(b.Right); ok {
		return c.fail(b.Right, "compare %s with a value, not with %s", name, other)
	}
	if _, list := b.Right.(*ast.ArrayNode); list && b.Operator != "in" {
		return c.fail(b.Right, "a list goes after in, as in %s in [...]", name)
	}
	switch name {
	case nameRouter:
		if err := c.equality(b, name); err != nil {
			return err
		}
		_, err := prefixesOf(b.Right)
		return c.nodeErr(err)
	case nameInner:
		if err := c.equality(b, name); err != nil {
			return err
		}
		_, err := kindsOf(b.Right)
		return c.nodeErr(err)
	}
	return c.number(name, b)
}

// equality refuses <, <=, >, >= for names without an order.
func (c *checker) equality(b *ast.BinaryNode, name string) error {
	switch b.Operator {
	case "==", "!=", "in":
		return nil
	}
	return c.fail(b, "%s is compared with ==, != or in, not %s", name, b.Operator)
}

// number checks a comparison of mid, sid, packets or bytes.
func (c *checker) number(name string, b *ast.BinaryNode) error {
	if b.Operator == "in" {
		switch r := b.Right.(type) {
		case *ast.BinaryNode:
			if r.Operator == ".." {
				lo, err := c.integer(name, r.Left)
				if err != nil {
					return err
				}
				hi, err := c.integer(name, r.Right)
				if err != nil {
					return err
				}
				if lo > hi {
					return c.fail(r.Left, "empty range %d..%d: the lower bound comes first", lo, hi)
				}
				return nil
			}
		case *ast.ArrayNode:
			if len(r.Nodes) == 0 {
				return c.fail(r, "empty list")
			}
			for _, e := range r.Nodes {
				if _, err := c.integer(name, e); err != nil {
					return err
				}
			}
			return nil
		}
	}
	_, err := c.integer(name, b.Right)
	return err
}

// integer checks a value mid, sid, packets or bytes is compared with.
func (c *checker) integer(name string, n ast.Node) (int, error) {
	switch v := n.(type) {
	case *ast.IntegerNode:
		if limit, ok := limits[name]; ok && uint64(v.Value) > limit {
			return 0, c.fail(n, "%s is out of range: %s is at most %#x (%d)", c.text(n), name, limit, limit)
		}
		return v.Value, nil
	case *ast.FloatNode:
		return 0, c.fail(n, "%s is compared with a whole number, not %s", name, c.text(n))
	case *ast.UnaryNode:
		if v.Operator == "-" {
			return 0, c.fail(n, "%s is never negative", name)
		}
	case *ast.BinaryNode:
		if v.Operator == ".." {
			return 0, c.fail(n, "a range goes after in, as in %s in 1..5", name)
		}
	case *ast.IdentifierNode:
		if other, ok := nameOf(v); ok {
			return 0, c.fail(n, "compare %s with a value, not with %s", name, other)
		}
		if _, kind := kindByName(v.Value); !kind {
			return 0, c.fail(n, "unknown name %q: %s is compared with a number", v.Value, name)
		}
	}
	return 0, c.fail(n, "%s is compared with a number, not %s", name, describe(n))
}

// prefixesOf reads what router is compared with: an address, a prefix or a
// list of them. The rewrite quoted the bare ones.
func prefixesOf(n ast.Node) (prefixSet, error) {
	switch v := n.(type) {
	case *ast.StringNode:
		p, err := parseAddrOrPrefix(v.Value)
		if err != nil {
			return nil, &nodeError{n, err.Error()}
		}
		return prefixSet{p}, nil
	case *ast.ArrayNode:
		if len(v.Nodes) == 0 {
			return nil, &nodeError{n, "empty list"}
		}
		var out prefixSet
		for _, e := range v.Nodes {
			if _, nested := e.(*ast.ArrayNode); nested {
				return nil, &nodeError{e, "a list in a list"}
			}
			p, err := prefixesOf(e)
			if err != nil {
				return nil, err
			}
			out = append(out, p...)
		}
		return out, nil
	case *ast.IdentifierNode:
		if other, ok := nameOf(v); ok {
			return nil, &nodeError{n, "compare router with a value, not with " + other}
		}
		if _, kind := kindByName(v.Value); !kind {
			return nil, &nodeError{n, fmt.Sprintf("unknown name %q: router is compared with an address or prefix", v.Value)}
		}
	}
	return nil, &nodeError{n, "router is compared with an address or prefix such as 192.0.2.1 or 10.0.0.0/8, not " + describe(n)}
}

func kindByName(s string) (vocab.Inner, bool) {
	for k := range vocab.NumInner {
		if vocab.Inner(k).String() == s {
			return vocab.Inner(k), true
		}
	}
	return 0, false
}

// kindsOf reads what inner is compared with: a kind or a list of kinds.
func kindsOf(n ast.Node) (kindSet, error) {
	switch v := n.(type) {
	case *ast.IdentifierNode:
		k, ok := kindByName(v.Value)
		if other, isName := nameOf(v); isName {
			return 0, &nodeError{n, "compare inner with a value, not with " + other}
		}
		if !ok {
			return 0, &nodeError{n, fmt.Sprintf("unknown inner kind %q (known: %s)", v.Value, strings.Join(KindNames(), ", "))}
		}
		return 1 << k, nil
	case *ast.ArrayNode:
		if len(v.Nodes) == 0 {
			return 0, &nodeError{n, "empty list"}
		}
		var out kindSet
		for _, e := range v.Nodes {
			if _, nested := e.(*ast.ArrayNode); nested {
				return 0, &nodeError{e, "a list in a list"}
			}
			k, err := kindsOf(e)
			if err != nil {
				return 0, err
			}
			out |= k
		}
		return out, nil
	}
	return 0, &nodeError{n, fmt.Sprintf("inner is compared with a kind (%s), not %s", strings.Join(KindNames(), ", "), describe(n))}
}

// unsupported reports expr constructs outside the filter language.
func unsupported(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.CallNode, *ast.BuiltinNode, *ast.MemberNode, *ast.SliceNode, *ast.ChainNode,
		*ast.ConditionalNode, *ast.MapNode, *ast.PairNode, *ast.PointerNode, *ast.PredicateNode,
		*ast.VariableDeclaratorNode, *ast.SequenceNode, *ast.NilNode, *ast.BytesNode:
		return true
	case *ast.UnaryNode:
		_, not := isNot(n)
		return !not
	case *ast.BinaryNode:
		switch n.Operator {
		case "and", "or", "&&", "||", "..":
			return false
		}
		return !comparison(n.Operator)
	}
	return false
}

// describe names a node for a message.
func describe(n ast.Node) string {
	switch v := n.(type) {
	case *ast.IntegerNode:
		return fmt.Sprintf("the number %d", v.Value)
	case *ast.FloatNode:
		return fmt.Sprintf("the number %v", v.Value)
	case *ast.StringNode:
		if p, err := parseAddrOrPrefix(v.Value); err == nil {
			if strings.Contains(v.Value, "/") {
				return "the prefix " + p.String()
			}
			return "the address " + p.Addr().String()
		}
		return fmt.Sprintf("the string %q", v.Value)
	case *ast.BoolNode:
		return fmt.Sprint(v.Value)
	case *ast.IdentifierNode:
		if _, ok := kindByName(v.Value); ok {
			return "the inner kind " + v.Value
		}
		return v.Value
	case *ast.ArrayNode:
		return "a list"
	case *ast.UnaryNode:
		if _, ok := isNot(v); ok {
			return "a condition"
		}
		return "operator " + v.Operator
	case *ast.BinaryNode:
		switch {
		case v.Operator == "..":
			return "a range"
		case comparison(v.Operator), v.Operator == "and", v.Operator == "or", v.Operator == "&&", v.Operator == "||":
			return "a condition"
		}
		return "operator " + v.Operator
	case *ast.CallNode, *ast.BuiltinNode:
		return "a function call"
	case *ast.MemberNode, *ast.ChainNode:
		return "a member access (.)"
	case *ast.SliceNode:
		return "a slice"
	case *ast.ConditionalNode:
		return "a conditional (?: or if)"
	case *ast.MapNode, *ast.PairNode:
		return "a map"
	case *ast.PointerNode, *ast.PredicateNode:
		return "a predicate (#)"
	case *ast.VariableDeclaratorNode:
		return "let"
	case *ast.SequenceNode:
		return "a sequence (;)"
	case *ast.NilNode:
		return "nil"
	case *ast.BytesNode:
		return "a bytes literal"
	}
	return "this"
}
