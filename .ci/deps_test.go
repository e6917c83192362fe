// Package ci tests the scripts under .ci (make deps).
package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// depsCmd runs .ci/deps with a PATH that has only bash, so that
// every package found by a command is missing, as on a fresh machine. As
// root it runs as nobody when asRoot is false.
func depsCmd(t *testing.T, asRoot bool, args ...string) (string, int) {
	t.Helper()
	// Not t.TempDir: its parent is 0700, and nobody must reach bash.
	bin, err := os.MkdirTemp("", "jmxdp-deps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bash, filepath.Join(bin, "bash")); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("deps")
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{filepath.Join(bin, "bash"), script}, args...)
	if !asRoot && os.Geteuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			testenv.SkipOrFail(t, "root without setpriv: cannot run the script as another user")
		}
		argv = append([]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"}, argv...)
	} else if asRoot && os.Geteuid() != 0 {
		testenv.RequireRoot(t)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + bin, "HOME=/"}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	t.Logf("%v: exit %d\n%s", args, code, out)
	return string(out), code
}

// Not root, a missing package is named with the command that installs it;
// `make deps` fails, `make test`'s --warn only warns.
func TestDepsNotRoot(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{{nil, 1}, {[]string{"--warn"}, 0}} {
		out, code := depsCmd(t, false, c.args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d", c.args, code, c.code)
		}
		for _, want := range []string{"missing packages: ", "tshark", "iproute2", "prometheus", "sudo make deps",
			"sudo apt-get install --no-install-recommends "} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output lacks %q", c.args, want)
			}
		}
		if strings.Contains(out, "installing") || strings.Contains(out, "command not found") {
			t.Errorf("%v: not root, yet it installs", c.args)
		}
	}
}

// As root on a machine without apt-get (none on this PATH), it says what to
// install by hand and fails; it installs nothing.
func TestDepsRootNoAptGet(t *testing.T) {
	out, code := depsCmd(t, true)
	if code != 1 || !strings.Contains(out, "no apt-get on this machine") || !strings.Contains(out, "tshark") {
		t.Errorf("exit %d, output %q", code, out)
	}
}
