package metrics_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestServer(t *testing.T) {
	c := metrics.NewCollector(metrics.Source{Capture: fakeCapture, Writer: fakeWriter}, metrics.Options{Version: "test"})
	reg, err := metrics.NewRegistry(c)
	if err != nil {
		t.Fatal(err)
	}
	var notReady atomic.Pointer[error]
	starting := errors.New("capture not started yet")
	notReady.Store(&starting)
	srv, err := metrics.NewServer("127.0.0.1:0", reg, func() error {
		if e := notReady.Load(); e != nil {
			return *e
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	base := "http://" + srv.Addr()

	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, s := range []string{"jmxdp_build_info{", "jmxdp_xsk_frames_total{queue=\"0\"} 100", "jmxdp_writer_packets_total 1000",
		"# HELP jmxdp_xsk_frames_total ", "# TYPE jmxdp_xsk_frames_total counter", "go_goroutines", "process_"} {
		if !strings.Contains(body, s) {
			t.Errorf("/metrics lacks %q", s)
		}
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "capture not started yet") {
		t.Errorf("/readyz before ready: %d %q", code, body)
	}
	notReady.Store(nil)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready: %d", code)
	}
	if code, _ := get(t, base+"/nonesuch"); code != http.StatusNotFound {
		t.Errorf("/nonesuch: %d", code)
	}

	// The port is taken now.
	if s2, err := metrics.NewServer(srv.Addr(), reg, nil); err == nil {
		s2.Close()
		t.Fatalf("second server on %s started", srv.Addr())
	}
	addr := srv.Addr()
	if err := srv.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("still listening on %s after Close", addr)
	}
}

// TestServerMetricsWithJmirror: /metrics carries the kernel's frame
// classes (root: needs the loaded program).
func TestServerMetricsWithJmirror(t *testing.T) {
	tb := newTestbed(t)
	reg, err := metrics.NewRegistry(metrics.NewCollector(metrics.Source{Maps: tb.prog.Maps}, metrics.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := metrics.NewServer("127.0.0.1:0", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	code, body := get(t, "http://"+srv.Addr()+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, `jmxdp_frames_total{class="jmirror"} 18`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	if code, _ := get(t, "http://"+srv.Addr()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz without a ready func: %d", code)
	}
}

func TestServerNoRegistry(t *testing.T) {
	if _, err := metrics.NewServer("127.0.0.1:0", nil, nil); err == nil {
		t.Fatal("accepted a nil registry")
	}
}

// TestDocsComplete: docs/metrics.md describes every family.
func TestDocsComplete(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range metrics.Names() {
		if !strings.Contains(string(data), "| `"+n+"` |") {
			t.Errorf("docs/metrics.md has no row for %s", n)
		}
	}
}
