package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

func examplePath() string { return filepath.Join(testenv.RepoRoot(), "docs", "jmxdp.example.yaml") }

// configErrors unpacks what Parse and Validate return.
func configErrors(t *testing.T, err error) []*Error {
	t.Helper()
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else if err != nil {
		list = []error{err}
	}
	var out []*Error
	for _, e := range list {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("error %q is not a *config.Error", e)
		}
		out = append(out, ce)
	}
	return out
}

func TestDefault(t *testing.T) {
	c := Default()
	want := Config{
		Ports:         []uint16{30030},
		DefaultAction: vocab.ActionCapture,
		Output: Output{Dir: "/var/lib/jmxdp/streams", RotateSize: 256 << 20, RotateAge: 15 * time.Minute, MaxOpenFiles: writer.DefaultMaxOpen(),
			FlushInterval: time.Second, BufferSize: 16 << 10, BufferMemory: 256 << 20,
			Retention: "all", OnCompleteWorkers: 4, OnCompleteTimeout: 30 * time.Second},
		Capture: Capture{XDPMode: "auto", ZeroCopy: true, FramesPerQueue: 16384, FrameSize: 2048, QueueMemory: 64 << 20, MaxStreamMemory: 512 << 20,
			MaxStreams: 1 << 20, PinDir: "/sys/fs/bpf/jmxdp"},
		Reassembly: Reassembly{MaxDatagrams: 4096, MaxMemory: 64 << 20, Timeout: 30 * time.Second},
		Metrics:    Metrics{Addr: "127.0.0.1:9877", TopStreams: 20},
		Sink: Sink{Stream: "JMXDP", Replicas: 1, MaxBytes: 8 << 30, MaxAge: 168 * time.Hour, DuplicateWindow: 2 * time.Minute,
			BatchPackets: 256, BatchBytes: 64 << 10, Linger: time.Second, MaxInFlight: 256, AckTimeout: 5 * time.Second,
			SpoolDir: "/var/spool/jmxdp", SpoolMax: 1 << 30, StopTimeout: 10 * time.Second},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Default() = %+v\nwant %+v", c, want)
	}
	// Without an interface Validate refuses, and says how to give one.
	errs := configErrors(t, c.Validate())
	if len(errs) != 1 || errs[0].Key != "interface" || !strings.Contains(errs[0].Msg, "--iface") {
		t.Fatalf("Validate of Default() = %v, want only interface not set", errs)
	}
	c.Interface = "eth0"
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() with an interface: %v", err)
	}
}

func TestExample(t *testing.T) {
	c, err := Load(examplePath())
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Interface: "eth1",
		Ports:     []uint16{30030, 6502}, PortsSet: true,
		DefaultAction: vocab.ActionCapture, DefaultActionSet: true,
		Policy: []vocab.PolicyRule{
			{MID: 12345, SID: 100000, Action: vocab.ActionCount},
			{MID: 12345, AnySID: true, Action: vocab.ActionPass},
			{MID: 777, AnySID: true, Action: vocab.ActionCapture},
			{MID: 4242, AnySID: true, Action: vocab.ActionForward, Target: netip.MustParseAddrPort("198.19.50.50:30031")},
		},
		PolicySet:              true,
		ForwardLookupInterface: "jmxdp-fib",
		Allowlist: []netip.Prefix{
			netip.MustParsePrefix("192.0.2.0/24"),
			netip.MustParsePrefix("2001:db8::/32"),
			netip.MustParsePrefix("198.51.100.7/32"),
		},
		AllowlistSet: true,
		Output: Output{Dir: "/var/lib/jmxdp/streams", RotateSize: 1 << 30, RotateAge: time.Hour, MaxOpenFiles: 1024,
			FlushInterval: 500 * time.Millisecond, BufferSize: 32 << 10, BufferMemory: 512 << 20, PacketComments: true,
			Retention: "stream", OnCompleteWorkers: 8, OnCompleteTimeout: time.Minute},
		Capture: Capture{Queues: nil, XDPMode: "auto", ZeroCopy: true, FramesPerQueue: 8192, FrameSize: 2048, QueueMemory: 256 << 20, MaxStreamMemory: 1 << 30,
			MaxStreams: 262144, Writers: 2, PinDir: "/sys/fs/bpf/jmxdp", KeepAttached: true},
		Reassembly: Reassembly{MaxDatagrams: 8192, MaxMemory: 128 << 20, Timeout: 20 * time.Second},
		Metrics:    Metrics{Addr: "127.0.0.1:9877", TopStreams: 50},
		Sink:       DefaultSink(),
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("example parsed as\n%+v\nwant\n%+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("example does not validate: %v", err)
	}
}

// allKeys lists every key the decoder knows, as "section.key" ("policy.mid"
// for the keys of a rule).
func allKeys() []string {
	keys := slices.Clone(topKeys)
	for section, sub := range map[string][]string{
		"policy": ruleKeys, "output": outputKeys, "capture": captureKeys,
		"reassembly": reassemblyKeys, "metrics": metricsKeys, "sink": sinkKeys,
	} {
		for _, k := range sub {
			keys = append(keys, section+"."+k)
		}
	}
	slices.Sort(keys)
	return keys
}

