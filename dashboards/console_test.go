package dashboards_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

var (
	consolePath    = repo("deploy", "prometheus", "consoles", "jmxdp.html")
	screenshotPath = repo("dashboards", "screenshot.sh")
)

// consoleLibraries are where Prometheus's console library (prom.lib) is
// installed: Debian's examples, or a release's console_libraries.
var consoleLibraries = []string{
	"/usr/share/prometheus/console_libraries",
	"/usr/share/doc/prometheus/examples/console_libraries",
	"/etc/prometheus/console_libraries",
}

// consoleExprs returns the PromQL of the console template, with its
// template parts replaced as the template would: the selector, the rate
// window and the printf formats.
func consoleExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(consolePath)
	if err != nil {
		t.Fatal(err)
	}
	const sel = `job='jmxdp',instance=~'x'`
	s := strings.NewReplacer("{ {{- $sel -}} }", "{"+sel+"}", "{{ $w }}", "5m").Replace(string(raw))
	var out []string
	// Graph expressions: JavaScript strings; table cells: printf formats.
	for _, m := range regexp.MustCompile(`"([^"]*(?:jmxdp_|up\{|ALERTS)[^"]*)"`).FindAllStringSubmatch(s, -1) {
		out = append(out, strings.ReplaceAll(m[1], "%s", sel))
	}
	return out
}

// TestConsoleQueries: every query of the console selects metrics jmxdp
// exports (or up, ALERTS), by the job and instance parameters.
func TestConsoleQueries(t *testing.T) {
	known := knownMetrics()
	known["ALERTS"] = true
	exprs := consoleExprs(t)
	if len(exprs) < 20 {
		t.Fatalf("only %d queries found in %s", len(exprs), consolePath)
	}
	for _, e := range exprs {
		if strings.Contains(e, "{{") || strings.Contains(e, "$") {
			t.Errorf("%s: template left in the query", e)
			continue
		}
		sels, err := selectors(e)
		if err != nil {
			t.Errorf("%s: %v", e, err)
			continue
		}
		checkSelectors(t, consolePath, e, sels, known)
		for _, vs := range sels {
			if !hasMatcher(vs, "job", "jmxdp") || !hasMatcher(vs, "instance", "x") {
				t.Errorf("%s: %s is not selected by the job and instance parameters", e, vs)
			}
		}
	}
}

// TestConsoleServes: a real Prometheus serves the console: the template
// and the library it uses expand without an error.
func TestConsoleServes(t *testing.T) {
	bin := testenv.Tool(t, "prometheus")
	lib := ""
	for _, d := range consoleLibraries {
		if _, err := os.Stat(filepath.Join(d, "prom.lib")); err == nil {
			lib = d
			break
		}
	}
	if lib == "" {
		testenv.SkipOrFail(t, fmt.Sprintf("no Prometheus console library (prom.lib) in %v (apt-get install prometheus)", consoleLibraries))
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--web.console.templates="+filepath.Dir(consolePath),
		"--web.console.libraries="+lib, "--log.level=warn")
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/consoles/jmxdp.html?job=jmxdp&instance=a:1%22)%3Balert(1)%3B%2F%2F&window=1m")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				body = string(b)
				break
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("GET console: %s\n%s", resp.Status, b)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus did not serve the console: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"Frames by class", "PromConsole.Graph", "Untrusted frames"} {
		if !strings.Contains(body, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if strings.Contains(strings.ToLower(body), "error executing template") {
		t.Errorf("console template error:\n%s", body)
	}
	// The instance parameter is reduced to safe characters: nothing of the
	// injected script survives.
	if strings.Contains(body, "alert(1)") {
		t.Error("the instance parameter reached the page unfiltered")
	}
}

// TestScreenshotCheck runs the screenshot script's --check: the tools, the
// console library, the Prometheus configuration it writes (promtool checks
// it) and the console's URL; everything but the demo and the rendering.
func TestScreenshotCheck(t *testing.T) {
	testenv.Tool(t, "prometheus")
	testenv.Tool(t, "promtool")
	out, err := exec.Command("sh", screenshotPath, "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("screenshot.sh --check: %v\n%s", err, out)
	}
	want := `url http://127.0.0.1:19090/consoles/jmxdp.html?job=jmxdp&window=10s#pctc%7B%22duration%22%3A60%2C%22endTime%22%3A1700000000%7D`
	if !strings.Contains(string(out), want) {
		t.Errorf("screenshot.sh --check:\n%s\nwant the line %s", out, want)
	}
	cmd := exec.Command("sh", screenshotPath, "--check")
	cmd.Env = append(os.Environ(), "PROM=192.0.2.1:9090")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "loopback") {
		t.Errorf("a non-loopback PROM: %v\n%s", err, out)
	}
}
