package bench

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// SectionStreamTable is the program's per-frame cost as the stream table
// fills, next to xdp_pass.
const SectionStreamTable = "stream_table"

// Sizes of the stream table section.
const (
	// StreamTableSpread is how many distinct streams, spread over the
	// table, one spread measurement runs once each; also how many new
	// streams one eviction measurement inserts.
	StreamTableSpread = 1000
	// StreamTableShortCap is the table size in short mode, filled up.
	StreamTableShortCap = 10_000
	// streamTableBudget bounds the section: levels not reached by then are
	// skipped with a note.
	streamTableBudget = 3 * time.Minute
	// newSIDBase starts the session ids of the streams the eviction
	// measurement inserts, beyond those of the fill (SID i for entry i).
	newSIDBase = 1 << 31
	// sweepSize is more memory than a server CPU's last-level cache: a
	// sweep through it evicts the stream table's entries from the caches.
	sweepSize = 64 << 20
)

// streamTableLevels are the table size and the fill levels measured.
func streamTableLevels(short bool) (uint32, []int) {
	if short {
		return StreamTableShortCap, []int{0, StreamTableShortCap}
	}
	return loader.DefaultMaxStreams, []int{0, 10_000, 100_000, 500_000, loader.DefaultMaxStreams}
}

// tableStream is the i-th entry of the fill: a router per entry (10.0.0.0/8
// holds 16M), 1000 intercepts.
func tableStream(i int) vocab.Stream {
	s := vocab.Stream{StreamKey: vocab.StreamKey{
		Router: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
		MID:    uint32(i%1000 + 1),
		SID:    uint32(i),
	}}
	s.Inner[vocab.InnerIPv4] = 1
	s.Bytes = 60
	return s
}

// tableFrame is a Jmirror frame of stream k carrying a small ping.
func tableFrame(k vocab.StreamKey) ([]byte, error) {
	echo := gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, 32)
	m := gen.Mirror{Router: k.Router, Collector: collector, MID: k.MID, SID: k.SID, Inner: echo}
	f, err := m.Frame()
	if err != nil {
		return nil, fmt.Errorf("frame of stream %v: %w", k, err)
	}
	return f, nil
}

