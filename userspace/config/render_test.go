package config

import (
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// roundTrip renders c and parses the result back.
func roundTrip(t *testing.T, c Config) (Config, string) {
	t.Helper()
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, "rendered.yaml")
	if err != nil {
		t.Fatalf("the rendered config does not parse: %v\n%s", err, out)
	}
	return back, string(out)
}

// What Marshal writes is what Parse reads: the example file, the
// defaults, and values at the edges of what each key takes.
func TestMarshalRoundTrip(t *testing.T) {
	data, err := os.ReadFile(examplePath())
	if err != nil {
		t.Fatal(err)
	}
	example, err := Parse(data, "jmxdp.example.yaml")
	if err != nil {
		t.Fatal(err)
	}

	def := Default()
	def.Interface = "eth0"

	edge := Default()
	edge.Interface = "ens1f0"
	edge.Ports, edge.PortsSet = []uint16{1, 65535}, true
	edge.DefaultAction, edge.DefaultActionSet = vocab.ActionPass, true
	edge.Policy, edge.PolicySet = []vocab.PolicyRule{
		{MID: vocab.MaxMID, SID: 0xffffffff, Action: vocab.ActionCount},
		{MID: 0, AnySID: true, Action: vocab.ActionCapture},
	}, true
	edge.Allowlist, edge.AllowlistSet = []netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.7/32")}, true
	edge.Output.RotateSize = 1_000_001 // no unit divides it
	edge.Output.RotateAge = 0
	edge.Output.FlushInterval = 1500 * time.Millisecond
	edge.Output.BufferMemory = 3 << 40
	edge.Capture.Queues = []uint32{0, 7}
	edge.Capture.ZeroCopy = false
	edge.Capture.Writers = 3
	edge.Reassembly.Timeout = 90 * time.Minute
	edge.Metrics.Addr = ":9877"
	edge.Metrics.HideIDs, edge.Metrics.HideIDsSet = true, true

	empty := Default()
	empty.Interface = "lo"
	empty.Policy, empty.PolicySet = nil, true
	empty.Allowlist, empty.AllowlistSet = nil, true
	empty.Metrics.Addr = ""

	for name, c := range map[string]Config{"example": example, "default": def, "edge": edge, "empty lists": empty} {
		back, out := roundTrip(t, c)
		// The rendering names ports and default_action whether or not the
		// original did.
		want := c
		want.PortsSet, want.DefaultActionSet = true, true
		if !reflect.DeepEqual(back, want) {
			t.Errorf("%s: read back\n%+v\nwant\n%+v\nrendered:\n%s", name, back, want, out)
		}
		if err := back.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Every key the decoder knows is in the rendering, so that a key added to
// the file format cannot be left out of `config check`.
func TestMarshalEveryKey(t *testing.T) {
	c := Default()
	c.Interface = "eth0"
	c.PolicySet, c.AllowlistSet = true, true
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	section := ""
	have := map[string]bool{}
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "# hide_ids: not set: ") {
			have["metrics.hide_ids"] = true // decided at start: shown with its choice
			continue
		}
		if l == "" || strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		key, _, _ := strings.Cut(strings.TrimSpace(l), ":")
		if !strings.HasPrefix(l, " ") {
			section = key
			have[key] = true
		} else {
			have[section+"."+key] = true
		}
	}
	for _, k := range topKeys {
		if !have[k] {
			t.Errorf("%s missing from\n%s", k, out)
		}
	}
	for section, keys := range map[string][]string{
		"output": outputKeys, "capture": captureKeys, "reassembly": reassemblyKeys, "metrics": metricsKeys,
		"sink": sinkKeys,
	} {
		for _, k := range keys {
			if !have[section+"."+k] {
				t.Errorf("%s.%s missing from\n%s", section, k, out)
			}
		}
	}
}

// Keys whose absence means "keep what the instance has" are comments, so
// that the rendering, used as a file, does not clear the live policy.
func TestMarshalUnsetKeys(t *testing.T) {
	c := Default()
	back, out := roundTrip(t, c)
	for _, want := range []string{"# interface: not set", "# policy: not set", "# allowlist: not set"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if back.PolicySet || back.AllowlistSet || back.Interface != "" {
		t.Errorf("read back with policy set %v, allowlist set %v, interface %q", back.PolicySet, back.AllowlistSet, back.Interface)
	}
	for _, want := range []string{"rotate_size: 256MiB\n", "rotate_age: 15m\n", "timeout: 30s\n", "addr: 127.0.0.1:9877\n", "queues: all\n", "ports: [30030]\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
