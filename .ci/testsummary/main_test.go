package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// fixture is a module whose tests pass, skip (with a reason, in a
// subtest, on two lines), run in part, fail, panic and do not build.
var fixture = map[string]string{
	"go.mod": "module example.com/fix\n\ngo 1.22\n",
	"ok/ok_test.go": `package ok

import "testing"

func TestPass(t *testing.T) { t.Log("noise of a passing test") }
func TestSkip(t *testing.T) { t.Log("an earlier line"); t.Skip("tshark not installed\nsecond line") }
func TestPart(t *testing.T) { t.Log("partly skipped: ping not installed") }
`,
	"bad/bad_test.go": `package bad

import "testing"

func TestFail(t *testing.T) {
	t.Log("before the subtests")
	t.Run("sub", func(t *testing.T) { t.Error("boom") })
	t.Run("subskip", func(t *testing.T) { t.Skipf("sub reason %d", 3) })
}
`,
	"panics/panics_test.go": `package panics

import "testing"

func TestPanic(t *testing.T) { t.Log("about to panic"); panic("oops") }
`,
	"nobuild/nobuild_test.go": `package nobuild

import "testing"

func TestX(t *testing.T) { undefinedFunc() }
`,
}

// runFixture runs the summary over a real `go test -json` of the fixture's
// packages.
func runFixture(t *testing.T, pkgs ...string) (string, int) {
	t.Helper()
	dir := t.TempDir()
	for name, src := range fixture {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	t.Setenv("CI", "") // the fixture's skips are the point
	var out, errOut strings.Builder
	code := run(append([]string{"go", "test", "-count=1", "-json"}, pkgs...), &out, &errOut)
	t.Logf("output:\n%s\nstderr:\n%s", out.String(), errOut.String())
	return out.String(), code
}

func TestPassingRun(t *testing.T) {
	out, code := runFixture(t, "./ok")
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	for _, want := range []string{
		"ok  \texample.com/fix/ok",
		"\n== SKIPPED (1)\n  ok TestSkip: ok_test.go:6: tshark not installed second line\n",
		"\n== PARTLY SKIPPED (the test passed without these checks) (1)\n  ok TestPart: ping not installed\n",
		"\n== 2 passed, 1 skipped, 1 partly skipped, 0 failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// As a plain go test: no output of passing or skipped tests, no PASS.
	for _, not := range []string{"noise of a passing test", "an earlier line", "=== RUN", "PASS\n", "FAILED"} {
		if strings.Contains(out, not) {
			t.Errorf("output has %q", not)
		}
	}
}

func TestFailingRun(t *testing.T) {
	out, code := runFixture(t, "./...")
	if code == 0 {
		t.Error("exit 0 for a failing run")
	}
	// The failing test's whole output, in order, as go test prints it.
	if !regexp.MustCompile(`(?s)=== RUN   TestFail\n.*before the subtests.*boom\n--- FAIL: TestFail/sub .*--- FAIL: TestFail `).MatchString(out) {
		t.Error("the failing test's output is not shown in order")
	}
	for _, want := range []string{
		"about to panic", "panic: oops", "FAIL\texample.com/fix/panics",
		"undefined: undefinedFunc",
		"  bad TestFail/subskip: bad_test.go:8: sub reason 3\n",
		"\n== FAILED (4)\n",
		"  bad TestFail/sub\n", "  bad TestFail\n", "  panics TestPanic\n",
		"  nobuild: build failed\n",
		"1 partly skipped, 4 failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "noise of a passing test") {
		t.Error("a passing test's output is shown")
	}
}

func TestNoCommand(t *testing.T) {
	var out, errOut strings.Builder
	if code := run(nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "usage") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
	if code := run([]string{"/nonexistent/go"}, &out, &errOut); code == 0 {
		t.Error("exit 0 for a command that cannot start")
	}
}

func TestExitStatusPassedOn(t *testing.T) {
	var out, errOut strings.Builder
	if code := run([]string{"sh", "-c", "exit 3"}, &out, &errOut); code != 3 {
		t.Errorf("exit %d, want the command's 3", code)
	}
	if !strings.Contains(out.String(), "no test events") {
		t.Errorf("no warning for a command without events: %q", out.String())
	}
}

func TestPartSkipPrefix(t *testing.T) {
	if partSkipPrefix != testenv.PartSkipPrefix {
		t.Errorf("%q here, %q in testenv", partSkipPrefix, testenv.PartSkipPrefix)
	}
}
