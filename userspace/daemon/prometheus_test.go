package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/send"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// promServer is a real Prometheus (Debian's package) started for one test,
// scraping jmxdp every second and loading jmxdp's alert rules.
type promServer struct {
	url string
}

func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin := testenv.Tool(t, "prometheus")
	dir := t.TempDir()
	rules, err := filepath.Abs(filepath.Join(testenv.RepoRoot(), "deploy", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: jmxdp
    static_configs:
      - targets: [%q]
`, rules, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var logs testenv.LogBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	p := &promServer{url: "http://" + addr}
	testenv.WaitFor(t, "prometheus to be ready", 10*time.Second, func() bool {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSample) float(t *testing.T) float64 {
	t.Helper()
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		t.Fatalf("sample value %v: %v", s.Value, err)
	}
	return v
}

// query runs an instant PromQL query; a query Prometheus refuses fails the
// test.
func (p *promServer) query(t *testing.T, q string) []promSample {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	if r.Status != "success" {
		t.Fatalf("query %q: %s", q, r.Error)
	}
	if r.Data.ResultType != "vector" {
		t.Fatalf("query %q: result type %s", q, r.Data.ResultType)
	}
	return r.Data.Result
}

// dashboardExprs returns every PromQL expression of the dashboard's
// panels, by panel title.
func dashboardExprs(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "dashboards", "jmxdp.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	var walk func([]json.RawMessage)
	walk = func(panels []json.RawMessage) {
		for _, raw := range panels {
			var p struct {
				Title   string            `json:"title"`
				Type    string            `json:"type"`
				Panels  []json.RawMessage `json:"panels"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			}
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatal(err)
			}
			walk(p.Panels)
			for _, tg := range p.Targets {
				if tg.Expr != "" {
					out[p.Title] = append(out[p.Title], tg.Expr)
				}
			}
		}
	}
	walk(dash.Panels)
	return out
}