func levelName(n int, capacity uint32) string {
	switch {
	case n == 0:
		return "empty"
	case n == int(capacity):
		return "full"
	case n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// streamTable measures, at each fill level of the stream table (distinct
// entries written in batches through the map), jmxdp next to xdp_pass on
// the same frames, alternating: hit, one frame of a stream in the table
// repeated (chunks of 10000, as program_cost); hit1, the same frame run
// once per call, the control of the single runs that follow; spread, StreamTableSpread
// frames of different streams spread over the table, each run once (the
// entry is not in the CPU's caches); and, in the full table, new, frames
// of streams not in it, each run once: an insert that evicts the least
// recently used entry.
func streamTable(opts Options) (Section, error) {
	capacity, levels := streamTableLevels(opts.Short)
	sec := Section{Name: SectionStreamTable, Note: fmt.Sprintf(
		"BPF_PROG_TEST_RUN, default policy count; jm_streams of %d entries filled to each level with distinct streams (batch map updates); "+
			"hit: one frame of a stream in the table, chunks of %d repeats; hit1: the same frame run once per call, %d calls; spread: %d frames of different streams spread over the table (their policy already cached in their entries, as a live stream's is), one run each after a sweep through 64 MiB of memory evicts them from the CPU caches (a repeat=1 time includes the test runner's fixed cost, which xdp_pass pays too: the ratio understates the lookup's share); "+
			"new: %d frames of streams not in the full table, one run each, each refused by the table and folded into its router's overflow total; "+
			"no target: the figures show how the cost grows with the table, the kernel reports whole ns",
		capacity, chunk, StreamTableSpread, StreamTableSpread, StreamTableSpread)}
	if !isRoot() {
		sec.Skipped = append(sec.Skipped, "not root: loading the XDP program needs CAP_BPF")
		return sec, nil
	}
	runs := opts.Runs
	if runs <= 0 {
		runs = 1
	}
	pairs := 20 // chunk pairs per hit measurement
	if opts.Short {
		pairs = 5
	}
	p, err := loader.Load(loader.Options{MaxStreams: capacity, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return sec, err
	}
	defer p.Close()
	bl, err := loader.LoadBaselines(capacity)
	if err != nil {
		return sec, err
	}
	defer bl.Close()
	if err := p.Configure(loader.Config{DefaultAction: vocab.ActionCount}); err != nil {
		return sec, err
	}
	sweep := make([]byte, sweepSize)
	// Stay on one thread, so that the sweep and the runs share a CPU's
	// caches (unless the scheduler moves the thread).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	deadline := time.Now().Add(streamTableBudget)
	filled := 0
	for li, level := range levels {
		if time.Now().After(deadline) {
			sec.Skipped = append(sec.Skipped, fmt.Sprintf("levels from %d on: the section's %s budget is spent", level, streamTableBudget))
			break
		}
		if level > filled {
			base := filled
			if err := p.Maps.PutStreams(level-base, func(i int) vocab.Stream { return tableStream(base + i) }); err != nil {
				return sec, fmt.Errorf("fill the stream table to %d: %w", level, err)
			}
			filled = level
		}
		name := levelName(level, capacity)
		// Hit: the stream of the middle of the fill (entry 0 in the
		// empty table, which its first run inserts).
		hitFrame, err := tableFrame(tableStream(level / 2).StreamKey)
		if err != nil {
			return sec, err
		}
		// A set of spread streams per run, so that each run touches
		// entries no other run did. Each is run once first, as a live
		// stream's first frame would, to cache its policy in its entry;
		// then a sweep through memory larger than the CPU's caches
		// before each run leaves that entry only in memory.
		spreads := make([][][]byte, runs)
		missing := 0
		for r := range spreads {
			fs, miss, err := spreadFrames(p.Maps, level, r)
			if err != nil {
				return sec, err
			}
			for _, f := range fs {
				if _, err := p.Run(f); err != nil {
					return sec, fmt.Errorf("spread, %d streams: %w", level, err)
				}
			}
			spreads[r], missing = fs, missing+miss
		}
		// The spread's control: the same number of single runs, all of
		// the hit's one stream, whose entry stays in the CPU's caches.
		same := make([][]byte, StreamTableSpread)
		for j := range same {
			same[j] = hitFrame
		}
		var hits, hitPass, once, oncePass, spr, sprPass []float64
		for r := range runs {
			v, b, err := measureHit(p, bl, hitFrame, pairs)
			if err != nil {
				return sec, fmt.Errorf("hit, %d streams: %w", level, err)
			}
			hits, hitPass = append(hits, v), append(hitPass, b)
			v, b, err = measureOnce(p, bl, same)
			if err != nil {
				return sec, fmt.Errorf("hit once, %d streams: %w", level, err)
			}
			once, oncePass = append(once, v), append(oncePass, b)
			if spread := spreads[r]; len(spread) > 0 {
				sweepCaches(sweep)
				v, b, err := measureOnce(p, bl, spread)
				if err != nil {
					return sec, fmt.Errorf("spread, %d streams: %w", level, err)
				}
				spr, sprPass = append(spr, v), append(sprPass, b)
			}
		}
		sec.Figures = append(sec.Figures, tableFigure("hit_"+name, hits, hitPass,
			fmt.Sprintf("%d streams in the table; one stream's frame, %d x %d repeats per run", level, pairs, chunk)))
		sec.Figures = append(sec.Figures, tableFigure("hit1_"+name, once, oncePass,
			fmt.Sprintf("%d streams in the table; the hit's frame, %d runs of one repeat: the fixed cost of a single run, the spread's control", level, StreamTableSpread)))
		if len(spr) > 0 {
			note := fmt.Sprintf("%d streams in the table; %d frames of different streams (another set each run), one run each, after a %d MiB sweep of memory", level, len(spreads[0]), len(sweep)>>20)
			if missing > 0 {
				note += fmt.Sprintf(" (%d sampled streams were not in the table and left out)", missing)
			}
			sec.Figures = append(sec.Figures, tableFigure("spread_"+name, spr, sprPass, note))
		}
		if li != len(levels)-1 || level != int(capacity) {
			continue
		}
		// Last, as its refused streams take cache slots the other
		// measurements' streams held.
		var news, newPass []float64
		for r := range runs {
			frames, err := newFrames(r)
			if err != nil {
				return sec, err
			}
			v, b, err := measureOnce(p, bl, frames)
			if err != nil {
				return sec, fmt.Errorf("new streams in a full table: %w", err)
			}
			news, newPass = append(news, v), append(newPass, b)
		}
		sec.Figures = append(sec.Figures, tableFigure("new_"+name, news, newPass,
			fmt.Sprintf("table full (%d entries); %d frames of streams not in it, one run each: insert refused, folded into the router's overflow total", capacity, StreamTableSpread)))
	}
	return sec, nil
}

func tableFigure(name string, vals, bases []float64, note string) Figure {
	v, b := median(vals), median(bases)
	return Figure{Name: name, Unit: "ns/frame", Value: v, Baseline: b, BaselineName: "xdp_pass",
		Ratio: v / b, RatioDesc: "jmxdp/xdp_pass", Note: note}
}

// spreadFrames builds frames of StreamTableSpread streams evenly spread
// over the first n entries of the fill, shifted by set, leaving out those
// the LRU has already evicted (it may, a little before the table is full).
func spreadFrames(m *maps.Maps, n, set int) (frames [][]byte, missing int, err error) {
	k := min(n, StreamTableSpread)
	for j := range k {
		key := tableStream((j*n/k + set) % n).StreamKey
		_, ok, err := m.Stream(key)
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			missing++
			continue
		}
		f, err := tableFrame(key)
		if err != nil {
			return nil, 0, err
		}
		frames = append(frames, f)
	}
	return frames, missing, nil
}

// newFrames builds StreamTableSpread frames of streams never in the table,
// different for every run r: the session id is patched in one frame.
func newFrames(r int) ([][]byte, error) {
	key := tableStream(0).StreamKey
	key.SID = newSIDBase
	tmpl, err := tableFrame(key)
	if err != nil {
		return nil, err
	}
	off := gen.Mirror{Router: key.Router, Collector: collector}.HeaderOffset() + 4
	frames := make([][]byte, StreamTableSpread)
	for j := range frames {
		f := append([]byte(nil), tmpl...)
		binary.BigEndian.PutUint32(f[off:], uint32(newSIDBase+r*StreamTableSpread+j))
		frames[j] = f
	}
	return frames, nil
}

// measureHit runs one frame in chunks, alternating jmxdp and xdp_pass, and
// returns both ns/frame.
func measureHit(p *loader.Program, bl *loader.Baselines, frame []byte, pairs int) (float64, float64, error) {
	var prog, pass time.Duration
	for range pairs {
		v, d, err := p.Benchmark(frame, chunk)
		if err != nil {
			return 0, 0, err
		}
		if v != vocab.VerdictDrop {
			return 0, 0, fmt.Errorf("verdict %v, want %v (count)", v, vocab.VerdictDrop)
		}
		_, db, err := bl.Pass(frame, chunk)
		if err != nil {
			return 0, 0, err
		}
		prog += d
		pass += db
	}
	return float64(prog.Nanoseconds()) / float64(pairs), float64(pass.Nanoseconds()) / float64(pairs), nil
}

// measureOnce runs every frame once through jmxdp and once through
// xdp_pass, and returns the mean kernel-reported ns/frame of each.
func measureOnce(p *loader.Program, bl *loader.Baselines, frames [][]byte) (float64, float64, error) {
	var prog, pass time.Duration
	for _, f := range frames {
		v, d, err := p.Benchmark(f, 1)
		if err != nil {
			return 0, 0, err
		}
		if v != vocab.VerdictDrop {
			return 0, 0, fmt.Errorf("verdict %v, want %v (count)", v, vocab.VerdictDrop)
		}
		_, db, err := bl.Pass(f, 1)
		if err != nil {
			return 0, 0, err
		}
		prog += d
		pass += db
	}
	n := float64(len(frames))
	return float64(prog.Nanoseconds()) / n, float64(pass.Nanoseconds()) / n, nil
}

// sweepCaches writes a byte in every cache line of buf.
func sweepCaches(buf []byte) {
	for i := 0; i < len(buf); i += 64 {
		buf[i]++
	}
}
