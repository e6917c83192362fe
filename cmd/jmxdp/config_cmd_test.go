package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// runSplit runs the CLI with stdout and stderr apart.
func runSplit(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errb.String(), err
}

func examplePath() string { return filepath.Join(testenv.RepoRoot(), "docs", "jmxdp.example.yaml") }

// config check prints what run would use, as a file run accepts: read
// back, it is the example file's configuration.
func TestConfigCheckPrintsEffective(t *testing.T) {
	for _, args := range [][]string{
		{"config", "check", examplePath()},
		{"run", "--config", examplePath(), "--check-config"},
	} {
		out, stderr, err := runSplit(t, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr)
		}
		want, err := config.Load(examplePath())
		if err != nil {
			t.Fatal(err)
		}
		got, err := config.Parse([]byte(out), "printed")
		if err != nil {
			t.Fatalf("%v: the printed config does not parse: %v\n%s", args, err, out)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%v: printed\n%+v\nwant\n%+v", args, got, want)
		}
		if !strings.HasPrefix(out, "# The effective configuration") || stderr != "" {
			t.Errorf("%v: stdout %q..., stderr %q", args, out[:min(len(out), 60)], stderr)
		}
	}
}

// Defaults are printed too, and run's flags apply over the file.
func TestCheckConfigDefaultsAndFlags(t *testing.T) {
	p := filepath.Join(t.TempDir(), "min.yaml")
	if err := os.WriteFile(p, []byte("interface: eth3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runSplit(t, "config", "check", p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"interface: eth3\n", "ports: [30030]\n", "rotate_size: 256MiB\n", "pin_dir: /sys/fs/bpf/jmxdp\n", "timeout: 30s\n", "# policy: not set"} {
		if !strings.Contains(out, want) {
			t.Errorf("config check of a one-line file lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runSplit(t, "run", "--config", p, "--check-config", "--iface", "lo", "--port", "4000", "--port", "4001", "--allow", "192.0.2.0/24", "--rotate-age", "90s")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"interface: lo\n", "ports: [4000, 4001]\n", "allowlist: [192.0.2.0/24]\n", "rotate_age: 1m30s\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("run --check-config with flags lacks %q:\n%s", want, out)
		}
	}
}

// A refused file: every problem on its own FILE:LINE: KEY: MESSAGE line,
// exit status 1, nothing on stdout.
func TestConfigCheckRefuses(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("interface: eth0\nports: [0]\ncapture:\n  frames_per_queue: 1000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noIface := filepath.Join(dir, "noiface.yaml")
	if err := os.WriteFile(noIface, []byte("ports: [30030]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"config", "check", bad}, []string{bad + ":2: ports[0]: 0 is not a UDP port", bad + ":4: capture.frames_per_queue: 1000 is not a power of two"}},
		{[]string{"run", "--check-config", "--config", bad}, []string{bad + ":2: ports[0]:", bad + ":4: capture.frames_per_queue:"}},
		{[]string{"config", "check", noIface}, []string{noIface + ": interface: not set"}},
		{[]string{"config", "check", filepath.Join(dir, "missing.yaml")}, []string{"missing.yaml: no such file"}},
		{[]string{"run", "--check-config", "--iface", "eth0", "--xdp-mode", "turbo"}, []string{"capture.xdp_mode:"}},
	} {
		out, stderr, err := runSplit(t, c.args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 1 {
			t.Errorf("%v: error %v, want exit status 1", c.args, err)
		}
		if out != "" {
			t.Errorf("%v: printed a config for a refused one:\n%s", c.args, out)
		}
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if len(lines) != len(c.want) {
			t.Errorf("%v: %d lines, want %d:\n%s", c.args, len(lines), len(c.want), stderr)
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("%v: line %d %q, want %q", c.args, i+1, lines[i], w)
			}
		}
	}
	if _, _, err := runSplit(t, "config", "check"); err == nil {
		t.Error("config check without a file: no error")
	}
}

// run --check-config needs no privileges and changes nothing: run as
// nobody, with an output and a pin directory that do not exist, it
// creates neither.
func TestCheckConfigUnprivilegedTouchesNothing(t *testing.T) {
	bin := makeBuild(t)
	testenv.RequireRoot(t) // to become nobody
	dir := t.TempDir()
	// nobody must reach the binary: the test's temporary directories are
	// 0700.
	for _, d := range []string{dir, filepath.Dir(dir), filepath.Dir(bin)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, pin := filepath.Join(dir, "out"), filepath.Join(dir, "pin")
	cmd := exec.Command(bin, "run", "--check-config", "--iface", "nosuchif0", "--out", out, "--pin-dir", pin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("as nobody: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "interface: nosuchif0\n") || !strings.Contains(stdout.String(), "dir: "+out+"\n") {
		t.Errorf("output:\n%s", stdout.String())
	}
	for _, p := range []string{out, pin} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want it not created", p, err)
		}
	}
}
