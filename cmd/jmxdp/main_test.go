package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestGenThenDecodeJSON(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "demo.pcap")
	if _, err := run(t, "gen", "--out", pcap); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(pcap)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("generated capture: %v, mode %v", err, st.Mode().Perm())
	}
	out, err := run(t, "decode", "--engine", "go", "--format", "json", pcap)
	if err != nil {
		t.Fatal(err)
	}
	var rep decode.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("decode output is not JSON: %v\n%s", err, out)
	}
	if len(rep.Streams) == 0 || rep.Totals.Jmirror == 0 || rep.Totals.NotJmirror == 0 {
		t.Fatalf("report %+v", rep.Totals)
	}
	table, err := run(t, "decode", "--engine", "go", pcap)
	if err != nil || !strings.Contains(table, "MID") || !strings.Contains(table, "streams") {
		t.Fatalf("table: %v\n%s", err, table)
	}
}

func TestBadArguments(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"decode"}, "requires at least 1 arg"},
		{[]string{"decode", "--port", "70000", "x.pcap"}, "not a UDP port"},
		{[]string{"decode", "--port", "0", "x.pcap"}, "not a UDP port"},
		{[]string{"decode", "--format", "xml", "x.pcap"}, "--format"},
		{[]string{"decode", "--engine", "go", "--port", "1", filepath.Join(dir, "x.pcap")}, "no such file"},
		{[]string{"decode", "--engine", "python", filepath.Join(testenv.RepoRoot(), "go.mod")}, "unknown engine"},
		{[]string{"decode", "--engine", "go", filepath.Join(testenv.RepoRoot(), "go.mod")}, "not a pcap"},
		{[]string{"decode", "--bogus"}, "unknown flag"},
		{[]string{"gen"}, "--out"},
	} {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("jmxdp %s: error %v, want %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// The built binary exits non-zero with a message on stderr, never a panic.
func TestExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	empty := filepath.Join(t.TempDir(), "empty.pcap")
	os.WriteFile(empty, nil, 0o600)
	cmd := exec.Command(bin, "decode", "--engine", "go", empty)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v", err)
	}
	if !strings.Contains(stderr.String(), "empty file") || strings.Contains(stderr.String(), "panic") {
		t.Fatalf("stderr: %s", stderr.String())
	}
}

var built struct {
	sync.Once
	path string
	err  error
	out  []byte
}

// buildBinary builds jmxdp once for the test binary's tests that run it.
func buildBinary(t *testing.T) string {
	t.Helper()
	built.Do(func() {
		dir, err := os.MkdirTemp("", "jmxdp-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "jmxdp")
		built.out, built.err = exec.Command("go", "build", "-o", built.path, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("build: %v\n%s", built.err, built.out)
	}
	return built.path
}
