package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jmxdp/jmxdp/userspace/handoff"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The keys of each mapping, in the order of docs/config.md. Messages about
// unknown keys list them.
var (
	topKeys        = []string{"interface", "ports", "default_action", "policy", "allowlist", "forward_lookup_interface", "output", "capture", "reassembly", "metrics", "sink"}
	ruleKeys       = []string{"mid", "sid", "action", "to"}
	outputKeys     = []string{"dir", "rotate_size", "rotate_age", "max_open_files", "flush_interval", "buffer_size", "buffer_memory", "packet_comments", "max_bytes", "max_age", "retention", "on_complete", "on_complete_workers", "on_complete_timeout", "group", "allow_untrusted_dir"}
	captureKeys    = []string{"queues", "xdp_mode", "zero_copy", "frames_per_queue", "queue_memory", "max_stream_memory", "max_streams", "writers", "pin_dir", "keep_attached", "frame_size"}
	reassemblyKeys = []string{"max_datagrams", "max_memory", "timeout"}
	metricsKeys    = []string{"addr", "top_streams", "hide_ids", "web_config"}
)

// decoder walks the yaml.Node tree of a file rather than letting yaml.v3
// fill a struct: that way every message has a line, unknown keys at any
// depth are refused, ids keep their spelling (yaml.v3 would read 012 as
// octal) and a key's presence is known (the *Set fields).
type decoder struct {
	file string
	errs []error
}

func (d *decoder) fail(n *yaml.Node, key string, err error) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Key: key, Msg: err.Error()})
}

func (d *decoder) failf(n *yaml.Node, key, format string, args ...any) {
	d.fail(n, key, fmt.Errorf(format, args...))
}

// set returns a function that stores v in dst when ok, so that a reader's
// two results can be passed straight on: set(&c.X)(d.str(...)).
func set[T any](dst *T) func(v T, ok bool) {
	return func(v T, ok bool) {
		if ok {
			*dst = v
		}
	}
}

// setInt is set for integer fields of other types; the reader's check has
// bounded v to the field's range.
func setInt[T ~int | ~uint32](dst *T) func(v int64, ok bool) {
	return func(v int64, ok bool) {
		if ok {
			*dst = T(v)
		}
	}
}

// deref follows an alias (*name) to its anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func isScalar(n *yaml.Node, tags ...string) bool {
	return n.Kind == yaml.ScalarNode && slices.Contains(tags, n.ShortTag())
}

// describe names what was found where something else was wanted.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "no value"
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!bool":
			return "the boolean " + n.Value
		case "!!int", "!!float":
			return "the number " + n.Value
		}
		return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
	}
	return "an unexpected YAML node"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// fields walks mapping n, calling each for every key, which must be in
// known and appear once. No value (key:) is an empty mapping. It returns
// the keys present, or nil when n is not a mapping.
func (d *decoder) fields(n *yaml.Node, path string, known []string, each func(key, path string, v *yaml.Node)) map[string]bool {
	m := deref(n)
	if isNull(m) {
		return map[string]bool{}
	}
	if m.Kind != yaml.MappingNode {
		d.failf(n, path, "want a mapping of %s, got %s", strings.Join(known, ", "), describe(m))
		return nil
	}
	seen := map[string]int{}
	present := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.failf(k, path, "a key must be a name, not %s", describe(k))
			continue
		}
		p := join(path, k.Value)
		if !slices.Contains(known, k.Value) {
			d.failf(k, p, "unknown key (known: %s)", strings.Join(known, ", "))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.failf(k, p, "repeated key (first at line %d)", line)
			continue
		}
		seen[k.Value], present[k.Value] = k.Line, true
		each(k.Value, p, v)
	}
	return present
}

// list returns the items of a sequence; no value is an empty list.
func (d *decoder) list(n *yaml.Node, key, want string) ([]*yaml.Node, bool) {
	v := deref(n)
	if isNull(v) {
		return nil, true
	}
	if v.Kind != yaml.SequenceNode {
		d.failf(n, key, "want %s, got %s", want, describe(v))
		return nil, false
	}
	return v.Content, true
}

