package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/jmxdp/jmxdp/userspace/decode"
)

// TestHelpDefaults: no command's help prints an empty slice's
// "(default [])", or two defaults for one flag (run --help printed
// "(default 30030) (default [])").
func TestHelpDefaults(t *testing.T) {
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		path := strings.Fields(c.CommandPath())[1:]
		out, err := run(t, append(path, "--help")...)
		if err != nil {
			t.Errorf("%s --help: %v", c.CommandPath(), err)
			return
		}
		n++
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "(default [])") || strings.Count(line, "(default") > 1 {
				t.Errorf("%s --help: %q", c.CommandPath(), strings.TrimSpace(line))
			}
		}
	}
	walk(newRootCmd())
	if n < 8 {
		t.Errorf("only %d commands' help checked", n)
	}
	out, _ := run(t, "run", "--help")
	if !strings.Contains(out, "-p, --port ports") || !strings.Contains(out, "comma-separated (default: the config file's ports, else 30030)") {
		t.Errorf("run --help --port line:\n%s", out)
	}
}

// TestPortFlag: run and decode take --port the same way: repeatable,
// comma-separated, 1-65535 checked as the flag is parsed; decode also
// takes auto.
func TestPortFlag(t *testing.T) {
	for _, name := range []string{"run", "decode"} {
		var cmd *cobra.Command
		for _, c := range newRootCmd().Commands() {
			if c.Name() == name {
				cmd = c
			}
		}
		if cmd == nil {
			t.Fatalf("no %s command", name)
		}
		if err := cmd.ParseFlags([]string{"--port", "30030,30031", "-p", "40000", "--port", " 65535 "}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fl := cmd.Flags().Lookup("port")
		p, ok := fl.Value.(*portList)
		if !ok {
			t.Fatalf("%s --port is a %T, want *portList", name, fl.Value)
		}
		if want := []uint16{30030, 30031, 40000, 65535}; !slices.Equal(p.ports, want) {
			t.Errorf("%s --port: %v, want %v", name, p.ports, want)
		}
		for _, bad := range []string{"0", "65536", "-1", "x", "", "30030,,30031", "30030;30031"} {
			q := &portList{allowAuto: name == "decode"}
			if err := q.Set(bad); err == nil || !strings.Contains(err.Error(), "not a UDP port (1-65535)") {
				t.Errorf("%s --port %q: error %v", name, bad, err)
			}
		}
	}
	runPorts, dec := &portList{}, &portList{allowAuto: true}
	if err := runPorts.Set("auto"); err == nil {
		t.Error("run --port auto accepted")
	}
	if err := dec.Set("30030,auto"); err != nil || !dec.auto || !slices.Equal(dec.ports, []uint16{30030}) || dec.String() != "30030,auto" {
		t.Errorf("decode --port 30030,auto: %v, %+v", err, dec)
	}
	if _, err := run(t, "run", "--iface", "lo", "--port", "30030,70000"); err == nil || !strings.Contains(err.Error(), `"70000" is not a UDP port`) {
		t.Errorf("run --port 30030,70000: %v", err)
	}
}

// TestDecodePortList: a comma list reaches the decoder: the demo's
// traffic is on 30030, so --port 6502 finds no stream and --port
// 6502,30030 finds them all.
func TestDecodePortList(t *testing.T) {
	pcap := filepath.Join(t.TempDir(), "demo.pcap")
	if _, err := run(t, "gen", "--out", pcap); err != nil {
		t.Fatal(err)
	}
	streams := func(ports string) int {
		t.Helper()
		out, err := run(t, "decode", "--engine", "go", "--format", "json", "--port", ports, pcap)
		if err != nil {
			t.Fatalf("--port %s: %v", ports, err)
		}
		var rep decode.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		return len(rep.Streams)
	}
	if n := streams("6502"); n != 0 {
		t.Errorf("--port 6502: %d streams", n)
	}
	if n, all := streams("6502,30030"), streams("30030"); n == 0 || n != all {
		t.Errorf("--port 6502,30030: %d streams, --port 30030: %d", n, all)
	}
}

// TestGenFormat: gen takes table|json as the other commands do, and the
// old text as a deprecated alias of table.
func TestGenFormat(t *testing.T) {
	pcap := filepath.Join(t.TempDir(), "demo.pcap")
	table, err := run(t, "gen", "--out", pcap, "--format", "table")
	if err != nil || !strings.HasPrefix(table, "wrote ") {
		t.Fatalf("--format table: %v\n%s", err, table)
	}
	def, err := run(t, "gen", "--out", pcap)
	if err != nil || def != table {
		t.Errorf("default format: %v\n%s\nwant\n%s", err, def, table)
	}
	text, err := run(t, "gen", "--out", pcap, "--format", "text")
	if err != nil || !strings.Contains(text, "--format text is deprecated: use --format table") || !strings.HasSuffix(text, table) {
		t.Errorf("--format text: %v\n%s", err, text)
	}
	if _, err := run(t, "gen", "--out", pcap, "--format", "xml"); err == nil || !strings.Contains(err.Error(), "want table or json") {
		t.Errorf("--format xml: %v", err)
	}
}
