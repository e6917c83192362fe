package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/logid"
)

// TestStreamHash: the command gives the names the logs use and maps a
// name back to its stream directory.
func TestStreamHash(t *testing.T) {
	dir := t.TempDir()
	if _, err := run(t, "stream-hash", "--out", dir, "--mid", "5", "--sid", "6"); err == nil || !strings.Contains(err.Error(), "no log key") {
		t.Fatalf("without a key: %v", err)
	}
	n, err := logid.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "mid-12345", "sid-100000"), 0o700)
	out, err := run(t, "stream-hash", "--out", dir, "--mid", "0x3039", "--sid", "100000")
	if err != nil || strings.TrimSpace(out) != n.StreamName(12345, 100000) {
		t.Fatalf("stream-hash --mid --sid: %q %v, want %s", out, err, n.StreamName(12345, 100000))
	}
	if out, err := run(t, "stream-hash", "--out", dir, "--mid", "012345"); err != nil || strings.TrimSpace(out) != n.InterceptName(12345) {
		t.Errorf("stream-hash --mid (leading zero is decimal): %q %v", out, err)
	}
	cfg := filepath.Join(t.TempDir(), "jmxdp.yaml")
	os.WriteFile(cfg, []byte("output: {dir: "+dir+"}\n"), 0o600)
	if out, err := run(t, "stream-hash", "--config", cfg, n.StreamName(12345, 100000)); err != nil || strings.TrimSpace(out) != "mid-12345/sid-100000" {
		t.Errorf("stream-hash HASH: %q %v", out, err)
	}
	for _, args := range [][]string{{"--sid", "1"}, {}, {"--mid", "1", "stream-000000000000"}, {"--mid", "x"}, {"stream-000000000000"}} {
		if _, err := run(t, append([]string{"stream-hash", "--out", dir}, args...)...); err == nil {
			t.Errorf("stream-hash %v: no error", args)
		}
	}
}