// str reads a string and applies check (when not nil).
func (d *decoder) str(n *yaml.Node, key string, check func(string) error) (string, bool) {
	v := deref(n)
	if !isScalar(v, "!!str") {
		d.failf(n, key, "want a string, got %s", describe(v))
		return "", false
	}
	if check != nil {
		if err := check(v.Value); err != nil {
			d.fail(n, key, err)
			return "", false
		}
	}
	return v.Value, true
}

func (d *decoder) boolean(n *yaml.Node, key string) (bool, bool) {
	v := deref(n)
	b, err := strconv.ParseBool(v.Value)
	if !isScalar(v, "!!bool") || err != nil {
		d.failf(n, key, "want true or false, got %s", describe(v))
		return false, false
	}
	return b, true
}

// integer reads an integer and applies check. quoted also accepts a quoted
// string ("0x3039"), which is how hex ids are often written.
func (d *decoder) integer(n *yaml.Node, key string, quoted bool, check func(int64) error) (int64, bool) {
	v := deref(n)
	// yaml.v3 tags integers beyond 64 bits !!float; they are out of range.
	huge := isScalar(v, "!!float") && strings.Trim(v.Value, "+-0123456789") == ""
	if !isScalar(v, "!!int") && !(quoted && isScalar(v, "!!str")) && !huge {
		d.failf(n, key, "want an integer, got %s", describe(v))
		return 0, false
	}
	i, err := parseInt(v.Value)
	if err == nil {
		err = check(i)
	}
	if err != nil {
		d.fail(n, key, err)
		return 0, false
	}
	return i, true
}

// id reads a mid or sid in decimal or hex, quoted or not; check gets the
// spelling so that messages echo it.
func (d *decoder) id(n *yaml.Node, key string, check func(v uint64, lit string) error) (uint32, bool) {
	lit := deref(n).Value
	v, ok := d.integer(n, key, true, func(i int64) error {
		if i < 0 {
			return fmt.Errorf("%s is negative", lit)
		}
		return check(uint64(i), lit)
	})
	return uint32(v), ok
}

// size reads a byte count, a number or a string with a unit (ParseSize).
func (d *decoder) size(n *yaml.Node, key string, min int64) (int64, bool) {
	v := deref(n)
	if !isScalar(v, "!!int", "!!str") {
		d.failf(n, key, "want a size (e.g. 256MiB), got %s", describe(v))
		return 0, false
	}
	s, err := ParseSize(v.Value)
	if err == nil {
		err = checkRange(s, min, maxInt64)
	}
	if err != nil {
		d.fail(n, key, err)
		return 0, false
	}
	return s, true
}

// duration reads a Go duration ("15m", "1h30m"); a bare 0 is allowed.
func (d *decoder) duration(n *yaml.Node, key string, min time.Duration) (time.Duration, bool) {
	v := deref(n)
	if !isScalar(v, "!!int", "!!str") {
		d.failf(n, key, "want a duration (e.g. 30s, 15m, 1h), got %s", describe(v))
		return 0, false
	}
	t, err := time.ParseDuration(v.Value)
	switch {
	case err != nil && isScalar(v, "!!int"):
		err = fmt.Errorf("%s has no unit (e.g. 30s, 15m, 1h)", v.Value)
	case err != nil:
		err = fmt.Errorf("%q is not a duration (e.g. 30s, 15m, 1h)", v.Value)
	default:
		err = checkDuration(t, min)
	}
	if err != nil {
		d.fail(n, key, err)
		return 0, false
	}
	return t, true
}

func (d *decoder) action(n *yaml.Node, key string) (vocab.Action, bool) {
	s, ok := d.str(n, key, nil)
	if !ok {
		return 0, false
	}
	a, err := vocab.ParseAction(s)
	if err != nil {
		d.fail(n, key, err)
		return 0, false
	}
	return a, true
}

