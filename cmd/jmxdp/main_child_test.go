package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/bench"
)

// TestMain lets `jmxdp bench`, run in this test binary, re-execute it as
// the capture section's sender and as `jmxdp run` (bench.RunChild), as it
// does jmxdp; then removes the binary buildBinary made.
func TestMain(m *testing.M) {
	if bench.IsChild(os.Args) {
		os.Exit(bench.RunChild(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}