// TestExampleAndDocsComplete keeps docs/jmxdp.example.yaml and
// docs/config.md in step with the decoder: the example uses every key and
// the doc names every key.
func TestExampleAndDocsComplete(t *testing.T) {
	data, err := os.ReadFile(examplePath())
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			walk(n.Content[0], path)
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i < len(n.Content); i += 2 {
				p := join(path, n.Content[i].Value)
				used[p] = true
				walk(n.Content[i+1], p)
			}
		}
	}
	walk(&doc, "")
	md, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	// Keys whose default depends on others appear commented out, so that
	// a copy of the example keeps the computed default.
	computed := map[string]bool{"metrics.hide_ids": true}
	for _, k := range allKeys() {
		leaf := k[strings.LastIndex(k, ".")+1:]
		if !used[k] && !(computed[k] && strings.Contains(string(data), "# "+leaf+": ")) {
			t.Errorf("docs/jmxdp.example.yaml does not use %s", k)
		}
		if !strings.Contains(string(md), "`"+leaf+"`") {
			t.Errorf("docs/config.md does not document `%s`", leaf)
		}
	}
}

// TestRetentionAndHandoffKeys: the keys as an operator writes them; an
// empty on_complete is no command.
func TestRetentionAndHandoffKeys(t *testing.T) {
	c, err := Parse([]byte("output:\n  max_bytes: 2TiB\n  max_age: 720h\n  retention: stream\n"+
		"  on_complete: [/usr/local/bin/handoff, --file, \"{path}\"]\n  on_complete_workers: 2\n  on_complete_timeout: 1m30s\n"), "cfg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o := c.Output
	if o.MaxBytes != 2<<40 || o.MaxAge != 720*time.Hour || o.Retention != "stream" ||
		!slices.Equal(o.OnComplete, []string{"/usr/local/bin/handoff", "--file", "{path}"}) ||
		o.OnCompleteWorkers != 2 || o.OnCompleteTimeout != 90*time.Second {
		t.Errorf("parsed %+v", o)
	}
	d := Default().Output
	if d.MaxBytes != 0 || d.MaxAge != 0 || d.Retention != "all" || d.OnComplete != nil || d.OnCompleteWorkers != 4 || d.OnCompleteTimeout != 30*time.Second {
		t.Errorf("defaults %+v", d)
	}
	for _, in := range []string{"output:\n  on_complete: []\n", "output:\n  on_complete:\n"} {
		c, err := Parse([]byte(in), "cfg.yaml")
		if err != nil || c.Output.OnComplete != nil {
			t.Errorf("%q: %v, %q", in, err, c.Output.OnComplete)
		}
	}
}

func TestEmptyDocuments(t *testing.T) {
	for _, in := range []string{"", "\n", "# only a comment\n", "---\n", "~\n", "null\n", "---\n...\n"} {
		c, err := Parse([]byte(in), "cfg.yaml")
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("%q: got %+v, want the defaults", in, c)
		}
	}
}

func TestIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want vocab.PolicyRule
	}{
		{"{mid: 12345, sid: 100000, action: count}", vocab.PolicyRule{MID: 12345, SID: 100000, Action: vocab.ActionCount}},
		{"{mid: 0x3039, sid: 0x186A0, action: count}", vocab.PolicyRule{MID: 12345, SID: 100000, Action: vocab.ActionCount}},
		{`{mid: "0x3039", sid: "100000", action: count}`, vocab.PolicyRule{MID: 12345, SID: 100000, Action: vocab.ActionCount}},
		{`{mid: '0X3039', sid: 0xffffffff, action: PASS}`, vocab.PolicyRule{MID: 12345, SID: 0xffffffff, Action: vocab.ActionPass}},
		// A leading zero is decimal (YAML 1.2), where yaml.v3 would read octal.
		{"{mid: 012345, sid: 0100, action: pass}", vocab.PolicyRule{MID: 12345, SID: 100, Action: vocab.ActionPass}},
		{"{mid: 0x3fffffff, action: capture}", vocab.PolicyRule{MID: vocab.MaxMID, AnySID: true, Action: vocab.ActionCapture}},
		{"{mid: 0, sid: any, action: capture}", vocab.PolicyRule{MID: 0, AnySID: true, Action: vocab.ActionCapture}},
		{"{mid: 1, sid: ANY, action: count}", vocab.PolicyRule{MID: 1, AnySID: true, Action: vocab.ActionCount}},
		{"{mid: 1, sid: 0, action: count}", vocab.PolicyRule{MID: 1, SID: 0, Action: vocab.ActionCount}},
	} {
		c, err := Parse([]byte("policy:\n  - "+tc.in+"\n"), "cfg.yaml")
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if len(c.Policy) != 1 || c.Policy[0] != tc.want {
			t.Errorf("%s: got %v, want %v", tc.in, c.Policy, tc.want)
		}
	}
}

func TestSetFlags(t *testing.T) {
	c, err := Parse([]byte("interface: eth0\n"), "cfg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.PortsSet || c.DefaultActionSet || c.PolicySet || c.AllowlistSet {
		t.Fatalf("absent keys marked set: %+v", c)
	}
	if !reflect.DeepEqual(c.Ports, []uint16{DefaultPort}) || c.DefaultAction != vocab.ActionCapture {
		t.Fatalf("absent keys lost their defaults: %+v", c)
	}

	c, err = Parse([]byte("ports: [6502]\ndefault_action: count\npolicy: []\nallowlist: []\n"), "cfg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.PortsSet || !c.DefaultActionSet || !c.PolicySet || !c.AllowlistSet {
		t.Fatalf("present keys not marked set: %+v", c)
	}
	if len(c.Policy) != 0 || len(c.Allowlist) != 0 || c.DefaultAction != vocab.ActionCount || !reflect.DeepEqual(c.Ports, []uint16{6502}) {
		t.Fatalf("got %+v", c)
	}

	// A key with no value is an empty list: the file clears the policy.
	c, err = Parse([]byte("policy:\nallowlist:\n"), "cfg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.PolicySet || len(c.Policy) != 0 || !c.AllowlistSet || len(c.Allowlist) != 0 {
		t.Fatalf("got %+v", c)
	}
}

// TestFlagsOverride is the command's flow: Load, set fields from flags,
// Validate.
func TestFlagsOverride(t *testing.T) {
	c, err := Load(examplePath())
	if err != nil {
		t.Fatal(err)
	}
	size, err := ParseSize("2GiB")
	if err != nil {
		t.Fatal(err)
	}
	c.Interface = "eth7"
	c.Ports, c.PortsSet = []uint16{5000}, true
	c.Output.Dir = "/srv/streams"
	c.Output.RotateSize = size
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Interface != "eth7" || c.Ports[0] != 5000 || c.Output.RotateSize != 2<<30 || c.Capture.FramesPerQueue != 8192 {
		t.Fatalf("got %+v", c)
	}
}

// TestValidate: what a flag can set wrongly, Validate refuses, naming the key.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		key, want string
		mutate    func(c *Config)
	}{
		{"interface", "not set", func(c *Config) { c.Interface = "" }},
		{"interface", "not an interface name", func(c *Config) { c.Interface = "a-name-of-16-chr" }},
		{"ports", "at least one", func(c *Config) { c.Ports = nil }},
		{"ports[0]", "0 is not a UDP port", func(c *Config) { c.Ports = []uint16{0} }},
		{"ports[1]", "duplicate port 6502 (same as ports[0])", func(c *Config) { c.Ports = []uint16{6502, 6502} }},
		{"default_action", "unknown action", func(c *Config) { c.DefaultAction = 9 }},
		{"policy[0]", "30 bits", func(c *Config) { c.Policy = []vocab.PolicyRule{{MID: 1 << 30, AnySID: true}} }},
		{"policy[1]", "duplicate rule for mid 5 sid 6 (same as policy[0])", func(c *Config) {
			c.Policy = []vocab.PolicyRule{{MID: 5, SID: 6}, {MID: 5, SID: 6, Action: vocab.ActionPass}}
		}},
		{"policy[1]", "duplicate rule for mid 5, any sid", func(c *Config) {
			c.Policy = []vocab.PolicyRule{{MID: 5, AnySID: true}, {MID: 5, AnySID: true}}
		}},
		{"allowlist[0]", "192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?", func(c *Config) {
			c.Allowlist = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}
		}},
		{"allowlist[0]", "not a valid prefix", func(c *Config) { c.Allowlist = []netip.Prefix{{}} }},
		{"allowlist[0]", "IPv4-mapped", func(c *Config) {
			c.Allowlist = []netip.Prefix{netip.MustParsePrefix("::ffff:203.0.113.1/128")}
		}},
		{"allowlist[1]", "duplicate prefix", func(c *Config) {
			p := netip.MustParsePrefix("10.0.0.0/8")
			c.Allowlist = []netip.Prefix{p, p}
		}},
		{"output.dir", "empty path", func(c *Config) { c.Output.Dir = "" }},
		{"output.rotate_size", "-1 is negative", func(c *Config) { c.Output.RotateSize = -1 }},
		{"output.rotate_age", "negative", func(c *Config) { c.Output.RotateAge = -time.Second }},
		{"output.max_open_files", "0 is below the minimum 1", func(c *Config) { c.Output.MaxOpenFiles = 0 }},
		{"output.max_bytes", "-1 is negative", func(c *Config) { c.Output.MaxBytes = -1 }},
		{"output.max_age", "negative", func(c *Config) { c.Output.MaxAge = -time.Second }},
		{"output.retention", `"streams" is not a retention scope (want all or stream)`, func(c *Config) { c.Output.Retention = "streams" }},
		{"output.on_complete", "relative path", func(c *Config) { c.Output.OnComplete = []string{"bin/handoff"} }},
		{"output.on_complete_workers", "0 is below the minimum 1", func(c *Config) { c.Output.OnCompleteWorkers = 0 }},
		{"output.on_complete_timeout", "too short", func(c *Config) { c.Output.OnCompleteTimeout = 0 }},
		{"capture.queues", "empty list", func(c *Config) { c.Capture.Queues = []uint32{} }},
		{"capture.queues[2]", "duplicate queue 0", func(c *Config) { c.Capture.Queues = []uint32{0, 1, 0} }},
		{"capture.xdp_mode", `"native" is not an XDP mode`, func(c *Config) { c.Capture.XDPMode = "native" }},
		{"capture.xdp_mode", "not an XDP mode", func(c *Config) { c.Capture.XDPMode = "DRIVER" }},
		{"capture.frames_per_queue", "100 is not a power of two in 64..65536", func(c *Config) { c.Capture.FramesPerQueue = 100 }},
		{"capture.frame_size", "3000: want 2048 or 4096", func(c *Config) { c.Capture.FrameSize = 3000 }},
		{"capture.queue_memory", "0 is below the minimum 1", func(c *Config) { c.Capture.QueueMemory = 0 }},
		{"capture.max_streams", "0 is below the minimum 1", func(c *Config) { c.Capture.MaxStreams = 0 }},
		{"capture.pin_dir", "not an absolute path", func(c *Config) { c.Capture.PinDir = "bpf/jmxdp" }},
		{"reassembly.max_datagrams", "-1 is negative", func(c *Config) { c.Reassembly.MaxDatagrams = -1 }},
		{"reassembly.max_memory", "0 is below the minimum 1", func(c *Config) { c.Reassembly.MaxMemory = 0 }},
		{"reassembly.timeout", "must be positive", func(c *Config) { c.Reassembly.Timeout = 0 }},
		{"metrics.addr", "not host:port", func(c *Config) { c.Metrics.Addr = "localhost" }},
		{"metrics.top_streams", "1001 is above the maximum 1000", func(c *Config) { c.Metrics.TopStreams = 1001 }},
		{"metrics.top_streams", "-1 is negative", func(c *Config) { c.Metrics.TopStreams = -1 }},
	} {
		c := Default()
		c.Interface = "eth0"
		tc.mutate(&c)
		errs := configErrors(t, c.Validate())
		if len(errs) != 1 {
			t.Errorf("%s: got %d errors %v, want one", tc.key, len(errs), errs)
			continue
		}
		e := errs[0]
		if e.Key != tc.key || e.File != "" || e.Line != 0 || !strings.Contains(e.Msg, tc.want) {
			t.Errorf("%s: got %q (key %q), want %q", tc.key, e, e.Key, tc.want)
		}
		if !strings.HasPrefix(e.Error(), tc.key+": ") {
			t.Errorf("%s: message %q does not start with the key", tc.key, e)
		}
	}
}