func (d *decoder) document(doc *yaml.Node, c *Config) {
	root := doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return
		}
		root = root.Content[0]
	}
	root = deref(root)
	if isNull(root) {
		return // "---" or "~" alone: all defaults, like an empty file
	}
	if root.Kind != yaml.MappingNode {
		d.failf(root, "", "the configuration must be a mapping of keys (%s), not %s", strings.Join(topKeys, ", "), describe(root))
		return
	}
	d.fields(root, "", topKeys, func(key, path string, v *yaml.Node) {
		switch key {
		case "interface":
			set(&c.Interface)(d.str(v, path, checkIfName))
		case "forward_lookup_interface":
			set(&c.ForwardLookupInterface)(d.str(v, path, func(s string) error {
				if s == "" {
					return nil
				}
				return checkIfName(s)
			}))
		case "ports":
			c.PortsSet = true
			set(&c.Ports)(d.ports(v, path))
		case "default_action":
			c.DefaultActionSet = true
			set(&c.DefaultAction)(d.action(v, path))
		case "policy":
			c.PolicySet = true
			set(&c.Policy)(d.policy(v, path))
		case "allowlist":
			c.AllowlistSet = true
			set(&c.Allowlist)(d.allowlist(v, path))
		case "output":
			d.output(v, path, &c.Output)
		case "capture":
			d.capture(v, path, &c.Capture)
		case "reassembly":
			d.reassembly(v, path, &c.Reassembly)
		case "metrics":
			d.metrics(v, path, &c.Metrics)
		case "sink":
			d.sink(v, path, &c.Sink)
		}
	})
}

func (d *decoder) ports(n *yaml.Node, key string) ([]uint16, bool) {
	items, ok := d.list(n, key, "a list of UDP ports (e.g. [30030])")
	if !ok {
		return nil, false
	}
	if len(items) == 0 {
		d.fail(n, key, errEmptyPorts)
		return nil, false
	}
	ports, good := uniqueItems(d, items, key, "port", func(it *yaml.Node, k string) (uint16, bool) {
		p, good := d.integer(it, k, false, checkPort)
		return uint16(p), good
	})
	return ports, ok && good
}

// uniqueItems reads a list's items with parse and refuses a value given
// twice, naming the item it repeats.
func uniqueItems[T comparable](d *decoder, items []*yaml.Node, key, what string, parse func(it *yaml.Node, k string) (T, bool)) ([]T, bool) {
	ok := true
	var out []T
	seen := map[T]int{}
	for i, it := range items {
		k := index(key, i)
		v, good := parse(it, k)
		if !good {
			ok = false
			continue
		}
		if j, dup := seen[v]; dup {
			d.failf(it, k, "duplicate %s %v (same as %s at line %d)", what, v, index(key, j), items[j].Line)
			ok = false
			continue
		}
		seen[v] = i
		out = append(out, v)
	}
	return out, ok
}

func (d *decoder) policy(n *yaml.Node, key string) ([]vocab.PolicyRule, bool) {
	items, ok := d.list(n, key, "a list of rules like {mid: 12345, sid: 100000, action: count}")
	if !ok {
		return nil, false
	}
	var rules []vocab.PolicyRule
	seen := map[ruleKey]int{}
	for i, it := range items {
		k := index(key, i)
		r, good := d.rule(it, k)
		if !good {
			ok = false
			continue
		}
		if j, dup := seen[keyOf(r)]; dup {
			d.failf(it, k, "duplicate rule for %s (same as %s at line %d)", keyOf(r), index(key, j), items[j].Line)
			ok = false
			continue
		}
		seen[keyOf(r)] = i
		rules = append(rules, r)
	}
	return rules, ok
}

