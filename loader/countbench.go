package loader

import (
	"errors"
	"fmt"
	"math/bits"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	benchbpf "github.com/jmxdp/jmxdp/bpf/bench"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// CounterVariant names one way of counting a stream (bpf/bench/countbench.c),
// measured side by side with the others (issue 17).
type CounterVariant string

// The counter variants, in bpf/bench/countbench.c's order.
const (
	CounterLRUAtomicCoarse CounterVariant = "lru_atomic_coarse"
	CounterLRUAtomicKtime  CounterVariant = "lru_atomic_ktime"
	CounterLRUAtomicLazy   CounterVariant = "lru_atomic_lazy"
	CounterLRUAtomicJiffy  CounterVariant = "lru_atomic_jiffies"
	CounterLRUPercpuLazy   CounterVariant = "lru_percpu_lazy"
	CounterHashPercpuFold  CounterVariant = "hash_percpu_fold"
	CounterCacheFold       CounterVariant = "cache_fold"
)

// CounterVariants lists every variant.
func CounterVariants() []CounterVariant {
	return []CounterVariant{CounterLRUAtomicCoarse, CounterLRUAtomicKtime, CounterLRUAtomicLazy,
		CounterLRUAtomicJiffy, CounterLRUPercpuLazy, CounterHashPercpuFold, CounterCacheFold}
}

// Folds reports whether the variant loses no count when its table is full
// (hash_percpu_fold, cache_fold); the LRU variants lose what the kernel
// evicts.
func (v CounterVariant) Folds() bool {
	return v == CounterHashPercpuFold || v == CounterCacheFold
}

// CountBenchOptions sizes the variants' maps; zero keeps countbench.c's
// defaults.
type CountBenchOptions struct {
	MaxStreams uint32 // each stream table
	CacheSlots uint32 // cache_fold's slots per CPU: a power of two
	MaxRouters uint32 // router totals of the fold variants
}

// CountBench is bpf/bench/countbench.c loaded: the counter variants, for the
// benchmark and its tests only (never attached).
type CountBench struct {
	objs  benchbpf.CountbenchObjects
	progs map[CounterVariant]*ebpf.Program
}

// LoadCountBench loads the counter variants.
func LoadCountBench(opts CountBenchOptions) (*CountBench, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK: %w", err)
	}
	spec, err := benchbpf.LoadCountbench()
	if err != nil {
		return nil, fmt.Errorf("read embedded counter-variant object: %w", err)
	}
	if n := opts.MaxStreams; n > 0 {
		for _, m := range []string{"cb_lru", "cb_lru_percpu", "cb_percpu"} {
			spec.Maps[m].MaxEntries = n
		}
	}
	if n := opts.MaxRouters; n > 0 {
		spec.Maps["cb_router_total"].MaxEntries = n
	}
	if n := opts.CacheSlots; n > 0 {
		if bits.OnesCount32(n) != 1 {
			return nil, fmt.Errorf("counter variants: %d cache slots, not a power of two", n)
		}
		spec.Maps["cb_cache"].MaxEntries = n
		if err := spec.Variables["cb_cache_mask"].Set(n - 1); err != nil {
			return nil, fmt.Errorf("set cb_cache_mask: %w", err)
		}
	}
	c := &CountBench{}
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load counter variants: %+v", ve)
		}
		return nil, fmt.Errorf("load counter variants: %w", err)
	}
	c.progs = map[CounterVariant]*ebpf.Program{
		CounterLRUAtomicCoarse: c.objs.CbLruAtomicCoarse,
		CounterLRUAtomicKtime:  c.objs.CbLruAtomicKtime,
		CounterLRUAtomicLazy:   c.objs.CbLruAtomicLazy,
		CounterLRUAtomicJiffy:  c.objs.CbLruAtomicJiffies,
		CounterLRUPercpuLazy:   c.objs.CbLruPercpuLazy,
		CounterHashPercpuFold:  c.objs.CbHashPercpuFold,
		CounterCacheFold:       c.objs.CbCacheFold,
	}
	return c, nil
}

// Close unloads the variants.
func (c *CountBench) Close() error { return c.objs.Close() }

func (c *CountBench) prog(v CounterVariant) (*ebpf.Program, error) {
	p, ok := c.progs[v]
	if !ok {
		return nil, fmt.Errorf("counter variant %q: unknown", v)
	}
	return p, nil
}

// Run runs variant v once over frame: one datagram of len(frame) bytes
// counted into the stream its first 24 bytes name.
func (c *CountBench) Run(v CounterVariant, frame []byte) (vocab.Verdict, error) {
	p, err := c.prog(v)
	if err != nil {
		return 0, err
	}
	return runFrame(p, frame)
}

