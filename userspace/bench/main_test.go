package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// TestMain lets the capture section re-execute this test binary as its
// sender and its udprecv collector (RunChild).
func TestMain(m *testing.M) {
	if IsChild(os.Args) {
		os.Exit(RunChild(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	code := m.Run()
	if jmxdpDir != "" {
		os.RemoveAll(jmxdpDir)
	}
	os.Exit(code)
}

var (
	jmxdpOnce sync.Once
	jmxdpDir  string
	jmxdpErr  error
)

// jmxdpBinary builds cmd/jmxdp once for the tests: the capture section runs
// jmxdp as `jmxdp run`, and this test binary is not jmxdp.
func jmxdpBinary(t *testing.T) string {
	t.Helper()
	jmxdpOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			jmxdpErr = err
			return
		}
		if jmxdpDir, jmxdpErr = os.MkdirTemp("", "jmxdp-bench-bin-"); jmxdpErr != nil {
			return
		}
		cmd := exec.Command(goBin, "build", "-o", filepath.Join(jmxdpDir, "jmxdp"), "./cmd/jmxdp")
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			jmxdpErr = &buildError{err: err, out: string(out)}
		}
	})
	if jmxdpErr != nil {
		t.Fatalf("build jmxdp: %v", jmxdpErr)
	}
	return filepath.Join(jmxdpDir, "jmxdp")
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }
