// Package testenv holds what jmxdp's tests share: the root check and the
// location of the shared real-router captures.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
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

// TestdataEnv names the variable that points the tests at the real router
// captures; a relative value is taken from the repository root, since each
// package's tests run in their own directory.
const TestdataEnv = "JMXDP_TESTDATA"

// TestdataDir is where the real router captures are looked for:
// $JMXDP_TESTDATA, or ../shared/testdata next to the repository.
func TestdataDir() string {
	dir := os.Getenv(TestdataEnv)
	if dir == "" {
		dir = filepath.Join("..", "shared", "testdata")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(RepoRoot(), dir)
	}
	return filepath.Clean(dir)
}

// SharedTestdata returns the directory of the real router captures (see
// TestdataDir). The captures are never copied into the repository: a
// user's clone has none, and the test skips (fails when CI=true).
func SharedTestdata(t testing.TB) string {
	t.Helper()
	dir := TestdataDir()
	if _, err := os.Stat(filepath.Join(dir, "jmirror_ip.pcap")); err != nil {
		SkipOrFail(t, "real router captures not found at "+dir+" (they live outside the repository; set "+TestdataEnv+")")
	}
	return dir
}

// Tool returns the path of an external program the test needs (tshark),
// skipping when it is missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, name+" not installed (`sudo make deps` installs it)")
	}
	return p
}

// PartSkipPrefix starts the log line of PartSkip, which the test summary
// of `make test` (.ci/testsummary) lists with the skipped tests.
const PartSkipPrefix = "partly skipped: "

// PartSkip records that part of a test did not run (a tool for one check
// is missing) while the rest did: the test goes on, its log says so in a
// line the test summary lists, and in CI, where nothing may be skipped, it
// fails.
func PartSkip(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Errorf("CI=true: cannot skip: %s", reason)
		return
	}
	t.Log(PartSkipPrefix + reason)
}

// WaitFor polls cond until it holds, failing t after d: a test's one
// bounded wait for something another goroutine or process does.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pollEvery)
	}
}

// pollEvery is how often WaitFor looks.
const pollEvery = 10 * time.Millisecond

// FreePort is a loopback TCP port nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
