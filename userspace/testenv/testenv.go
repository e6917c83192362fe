// Package testenv holds what jmxdp's tests share: the root check and the
// location of the shared real-router captures.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test with reason, or fails it in CI.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true: cannot skip: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips tests that load BPF programs or make namespaces when
// not root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root (BPF, network namespaces): run `sudo make test`")
	}
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// SharedTestdata returns the directory of the real router captures,
// ../shared/testdata next to the repository. The captures are never copied
// into the repository: a user's clone has none, and the test skips.
func SharedTestdata(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(), "..", "shared", "testdata")
	if _, err := os.Stat(filepath.Join(dir, "jmirror_ip.pcap")); err != nil {
		SkipOrFail(t, "real router captures not found at "+dir+" (they live outside the repository)")
	}
	return dir
}

// Tool returns the path of an external program the test needs (tshark),
// skipping when it is missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, name+" not installed (apt-get install "+name+")")
	}
	return p
}
