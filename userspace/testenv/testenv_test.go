package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestTestdataDir(t *testing.T) {
	abs := t.TempDir()
	for _, c := range []struct{ env, want string }{
		{"", filepath.Join(RepoRoot(), "..", "shared", "testdata")},
		{abs, abs},
		// Relative to the repository, not to the package's directory.
		{"x/captures", filepath.Join(RepoRoot(), "x", "captures")},
	} {
		t.Setenv(TestdataEnv, c.env)
		if got := TestdataDir(); got != filepath.Clean(c.want) {
			t.Errorf("%s=%q: %q, want %q", TestdataEnv, c.env, got, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(RepoRoot(), "go.mod")); err != nil {
		t.Errorf("RepoRoot %s is not the repository: %v", RepoRoot(), err)
	}
}

// recorder is a testing.TB that records what a helper reports; Fatalf and
// Skip end the goroutine, as testing's do. Use it through do.
type recorder struct {
	testing.TB
	fatal, errs, skip, logs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(f string, a ...any) {
	r.fatal = append(r.fatal, fmt.Sprintf(f, a...))
	runtime.Goexit()
}
func (r *recorder) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }
func (r *recorder) Skip(a ...any) {
	r.skip = append(r.skip, fmt.Sprint(a...))
	runtime.Goexit()
}
func (r *recorder) Log(a ...any) { r.logs = append(r.logs, fmt.Sprint(a...)) }

// do runs f with a new recorder in a goroutine of its own.
func do(t *testing.T, f func(r *recorder)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestSharedTestdata(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(TestdataEnv, dir)

	t.Setenv("CI", "")
	r := do(t, func(r *recorder) { SharedTestdata(r) })
	if len(r.skip) != 1 || !strings.Contains(r.skip[0], dir) || !strings.Contains(r.skip[0], TestdataEnv) || len(r.fatal) != 0 {
		t.Errorf("no captures, not CI: skip %q fatal %q, want one skip naming %s and %s", r.skip, r.fatal, dir, TestdataEnv)
	}

	t.Setenv("CI", "true")
	r = do(t, func(r *recorder) { SharedTestdata(r) })
	if len(r.fatal) != 1 || len(r.skip) != 0 {
		t.Errorf("no captures, CI: fatal %q skip %q, want a failure", r.fatal, r.skip)
	}

	// With the captures there, no skip.
	if err := os.WriteFile(filepath.Join(dir, "jmirror_ip.pcap"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r = do(t, func(r *recorder) { SharedTestdata(r) })
	if len(r.fatal)+len(r.skip) != 0 {
		t.Errorf("captures present: fatal %q skip %q", r.fatal, r.skip)
	}
}

func TestPartSkip(t *testing.T) {
	t.Setenv("CI", "")
	r := do(t, func(r *recorder) { PartSkip(r, "ping not installed") })
	if len(r.logs) != 1 || r.logs[0] != PartSkipPrefix+"ping not installed" || len(r.errs) != 0 {
		t.Errorf("not CI: logs %q errors %q", r.logs, r.errs)
	}
	t.Setenv("CI", "true")
	r = do(t, func(r *recorder) { PartSkip(r, "ping not installed") })
	if len(r.errs) != 1 || !strings.Contains(r.errs[0], "ping not installed") {
		t.Errorf("CI: errors %q, want one", r.errs)
	}
}

func TestTool(t *testing.T) {
	t.Setenv("CI", "")
	var p string
	r := do(t, func(r *recorder) { p = Tool(r, "sh") })
	if p == "" || len(r.skip) != 0 {
		t.Errorf("sh: %q, skip %q", p, r.skip)
	}
	r = do(t, func(r *recorder) { Tool(r, "jmxdp-no-such-tool") })
	if len(r.skip) != 1 || !strings.Contains(r.skip[0], "make deps") {
		t.Errorf("missing tool: skip %q, want one naming make deps", r.skip)
	}
}
