package loader_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// TestForwardHeaderCopy: BPF_PROG_TEST_RUN on forwarded multi-buffer
// frames whose headers the program parses from its scratch copy
// (loader.Options.ForceHeaderCopy: not linear, and not pulled). Where the
// kept bytes' start (the UDP header, VLAN tags and IP options gone) lies
// in the linear part, the rewrite, which moves only the linear part's
// start, is exact: the frame out is the forwarded frame, to an IPv4 and
// an IPv6 target (whose UDP checksum covers the fragments' bytes). Where
// it does not, the frame goes to userspace as it came, counted
// forward_unsupported: never rewritten wrong, never passed or dropped
// uncounted. Without ForceHeaderCopy the headers are pulled and every
// split is rewritten.
func TestForwardHeaderCopy(t *testing.T) {
	n := newFwdNet(t)
	const port = 30031
	rules := []vocab.PolicyRule{
		{MID: 50, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fwdTarget4, port)},
		{MID: 51, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fwdTarget6, 0)},
	}
	inner := gen.InnerIPv4UDP(subA, subB, 1000, 2000, make([]byte, 1200))
	shapes := []struct {
		name string
		m    gen.Mirror
	}{
		{"plain IPv4", gen.Mirror{Router: router1, Collector: collector, IPID: 7}},
		{"QinQ", gen.Mirror{Router: router1, Collector: collector, IPID: 9, VLANs: []gen.VLAN{{TPID: gen.TPID8021AD, ID: 20}, {ID: 30}}}},
		{"IPv4 options", gen.Mirror{Router: router1, Collector: collector, IPID: 10, IPOptions: []byte{1, 1, 1, 1, 1, 1, 1, 1}}},
		{"IPv6 with extension headers", gen.Mirror{Router: router6, Collector: coll6, UDPChecksum: true,
			IPv6Ext: []gen.ExtHeader{ext(gen.ExtHopByHop), ext(gen.ExtDstOpts)}}},
	}
	for _, copyHeaders := range []bool{true, false} {
		p, err := loader.Load(loader.Options{ForceHeaderCopy: copyHeaders})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := netns.Do(n.ns, func() error {
			return p.Configure(loader.Config{Policies: rules, ForwardLookupInterface: "jmfib"})
		}); err != nil {
			t.Fatalf("configure: %v", err)
		}
		var handed uint64
		for _, sh := range shapes {
			for _, tg := range fwdTargetCases(port) {
				m := sh.m
				m.MID, m.SID, m.Inner = tg.mid, 77, inner
				in := frame(t, m)
				want := tg.forwarded(t, n, m)
				// The UDP header's start in the frame: what the rewrite keeps.
				keep := m.HeaderOffset() - 8
				for _, linear := range []int{keep + 8 + 16, keep + 4, 20} {
					name := fmt.Sprintf("copy %v/%s to %s/%d linear", copyHeaders, sh.name, tg.target, linear)
					before, _ := p.Maps.Counters()
					var v vocab.Verdict
					var out []byte
					if err := netns.Do(n.ns, func() error {
						var err error
						v, out, err = p.RunSplitOn(in, linear, n.in)
						return err
					}); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					after, _ := p.Maps.Counters()
					rewritable := !copyHeaders || linear >= keep+8
					switch {
					case rewritable:
						if v != vocab.VerdictRedirect || !bytes.Equal(out, want) {
							t.Errorf("%s: verdict %v (want XDP_REDIRECT), frame out\n got %x\nwant %x", name, v, out, want)
						}
					default:
						handed++
						same := len(out) == len(in)+testMetaLen && bytes.Equal(out[testMetaLen:], in)
						if v != vocab.VerdictPass || !same || out[25]&testMetaForward == 0 ||
							after[vocab.StatFwdUnsupported]-before[vocab.StatFwdUnsupported] != 1 {
							t.Errorf("%s: verdict %v, unchanged behind metadata %v, counters %v; want XDP_PASS (no socket), the frame to userspace counted unsupported",
								name, v, same, named(after))
						}
					}
				}
			}
		}
		c, err := p.Maps.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if c[vocab.StatFwdUserspace] != handed || c[vocab.StatFwdUnsupported] != handed {
			t.Errorf("copy %v: counters %v, want %d handed to userspace as unsupported", copyHeaders, named(c), handed)
		}
	}
}
