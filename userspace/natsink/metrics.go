package natsink

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a Sink's counters as jmxdp_sink_* families. With a
// nil source (the file sink) every family is there at 0, so dashboards
// and alerts need no special case.
type Collector struct {
	stats func() Stats
	descs map[string]*prometheus.Desc
}

var sinkFamilies = []struct{ name, help string }{
	{"jmxdp_sink_published_batches_total", "Batches (messages) handed to the NATS client: first sends and re-sends from the spool."},
	{"jmxdp_sink_acked_batches_total", "Batches the stream stored on their first send."},
	{"jmxdp_sink_spooled_batches_total", "Batches put in the local spool: the cluster was unreachable, did not ack in time, or refused them."},
	{"jmxdp_sink_resent_batches_total", "Spooled batches the stream stored later."},
	{"jmxdp_sink_overflows_total", "Times the cluster fell so far behind the traffic (sink.max_in_flight acks outstanding and 64 MiB of batches waiting in memory) that batches went to the spool until it caught up."},
	{"jmxdp_sink_dropped_batches_total", "Batches lost, by reason: queue (publisher queue full), spool_full (spool at sink.spool_max), spool_error (spool write failed)."},
	{"jmxdp_sink_acked_packets_total", "Packets in batches the stream stored (first sends and re-sends)."},
	{"jmxdp_sink_dropped_packets_total", "Packets in dropped batches."},
	{"jmxdp_sink_in_flight_batches", "Batches published and not yet acked."},
	{"jmxdp_sink_pending_batches", "Batches waiting in memory for the in-flight window (at most 64 MiB of them; past that they go to the spool)."},
	{"jmxdp_sink_spool_batches", "Batches waiting in the spool."},
	{"jmxdp_sink_spool_bytes", "Bytes of the spool's files."},
	{"jmxdp_sink_connected", "1 while the NATS sink is connected to a server; 0 otherwise (and with the file sink)."},
}

// NewCollector exports stats; nil: the families at 0.
func NewCollector(stats func() Stats) *Collector {
	c := &Collector{stats: stats, descs: map[string]*prometheus.Desc{}}
	for _, f := range sinkFamilies {
		var labels []string
		if f.name == "jmxdp_sink_dropped_batches_total" {
			labels = []string{"reason"}
		}
		c.descs[f.name] = prometheus.NewDesc(f.name, f.help, labels, nil)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	var st Stats
	if c.stats != nil {
		st = c.stats()
	}
	counter := func(name string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(name string, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v)
	}
	counter("jmxdp_sink_published_batches_total", st.Published)
	counter("jmxdp_sink_acked_batches_total", st.Acked)
	counter("jmxdp_sink_spooled_batches_total", st.Spooled)
	counter("jmxdp_sink_resent_batches_total", st.Resent)
	counter("jmxdp_sink_overflows_total", st.Overflows)
	for r, n := range st.Dropped {
		counter("jmxdp_sink_dropped_batches_total", n, DropNames[r])
	}
	counter("jmxdp_sink_acked_packets_total", st.PacketsAcked)
	counter("jmxdp_sink_dropped_packets_total", st.PacketsDropped)
	gauge("jmxdp_sink_in_flight_batches", float64(st.InFlight))
	gauge("jmxdp_sink_pending_batches", float64(st.Pending))
	gauge("jmxdp_sink_spool_batches", float64(st.SpoolBatches))
	gauge("jmxdp_sink_spool_bytes", float64(st.SpoolBytes))
	connected := 0.0
	if st.Connected {
		connected = 1
	}
	gauge("jmxdp_sink_connected", connected)
}

// Names are the jmxdp_sink_* family names, for tests of dashboards and
// rules.
func Names() []string {
	out := make([]string, len(sinkFamilies))
	for i, f := range sinkFamilies {
		out[i] = f.name
	}
	return out
}