// TestRefusals: each bad file is refused with one message naming the file,
// the line and the key.
func TestRefusals(t *testing.T) {
	const known = "known: interface, ports, default_action, policy, allowlist, forward_lookup_interface, output, capture, reassembly, metrics, sink"
	for _, tc := range []struct {
		name, in  string
		line      int
		key, want string
	}{
		// Shape of the document and keys.
		{"not a mapping", "- a\n- b\n", 1, "", "must be a mapping of keys (interface, ports"},
		{"scalar document", "hello\n", 1, "", "must be a mapping of keys"},
		{"second document", "interface: eth0\n---\nports: [1]\n", 2, "", "second YAML document"},
		{"unknown key", "interface: eth0\nport: [6502]\n", 2, "port", "unknown key (" + known + ")"},
		{"unknown output key", "output:\n  dir: /x\n  rotate: 1h\n", 3, "output.rotate", "unknown key (known: dir, rotate_size, rotate_age, max_open_files, flush_interval, buffer_size, buffer_memory, packet_comments, max_bytes, max_age, retention, on_complete, on_complete_workers, on_complete_timeout, group, allow_untrusted_dir)"},
		{"unknown capture key", "capture:\n  queus: all\n", 2, "capture.queus", "known: queues, xdp_mode, zero_copy, frames_per_queue, queue_memory, max_stream_memory, max_streams, writers, pin_dir, keep_attached"},
		{"unknown reassembly key", "reassembly: {timeout: 1s, max_frags: 3}\n", 1, "reassembly.max_frags", "known: max_datagrams, max_memory, timeout"},
		{"unknown metrics key", "metrics:\n  listen: :1\n", 2, "metrics.listen", "known: addr"},
		{"unknown rule key", "policy:\n  - {mid: 1, action: pass}\n  - {mid: 2, action: pass, sd: 3}\n", 3, "policy[1].sd", "unknown key (known: mid, sid, action, to)"},
		{"merge key", "output: &o {dir: /x}\ncapture: {<<: *o}\n", 2, "capture.<<", "unknown key"},
		{"repeated key", "ports: [1]\ninterface: eth0\nports: [2]\n", 3, "ports", "repeated key (first at line 1)"},
		{"non-scalar key", "? [a]\n: 1\n", 1, "", "a key must be a name"},

		// Wrong types.
		{"interface list", "interface: [eth0]\n", 1, "interface", "want a string, got a list"},
		{"interface number", "interface: 1\n", 1, "interface", "want a string, got the number 1"},
		{"ports scalar", "ports: 30030\n", 1, "ports", "want a list of UDP ports"},
		{"port string", "ports: [\"30030\"]\n", 1, "ports[0]", `want an integer, got the string "30030"`},
		{"port float", "ports: [1.5]\n", 1, "ports[0]", "want an integer, got the number 1.5"},
		{"port huge", "ports: [99999999999999999999]\n", 1, "ports[0]", "99999999999999999999 is out of range"},
		{"bool yes", "capture:\n  zero_copy: yes\n", 2, "capture.zero_copy", `want true or false, got the string "yes"`},
		{"keep_attached number", "capture:\n  keep_attached: 1\n", 2, "capture.keep_attached", "want true or false"},
		{"quoted integer", "output:\n  max_open_files: \"512\"\n", 2, "output.max_open_files", "want an integer"},
		{"section scalar", "output: /var/x\n", 1, "output", "want a mapping of dir, rotate_size"},
		{"policy mapping", "policy: {mid: 1, action: pass}\n", 1, "policy", "want a list of rules"},
		{"rule scalar", "policy: [12345]\n", 1, "policy[0]", "want a mapping of mid, sid, action"},
		{"allowlist scalar", "allowlist: 10.0.0.0/8\n", 1, "allowlist", "want a list of prefixes"},
		{"allowlist number", "allowlist: [10]\n", 1, "allowlist[0]", "want a string"},
		{"action number", "default_action: 1\n", 1, "default_action", "want a string"},
		{"size list", "reassembly: {max_memory: [1]}\n", 1, "reassembly.max_memory", "want a size"},
		{"duration bool", "output: {rotate_age: true}\n", 1, "output.rotate_age", "want a duration"},
		{"null scalar", "capture:\n  xdp_mode:\n", 2, "capture.xdp_mode", "want a string, got no value"},

		// Policy.
		{"mid over 30 bits hex", "policy:\n  - {mid: 1, action: pass}\n  - {mid: 0x40000000, action: pass}\n", 3, "policy[1].mid", "0x40000000 is not a 30-bit intercept id (max 0x3fffffff)"},
		{"mid over 30 bits dec", "policy:\n- mid: 1073741824\n  action: pass\n", 2, "policy[0].mid", "1073741824 is not a 30-bit intercept id"},
		{"mid negative", "policy: [{mid: -1, action: pass}]\n", 1, "policy[0].mid", "-1 is negative"},
		{"mid float", "policy: [{mid: 1.0, action: pass}]\n", 1, "policy[0].mid", "want an integer"},
		{"mid word", "policy: [{mid: abc, action: pass}]\n", 1, "policy[0].mid", `"abc" is not a decimal or 0x hex integer`},
		{"mid octal", "policy: [{mid: 0o17, action: pass}]\n", 1, "policy[0].mid", "not a decimal or 0x hex integer"},
		{"mid huge", "policy: [{mid: 99999999999999999999, action: pass}]\n", 1, "policy[0].mid", "out of range"},
		{"sid over 32 bits", "policy:\n  - mid: 1\n    sid: 4294967296\n    action: pass\n", 3, "policy[0].sid", "4294967296 does not fit in 32 bits"},
		{"sid over 32 bits hex", "policy: [{mid: 1, sid: \"0x100000000\", action: pass}]\n", 1, "policy[0].sid", "0x100000000 does not fit in 32 bits"},
		{"sid negative", "policy: [{mid: 1, sid: -5, action: pass}]\n", 1, "policy[0].sid", "-5 is negative"},
		{"sid word", "policy: [{mid: 1, sid: all, action: pass}]\n", 1, "policy[0].sid", `"all" is not a decimal or 0x hex integer`},
		{"unknown action", "policy:\n  - {mid: 1, action: drop}\n", 2, "policy[0].action", `unknown action "drop" (want capture, count, pass or forward)`},
		{"missing action", "policy:\n  - {mid: 1}\n", 2, "policy[0]", "missing action"},
		{"missing mid and action", "policy:\n  -\n", 2, "policy[0]", "missing mid and action"},
		{"duplicate exact rule", "policy:\n  - {mid: 0x3039, sid: 7, action: pass}\n  - {mid: 12345, sid: 7, action: count}\n", 3, "policy[1]", "duplicate rule for mid 12345 sid 7 (same as policy[0] at line 2)"},
		{"duplicate mid-wide rule", "policy:\n  - {mid: 9, action: pass}\n  - {mid: 9, sid: 1, action: pass}\n  - {mid: 9, sid: any, action: count}\n", 4, "policy[2]", "duplicate rule for mid 9, any sid (same as policy[0] at line 2)"},

		// Default action.
		{"unknown default action", "interface: eth0\ndefault_action: drop\n", 2, "default_action", `unknown action "drop"`},

		// Ports.
		{"port 0", "ports: [30030, 0]\n", 1, "ports[1]", "0 is not a UDP port (1..65535)"},
		{"port too big", "ports:\n  - 65536\n", 2, "ports[0]", "65536 is not a UDP port"},
		{"port negative", "ports: [-1]\n", 1, "ports[0]", "-1 is not a UDP port"},
		{"port duplicated", "ports:\n  - 6502\n  - 0x1966\n", 3, "ports[1]", "duplicate port 6502 (same as ports[0] at line 2)"},
		{"prefix duplicated", "allowlist:\n  - 192.0.2.0/24\n  - \"2001:db8::/32\"\n  - 192.0.2.0/24\n", 4, "allowlist[2]", "duplicate prefix 192.0.2.0/24 (same as allowlist[0] at line 2)"},
		{"ports empty", "ports: []\n", 1, "ports", "at least one UDP port"},
		{"ports no value", "ports:\n", 1, "ports", "at least one UDP port"},

		// Allowlist.
		{"bad prefix", "allowlist: [192.0.2.0/33]\n", 1, "allowlist[0]", `"192.0.2.0/33" is not an address or prefix`},
		{"bad address", "allowlist:\n  - router1\n", 2, "allowlist[0]", `"router1" is not an address or prefix`},
		{"host bits", "allowlist:\n  - 10.0.0.0/8\n  - 192.0.2.1/24\n", 3, "allowlist[1]", "192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?"},
		{"host bits v6", "allowlist: [\"2001:db8::1/32\"]\n", 1, "allowlist[0]", "2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?"},
		{"zone", "allowlist: [\"fe80::1%eth0\"]\n", 1, "allowlist[0]", "not an address or prefix"},
		// No IPv6 form of an IPv4 router (issue 19 item 2), as an address or a prefix.
		{"v4-mapped address", "allowlist: [\"::ffff:203.0.113.1\"]\n", 1, "allowlist[0]", "IPv4-mapped IPv6 prefix, which no router sends from: name an IPv4 router as IPv4 (e.g. 203.0.113.1/32)"},
		{"v4-mapped prefix", "allowlist:\n  - 10.0.0.0/8\n  - \"::ffff:192.0.2.0/120\"\n", 3, "allowlist[1]", "(e.g. 192.0.2.0/24)"},
		{"v4-compatible", "allowlist: [\"::203.0.113.1\"]\n", 1, "allowlist[0]", "a.b.c.d/32"},
		{"loopback v6", "allowlist: [\"::1\"]\n", 1, "allowlist[0]", "in ::/96"},
		{"covers every v4", "allowlist: [\"::/0\"]\n", 1, "allowlist[0]", "would also accept every IPv4 router"},
		{"duplicate prefix", "allowlist: [10.0.0.0/8, 10.0.0.0/8]\n", 1, "allowlist[1]", "duplicate prefix 10.0.0.0/8 (same as allowlist[0] at line 1)"},

		// Sizes, durations, numbers.
		{"size unit", "output:\n  rotate_size: 12XB\n", 2, "output.rotate_size", `unknown unit "XB"`},
		{"size negative", "output:\n  rotate_size: -1\n", 2, "output.rotate_size", "negative"},
		{"size fraction", "output:\n  rotate_size: 1.5GiB\n", 2, "output.rotate_size", "whole number"},
		{"size overflow", "capture:\n  queue_memory: 9999999TiB\n", 2, "capture.queue_memory", "too large"},
		{"queue memory zero", "capture:\n  queue_memory: 0\n", 2, "capture.queue_memory", "0 is below the minimum 1"},
		{"reassembly memory zero", "reassembly:\n  max_memory: 0MiB\n", 2, "reassembly.max_memory", "0 is below the minimum 1"},
		{"duration word", "output:\n  rotate_age: soon\n", 2, "output.rotate_age", `"soon" is not a duration`},
		{"duration no unit", "output:\n  rotate_age: 30\n", 2, "output.rotate_age", "30 has no unit"},
		{"duration negative", "output:\n  rotate_age: -5m\n", 2, "output.rotate_age", "-5m0s is negative"},
		{"timeout zero", "reassembly:\n  timeout: 0s\n", 2, "reassembly.timeout", "must be positive"},
		{"max_open_files zero", "output:\n  max_open_files: 0\n", 2, "output.max_open_files", "0 is below the minimum 1"},
		{"max_open_files negative", "output:\n  max_open_files: -3\n", 2, "output.max_open_files", "-3 is negative"},
		{"max_datagrams negative", "reassembly:\n  max_datagrams: -1\n", 2, "reassembly.max_datagrams", "-1 is negative"},
		{"max_streams zero", "capture:\n  max_streams: 0\n", 2, "capture.max_streams", "0 is below the minimum 1"},
		{"max_streams too big", "capture:\n  max_streams: 4294967296\n", 2, "capture.max_streams", "above the maximum 4294967295"},
		{"frames not power of two", "capture:\n  frames_per_queue: 100\n", 2, "capture.frames_per_queue", "100 is not a power of two in 64..65536"},
		{"frames too small", "capture:\n  frames_per_queue: 32\n", 2, "capture.frames_per_queue", "32 is not a power of two in 64..65536"},
		{"frames too big", "capture:\n  frames_per_queue: 131072\n", 2, "capture.frames_per_queue", "131072 is not a power of two"},

		// Capture.
		{"xdp mode", "capture:\n  xdp_mode: native\n", 2, "capture.xdp_mode", `"native" is not an XDP mode (want auto, driver or generic)`},
		{"queues duplicated", "capture:\n  queues: [0, 1, 0]\n", 2, "capture.queues[2]", "duplicate queue 0 (same as capture.queues[0] at line 2)"},
		{"queues empty", "capture:\n  queues: []\n", 2, "capture.queues", "empty list"},
		{"queues word", "capture:\n  queues: some\n", 2, "capture.queues", "want all or a list of RX queue numbers"},
		{"queue negative", "capture:\n  queues: [-1]\n", 2, "capture.queues[0]", "-1 is negative"},
		{"pin_dir relative", "capture:\n  pin_dir: bpf/jmxdp\n", 2, "capture.pin_dir", `"bpf/jmxdp" is not an absolute path`},
		{"output dir empty", "output:\n  dir: \"\"\n", 2, "output.dir", "empty path"},

		// Retention and hand-off.
		{"max_bytes fraction", "output:\n  max_bytes: 1.5TiB\n", 2, "output.max_bytes", "whole number"},
		{"max_age no unit", "output:\n  max_age: 7\n", 2, "output.max_age", "7 has no unit"},
		{"retention word", "output:\n  retention: oldest\n", 2, "output.retention", `"oldest" is not a retention scope (want all or stream)`},
		{"on_complete string", "output:\n  on_complete: /usr/local/bin/handoff {path}\n", 2, "output.on_complete", "want a list: the program and its arguments, no shell"},
		{"on_complete number", "output:\n  on_complete: [/bin/h, 3]\n", 2, "output.on_complete[1]", "want a string"},
		{"on_complete relative", "output:\n  on_complete: [./handoff]\n", 2, "output.on_complete", `"./handoff" is a relative path`},
		{"on_complete empty name", "output:\n  on_complete: [\"\", x]\n", 2, "output.on_complete", "no command"},
		{"on_complete_workers zero", "output:\n  on_complete_workers: 0\n", 2, "output.on_complete_workers", "0 is below the minimum 1"},
		{"on_complete_workers too many", "output:\n  on_complete_workers: 5000\n", 2, "output.on_complete_workers", "above the maximum 1024"},
		{"on_complete_timeout zero", "output:\n  on_complete_timeout: 0\n", 2, "output.on_complete_timeout", "too short"},

		// Interface and metrics.
		{"interface too long", "interface: a-name-of-16-chr\n", 1, "interface", "not an interface name"},
		{"interface slash", "interface: eth/0\n", 1, "interface", "not an interface name"},
		{"interface empty", "interface: \"\"\n", 1, "interface", "not an interface name"},
		{"metrics no port", "metrics:\n  addr: localhost\n", 2, "metrics.addr", `"localhost" is not host:port`},
		{"metrics named port", "metrics:\n  addr: localhost:http\n", 2, "metrics.addr", "not host:port"},
		{"metrics port 0", "metrics:\n  addr: \":0\"\n", 2, "metrics.addr", "not host:port"},
		{"metrics port too big", "metrics:\n  addr: 127.0.0.1:99999\n", 2, "metrics.addr", "not host:port"},
		{"top_streams too big", "metrics:\n  top_streams: 1001\n", 2, "metrics.top_streams", "1001 is above the maximum 1000"},
		{"top_streams negative", "metrics:\n  top_streams: -1\n", 2, "metrics.top_streams", "-1 is negative"},
		{"top_streams string", "metrics:\n  top_streams: \"20\"\n", 2, "metrics.top_streams", "want an integer"},
		{"hide_ids string", "metrics:\n  hide_ids: yes\n", 2, "metrics.hide_ids", "want true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in), "cfg.yaml")
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("a refused file returned %+v, not the defaults", c)
			}
			errs := configErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want one:\n%v", len(errs), err)
			}
			e := errs[0]
			if e.File != "cfg.yaml" || e.Line != tc.line || e.Key != tc.key {
				t.Errorf("at %s:%d key %q, want cfg.yaml:%d key %q: %v", e.File, e.Line, e.Key, tc.line, tc.key, e)
			}
			if !strings.Contains(e.Msg, tc.want) {
				t.Errorf("message %q does not contain %q", e.Msg, tc.want)
			}
			prefix := "cfg.yaml:" + strconv.Itoa(tc.line) + ": "
			if tc.key != "" {
				prefix += tc.key + ": "
			}
			if !strings.HasPrefix(e.Error(), prefix) {
				t.Errorf("message %q does not start with %q", e, prefix)
			}
		})
	}
}

