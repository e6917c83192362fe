package configedit

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jmxdp/jmxdp/userspace/vocab"
	"go.yaml.in/yaml/v3"
)

// errLayout: the text edit does not handle this layout; the tree edit may.
var errLayout = errors.New("unusual layout")

// newItem is an item to append, in each form an edit may need.
type newItem struct {
	flow  string     // {mid: 60, sid: 1, action: count}, 192.0.2.0/24, "2001:db8::/32"
	block []string   // the lines of a block mapping (rules only)
	node  *yaml.Node // for the tree edit
}

func scalar(tag, v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v} }

func ruleItem(r vocab.PolicyRule) newItem {
	mid := strconv.FormatUint(uint64(r.MID), 10)
	sid, sidTag := "any", "!!str"
	if !r.AnySID {
		sid, sidTag = strconv.FormatUint(uint64(r.SID), 10), "!!int"
	}
	act := r.Action.String()
	it := newItem{
		flow:  fmt.Sprintf("{mid: %s, sid: %s, action: %s}", mid, sid, act),
		block: []string{"mid: " + mid, "sid: " + sid, "action: " + act},
		node: &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle, Content: []*yaml.Node{
			scalar("!!str", "mid"), scalar("!!int", mid),
			scalar("!!str", "sid"), scalar(sidTag, sid),
			scalar("!!str", "action"), scalar("!!str", act),
		}},
	}
	if r.Action == vocab.ActionForward {
		// Quoted: an IPv6 target's colons and brackets read badly bare.
		to := strconv.Quote(vocab.FormatTarget(r.Target))
		it.flow = fmt.Sprintf("{mid: %s, sid: %s, action: %s, to: %s}", mid, sid, act, to)
		it.block = append(it.block, "to: "+to)
		tn := scalar("!!str", vocab.FormatTarget(r.Target))
		tn.Style = yaml.DoubleQuotedStyle
		it.node.Content = append(it.node.Content, scalar("!!str", "to"), tn)
	}
	return it
}

// prefixItem quotes IPv6 prefixes: their colons read badly in flow lists.
func prefixItem(p netip.Prefix) newItem {
	s := p.String()
	n := scalar("!!str", s)
	if p.Addr().Is6() {
		n.Style = yaml.DoubleQuotedStyle
		s = `"` + s + `"`
	}
	return newItem{flow: s, node: n}
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func ruleMatcher(r vocab.PolicyRule) func(*yaml.Node) bool {
	return func(n *yaml.Node) bool {
		if n.Kind != yaml.MappingNode {
			return false
		}
		got := vocab.PolicyRule{AnySID: true}
		hasMID := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			v := deref(n.Content[i+1])
			switch n.Content[i].Value {
			case "mid":
				id, err := ParseID(v.Value)
				if err != nil || id > vocab.MaxMID {
					return false
				}
				got.MID, hasMID = uint32(id), true
			case "sid":
				if strings.EqualFold(v.Value, "any") && v.ShortTag() == "!!str" {
					continue
				}
				id, err := ParseID(v.Value)
				if err != nil || id > 1<<32-1 {
					return false
				}
				got.SID, got.AnySID = uint32(id), false
			}
		}
		return hasMID && sameRule(got, r)
	}
}

func prefixMatcher(p netip.Prefix) func(*yaml.Node) bool {
	return func(n *yaml.Node) bool {
		if n.Kind != yaml.ScalarNode {
			return false
		}
		got, err := ParsePrefix(n.Value)
		return err == nil && got == p
	}
}

// noAliases refuses a list with anchors or aliases anywhere in it.
func noAliases(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return ErrAlias
	}
	for _, c := range n.Content {
		if err := noAliases(c); err != nil {
			return err
		}
	}
	return nil
}

// parsed is a file's tree: the top-level mapping (nil for an empty
// document) and, under it, key and its value (nil when absent) and the
// key after it (nil when last).
type parsed struct {
	doc        yaml.Node
	root       *yaml.Node
	key, value *yaml.Node
	keyIndex   int
	next       *yaml.Node
}

