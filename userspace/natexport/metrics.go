package natexport

import "github.com/prometheus/client_golang/prometheus"

var exportFamilies = []struct{ name, help string }{
	{"jmxdp_export_messages_total", "Messages (batches) written to the files and acked."},
	{"jmxdp_export_packets_total", "Packets written to the files."},
	{"jmxdp_export_skipped_total", "Redelivered messages already in the files: acked, not written again."},
	{"jmxdp_export_pending_messages", "The consumer's num_pending at the last message: messages in the stream not yet delivered (the export's lag)."},
}

// Collector exports an Exporter's counters.
type Collector struct {
	e     *Exporter
	descs []*prometheus.Desc
}

// NewCollector exports e's counters as jmxdp_export_* families.
func NewCollector(e *Exporter) *Collector {
	c := &Collector{e: e}
	for _, f := range exportFamilies {
		c.descs = append(c.descs, prometheus.NewDesc(f.name, f.help, nil, nil))
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
	st := c.e.Stats()
	ch <- prometheus.MustNewConstMetric(c.descs[0], prometheus.CounterValue, float64(st.Messages))
	ch <- prometheus.MustNewConstMetric(c.descs[1], prometheus.CounterValue, float64(st.Packets))
	ch <- prometheus.MustNewConstMetric(c.descs[2], prometheus.CounterValue, float64(st.Skipped))
	ch <- prometheus.MustNewConstMetric(c.descs[3], prometheus.GaugeValue, float64(st.Pending))
}
