package daemon

import (
	"slices"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/config"
)

// The sink is set up at start: a reload that changes it keeps the running
// one and says so.
func TestSinkNeedsRestart(t *testing.T) {
	a := config.Default()
	b := a
	b.Sink.URL, b.Sink.Replicas = "nats://127.0.0.1:4222", 3
	got := restartOnly(a, b)
	if !slices.Contains(got, "sink.url") || !slices.Contains(got, "sink.replicas") {
		t.Fatalf("restart-only keys %v", got)
	}
}
