package filter

import (
	"github.com/expr-lang/expr/ast"
)

// The tree transformations, as expr visitors: normalize runs on the tree
// check reads and, in expr.Compile, before lower. Both only rewrite nodes
// check accepts; lower assumes check has passed.

// normalize makes `not` apply to the comparison after it and puts the
// name on the left of a comparison:
//
//	not mid == 1   ->  not (mid == 1)      expr reads (not mid) == 1
//	100 <= sid     ->  sid >= 100
//
// (not x) == y and not (x == y) only differ when x is not a condition, and
// then the first one is a type error.
type normalize struct{}

var flipped = map[string]string{"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

func isNot(n ast.Node) (*ast.UnaryNode, bool) {
	u, ok := n.(*ast.UnaryNode)
	return u, ok && (u.Operator == "not" || u.Operator == "!")
}

func comparison(op string) bool {
	_, ok := flipped[op]
	return ok || op == "in"
}

// nameOf is the filter name n refers to, if it is one.
func nameOf(n ast.Node) (string, bool) {
	id, ok := n.(*ast.IdentifierNode)
	if !ok {
		return "", false
	}
	for _, name := range names {
		if id.Value == name {
			return name, true
		}
	}
	return "", false
}

func (normalize) Visit(node *ast.Node) {
	b, ok := (*node).(*ast.BinaryNode)
	if !ok || !comparison(b.Operator) {
		return
	}
	var nots []*ast.UnaryNode
	for {
		u, ok := isNot(b.Left)
		if !ok {
			break
		}
		nots = append(nots, u)
		b.Left = u.Node
	}
	_, nameLeft := nameOf(b.Left)
	_, nameRight := nameOf(b.Right)
	if !nameLeft && nameRight && b.Operator != "in" {
		b.Left, b.Right, b.Operator = b.Right, b.Left, flipped[b.Operator]
	}
	var n ast.Node = b
	for i := len(nots) - 1; i >= 0; i-- {
		nots[i].Node = n
		n = nots[i]
	}
	*node = n
}

func walkNormalize(n *ast.Node) { ast.Walk(n, normalize{}) }

// lower turns what expr has no operators for into what it has:
//
//	router in P, router == P   ->  routerIn(router, prefixSet)
//	router != P                ->  not routerIn(router, prefixSet)
//	inner == ppp, inner in [...] ->  innerHas(inner, kindSet)
//	mid in 1..5                ->  mid >= 1 and mid <= 5  (no array built)
//	mid in 5                   ->  mid == 5
type lower struct{}

func (lower) Visit(node *ast.Node) {
	b, ok := (*node).(*ast.BinaryNode)
	if !ok || !comparison(b.Operator) {
		return
	}
	name, ok := nameOf(b.Left)
	if !ok {
		return
	}
	loc := b.Location()
	var fn string
	var arg any
	switch name {
	case nameRouter:
		set, err := prefixesOf(b.Right)
		if err != nil {
			return // check refused it; expr will too
		}
		fn, arg = fnRouterIn, set
	case nameInner:
		k, err := kindsOf(b.Right)
		if err != nil {
			return
		}
		fn, arg = fnInnerHas, k
	default:
		if b.Operator != "in" {
			return
		}
		switch r := b.Right.(type) {
		case *ast.IntegerNode:
			b.Operator = "=="
		case *ast.BinaryNode:
			if r.Operator != ".." {
				return
			}
			ge := &ast.BinaryNode{Operator: ">=", Left: b.Left, Right: r.Left}
			le := &ast.BinaryNode{Operator: "<=", Left: b.Left, Right: r.Right}
			and := &ast.BinaryNode{Operator: "and", Left: ge, Right: le}
			for _, n := range []ast.Node{ge, le, and} {
				n.SetLocation(loc)
			}
			*node = and
		}
		return
	}
	callee := &ast.IdentifierNode{Value: fn}
	c := &ast.ConstantNode{Value: arg}
	var n ast.Node = &ast.CallNode{Callee: callee, Arguments: []ast.Node{b.Left, c}}
	callee.SetLocation(loc)
	c.SetLocation(b.Right.Location())
	n.SetLocation(loc)
	if b.Operator == "!=" {
		n = &ast.UnaryNode{Operator: "not", Node: n}
		n.SetLocation(loc)
	}
	*node = n
}
