package metrics_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
)

// trafficLabels name what the traffic brings: a series with one of them
// exists only once its router, port, intercept or stream was seen.
var trafficLabels = []string{"router", "port", "mid", "sid"}

// alwaysTotal is, for every counter family with a traffic label, the
// family that exists from the start and counts the same traffic (an
// increase() alert needs it: a labelled series is born at its first value,
// and increase() sees nothing of that first burst).
var alwaysTotal = map[string]string{
	"jmxdp_intercept_packets_total":      "jmxdp_frames_total",
	"jmxdp_intercept_bytes_total":        "jmxdp_jmirror_bytes_total",
	"jmxdp_stream_packets_total":         "jmxdp_frames_total",
	"jmxdp_stream_bytes_total":           "jmxdp_jmirror_bytes_total",
	"jmxdp_router_packets_total":         "jmxdp_frames_total",
	"jmxdp_router_bytes_total":           "jmxdp_jmirror_bytes_total",
	"jmxdp_untrusted_packets_total":      "jmxdp_untrusted_packets_all_total",
	"jmxdp_candidate_port_packets_total": "jmxdp_candidate_port_packets_all_total",
	"jmxdp_stream_writer_drops_total":    "jmxdp_writer_drops_total",
}

// TestFreshDaemonCountersAtZero scrapes a daemon just started on a lab's
// veth (the real program attached, a real capture and writers, nothing
// received) over HTTP: every counter family whose series do not depend on
// the traffic is there, at 0; those that do are not, and each has a total
// that is.
func TestFreshDaemonCountersAtZero(t *testing.T) {
	testenv.RequireRoot(t)
	l := labtest.New(t, "jmxf")
	pin := filepath.Join(loader.BPFFSRoot, "jmxdp-test-"+l.Name)
	os.RemoveAll(pin)
	t.Cleanup(func() { os.RemoveAll(pin) })
	cfg := config.Default()
	cfg.Interface = l.HostIface
	cfg.Output.Dir = filepath.Join(t.TempDir(), "streams")
	cfg.Capture.PinDir = pin
	cfg.Capture.MaxStreams = 1 << 12
	// The config refuses port 0: take a free one.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Metrics.Addr = ln.Addr().String()
	ln.Close()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { d.Stop() })

	resp, err := http.Get("http://" + d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	scraped, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}

	fams := metrics.Families()
	known := map[string]bool{}
	for _, f := range fams {
		known[f.Name] = true
	}
	checked := 0
	for _, f := range fams {
		if !f.Counter {
			continue
		}
		mf := scraped[f.Name]
		if slices.ContainsFunc(f.Labels, func(l string) bool { return slices.Contains(trafficLabels, l) }) {
			if mf != nil && len(mf.GetMetric()) > 0 {
				t.Errorf("%s: %d series before any traffic", f.Name, len(mf.GetMetric()))
			}
			total, ok := alwaysTotal[f.Name]
			if !ok || !known[total] {
				t.Errorf("%s has a traffic label and no total that exists from the start (add one to alwaysTotal)", f.Name)
			} else if scraped[total] == nil {
				t.Errorf("%s's total %s is not in a fresh scrape", f.Name, total)
			}
			continue
		}
		// No label, or only labels with fixed values (and queue: one per
		// socket, there from the start).
		checked++
		if mf == nil || len(mf.GetMetric()) == 0 {
			t.Errorf("%s (labels %v) is missing from a fresh scrape", f.Name, f.Labels)
			continue
		}
		if mf.GetType() != dto.MetricType_COUNTER {
			t.Errorf("%s is a %s, want a counter", f.Name, mf.GetType())
		}
		if len(f.Labels) == 0 && len(mf.GetMetric()) != 1 {
			t.Errorf("%s: %d series, want 1", f.Name, len(mf.GetMetric()))
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				t.Errorf("%s%v = %v on a fresh daemon, want 0", f.Name, m.GetLabel(), v)
			}
		}
	}
	// The families the issue named: their totals are plain single series.
	for _, name := range []string{"jmxdp_untrusted_packets_all_total", "jmxdp_candidate_port_packets_all_total"} {
		if mf := scraped[name]; mf == nil || len(mf.GetMetric()) != 1 || len(mf.GetMetric()[0].GetLabel()) != 0 {
			t.Errorf("%s: %v, want one unlabelled series", name, mf)
		}
	}
	if checked < 25 {
		t.Errorf("only %d counter families checked: Families() looks truncated", checked)
	}
}
