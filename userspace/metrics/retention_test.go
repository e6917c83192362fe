package metrics_test

import (
	"testing"

	"github.com/jmxdp/jmxdp/userspace/handoff"
	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/retention"
)

func fakeRetention() retention.Stats {
	var s retention.Stats
	s.DeletedFiles[retention.MaxBytes], s.DeletedBytes[retention.MaxBytes] = 3, 3000
	s.DeletedFiles[retention.MaxAge], s.DeletedBytes[retention.MaxAge] = 1, 10
	s.Errors, s.Dropped, s.Files, s.Bytes = 2, 5, 40, 4096
	return s
}

func fakeHandoff() handoff.Stats {
	var s handoff.Stats
	s.Succeeded = 9
	s.Failed[handoff.Exit], s.Failed[handoff.Timeout], s.Failed[handoff.QueueFull] = 1, 2, 3
	s.Queued, s.Running = 4, 2
	return s
}

// TestRetentionFamilies: every series, each reason included, is there at 0
// before anything happened, and then carries the counters.
func TestRetentionFamilies(t *testing.T) {
	zero := metrics.Source{
		Retention: func() retention.Stats { return retention.Stats{} },
		Handoff:   func() handoff.Stats { return handoff.Stats{} },
	}
	got, _ := gather(t, metrics.NewCollector(zero, metrics.Options{}))
	checkFamily(t, got, "jmxdp_retention_deleted_files_total", map[string]float64{"reason=max_bytes": 0, "reason=max_age": 0})
	checkFamily(t, got, "jmxdp_retention_deleted_bytes_total", map[string]float64{"reason=max_bytes": 0, "reason=max_age": 0})
	checkFamily(t, got, "jmxdp_handoff_failures_total", map[string]float64{
		"reason=exit": 0, "reason=timeout": 0, "reason=start": 0, "reason=queue_full": 0, "reason=shutdown": 0})
	for _, n := range []string{"jmxdp_retention_errors_total", "jmxdp_retention_events_dropped_total", "jmxdp_retention_files",
		"jmxdp_retention_bytes", "jmxdp_handoff_succeeded_total", "jmxdp_handoff_queued", "jmxdp_handoff_running"} {
		if v, ok := got[n+"{}"]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", n, v, ok)
		}
	}

	got, _ = gather(t, metrics.NewCollector(metrics.Source{Retention: fakeRetention, Handoff: fakeHandoff}, metrics.Options{}))
	checkFamily(t, got, "jmxdp_retention_deleted_files_total", map[string]float64{"reason=max_bytes": 3, "reason=max_age": 1})
	checkFamily(t, got, "jmxdp_retention_deleted_bytes_total", map[string]float64{"reason=max_bytes": 3000, "reason=max_age": 10})
	checkFamily(t, got, "jmxdp_handoff_failures_total", map[string]float64{
		"reason=exit": 1, "reason=timeout": 2, "reason=start": 0, "reason=queue_full": 3, "reason=shutdown": 0})
	for n, v := range map[string]float64{"jmxdp_retention_errors_total": 2, "jmxdp_retention_events_dropped_total": 5,
		"jmxdp_retention_files": 40, "jmxdp_retention_bytes": 4096, "jmxdp_handoff_succeeded_total": 9,
		"jmxdp_handoff_queued": 4, "jmxdp_handoff_running": 2} {
		if got[n+"{}"] != v {
			t.Errorf("%s = %v, want %v", n, got[n+"{}"], v)
		}
	}
	got, _ = gather(t, metrics.NewCollector(metrics.Source{}, metrics.Options{}))
	if len(got.family("jmxdp_retention_files")) != 0 || len(got.family("jmxdp_handoff_queued")) != 0 {
		t.Error("retention families emitted without their source")
	}
}
