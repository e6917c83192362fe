package daemon_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/logid"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// TestStartBadWebConfig: a web config that cannot work stops the start
// before anything is pinned or created.
func TestStartBadWebConfig(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Metrics.Addr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.Metrics.WebConfig = filepath.Join(t.TempDir(), "web.yml")
	os.WriteFile(cfg.Metrics.WebConfig, []byte("basic_auth_users:\n  alice: not-a-bcrypt-hash\n"), 0o600)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		d.Stop()
		t.Fatal("started with a bad web config")
	}
	if !strings.Contains(err.Error(), "metrics.web_config") || !strings.Contains(err.Error(), cfg.Metrics.WebConfig) {
		t.Errorf("error %q names neither the key nor the file", err)
	}
	for _, p := range []string{e.pinDir, e.out} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused start", p)
		}
	}
}

// TestHideIDsByDefault: an endpoint on a non-loopback address without a
// web config hides ids in the metrics and the logs, says so once at start,
// and makes the log key; hide_ids: false there is honoured with a warning.
func TestHideIDsByDefault(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	// The lab's host end: an address of this machine that is not loopback.
	cfg.Metrics.Addr = fmt.Sprintf("%s:%d", e.lab.HostAddr.Addr(), testenv.FreePort(t))
	d := e.start(t, cfg)
	logs := e.logs.String()
	if n := strings.Count(logs, "intercept ids in metrics and logs"); n != 1 || !strings.Contains(logs, "hidden=true") ||
		!strings.Contains(logs, "is not loopback and there is no metrics.web_config") {
		t.Errorf("the start logged the choice %d times:\n%s", n, logs)
	}
	if _, err := logid.Load(e.out); err != nil {
		t.Errorf("no log key: %v", err)
	}
	var frames [][]byte
	for i := range 10 {
		frames = append(frames, e.mirror(t, e.lab.RouterAddr.Addr(), 424242, 7, 30030, i))
	}
	e.send(t, frames)
	settle(t, d, len(frames))
	resp, err := http.Get("http://" + d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "jmxdp_frames_total") || strings.Contains(string(body), `mid="`) || strings.Contains(string(body), "424242") {
		t.Errorf("metrics with ids hidden:\n%.500s", body)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := streamFiles(t, e.out); len(got["mid-424242/sid-7"]) != 1 {
		t.Fatalf("stream files %v", got)
	}
	if strings.Contains(e.logs.String(), "424242") {
		t.Errorf("the mid in the logs:\n%s", e.logs.String())
	}

	e.logs = &testenv.LogBuffer{}
	cfg.Metrics.HideIDs, cfg.Metrics.HideIDsSet = false, true
	d = e.start(t, cfg)
	defer d.Stop()
	e.send(t, frames)
	testenv.WaitFor(t, "a per-intercept series (hide_ids: false)", 10*time.Second, func() bool {
		resp, err := http.Get("http://" + d.MetricsAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), `mid="424242"`)
	})
	if logs := e.logs.String(); !strings.Contains(logs, "level=WARN msg=\"intercept ids are shown\"") || !strings.Contains(logs, "without TLS or authentication") {
		t.Errorf("hide_ids: false on an exposed endpoint, no warning:\n%s", logs)
	}
}