func TestExactMessage(t *testing.T) {
	in := "interface: eth1\nports: [30030]\ndefault_action: capture\n\npolicy:\n  - {mid: 12345, action: pass}\n  - {mid: 0x40000000, sid: 1, action: count}\n"
	_, err := Parse([]byte(in), "jmxdp.yaml")
	want := "jmxdp.yaml:7: policy[1].mid: 0x40000000 is not a 30-bit intercept id (max 0x3fffffff)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

// TestAllErrorsAtOnce: an operator fixes a file in one pass, not one error
// per run.
func TestAllErrorsAtOnce(t *testing.T) {
	in := "ports: [0]\ncapture:\n  xdp_mode: native\n  frames_per_queue: 3\nbogus: 1\n"
	_, err := Parse([]byte(in), "cfg.yaml")
	var got []string
	for _, e := range configErrors(t, err) {
		got = append(got, e.Key)
	}
	want := []string{"ports[0]", "capture.xdp_mode", "capture.frames_per_queue", "bogus"}
	if !slices.Equal(got, want) {
		t.Fatalf("keys %v, want %v (%v)", got, want, err)
	}
}

func TestSyntaxError(t *testing.T) {
	_, err := Parse([]byte("interface: eth0\nports: [1, 2\n"), "cfg.yaml")
	errs := configErrors(t, err)
	if len(errs) != 1 || errs[0].File != "cfg.yaml" || errs[0].Line == 0 || strings.HasPrefix(errs[0].Msg, "yaml:") {
		t.Fatalf("got %v", err)
	}
	if !strings.HasPrefix(err.Error(), "cfg.yaml:") {
		t.Fatalf("message %q does not name the file", err)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("got %v", err)
	}
}

func TestAliases(t *testing.T) {
	in := "ports: &p [6502]\npolicy:\n  - &r {mid: 1, action: pass}\n  - {mid: 2, action: *act}\nallowlist: []\n"
	// *act is undefined: yaml refuses it.
	if _, err := Parse([]byte(in), "cfg.yaml"); err == nil {
		t.Fatal("undefined alias accepted")
	}
	in = "x-defaults: &a capture\n"
	if _, err := Parse([]byte(in), "cfg.yaml"); err == nil {
		t.Fatal("unknown key accepted")
	}
	in = "default_action: &a count\npolicy:\n  - {mid: 1, action: *a}\n"
	c, err := Parse([]byte(in), "cfg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy[0].Action != vocab.ActionCount {
		t.Fatalf("got %v", c.Policy)
	}
	// A list that contains itself must not hang the decoder.
	if _, err := Parse([]byte("ports: &p [*p]\n"), "cfg.yaml"); err == nil {
		t.Fatal("recursive list accepted")
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"4096", 4096}, {"1B", 1}, {"256MiB", 256 << 20}, {"1GB", 1e9},
		{"1 GB", 1e9}, {"64kib", 64 << 10}, {"2KB", 2000}, {"3TiB", 3 << 40}, {"5tb", 5e12},
		{" 7MB ", 7e6}, {"0MiB", 0}, {"8388607TiB", 8388607 << 40},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "-1MiB", "1.5GiB", "1 M", "12XB", "0x10", "+5",
		"8388608TiB", "9223372036854775808", "1e6", "1_000", "1 2"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestCheckOutputDir(t *testing.T) {
	t.Run("creates 0700", func(t *testing.T) {
		base := t.TempDir()
		c := Default()
		c.Output.Dir = filepath.Join(base, "a", "b", "streams")
		if err := c.CheckOutputDir(); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"a", "a/b", "a/b/streams"} {
			fi, err := os.Stat(filepath.Join(base, d))
			if err != nil {
				t.Fatal(err)
			}
			if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v, want a 0700 directory", d, fi.Mode())
			}
		}
		// Again, on the existing directory; the probe file is gone.
		if err := c.CheckOutputDir(); err != nil {
			t.Fatal(err)
		}
		if ents, _ := os.ReadDir(c.Output.Dir); len(ents) != 0 {
			t.Fatalf("left behind %v", ents)
		}
	})
	t.Run("refuses a file", func(t *testing.T) {
		c := Default()
		c.Output.Dir = filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(c.Output.Dir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		err := c.CheckOutputDir()
		if err == nil || !strings.Contains(err.Error(), c.Output.Dir+" is not a directory") || !strings.HasPrefix(err.Error(), "output.dir: ") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("refuses a parent that is a file", func(t *testing.T) {
		c := Default()
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		c.Output.Dir = filepath.Join(file, "streams")
		if err := c.CheckOutputDir(); err == nil || !strings.Contains(err.Error(), c.Output.Dir) {
			t.Fatalf("got %v", err)
		}
	})
	// /proc is a directory in which nobody, root included, can create a
	// file: a real failure whoever runs the tests. Permission bits are tried
	// too when not root (they would not stop root, who runs `make test`).
	t.Run("refuses an unwritable directory", func(t *testing.T) {
		if fi, err := os.Stat("/proc/self"); err != nil || !fi.IsDir() {
			testenv.SkipOrFail(t, "/proc is not mounted")
		}
		c := Default()
		c.Output.Dir = "/proc"
		err := c.CheckOutputDir()
		if err == nil || !strings.Contains(err.Error(), "cannot create files in /proc") {
			t.Fatalf("got %v", err)
		}
		c.Output.Dir = "/proc/jmxdp-test/streams"
		err = c.CheckOutputDir()
		if err == nil || !strings.Contains(err.Error(), "cannot create /proc/jmxdp-test/streams") {
			t.Fatalf("got %v", err)
		}
		if os.Geteuid() == 0 {
			return
		}
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o700)
		c.Output.Dir = dir
		if err := c.CheckOutputDir(); err == nil || !strings.Contains(err.Error(), "cannot create files in "+dir) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("refuses an empty path", func(t *testing.T) {
		c := Default()
		c.Output.Dir = ""
		if err := c.CheckOutputDir(); err == nil {
			t.Fatal("accepted")
		}
	})
}

// FuzzParse: Parse never panics, and what it accepts Validate accepts.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(examplePath()); err == nil {
		f.Add(data)
	}
	for _, s := range []string{
		"", "~", "- a", "ports: [1, 2]", "policy: [{mid: 0x3039, sid: any, action: count}]",
		"allowlist: [192.0.2.0/24, \"2001:db8::/32\"]", "capture: {queues: [0, 1], xdp_mode: driver}",
		"output: {rotate_size: 1GiB, rotate_age: 1h}", "ports: &p [*p]", "a: b\n---\nc: d",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			configErrors(t, err) // every error is a *Error
			return
		}
		if c.Interface == "" {
			c.Interface = "eth0"
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v\n%q", err, data)
		}
	})
}

