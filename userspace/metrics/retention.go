package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jmxdp/jmxdp/userspace/handoff"
	"github.com/jmxdp/jmxdp/userspace/retention"
)

// Retention (output.max_bytes, output.max_age) and hand-off
// (output.on_complete): every series is emitted from the first scrape,
// at 0, so that increase() sees the first deletion or failure.
var (
	famRetentionFiles = newFamily("jmxdp_retention_deleted_files_total", counter,
		"Completed stream files deleted by retention, by reason: max_bytes (output.max_bytes, per output.retention) or max_age (output.max_age).",
		"reason")
	famRetentionBytes = newFamily("jmxdp_retention_deleted_bytes_total", counter,
		"Bytes of the completed stream files deleted by retention, by reason (max_bytes, max_age).",
		"reason")
	famRetentionErrors = newFamily("jmxdp_retention_errors_total", counter,
		"Files retention should have deleted and could not (an error, or not a regular file: a symlink is never followed); retried after the next walk of the output directory.")
	famRetentionDropped = newFamily("jmxdp_retention_events_dropped_total", counter,
		"File completions retention's queue had no room for; the next walk of the output directory indexes their files.")
	famRetentionIndexFiles = newFamily("jmxdp_retention_files", gauge,
		"Completed stream files retention knows of (what output.max_bytes bounds).")
	famRetentionIndexBytes = newFamily("jmxdp_retention_bytes", gauge,
		"Bytes of the completed stream files retention knows of.")
	famHandoffSucceeded = newFamily("jmxdp_handoff_succeeded_total", counter,
		"Completed files whose output.on_complete command exited 0.")
	famHandoffFailures = newFamily("jmxdp_handoff_failures_total", counter,
		"Completed files not handed off by output.on_complete, by reason: exit (non-zero or killed by a signal), timeout (killed after output.on_complete_timeout), start (could not be run), queue_full, shutdown (the daemon stopped first).",
		"reason")
	famHandoffQueued = newFamily("jmxdp_handoff_queued", gauge,
		"Completed files waiting for an output.on_complete worker.")
	famHandoffRunning = newFamily("jmxdp_handoff_running", gauge,
		"output.on_complete commands running now.")
)

func (c *Collector) collectRetention(ch chan<- prometheus.Metric, s retention.Stats) {
	for r := retention.Reason(0); r < retention.NumReasons; r++ {
		emit(ch, famRetentionFiles, float64(s.DeletedFiles[r]), r.String())
		emit(ch, famRetentionBytes, float64(s.DeletedBytes[r]), r.String())
	}
	emit(ch, famRetentionErrors, float64(s.Errors))
	emit(ch, famRetentionDropped, float64(s.Dropped))
	emit(ch, famRetentionIndexFiles, float64(s.Files))
	emit(ch, famRetentionIndexBytes, float64(s.Bytes))
}

func (c *Collector) collectHandoff(ch chan<- prometheus.Metric, s handoff.Stats) {
	emit(ch, famHandoffSucceeded, float64(s.Succeeded))
	for r := handoff.Reason(0); r < handoff.NumReasons; r++ {
		emit(ch, famHandoffFailures, float64(s.Failed[r]), r.String())
	}
	emit(ch, famHandoffQueued, float64(s.Queued))
	emit(ch, famHandoffRunning, float64(s.Running))
}