// rule reads {mid, sid, action}; sid omitted or "any" means every session.
func (d *decoder) rule(n *yaml.Node, key string) (vocab.PolicyRule, bool) {
	r := vocab.PolicyRule{AnySID: true}
	ok := true
	present := d.fields(n, key, ruleKeys, func(k, path string, v *yaml.Node) {
		var good bool
		switch k {
		case "mid":
			r.MID, good = d.id(v, path, checkMID)
		case "sid":
			if s := deref(v); isScalar(s, "!!str") && strings.EqualFold(s.Value, "any") {
				good = true
				break
			}
			r.SID, good = d.id(v, path, checkSID)
			r.AnySID = false
		case "action":
			r.Action, good = d.action(v, path)
		case "to":
			var s string
			if s, good = d.str(v, path, nil); good {
				var err error
				if r.Target, err = vocab.ParseTarget(s); err != nil {
					d.fail(v, path, err)
					good = false
				}
			}
		}
		ok = ok && good
	})
	if present == nil {
		return r, false
	}
	if ok && r.Action == vocab.ActionForward && !present["to"] {
		d.failf(n, key, "action forward needs a target: to: IP:PORT, [IPv6]:PORT or an address (the stream's own port)")
		return r, false
	}
	if ok && r.Action != vocab.ActionForward && present["to"] {
		d.failf(n, key, "to: goes only with action forward, not %s", r.Action)
		return r, false
	}
	var missing []string
	for _, k := range []string{"mid", "action"} {
		if !present[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		d.failf(n, key, "missing %s (a rule is {mid: ID, sid: ID or any, action: capture, count, pass or forward, to: IP:PORT with forward})", strings.Join(missing, " and "))
		return r, false
	}
	return r, ok
}

func (d *decoder) allowlist(n *yaml.Node, key string) ([]netip.Prefix, bool) {
	items, ok := d.list(n, key, `a list of prefixes (e.g. [192.0.2.0/24, "2001:db8::/32"])`)
	if !ok {
		return nil, false
	}
	prefixes, good := uniqueItems(d, items, key, "prefix", func(it *yaml.Node, k string) (netip.Prefix, bool) {
		s, good := d.str(it, k, nil)
		if !good {
			return netip.Prefix{}, false
		}
		p, err := ParsePrefix(s)
		if err != nil {
			d.fail(it, k, err)
			return netip.Prefix{}, false
		}
		return p, true
	})
	return prefixes, ok && good
}

func (d *decoder) output(n *yaml.Node, path string, o *Output) {
	d.fields(n, path, outputKeys, func(key, path string, v *yaml.Node) {
		switch key {
		case "dir":
			set(&o.Dir)(d.str(v, path, checkNotEmpty))
		case "rotate_size":
			set(&o.RotateSize)(d.size(v, path, 0))
		case "rotate_age":
			set(&o.RotateAge)(d.duration(v, path, 0))
		case "max_open_files":
			setInt(&o.MaxOpenFiles)(d.integer(v, path, false, func(i int64) error { return checkRange(i, 1, maxInt32) }))
		case "flush_interval":
			set(&o.FlushInterval)(d.duration(v, path, time.Millisecond))
		case "buffer_size":
			set(&o.BufferSize)(d.size(v, path, minBufferSize))
		case "buffer_memory":
			set(&o.BufferMemory)(d.size(v, path, minBufferSize))
		case "packet_comments":
			set(&o.PacketComments)(d.boolean(v, path))
		case "allow_untrusted_dir":
			set(&o.AllowUntrustedDir)(d.boolean(v, path))
		case "max_bytes":
			set(&o.MaxBytes)(d.size(v, path, 0))
		case "max_age":
			set(&o.MaxAge)(d.duration(v, path, 0))
		case "retention":
			set(&o.Retention)(d.str(v, path, checkScope))
		case "on_complete":
			set(&o.OnComplete)(d.argv(v, path))
		case "on_complete_workers":
			setInt(&o.OnCompleteWorkers)(d.integer(v, path, false, func(i int64) error { return checkRange(i, 1, maxHandoffWorkers) }))
		case "on_complete_timeout":
			set(&o.OnCompleteTimeout)(d.duration(v, path, time.Millisecond))
		case "group":
			set(&o.Group)(d.group(v, path))
		}
	})
}

// argv reads a command line: a list of strings, the program first. No
// value or an empty list is no command (nil).
func (d *decoder) argv(n *yaml.Node, key string) ([]string, bool) {
	items, ok := d.list(n, key, `a list: the program and its arguments, no shell (e.g. [/usr/local/bin/handoff, "{path}"])`)
	if !ok || len(items) == 0 {
		return nil, ok
	}
	argv := make([]string, 0, len(items))
	for i, it := range items {
		s, good := d.str(it, index(key, i), nil)
		if !good {
			ok = false
			continue
		}
		argv = append(argv, s)
	}
	if !ok {
		return nil, false
	}
	if err := handoff.CheckArgv(argv); err != nil {
		d.fail(n, key, err)
		return nil, false
	}
	return argv, true
}

func (d *decoder) capture(n *yaml.Node, path string, c *Capture) {
	d.fields(n, path, captureKeys, func(key, path string, v *yaml.Node) {
		switch key {
		case "queues":
			set(&c.Queues)(d.queues(v, path))
		case "xdp_mode":
			set(&c.XDPMode)(d.str(v, path, checkXDPMode))
		case "zero_copy":
			set(&c.ZeroCopy)(d.boolean(v, path))
		case "frames_per_queue":
			setInt(&c.FramesPerQueue)(d.integer(v, path, false, checkFrames))
		case "frame_size":
			setInt(&c.FrameSize)(d.integer(v, path, false, checkFrameSize))
		case "queue_memory":
			set(&c.QueueMemory)(d.size(v, path, 1))
		case "max_stream_memory":
			set(&c.MaxStreamMemory)(d.size(v, path, minStreamMemory))
		case "max_streams":
			setInt(&c.MaxStreams)(d.integer(v, path, false, func(i int64) error { return checkRange(i, 1, maxUint32) }))
		case "writers":
			setInt(&c.Writers)(d.integer(v, path, false, func(i int64) error { return checkRange(i, 0, maxWriters) }))
		case "pin_dir":
			set(&c.PinDir)(d.str(v, path, checkAbsPath))
		case "keep_attached":
			set(&c.KeepAttached)(d.boolean(v, path))
		}
	})
}

// queues reads "all" (nil) or a list of RX queue numbers.
func (d *decoder) queues(n *yaml.Node, key string) ([]uint32, bool) {
	v := deref(n)
	if isScalar(v, "!!str") && strings.EqualFold(v.Value, "all") {
		return nil, true
	}
	if v.Kind != yaml.SequenceNode {
		d.failf(n, key, "want all or a list of RX queue numbers (e.g. [0, 1]), got %s", describe(v))
		return nil, false
	}
	if len(v.Content) == 0 {
		d.fail(n, key, errEmptyQueues)
		return nil, false
	}
	ok := true
	queues := []uint32{}
	seen := map[int64]int{}
	for i, it := range v.Content {
		k := index(key, i)
		q, good := d.integer(it, k, false, func(i int64) error { return checkRange(i, 0, maxUint32) })
		if !good {
			ok = false
			continue
		}
		if j, dup := seen[q]; dup {
			d.failf(it, k, "duplicate queue %d (same as %s at line %d)", q, index(key, j), v.Content[j].Line)
			ok = false
			continue
		}
		seen[q] = i
		queues = append(queues, uint32(q))
	}
	return queues, ok
}

func (d *decoder) reassembly(n *yaml.Node, path string, r *Reassembly) {
	d.fields(n, path, reassemblyKeys, func(key, path string, v *yaml.Node) {
		switch key {
		case "max_datagrams":
			setInt(&r.MaxDatagrams)(d.integer(v, path, false, func(i int64) error { return checkRange(i, 1, maxInt32) }))
		case "max_memory":
			set(&r.MaxMemory)(d.size(v, path, 1))
		case "timeout":
			set(&r.Timeout)(d.duration(v, path, 1))
		}
	})
}

func (d *decoder) metrics(n *yaml.Node, path string, m *Metrics) {
	d.fields(n, path, metricsKeys, func(key, path string, v *yaml.Node) {
		switch key {
		case "addr":
			set(&m.Addr)(d.str(v, path, checkAddr))
		case "top_streams":
			setInt(&m.TopStreams)(d.integer(v, path, false, checkTopStreams))
		case "hide_ids":
			m.HideIDsSet = true
			set(&m.HideIDs)(d.boolean(v, path))
		case "web_config":
			set(&m.WebConfig)(d.str(v, path, nil)) // "": none
		}
	})
}

// group reads output.group: a name, a number (quoted or not), or "" for
// none. Whether it exists is CheckOutputDir's question (it reads the
// system's groups).
func (d *decoder) group(n *yaml.Node, key string) (string, bool) {
	v := deref(n)
	if !isScalar(v, "!!str", "!!int") {
		d.failf(n, key, "want a group name or number, got %s", describe(v))
		return "", false
	}
	if v.Value == "" {
		return "", true
	}
	if err := checkGroupSyntax(v.Value); err != nil {
		d.fail(n, key, err)
		return "", false
	}
	return v.Value, true
}
