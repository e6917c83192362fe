package main

import (
	"os"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/bench"
)

// TestMain lets `jmxdp bench`, run in this test binary, re-execute it as
// the capture section's sender (bench.RunChildIfAsked), as it does jmxdp.
func TestMain(m *testing.M) {
	bench.RunChildIfAsked()
	os.Exit(m.Run())
}
