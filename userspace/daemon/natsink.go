package daemon

import (
	"fmt"

	"github.com/jmxdp/jmxdp/userspace/capture"
	"github.com/jmxdp/jmxdp/userspace/natsink"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// startNATS replaces the capture's file writers by the NATS sink's shards
// when sink.url is set (sinks otherwise). The writer group stays, idle:
// it holds the output directory's lock, which hide_ids' names live in.
func (d *Daemon) startNATS(sinks []capture.Sink) ([]capture.Sink, error) {
	if !d.cfg.Sink.NATS() {
		return sinks, nil
	}
	s, err := natsink.New(natsink.FromConfig(d.cfg.Sink, d.cfg.Output.PacketComments, d.log), len(sinks))
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", d.cfg.Sink.URL, err)
	}
	d.nats = s
	d.log.Info("publishing to NATS JetStream instead of files", "urls", d.cfg.Sink.URL, "stream", d.cfg.Sink.Stream,
		"instance", s.Instance(), "spool", d.cfg.Sink.SpoolDir)
	out := make([]capture.Sink, 0, len(sinks))
	for _, sh := range s.Shards() {
		out = append(out, sh)
	}
	return out, nil
}

// stopNATS publishes the last batches and waits (sink.stop_timeout) for
// their acks; what is left is spooled, and logged.
func (d *Daemon) stopNATS() error {
	if d.nats == nil {
		return nil
	}
	return d.nats.Close()
}

// NATS is the NATS sink, nil with files.
func (d *Daemon) NATS() *natsink.Sink { return d.nats }

// writerStats are the sink's totals: the files', or with NATS the
// packets stored in the stream.
func (d *Daemon) writerStats() writer.Stats {
	if d.nats != nil {
		return d.nats.WriterStats()
	}
	return d.sink.Stats()
}

// sinkStats feeds the jmxdp_sink_* families (at 0 with files).
func (d *Daemon) sinkStats() func() natsink.Stats {
	if d.nats == nil {
		return nil
	}
	return d.nats.Stats
}
