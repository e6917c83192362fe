package loader_test

import (
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/jmirror/fixtures"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The tables' addresses and frame builders (userspace/jmirror/fixtures),
// by the short names loader's tests use.
var (
	router1      = fixtures.Router1
	router2      = fixtures.Router2
	collector    = fixtures.Collector
	router6      = fixtures.Router6
	coll6        = fixtures.Coll6
	subA         = fixtures.SubA
	subB         = fixtures.SubB
	mappedRouter = fixtures.MappedRouter
)

func mirror(mid, sid uint32, inner []byte) gen.Mirror { return fixtures.Mirror(mid, sid, inner) }
func mirror6(mid, sid uint32, in []byte, exts ...gen.ExtHeader) gen.Mirror {
	return fixtures.Mirror6(mid, sid, in, exts...)
}
func frame(t *testing.T, m gen.Mirror) []byte           { return fixtures.Frame(t, m) }
func frames(t *testing.T, m gen.Mirror) [][]byte        { return fixtures.Frames(t, m) }
func setUDPLen(m gen.Mirror, f []byte, n uint16) []byte { return fixtures.SetUDPLen(m, f, n) }
func ipv4Echo() []byte                                  { return fixtures.IPv4Echo() }
func inner(kind vocab.Inner) [vocab.NumInner]uint64     { return fixtures.InnerOf(kind) }
func k1(mid, sid uint32) vocab.StreamKey                { return fixtures.K1(mid, sid) }
func k6(mid, sid uint32) vocab.StreamKey                { return fixtures.K6(mid, sid) }
func ext(typ uint8) gen.ExtHeader                       { return fixtures.Ext(typ) }
func named(c vocab.Counters) map[string]uint64          { return fixtures.Named(c) }
func one(v vocab.Verdict) []vocab.Verdict               { return []vocab.Verdict{v} }

func loadProgram(t testing.TB, cfg loader.Config) *loader.Program {
	t.Helper()
	return loadProgramSized(t, cfg, 4096)
}

// loadBaselines loads the bench object's baselines (xdp_pass and the
// others jmxdp's cost is measured against), closed when t ends.
func loadBaselines(t testing.TB) *loader.Baselines {
	t.Helper()
	testenv.RequireRoot(t)
	bl, err := loader.LoadBaselines(0)
	if err != nil {
		testenv.SkipOrFail(t, "load the baselines: "+err.Error())
	}
	t.Cleanup(func() { bl.Close() })
	return bl
}

func loadProgramSized(t testing.TB, cfg loader.Config, maxStreams uint32) *loader.Program {
	t.Helper()
	return loadProgramWith(t, loader.Options{MaxStreams: maxStreams}, cfg)
}

func loadProgramWith(t testing.TB, opts loader.Options, cfg loader.Config) *loader.Program {
	t.Helper()
	testenv.RequireRoot(t)
	p, err := loader.Load(opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Configure(cfg); err != nil {
		t.Fatalf("configure: %v", err)
	}
	return p
}

const (
	pass     = vocab.VerdictPass
	drop     = vocab.VerdictDrop
	redirect = vocab.VerdictRedirect
)

// The datapath tables against the kernel program, as root; the Go engine
// runs the same tables in userspace/jmirror, without root.

func TestDatapath(t *testing.T)    { runKernelTable(t, fixtures.Datapath()) }
func TestIPv6Shapes(t *testing.T)  { runKernelTable(t, fixtures.IPv6Shapes()) }
func TestJumboFrames(t *testing.T) { runKernelTable(t, fixtures.Jumbo()) }

func runKernelTable(t *testing.T, cases []fixtures.Case) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) { runKernelCase(t, tc) })
	}
}

// runKernelCase runs one case through BPF_PROG_TEST_RUN and checks its
// verdicts, counters and streams.
func runKernelCase(t *testing.T, tc fixtures.Case) {
	t.Helper()
	const who = "kernel"
	c := tc.Config
	p := loadProgram(t, loader.Config{Ports: c.Ports, DefaultAction: c.DefaultAction, Policies: c.Policies, Allowlist: c.Allowlist})
	tc.Run(t, who, func(f []byte) (vocab.Verdict, error) {
		v, err := p.Run(f)
		return vocab.Verdict(v), err
	})
	got, err := p.Maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	tc.CheckCounters(t, who, got)
	streams, err := p.Maps.Streams()
	if err != nil {
		t.Fatal(err)
	}
	fixtures.CheckStreams(t, who, streams, tc.Streams)
}

func engineConfig(c loader.Config) jmirror.Config {
	ports := c.Ports
	if len(ports) == 0 {
		ports = []uint16{loader.DefaultPort}
	}
	return jmirror.Config{Ports: ports, DefaultAction: c.DefaultAction, Policies: c.Policies, Allowlist: c.Allowlist}
}