// Benchmark runs variant v repeat times over frame in the kernel and
// returns the mean time per run.
func (c *CountBench) Benchmark(v CounterVariant, frame []byte, repeat int) (vocab.Verdict, time.Duration, error) {
	p, err := c.prog(v)
	if err != nil {
		return 0, 0, err
	}
	return benchmark(p, frame, repeat)
}

// CountKey is a counted stream's key: the frame's first 24 bytes.
type CountKey = benchbpf.CountbenchJmStreamKey

// Count is what a variant counted.
type Count struct{ Packets, Bytes uint64 }

func (c *Count) add(packets, bytes uint64) { c.Packets += packets; c.Bytes += bytes }

// CountTotals is everything a variant counted, per-CPU values summed:
// Streams, the table; Cached, cache_fold's slots (not yet in the table);
// Routers, the fold variants' router totals; Lost, what found those full.
type CountTotals struct {
	Streams map[CountKey]Count
	Cached  map[CountKey]Count
	Routers map[[16]byte]Count
	Lost    Count
}

// Sum is the variant's whole count: a packet is in exactly one place.
func (t CountTotals) Sum() Count {
	var s Count
	for _, m := range []map[CountKey]Count{t.Streams, t.Cached} {
		for _, c := range m {
			s.add(c.Packets, c.Bytes)
		}
	}
	for _, c := range t.Routers {
		s.add(c.Packets, c.Bytes)
	}
	s.add(t.Lost.Packets, t.Lost.Bytes)
	return s
}

// Stream is the stream's total wherever it is (table, cache slots, not
// the router totals, which no longer know streams).
func (t CountTotals) Stream(k CountKey) Count {
	s, c := t.Streams[k], t.Cached[k]
	s.add(c.Packets, c.Bytes)
	return s
}

// Totals reads what variant v counted. The variants share no map but the
// fold variants' router totals and cb_percpu (cache_fold flushes into it):
// reset between variants with a fresh CountBench.
func (c *CountBench) Totals(v CounterVariant) (CountTotals, error) {
	t := CountTotals{Streams: map[CountKey]Count{}, Cached: map[CountKey]Count{}, Routers: map[[16]byte]Count{}}
	if _, err := c.prog(v); err != nil {
		return t, err
	}
	var err error
	switch v {
	case CounterLRUAtomicCoarse, CounterLRUAtomicKtime, CounterLRUAtomicLazy, CounterLRUAtomicJiffy:
		err = eachValue(c.objs.CbLru, func(k CountKey, vals []benchbpf.CountbenchCbValue) { sumInto(t.Streams, k, vals) }, false)
	case CounterLRUPercpuLazy:
		err = eachValue(c.objs.CbLruPercpu, func(k CountKey, vals []benchbpf.CountbenchCbValue) { sumInto(t.Streams, k, vals) }, true)
	default:
		err = eachValue(c.objs.CbPercpu, func(k CountKey, vals []benchbpf.CountbenchCbValue) { sumInto(t.Streams, k, vals) }, true)
	}
	if err != nil {
		return t, err
	}
	if !v.Folds() {
		return t, nil
	}
	if err := eachValue(c.objs.CbRouterTotal, func(k benchbpf.CountbenchJmAddr, vals []benchbpf.CountbenchCbTotal) {
		s := t.Routers[k.Addr]
		for _, x := range vals {
			s.add(x.Packets, x.Bytes)
		}
		t.Routers[k.Addr] = s
	}, true); err != nil {
		return t, err
	}
	if err := eachValue(c.objs.CbLost, func(_ uint32, vals []benchbpf.CountbenchCbTotal) {
		for _, x := range vals {
			t.Lost.add(x.Packets, x.Bytes)
		}
	}, true); err != nil {
		return t, err
	}
	if v != CounterCacheFold {
		return t, nil
	}
	err = eachValue(c.objs.CbCache, func(_ uint32, slots []benchbpf.CountbenchCbSlot) {
		for _, s := range slots {
			if s.Valid != 0 {
				x := t.Cached[s.Key]
				x.add(s.Packets, s.Bytes)
				t.Cached[s.Key] = x
			}
		}
	}, true)
	return t, err
}

func sumInto(m map[CountKey]Count, k CountKey, vals []benchbpf.CountbenchCbValue) {
	s := m[k]
	for _, x := range vals {
		s.add(x.Packets, x.Bytes)
	}
	m[k] = s
}

// eachValue walks a map, per-CPU (every CPU's value) or shared (one).
func eachValue[K, V any](m *ebpf.Map, fn func(K, []V), perCPU bool) error {
	var k K
	it := m.Iterate()
	if perCPU {
		var vals []V
		for it.Next(&k, &vals) {
			fn(k, vals)
		}
	} else {
		var v V
		for it.Next(&k, &v) {
			fn(k, []V{v})
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", m.String(), err)
	}
	return nil
}
