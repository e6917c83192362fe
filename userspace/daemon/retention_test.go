package daemon_test

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// TestRetentionAndHandoff: the daemon hands each completed file to the
// on_complete command and keeps the completed files within max_bytes; its
// metrics show both, at 0 from the first scrape.
func TestRetentionAndHandoff(t *testing.T) {
	e := newEnv(t)
	old := filepath.Join(e.out, "mid-9", "sid-9", "20200101T000000.000000000Z.pcapng")
	if err := os.MkdirAll(filepath.Dir(old), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(old, make([]byte, 5000), 0o600)
	os.Chtimes(old, time.Unix(1577836800, 0), time.Unix(1577836800, 0))
	log := filepath.Join(t.TempDir(), "handed-off")
	hook := filepath.Join(t.TempDir(), "handoff.sh")
	os.WriteFile(hook, []byte("#!/bin/sh\n[ -f \"$2\" ] && echo \"$2\" >> "+log+"\n"), 0o700)

	cfg := e.config()
	cfg.Metrics.Addr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.Output.RotateSize = 2000
	cfg.Output.MaxBytes = 8000
	cfg.Output.OnComplete = []string{hook, "--file", "{path}"}
	cfg.Output.OnCompleteWorkers = 2
	d := e.start(t, cfg)

	scrape := func() string {
		resp, err := http.Get("http://" + d.MetricsAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	first := scrape()
	for _, s := range []string{`jmxdp_retention_deleted_files_total{reason="max_bytes"}`, `jmxdp_retention_deleted_bytes_total{reason="max_age"} 0`,
		`jmxdp_handoff_failures_total{reason="timeout"} 0`, `jmxdp_handoff_succeeded_total 0`, `jmxdp_retention_events_dropped_total 0`} {
		if !strings.Contains(first, s) {
			t.Errorf("first scrape lacks %s", s)
		}
	}

	var frames [][]byte
	for i := range 200 {
		frames = append(frames, e.mirror(t, netip.MustParseAddr("192.0.2.1"), 7, 1, 30030, i))
	}
	e.send(t, frames)
	settle(t, d, len(frames))
	testenv.WaitFor(t, "retention to delete the old file", 10*time.Second, func() bool {
		_, err := os.Stat(old)
		return os.IsNotExist(err)
	})
	testenv.WaitFor(t, "the hand-offs", 10*time.Second, func() bool {
		m := scrape()
		return strings.Contains(m, "jmxdp_handoff_queued 0") && strings.Contains(m, "jmxdp_handoff_running 0")
	})
	m := scrape()
	if strings.Contains(m, `jmxdp_retention_deleted_files_total{reason="max_bytes"} 0`) {
		t.Error("no deletion counted")
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	completed := d.Writer().Stats().FilesCompleted
	data, _ := os.ReadFile(log)
	if n := strings.Count(string(data), "\n"); completed < 5 || uint64(n) != completed {
		t.Errorf("%d files completed, %d handed off", completed, n)
	}
	var size int64
	files, _ := filepath.Glob(filepath.Join(e.out, "mid-*", "sid-*", "*.pcapng"))
	for _, f := range files {
		fi, _ := os.Stat(f)
		size += fi.Size()
	}
	// The file completed at Stop may take it over (nothing deletes after).
	if size > cfg.Output.MaxBytes+cfg.Output.RotateSize+2000 {
		t.Errorf("%d bytes of completed files, max_bytes %d", size, cfg.Output.MaxBytes)
	}
	if !strings.Contains(e.logs.String(), "retention: deleted a completed stream file") {
		t.Error("no deletion logged")
	}
}
