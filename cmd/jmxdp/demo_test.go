package main

import (
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// TestKernelLine: the demo's kernel line says why captured exceeds Jmirror
// when there are fragments, and says nothing of them when there are none.
func TestKernelLine(t *testing.T) {
	var c vocab.Counters
	c[vocab.StatFrames], c[vocab.StatJmirror], c[vocab.StatNotJmirror] = 363, 320, 40
	c[vocab.StatFragTracked], c[vocab.StatActionCapture] = 3, 323
	want := "kernel: 363 frames, 320 Jmirror, 40 not Jmirror (passed to the host), 323 captured " +
		"(frames: the 3 later fragments of fragmented datagrams count here, not in Jmirror, which counts each datagram once), 0 capture failures"
	if got := kernelLine(c); got != want {
		t.Errorf("with fragments:\n got  %s\n want %s", got, want)
	}
	c[vocab.StatFragTracked], c[vocab.StatActionCapture], c[vocab.StatCaptureFailed] = 0, 320, 2
	if got := kernelLine(c); strings.Contains(got, "fragment") || !strings.HasSuffix(got, "320 captured, 2 capture failures") {
		t.Errorf("without fragments: %s", got)
	}
}
