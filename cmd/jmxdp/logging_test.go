package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// --log-format json writes one JSON object a line, with the level, the
// message and the attributes as keys; --log-level drops what is below it.
func TestLogHandlerJSON(t *testing.T) {
	var b bytes.Buffer
	h, err := newLogHandler(&b, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(h)
	log.Debug("hidden")
	log.Info("capturing", "iface", "eth1", "queues", 4)
	log.Warn("two\nlines", "err", "disk full")
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (debug hidden at info):\n%s", len(lines), b.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("%q: %v", lines[0], err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatalf("%q: %v", lines[1], err)
	}
	if first["level"] != "INFO" || first["msg"] != "capturing" || first["iface"] != "eth1" || first["queues"] != 4.0 || first["time"] == nil {
		t.Errorf("first line %v", first)
	}
	if second["level"] != "WARN" || second["msg"] != "two\nlines" || second["err"] != "disk full" {
		t.Errorf("second line %v", second)
	}
}

func TestLogHandlerText(t *testing.T) {
	var b bytes.Buffer
	h, err := newLogHandler(&b, "text", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(h)
	log.Info("hidden")
	log.Error("failed", "err", "x")
	if out := b.String(); strings.Count(out, "\n") != 1 || !strings.Contains(out, "level=ERROR msg=failed err=x") {
		t.Errorf("text: %q", out)
	}
}

// The flags are the root's, so every command takes them; a bad value is
// refused before the command runs.
func TestLogFlags(t *testing.T) {
	if _, err := run(t, "--log-format", "json", "--log-level", "debug", "version"); err != nil {
		t.Error(err)
	}
	if _, err := run(t, "version", "--log-format", "json", "-v"); err != nil {
		t.Error(err)
	}
	for _, c := range []struct{ args []string }{
		{[]string{"--log-format", "xml", "version"}},
		{[]string{"--log-level", "loud", "version"}},
	} {
		out, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.args[0]) || strings.Contains(out, "bpf object") {
			t.Errorf("%v: error %v, output %q", c.args, err, out)
		}
	}
}
