package loader_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// BenchmarkForward measures the program's cost per forwarded frame
// (BPF_PROG_TEST_RUN in a namespace the benchmark made, with a route and a
// neighbour entry for the target) next to a trivial XDP_PASS program and a
// plain XDP_TX-and-swap-MACs one, alternating the three in the same run so
// that the ratios hold on a noisy machine. BPF_PROG_TEST_RUN does not reset
// the frame between repeats: the target port is the stream's own, so the
// forwarded frame (plain Ethernet + IPv4 + UDP, from the egress address) is
// Jmirror of the same mid again and is forwarded again, each run the same
// work. Metrics: ns/frame, pass-ns/frame, txswap-ns/frame, x_pass, x_txswap.
func BenchmarkForward(b *testing.B) {
	n := newFwdNet(b)
	p, err := loader.Load(loader.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	bl, err := loader.LoadBaselines(0)
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Close()
	rules := []vocab.PolicyRule{{MID: 50, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fwdTarget4, 0)}}
	if err := netns.Do(n.ns, func() error {
		return p.Configure(loader.Config{Policies: rules, ForwardLookupInterface: "jmfib"})
	}); err != nil {
		b.Fatal(err)
	}
	f := mustFrame(b, gen.Mirror{Router: router1, Collector: collector, MID: 50, SID: 1, Inner: ipv4Echo(), VLANs: []gen.VLAN{{ID: 10}}})
	const chunk = 10000
	var prog, pass, swap time.Duration
	var runs int
	err = netns.Do(n.ns, func() error {
		for b.Loop() {
			v, d, err := p.Benchmark(f, chunk)
			if err != nil {
				return err
			}
			if v != vocab.VerdictRedirect {
				c, _ := p.Maps.Counters()
				b.Fatalf("verdict %v, want XDP_REDIRECT: %v", v, named(c))
			}
			_, dp, err := bl.Pass(f, chunk)
			if err != nil {
				return err
			}
			_, ds, err := bl.TxSwap(f, chunk)
			if err != nil {
				return err
			}
			prog, pass, swap = prog+d, pass+dp, swap+ds
			runs++
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	c, err := p.Maps.Counters()
	if err != nil {
		b.Fatal(err)
	}
	if c[vocab.StatFwdSent] == 0 || c[vocab.StatFwdUserspace] != 0 {
		b.Fatalf("not all forwarded in the kernel: %v", named(c))
	}
	b.ReportMetric(float64(prog.Nanoseconds())/float64(runs), "ns/frame")
	b.ReportMetric(float64(pass.Nanoseconds())/float64(runs), "pass-ns/frame")
	b.ReportMetric(float64(swap.Nanoseconds())/float64(runs), "txswap-ns/frame")
	b.ReportMetric(float64(prog)/float64(pass), "x_pass")
	b.ReportMetric(float64(prog)/float64(swap), "x_txswap")
}
