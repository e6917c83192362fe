package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/pins"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
)

// `stats`, `policy list` and `detach` find a daemon whose pin dir came
// from its config file, through the state file the daemon wrote, with no
// --pin-dir and no --config (issue 13, bug 6); `stats --config` reads the
// pin dir from the file.
func TestCommandsFindInstanceFromStateFile(t *testing.T) {
	testenv.RequireRoot(t)
	l := labtest.New(t, "jxi")
	pinBase := filepath.Join(loader.BPFFSRoot, "jmxdp-test-"+l.Name)
	t.Cleanup(func() { os.RemoveAll(pinBase) })
	runDir := t.TempDir()
	file := filepath.Join(t.TempDir(), "jmxdp.yaml")
	conf := "interface: " + l.HostIface + "\noutput:\n  dir: " + t.TempDir() + "\ncapture:\n  pin_dir: " + pinBase + "\n  max_streams: 4096\nmetrics:\n  addr: \"\"\n"
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), daemon.WithRunDir(runDir), daemon.WithConfigPath(file))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	want := pins.Dir(pinBase, l.HostIface)

	pinOf := func(args ...string) string {
		t.Helper()
		out, err := run(t, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		var doc struct {
			PinDir string `json:"pin_dir"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return doc.PinDir
	}
	if got := pinOf("stats", "--iface", l.HostIface, "--run-dir", runDir, "--format", "json"); got != want {
		t.Errorf("stats through the state file: pin dir %q, want %q", got, want)
	}
	if got := pinOf("stats", "--iface", l.HostIface, "--run-dir", t.TempDir(), "--config", file, "--format", "json"); got != want {
		t.Errorf("stats --config: pin dir %q, want %q", got, want)
	}
	// Without either, it looks in the default place and says so.
	if out, err := run(t, "stats", "--iface", l.HostIface, "--run-dir", t.TempDir()); err == nil || !strings.Contains(out+err.Error(), "no running instance") {
		t.Errorf("stats with no state file and no --config: %v\n%s", err, out)
	}
	// policy finds it too, and says which file would keep a live change.
	out, err := run(t, "policy", "add", "--iface", l.HostIface, "--run-dir", runDir, "--mid", "5", "--action", "count")
	if err != nil {
		t.Fatalf("policy add: %v\n%s", err, out)
	}
	if !strings.Contains(out, "started with --config "+file) {
		t.Errorf("policy add does not name the instance's config file:\n%s", out)
	}
	rules, err := d.Program().Maps.Policies()
	if err != nil || len(rules) != 1 || rules[0].MID != 5 {
		t.Errorf("rules after policy add through the state file: %v %v", rules, err)
	}
}