// TestMetricsKeys: top_streams 0 (no per-stream series) and 1000 are
// accepted, and hide_ids is read.
func TestMetricsKeys(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Metrics
	}{
		{"metrics:\n  top_streams: 0\n  hide_ids: true\n", Metrics{Addr: DefaultMetrics, TopStreams: 0, HideIDs: true, HideIDsSet: true}},
		{"metrics: {top_streams: 1000}\n", Metrics{Addr: DefaultMetrics, TopStreams: 1000}},
		{"metrics: {addr: \"\", hide_ids: false}\n", Metrics{TopStreams: DefaultTopStreams, HideIDsSet: true}},
	} {
		c, err := Parse([]byte(tc.in), "cfg.yaml")
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if c.Metrics != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.in, c.Metrics, tc.want)
		}
		c.Interface = "eth0"
		if err := c.Validate(); err != nil {
			t.Errorf("%q: Validate: %v", tc.in, err)
		}
	}
}

// TestForwardRules: a forward rule needs to:, to: goes only with forward,
// and both target forms read back.
func TestForwardRules(t *testing.T) {
	c, err := Parse([]byte("policy:\n  - {mid: 1, action: forward, to: \"198.19.50.50:30031\"}\n  - {mid: 2, sid: 5, action: forward, to: \"[2001:db8::50]:30030\"}\n  - {mid: 3, action: forward, to: 2001:db8::51}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []vocab.PolicyRule{
		{MID: 1, AnySID: true, Action: vocab.ActionForward, Target: netip.MustParseAddrPort("198.19.50.50:30031")},
		{MID: 2, SID: 5, Action: vocab.ActionForward, Target: netip.MustParseAddrPort("[2001:db8::50]:30030")},
		{MID: 3, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(netip.MustParseAddr("2001:db8::51"), 0)},
	}
	if !reflect.DeepEqual(c.Policy, want) {
		t.Fatalf("got %v, want %v", c.Policy, want)
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, "rendered")
	if err != nil || !reflect.DeepEqual(back.Policy, want) {
		t.Fatalf("rendered %s read back as %v (%v)", out, back.Policy, err)
	}
	for _, bad := range []struct{ yaml, msg string }{
		{"policy:\n  - {mid: 1, action: forward}\n", "action forward needs a target"},
		{"policy:\n  - {mid: 1, action: count, to: \"198.19.50.50:1\"}\n", "to: goes only with action forward"},
		{"policy:\n  - {mid: 1, action: forward, to: \"127.0.0.1:1\"}\n", "not a unicast address"},
		{"policy:\n  - {mid: 1, action: forward, to: \"nonsense\"}\n", "want IP:PORT"},
		{"default_action: forward\n", "forward needs a target"},
	} {
		if _, err := Parse([]byte(bad.yaml), "t.yaml"); err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%q: error %v, want one containing %q", bad.yaml, err, bad.msg)
		}
	}
}