// A real Prometheus scrapes jmxdp in a lab while generated traffic flows:
// every dashboard panel's query returns data, and the per-stream and
// per-intercept figures agree with the kernel's stream table.
func TestPrometheusScrapesDashboardQueries(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Metrics.Addr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.Metrics.TopStreams = 50
	dc := gen.DefaultDemo()
	pkts, _, err := gen.Demo(dc)
	if err != nil {
		t.Fatal(err)
	}
	// Exercise every action and an untrusted router: the first demo
	// intercept is counted, the second passed, and one demo router is left
	// off the allowlist.
	mids := map[uint32]bool{}
	for _, p := range pkts {
		if h := decodeMID(p.Data); h != 0 {
			mids[h] = true
		}
	}
	var midList []uint32
	for m := range mids {
		midList = append(midList, m)
	}
	slices.Sort(midList)
	if len(midList) < 3 {
		t.Fatalf("demo has %d intercepts", len(midList))
	}
	cfg.Policy, cfg.PolicySet = []vocab.PolicyRule{
		{MID: midList[0], AnySID: true, Action: vocab.ActionCount},
		{MID: midList[1], AnySID: true, Action: vocab.ActionPass},
	}, true
	dn := gen.DemoNetwork()
	cfg.Allowlist, cfg.AllowlistSet = []netip.Prefix{
		netip.PrefixFrom(dn.RouterA, 32), netip.PrefixFrom(dn.RouterB, 32), netip.PrefixFrom(dn.Router6, 128),
	}, true // RouterC is not on it
	d := e.start(t, cfg)
	prom := startPrometheus(t, cfg.Metrics.Addr)

	s := e.sender(t)
	frames := framesOf(pkts)
	// And a router sending to a port nobody configured (port discovery).
	for i := range 20 {
		frames = append(frames, e.mirror(t, dn.RouterA, 77, 1, 6502, i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, frames, send.Options{Rate: 3000, Duration: 6 * time.Second})
	}()
	// Let Prometheus see the counters move over several scrapes.
	testenv.WaitFor(t, "three scrapes with traffic", 10*time.Second, func() bool {
		r := prom.query(t, `count_over_time(jmxdp_jmirror_bytes_total[10s])`)
		return len(r) == 1 && r[0].float(t) >= 4
	})
	<-done
	// Traffic stopped: once a scrape after the last frame is in, the
	// counters are final. Wait for it, then compare with the kernel.
	settle(t, d, 0)
	streams, err := d.Program().Maps.Streams()
	if err != nil {
		t.Fatal(err)
	}
	var jmBytes uint64
	for _, st := range streams {
		jmBytes += st.Bytes
	}
	testenv.WaitFor(t, "a scrape of the final counters", 10*time.Second, func() bool {
		r := prom.query(t, `sum(jmxdp_intercept_bytes_total)`)
		return len(r) == 1 && uint64(r[0].float(t)) == jmBytes
	})

	instance := cfg.Metrics.Addr
	for title, exprs := range dashboardExprs(t) {
		for _, expr := range exprs {
			q := strings.NewReplacer(
				"$__rate_interval", "10s", "${__rate_interval}", "10s",
				"$__interval", "2s", "${__interval}", "2s",
				"$__range", "1m", "${__range}", "1m",
				"${instance}", instance, "$instance", instance,
				// The dashboard's job and cluster variables: this job, and All.
				"${job}", "jmxdp", "$job", "jmxdp", "${cluster}", ".*", "$cluster", ".*",
			).Replace(expr)
			// Rates are judged over the window with traffic.
			if r := prom.query(t, q); len(r) == 0 {
				t.Errorf("panel %q: %s returns no data", title, q)
			}
		}
	}

	// Per stream and per intercept, Prometheus has the kernel's figures.
	want := map[string]uint64{}
	wantMID := map[string]uint64{}
	for _, st := range streams {
		want[fmt.Sprintf("%d/%d", st.MID, st.SID)] += st.Packets
		wantMID[strconv.FormatUint(uint64(st.MID), 10)] += st.Packets
	}
	got := map[string]uint64{}
	for _, r := range prom.query(t, `sum by (mid, sid) (jmxdp_stream_packets_total)`) {
		got[r.Metric["mid"]+"/"+r.Metric["sid"]] = uint64(r.float(t))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("stream %s: Prometheus has %d packets, the kernel %d", k, got[k], v)
		}
	}
	for _, r := range prom.query(t, `sum by (mid) (jmxdp_intercept_packets_total)`) {
		if uint64(r.float(t)) != wantMID[r.Metric["mid"]] {
			t.Errorf("mid %s: Prometheus has %v packets, the kernel %d", r.Metric["mid"], r.float(t), wantMID[r.Metric["mid"]])
		}
	}
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	r := prom.query(t, `sum(jmxdp_untrusted_packets_total)`)
	if len(r) != 1 || uint64(r[0].float(t)) != c[vocab.StatUntrusted] || c[vocab.StatUntrusted] == 0 {
		t.Errorf("untrusted packets: Prometheus %v, kernel %d", r, c[vocab.StatUntrusted])
	}
	// The unlabelled totals the alerts use agree with the kernel.
	if r := prom.query(t, `jmxdp_untrusted_packets_all_total`); len(r) != 1 || uint64(r[0].float(t)) != c[vocab.StatUntrusted] {
		t.Errorf("untrusted total: Prometheus %v, kernel %d", r, c[vocab.StatUntrusted])
	}
	if r := prom.query(t, `jmxdp_candidate_port_packets_all_total`); len(r) != 1 || uint64(r[0].float(t)) != c[vocab.StatCandidate] || c[vocab.StatCandidate] < 20 {
		t.Errorf("candidate port total: Prometheus %v, kernel %d (20 sent to port 6502)", r, c[vocab.StatCandidate])
	}
	// The rules loaded and evaluate: Prometheus lists them.
	resp, err := http.Get(prom.url + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name   string `json:"name"`
					Health string `json:"health"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rules); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				t.Errorf("rule %s does not evaluate", r.Name)
			}
		}
	}
	if n == 0 {
		t.Error("Prometheus loaded no alert rules")
	}
}

// decodeMID returns the mid of a Jmirror frame that is not a later
// fragment, 0 otherwise.
func decodeMID(frame []byte) uint32 {
	h, class := jmirror.Decode(frame, func(uint16) bool { return true })
	if class != jmirror.ClassJmirror || h.LaterFragment {
		return 0
	}
	return h.MID
}
