package metrics_test

import (
	"net/netip"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Jmirror over IPv6 from ::ffff:a.b.c.d is counted on its own and as
// untrusted, and never appears as the IPv4 router, among the untrusted
// sources or anywhere else.
func TestUntrustedMapped(t *testing.T) {
	tb := newTestbed(t)
	before, _ := gather(t, metrics.NewCollector(fullSource(tb), testOpts))
	mapped := netip.AddrFrom16(router1.As16())
	for _, f := range mirrorFrames(t, gen.Mirror{Router: mapped, Collector: coll6, MID: 1, SID: 10, Inner: inner(t, 128)}) {
		tb.run(t, f, vocab.VerdictDrop)
		tb.run(t, f, vocab.VerdictDrop)
	}
	after, _ := gather(t, metrics.NewCollector(fullSource(tb), testOpts))
	checkFamily(t, before, "jmxdp_untrusted_mapped_total", map[string]float64{"": 0})
	checkFamily(t, after, "jmxdp_untrusted_mapped_total", map[string]float64{"": 2})
	key := `jmxdp_frames_total{class="untrusted"}`
	if d := after[key] - before[key]; d != 2 {
		t.Errorf("untrusted frames moved by %v, want 2", d)
	}
	for _, fam := range []string{"jmxdp_untrusted_packets_total", "jmxdp_untrusted_routers", "jmxdp_router_packets_total", "jmxdp_streams"} {
		if b, a := before.family(fam), after.family(fam); len(a) != len(b) {
			t.Errorf("%s changed: %v -> %v", fam, b, a)
		} else {
			for k, v := range a {
				if b[k] != v {
					t.Errorf("%s%s: %v -> %v", fam, k, b[k], v)
				}
			}
		}
	}
}
