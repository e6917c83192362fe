package config

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jmxdp/jmxdp/userspace/vocab"
	"go.yaml.in/yaml/v3"
)

// Marshal renders c as a configuration file: every key, in the order of
// docs/config.md, with its effective value, defaults included, in a form
// Parse reads back to the same Config (`jmxdp config check` prints it).
// A key whose absence means something is written as a comment instead:
// policy and allowlist when the file left them out (a start then applies
// none: no rules, any router), interface when it is not set.
func (c *Config) Marshal() ([]byte, error) {
	top := newMapping()
	if c.Interface == "" {
		top.comment("interface: not set (give --iface or interface:)")
	} else {
		top.add("interface", str(c.Interface))
	}
	ports := flowSeq()
	for _, p := range c.Ports {
		ports.Content = append(ports.Content, integer(int64(p)))
	}
	top.add("ports", ports)
	top.add("default_action", str(c.DefaultAction.String()))
	if c.PolicySet {
		rules := &yaml.Node{Kind: yaml.SequenceNode}
		for _, r := range c.Policy {
			m := newMapping()
			m.n.Style = yaml.FlowStyle
			m.add("mid", integer(int64(r.MID)))
			if r.AnySID {
				m.add("sid", str("any"))
			} else {
				m.add("sid", integer(int64(r.SID)))
			}
			m.add("action", str(r.Action.String()))
			if r.Action == vocab.ActionForward {
				m.add("to", str(vocab.FormatTarget(r.Target)))
			}
			rules.Content = append(rules.Content, m.n)
		}
		if len(rules.Content) == 0 {
			rules.Style = yaml.FlowStyle
		}
		top.add("policy", rules)
	} else {
		top.comment("policy: not set: no rules (a start removes rules that only the pinned maps hold)")
	}
	if c.AllowlistSet {
		allow := flowSeq()
		for _, p := range c.Allowlist {
			allow.Content = append(allow.Content, str(p.String()))
		}
		top.add("allowlist", allow)
	} else {
		top.comment("allowlist: not set: any router (a start removes prefixes that only the pinned maps hold)")
	}
	top.add("forward_lookup_interface", str(c.ForwardLookupInterface))

	o := newMapping()
	o.add("dir", str(c.Output.Dir))
	o.add("rotate_size", size(c.Output.RotateSize))
	o.add("rotate_age", duration(c.Output.RotateAge))
	o.add("max_open_files", integer(int64(c.Output.MaxOpenFiles)))
	o.add("flush_interval", duration(c.Output.FlushInterval))
	o.add("buffer_size", size(c.Output.BufferSize))
	o.add("buffer_memory", size(c.Output.BufferMemory))
	o.add("packet_comments", boolean(c.Output.PacketComments))
	o.add("max_bytes", size(c.Output.MaxBytes))
	o.add("max_age", duration(c.Output.MaxAge))
	o.add("retention", str(c.Output.Retention))
	cmd := flowSeq() // [] : no hand-off command
	for _, a := range c.Output.OnComplete {
		cmd.Content = append(cmd.Content, str(a))
	}
	o.add("on_complete", cmd)
	o.add("on_complete_workers", integer(int64(c.Output.OnCompleteWorkers)))
	o.add("on_complete_timeout", duration(c.Output.OnCompleteTimeout))
	o.add("group", str(c.Output.Group))
	o.add("allow_untrusted_dir", boolean(c.Output.AllowUntrustedDir))
	top.add("output", o.n)

	cp := newMapping()
	if c.Capture.Queues == nil {
		cp.add("queues", str("all"))
	} else {
		q := flowSeq()
		for _, n := range c.Capture.Queues {
			q.Content = append(q.Content, integer(int64(n)))
		}
		cp.add("queues", q)
	}
	cp.add("xdp_mode", str(c.Capture.XDPMode))
	cp.add("zero_copy", boolean(c.Capture.ZeroCopy))
	cp.add("frames_per_queue", integer(int64(c.Capture.FramesPerQueue)))
	cp.add("frame_size", integer(int64(c.Capture.FrameSize)))
	cp.add("queue_memory", size(c.Capture.QueueMemory))
	cp.add("max_stream_memory", size(c.Capture.MaxStreamMemory))
	cp.add("max_streams", integer(int64(c.Capture.MaxStreams)))
	cp.add("writers", integer(int64(c.Capture.Writers)))
	cp.add("pin_dir", str(c.Capture.PinDir))
	cp.add("keep_attached", boolean(c.Capture.KeepAttached))
	top.add("capture", cp.n)

	r := newMapping()
	r.add("max_datagrams", integer(int64(c.Reassembly.MaxDatagrams)))
	r.add("max_memory", size(c.Reassembly.MaxMemory))
	r.add("timeout", duration(c.Reassembly.Timeout))
	top.add("reassembly", r.n)

	m := newMapping()
	m.add("addr", str(c.Metrics.Addr))
	m.add("top_streams", integer(int64(c.Metrics.TopStreams)))
	if c.Metrics.HideIDsSet {
		m.add("hide_ids", boolean(c.Metrics.HideIDs))
	} else {
		// Not set: decided at start from addr and web_config.
		ch := c.Metrics.ChooseHideIDs()
		m.comment(fmt.Sprintf("hide_ids: not set: %v at start (%s)", ch.Hide, ch.Why))
	}
	m.add("web_config", str(c.Metrics.WebConfig))
	top.add("metrics", m.n)
	c.Sink.render(top)

	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(top.n); err != nil {
		return nil, fmt.Errorf("config: render: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: render: %w", err)
	}
	return b.Bytes(), nil
}

// mapping builds a YAML mapping; comment lines attach to the next key.
type mapping struct {
	n       *yaml.Node
	pending []string
}

func newMapping() *mapping { return &mapping{n: &yaml.Node{Kind: yaml.MappingNode}} }

func (m *mapping) add(key string, v *yaml.Node) {
	k := str(key)
	if len(m.pending) > 0 {
		k.HeadComment = strings.Join(m.pending, "\n")
		m.pending = nil
	}
	m.n.Content = append(m.n.Content, k, v)
}

func (m *mapping) comment(s string) { m.pending = append(m.pending, "# "+s) }

func flowSeq() *yaml.Node { return &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle} }

// str is tagged !!str so that the encoder quotes a value that would read
// as something else ("", ":9877", "true").
func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func integer(v int64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v, 10)}
}

func boolean(v bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v)}
}

// size writes a byte count in the largest binary unit that divides it
// (256MiB), else as a number, both of which ParseSize reads.
func size(v int64) *yaml.Node {
	if v != 0 {
		for _, u := range []struct {
			name string
			mult int64
		}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
			if v%u.mult == 0 {
				return str(strconv.FormatInt(v/u.mult, 10) + u.name)
			}
		}
	}
	return integer(v)
}

// duration writes d as Go does, without its zero trailing units ("15m",
// not "15m0s"), which time.ParseDuration reads back.
func duration(d time.Duration) *yaml.Node {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return str(s)
}
