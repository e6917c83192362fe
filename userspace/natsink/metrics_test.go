package natsink

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// Every family is there at 0 without a sink, carries the sink's counts
// with one, and has a row in docs/metrics.md.
func TestCollector(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(nil))
	n, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(sinkFamilies) - 1 + NumDrops; n != want {
		t.Fatalf("%d series at 0, want %d", n, want)
	}
	st := Stats{Acked: 5, Spooled: 2, SpoolBytes: 1234, Connected: true}
	st.Dropped[DropSpoolFull] = 3
	c := NewCollector(func() Stats { return st })
	want := `
# HELP jmxdp_sink_dropped_batches_total Batches lost, by reason: queue (publisher queue full), spool_full (spool at sink.spool_max), spool_error (spool write failed).
# TYPE jmxdp_sink_dropped_batches_total counter
jmxdp_sink_dropped_batches_total{reason="queue"} 0
jmxdp_sink_dropped_batches_total{reason="spool_error"} 0
jmxdp_sink_dropped_batches_total{reason="spool_full"} 3
# HELP jmxdp_sink_spool_bytes Bytes of the spool's files.
# TYPE jmxdp_sink_spool_bytes gauge
jmxdp_sink_spool_bytes 1234
# HELP jmxdp_sink_connected 1 while the NATS sink is connected to a server; 0 otherwise (and with the file sink).
# TYPE jmxdp_sink_connected gauge
jmxdp_sink_connected 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "jmxdp_sink_dropped_batches_total", "jmxdp_sink_spool_bytes", "jmxdp_sink_connected"); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range sinkFamilies {
		if !strings.Contains(string(doc), "| `"+f.name+"` |") {
			t.Errorf("docs/metrics.md has no row for %s", f.name)
		}
	}
}