func parse(data []byte, key string) (*parsed, error) {
	p := &parsed{keyIndex: -1}
	if err := yaml.Unmarshal(data, &p.doc); err != nil {
		return nil, err
	}
	if p.doc.Kind == yaml.DocumentNode && len(p.doc.Content) > 0 {
		p.root = p.doc.Content[0]
	}
	if p.root == nil || p.root.Kind != yaml.MappingNode {
		return p, nil
	}
	for i := 0; i+1 < len(p.root.Content); i += 2 {
		if p.root.Content[i].Value == key {
			p.key, p.value, p.keyIndex = p.root.Content[i], p.root.Content[i+1], i
			if i+2 < len(p.root.Content) {
				p.next = p.root.Content[i+2]
			}
		}
	}
	if p.value != nil {
		if err := noAliases(p.value); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// find returns the index of the item match accepts.
func find(seq *yaml.Node, match func(*yaml.Node) bool) (int, error) {
	for i, it := range seq.Content {
		if match(it) {
			return i, nil
		}
	}
	return -1, ErrNotFound
}

// actionValue is the action node of a rule.
func actionValue(rule *yaml.Node) (*yaml.Node, error) {
	for i := 0; i+1 < len(rule.Content); i += 2 {
		if rule.Content[i].Value == "action" {
			return rule.Content[i+1], nil
		}
	}
	return nil, errLayout
}

// text is a file's bytes indexed by line.
type text struct {
	data  []byte
	start []int // start[l]: offset of line l (1-based); start[n+1] = len(data)
	nl    string
}

func newText(data []byte) *text {
	t := &text{data: data, start: []int{0, 0}, nl: "\n"}
	for i, b := range data {
		if b == '\n' && i+1 < len(data) {
			t.start = append(t.start, i+1)
		}
	}
	if len(data) == 0 {
		t.start = t.start[:1]
	}
	t.start = append(t.start, len(data))
	if bytes.Contains(data, []byte("\r\n")) {
		t.nl = "\r\n"
	}
	return t
}

func (t *text) lines() int { return len(t.start) - 2 }

func (t *text) line(l int) string {
	return strings.TrimRight(string(t.data[t.start[l]:t.start[l+1]]), "\r\n")
}

// off converts a yaml.v3 position (1-based line and column, the column
// counted in characters) to a byte offset.
func (t *text) off(line, col int) (int, error) {
	if line < 1 || line > t.lines() || col < 1 {
		return 0, errLayout
	}
	o := t.start[line]
	for range col - 1 {
		if o >= t.start[line+1] {
			return 0, errLayout
		}
		_, n := utf8.DecodeRune(t.data[o:])
		o += n
	}
	return o, nil
}

func (t *text) isComment(l int) bool { return strings.HasPrefix(strings.TrimSpace(t.line(l)), "#") }

// isContent: neither blank, nor a comment, nor a document marker.
func (t *text) isContent(l int) bool {
	s := t.line(l)
	trim := strings.TrimSpace(s)
	if trim == "" || strings.HasPrefix(trim, "#") {
		return false
	}
	for _, m := range []string{"---", "..."} {
		if s == m || strings.HasPrefix(s, m+" ") || strings.HasPrefix(s, m+"\t") {
			return false
		}
	}
	return true
}

// lastContent is the last content line in [from, bound): where an entry
// that starts at from ends, when bound is where the next one starts.
func (t *text) lastContent(from, bound int) int {
	for l := bound - 1; l > from; l-- {
		if t.isContent(l) {
			return l
		}
	}
	return from
}

// separator goes before a key appended at the end: a newline if the
// text does not end with one, then a blank line unless the text is empty
// or already ends with one.
func (t *text) separator() string {
	if len(t.data) == 0 {
		return ""
	}
	sep := t.endsInNewline()
	if n := t.lines(); n > 0 && strings.TrimSpace(t.line(n)) != "" {
		sep += t.nl
	}
	return sep
}

// blockItems writes items as block sequence lines at indent.
func blockItems(items []newItem, indent, nl string) string {
	var b strings.Builder
	for _, it := range items {
		b.WriteString(indent + "- " + it.flow + nl)
	}
	return b.String()
}

func flowItems(items []newItem) string {
	s := make([]string, len(items))
	for i, it := range items {
		s[i] = it.flow
	}
	return strings.Join(s, ", ")
}

// endsInNewline is "" when the text ends with a newline (or is empty),
// else the newline to add before appending a line.
func (t *text) endsInNewline() string {
	if len(t.data) == 0 || t.data[len(t.data)-1] == '\n' {
		return ""
	}
	return t.nl
}

type splice struct {
	start, end int
	repl       string
}

func applySplices(data []byte, sp []splice) []byte {
	slices.SortFunc(sp, func(a, b splice) int { return b.start - a.start })
	out := slices.Clone(data)
	for _, s := range sp {
		out = slices.Concat(out[:s.start], []byte(s.repl), out[s.end:])
	}
	return out
}

func spaces(n int) string { return strings.Repeat(" ", max(n, 0)) }

// editText makes c in the text, guided by the tree's positions.
func editText(data []byte, c change) ([]byte, error) {
	p, err := parse(data, c.key)
	if err != nil {
		return nil, err
	}
	t := newText(data)
	var sp []splice
	switch {
	case p.root == nil || (isNull(p.root) && p.root.Value == ""):
		// Empty, comments only, or "---" alone: add the key at the end.
		if c.match != nil {
			return nil, ErrNotFound
		}
		sp = append(sp, splice{len(data), len(data), t.separator() + c.key + ":" + t.nl + blockItems(c.items, "  ", t.nl)})
	case p.root.Kind != yaml.MappingNode || p.root.Style&yaml.FlowStyle != 0:
		return nil, errLayout
	case p.key == nil:
		if c.match != nil {
			return nil, ErrNotFound
		}
		ind := spaces(p.root.Column - 1)
		sp = append(sp, splice{len(data), len(data), t.separator() + ind + c.key + ":" + t.nl + blockItems(c.items, ind+"  ", t.nl)})
	case isNull(p.value):
		if c.match != nil {
			return nil, ErrNotFound
		}
		if p.value.Value != "" { // ~ or null
			o, err := t.off(p.value.Line, p.value.Column)
			if err != nil || !bytes.HasPrefix(data[o:], []byte(p.value.Value)) {
				return nil, errLayout
			}
			s, e := o, o+len(p.value.Value)
			if rest := strings.TrimSpace(t.line(p.value.Line)[e-t.start[p.value.Line]:]); rest == "" {
				for s > t.start[p.value.Line] && (data[s-1] == ' ' || data[s-1] == '\t') {
					s--
				}
			}
			sp = append(sp, splice{s, e, ""})
		}
		pre := ""
		if p.key.Line >= t.lines() {
			pre = t.endsInNewline()
		}
		at := t.start[p.key.Line+1]
		sp = append(sp, splice{at, at, pre + blockItems(c.items, spaces(p.key.Column+1), t.nl)})
	case p.value.Kind != yaml.SequenceNode:
		return nil, errLayout
	case p.value.Style&yaml.FlowStyle != 0:
		sp, err = t.flowEdit(p, c)
	default:
		sp, err = t.blockEdit(p, c)
	}
	if err != nil {
		return nil, err
	}
	return applySplices(data, sp), nil
}

// blockEdit edits a block sequence ("- item" lines).
func (t *text) blockEdit(p *parsed, c change) ([]splice, error) {
	seq, items := p.value, p.value.Content
	dash := seq.Column
	for _, it := range items {
		if rs := []rune(t.line(it.Line)); len(rs) < dash || rs[dash-1] != '-' {
			return nil, errLayout // "-" alone on its line, say
		}
	}
	end := t.lines() + 1 // where the list ends: the next key, or the end
	if p.next != nil {
		end = p.next.Line
	}
	bound := func(k int) int {
		if k+1 < len(items) {
			return items[k+1].Line
		}
		return end
	}
	if c.match == nil {
		last := items[len(items)-1]
		e := t.lastContent(last.Line, bound(len(items)-1))
		pre := ""
		if e == t.lines() {
			pre = t.endsInNewline()
		}
		gap := max(last.Column-dash-1, 1)
		var b strings.Builder
		for _, it := range c.items {
			if last.Kind == yaml.MappingNode && last.Style&yaml.FlowStyle == 0 && it.block != nil {
				for i, l := range it.block {
					if i == 0 {
						b.WriteString(spaces(dash-1) + "-" + spaces(gap) + l + t.nl)
					} else {
						b.WriteString(spaces(dash+gap) + l + t.nl)
					}
				}
			} else {
				b.WriteString(spaces(dash-1) + "-" + spaces(gap) + it.flow + t.nl)
			}
		}
		at := t.start[e+1]
		return []splice{{at, at, pre + b.String()}}, nil
	}
	k, err := find(seq, c.match)
	if err != nil {
		return nil, err
	}
	if !c.del {
		return t.setAction(items[k], c.action)
	}
	s := items[k].Line
	for s-1 > p.key.Line && t.isComment(s-1) {
		s--
	}
	e := t.lastContent(items[k].Line, bound(k))
	return []splice{{t.start[s], t.start[e+1], ""}}, nil
}

// flowEdit edits a flow sequence ([a, b]).
func (t *text) flowEdit(p *parsed, c change) ([]splice, error) {
	seq, items := p.value, p.value.Content
	open, err := t.off(seq.Line, seq.Column)
	if err != nil || t.data[open] != '[' {
		return nil, errLayout
	}
	closeEnd, err := t.nodeEnd(open)
	if err != nil {
		return nil, err
	}
	starts, ends := make([]int, len(items)), make([]int, len(items))
	for i, it := range items {
		if starts[i], err = t.off(it.Line, it.Column); err != nil {
			return nil, err
		}
		if ends[i], err = t.nodeEnd(starts[i]); err != nil {
			return nil, err
		}
	}
	n := len(items)
	if c.match == nil {
		if n == 0 {
			return []splice{{closeEnd - 1, closeEnd - 1, flowItems(c.items)}}, nil
		}
		return []splice{{ends[n-1], ends[n-1], ", " + flowItems(c.items)}}, nil
	}
	k, err := find(seq, c.match)
	if err != nil {
		return nil, err
	}
	if !c.del {
		return t.setAction(items[k], c.action)
	}
	switch {
	case n == 1:
		return []splice{{starts[0], ends[0], ""}}, nil
	case k < n-1:
		return []splice{{starts[k], starts[k+1], ""}}, nil
	default:
		return []splice{{ends[k-1], ends[k], ""}}, nil
	}
}

// setAction replaces the action value of a rule.
func (t *text) setAction(rule *yaml.Node, action string) ([]splice, error) {
	v, err := actionValue(rule)
	if err != nil {
		return nil, err
	}
	s, err := t.off(v.Line, v.Column)
	if err != nil {
		return nil, err
	}
	e, err := t.nodeEnd(s)
	if err != nil {
		return nil, err
	}
	return []splice{{s, e, action}}, nil
}

// nodeEnd is the offset just past the flow node or scalar starting at i.
func (t *text) nodeEnd(i int) (int, error) {
	d := t.data
	if i >= len(d) {
		return 0, errLayout
	}
	switch d[i] {
	case '[', '{':
		depth := 0
		for j := i; j < len(d); j++ {
			switch d[j] {
			case '[', '{':
				depth++
			case ']', '}':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			case '"', '\'':
				if !quoteStarts(d, j) {
					continue
				}
				e, err := quotedEnd(d, j)
				if err != nil {
					return 0, err
				}
				j = e - 1
			case '#':
				if j > 0 && (d[j-1] == ' ' || d[j-1] == '\t') {
					for j < len(d) && d[j] != '\n' {
						j++
					}
				}
			}
		}
		return 0, errLayout
	case '"', '\'':
		return quotedEnd(d, i)
	}
	j := i
	for j < len(d) && !strings.ContainsRune(",]}\r\n", rune(d[j])) && !(j > i && d[j] == '#' && (d[j-1] == ' ' || d[j-1] == '\t')) {
		j++
	}
	for j > i && (d[j-1] == ' ' || d[j-1] == '\t') {
		j--
	}
	return j, nil
}

// quoteStarts: a quote at j opens a quoted scalar when only spaces lie
// between it and the indicator before it.
func quoteStarts(d []byte, j int) bool {
	for k := j - 1; k >= 0; k-- {
		switch d[k] {
		case ' ', '\t', '\r', '\n':
			continue
		case '[', '{', ',', ':':
			return true
		}
		return false
	}
	return true
}

func quotedEnd(d []byte, i int) (int, error) {
	q := d[i]
	for j := i + 1; j < len(d); j++ {
		switch {
		case q == '"' && d[j] == '\\':
			j++
		case d[j] == q && q == '\'' && j+1 < len(d) && d[j+1] == '\'':
			j++
		case d[j] == q:
			return j + 1, nil
		}
	}
	return 0, errLayout
}

// editTree makes c in the yaml.Node tree and encodes it: the fallback for
// layouts the text edit does not handle. Comments are kept where yaml.v3
// keeps them; blank lines and alignment are not.
func editTree(data []byte, c change) ([]byte, error) {
	p, err := parse(data, c.key)
	if err != nil {
		return nil, err
	}
	doc := &p.doc
	if doc.Kind != yaml.DocumentNode {
		*doc = yaml.Node{Kind: yaml.DocumentNode}
	}
	if p.root == nil || (isNull(p.root) && c.match == nil) {
		p.root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		doc.Content = []*yaml.Node{p.root}
	}
	if p.root.Kind != yaml.MappingNode {
		return nil, errLayout
	}
	seq := p.value
	switch {
	case seq == nil:
		if c.match != nil {
			return nil, ErrNotFound
		}
		seq = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		p.root.Content = append(p.root.Content, scalar("!!str", c.key), seq)
	case isNull(seq):
		if c.match != nil {
			return nil, ErrNotFound
		}
		seq = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", LineComment: seq.LineComment}
		p.root.Content[p.keyIndex+1] = seq
	case seq.Kind != yaml.SequenceNode:
		return nil, errLayout
	}
	if c.match == nil {
		for _, it := range c.items {
			seq.Content = append(seq.Content, it.node)
		}
	} else {
		k, err := find(seq, c.match)
		if err != nil {
			return nil, err
		}
		if c.del {
			seq.Content = slices.Delete(seq.Content, k, k+1)
		} else {
			v, err := actionValue(seq.Content[k])
			if err != nil {
				return nil, err
			}
			v.Value, v.Tag, v.Style = c.action, "!!str", 0
		}
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
