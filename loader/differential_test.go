package loader_test

import (
	"net/netip"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// TestDifferential runs a large randomized and mutated corpus through the
// kernel program and the Go decoder and requires them to agree on every
// frame: the verdict and the change of every global counter, and at the end
// on the whole stream table and the untrusted sources.
// untrustedCapacity is JM_MAX_UNTRUSTED.
const untrustedCapacity = 4096

func TestDifferential(t *testing.T) {
	n := 40000
	if testing.Short() {
		n = 5000
	}
	ports := []uint16{30030, 6502}
	configs := []struct {
		name string
		cfg  loader.Config
	}{
		{"defaults", loader.Config{Ports: ports}},
		{"policy and allowlist", loader.Config{
			Ports:         ports,
			DefaultAction: vocab.ActionCount,
			Policies: []vocab.PolicyRule{
				{MID: 1, AnySID: true, Action: vocab.ActionPass},
				{MID: 2, SID: 2, Action: vocab.ActionCapture},
				{MID: 3, AnySID: true, Action: vocab.ActionCapture},
			},
			// Covers part of what the corpus generator uses as routers.
			Allowlist: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("192.0.2.1/32"),
				netip.MustParsePrefix("2001:db8::/126")},
		}},
	}
	for i, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			// Big enough that the LRU never evicts: the Go engine never does.
			p := loadProgramSized(t, c.cfg, 1<<17)
			eng := jmirror.NewEngine(engineConfig(c.cfg), nil)
			corpus := gen.Corpus(int64(1000+i), n, ports)
			var prev vocab.Counters
			classes := map[jmirror.Class]int{}
			for j, f := range corpus {
				if len(f) < loader.MinFrameLen || len(f) > loader.MaxFrameLen {
					t.Fatalf("corpus frame %d has %d bytes", j, len(f))
				}
				kv, err := p.Run(f)
				if err != nil {
					t.Fatalf("frame %d: %v", j, err)
				}
				res := eng.Process(f)
				classes[res.Class]++
				if vocab.Verdict(res.Verdict) != kv {
					t.Fatalf("frame %d (% x): kernel %v, Go %v (class %v)", j, f, kv, vocab.Verdict(res.Verdict), res.Class)
				}
				kc, err := p.Maps.Counters()
				if err != nil {
					t.Fatal(err)
				}
				if gc := eng.Counters(); gc != kc {
					t.Fatalf("frame %d (% x): counters differ after it (class %v):\n kernel %v\n Go     %v\n before %v",
						j, f, res.Class, named(kc), named(gc), named(prev))
				}
				prev = kc
			}
			ks, err := p.Maps.Streams()
			if err != nil {
				t.Fatal(err)
			}
			gs := eng.Streams()
			if len(ks) != len(gs) {
				t.Fatalf("kernel has %d streams, Go %d", len(ks), len(gs))
			}
			for j := range ks {
				k, g := ks[j], gs[j]
				if k.StreamKey != g.StreamKey || k.Packets != g.Packets || k.Bytes != g.Bytes || k.Inner != g.Inner {
					t.Errorf("stream %d: kernel %+v, Go %+v", j, k, g)
				}
			}
			ku, err := p.Maps.Untrusted()
			if err != nil {
				t.Fatal(err)
			}
			// The kernel's untrusted table is a small LRU: every entry it holds
			// must be Go's, exactly, unless eviction may have reset it.
			gu := map[netip.Addr]uint64{}
			for _, u := range eng.Untrusted() {
				gu[u.Addr] = u.Packets
			}
			exact := len(gu) < untrustedCapacity/2
			if exact && len(ku) != len(gu) {
				t.Fatalf("untrusted sources: kernel %d, Go %d", len(ku), len(gu))
			}
			for _, u := range ku {
				g, ok := gu[u.Addr]
				if !ok || u.Packets > g || (exact && u.Packets != g) {
					t.Errorf("untrusted %v: kernel %d packets, Go %d (present %v)", u.Addr, u.Packets, g, ok)
				}
			}
			// The corpus must exercise every class, or agreement means little.
			// Early fragments are held only from pairs that send captured
			// Jmirror alone: the default config's.
			for cl := jmirror.ClassNotJmirror; cl <= jmirror.ClassIPv6ExtTooLong; cl++ {
				if cl == jmirror.ClassUntrusted && len(c.cfg.Allowlist) == 0 {
					continue
				}
				if cl == jmirror.ClassFragHeld && c.cfg.DefaultAction != vocab.ActionCapture {
					continue
				}
				if classes[cl] == 0 {
					t.Errorf("corpus produced no frame of class %v (classes: %v)", cl, classes)
				}
			}
			// Sources that embed IPv4 must have been refused by both (the
			// counters agree), and none may be a stream's router.
			if prev[vocab.StatUntrustedMapped] == 0 {
				t.Errorf("corpus produced no frame from an IPv4-embedding IPv6 source")
			}
			for _, s := range ks {
				if vocab.IPv4Embedded(s.Router) {
					t.Errorf("stream %v has an IPv4-embedding IPv6 router", s.StreamKey)
				}
			}
			t.Logf("%d frames, %d streams, classes %v", len(corpus), len(ks), classes)
		})
	}
}
