package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/bench"
)

// TestMain lets `jmxdp bench`, run in this test binary, re-execute it as
// the capture section's sender (bench.RunChildIfAsked), as it does jmxdp;
// then removes the binary buildBinary made.
func TestMain(m *testing.M) {
	bench.RunChildIfAsked()
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}
