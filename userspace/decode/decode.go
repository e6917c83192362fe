package decode

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/capfile"
	"github.com/jmxdp/jmxdp/userspace/filter"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Engine names a decoding engine.
type Engine string

const (
	EngineBPF Engine = "bpf" // the real XDP program, via BPF_PROG_TEST_RUN
	EngineGo  Engine = "go"  // the pure-Go decoder
)

// Options control a decode.
type Options struct {
	Ports []uint16 // default {30030}
	// Auto adds every candidate port (Jmirror-looking traffic on a port
	// not decoded) to Ports: a first pass over the files with the Go
	// decoder finds them.
	Auto   bool
	Engine Engine // default bpf
	// OutDir, if set, receives one pcapng file per (mid, sid).
	OutDir string
	// AllowUntrustedOut writes into an OutDir that another user owns or
	// can write (refused otherwise: links could be planted there).
	AllowUntrustedOut bool
	// MaxStreams sizes the kernel stream table for the bpf engine.
	MaxStreams uint32
	Logger     *slog.Logger
	// Filter, if set, keeps the report's matching streams, and --out
	// writes only their files (filter.go).
	Filter *filter.Filter
}

// engine is one way to run frames through the data path.
type engine interface {
	process(frame []byte) error
	result() ([]vocab.Stream, vocab.Counters, error)
	candidates() ([]vocab.Candidate, error)
	close() error
}

type goEngine struct{ e *jmirror.Engine }

func (g *goEngine) process(frame []byte) error { g.e.Process(frame); return nil }
func (g *goEngine) result() ([]vocab.Stream, vocab.Counters, error) {
	return g.e.Streams(), g.e.Counters(), nil
}
func (g *goEngine) candidates() ([]vocab.Candidate, error) { return g.e.Candidates(), nil }
func (g *goEngine) close() error                           { return nil }

type bpfEngine struct{ p *loader.Program }

func (b *bpfEngine) process(frame []byte) error {
	_, err := b.p.Run(frame)
	return err
}
func (b *bpfEngine) result() ([]vocab.Stream, vocab.Counters, error) {
	s, err := b.p.Maps.Streams()
	if err != nil {
		return nil, vocab.Counters{}, err
	}
	c, err := b.p.Maps.Counters()
	return s, c, err
}
func (b *bpfEngine) candidates() ([]vocab.Candidate, error) { return b.p.Maps.Candidates() }
func (b *bpfEngine) close() error                           { return b.p.Close() }

func newEngine(opts Options) (engine, error) {
	switch opts.Engine {
	case EngineGo:
		return &goEngine{jmirror.NewEngine(jmirror.Config{Ports: opts.Ports}, nil)}, nil
	case EngineBPF, "":
		maxStreams := opts.MaxStreams
		if maxStreams == 0 {
			maxStreams = loader.DefaultMaxStreams
		}
		p, err := loader.Load(loader.Options{MaxStreams: maxStreams, Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("bpf engine (try --engine go without root or BPF): %w", err)
		}
		if err := p.Configure(loader.Config{Ports: opts.Ports}); err != nil {
			p.Close()
			return nil, fmt.Errorf("configure bpf engine: %w", err)
		}
		return &bpfEngine{p}, nil
	}
	return nil, fmt.Errorf("unknown engine %q (want bpf or go)", opts.Engine)
}

// Files decodes the capture files in order, as one stream of frames.
// An unreadable file stops the decode with an error that names it; files
// already written by --out are closed intact first.
func Files(paths []string, opts Options) (rep *Report, err error) {
	if len(paths) == 0 {
		return nil, errors.New("no capture files given")
	}
	if len(opts.Ports) == 0 {
		opts.Ports = []uint16{loader.DefaultPort}
	}
	if opts.Auto {
		found, err := discoverPorts(paths, opts.Ports)
		if err != nil {
			return nil, err
		}
		opts.Ports = append(opts.Ports, found...)
	}
	opts.Ports = slices.Compact(slices.Sorted(slices.Values(opts.Ports)))
	if opts.Engine == "" {
		opts.Engine = EngineBPF
	}
	eng, err := newEngine(opts)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, eng.close()) }()

	var out *outWriter
	if opts.OutDir != "" {
		if out, err = newOutWriter(opts.OutDir, opts.Ports, opts.AllowUntrustedOut); err != nil {
			return nil, err
		}
		defer func() { err = errors.Join(err, out.close()) }()
		if err = out.useFilter(opts.Filter); err != nil {
			return nil, err
		}
	}

	var skipped uint64
	for _, path := range paths {
		n, err := decodeFile(path, eng, out, &skipped)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: capture holds no frames", path)
		}
	}
	streams, counters, err := eng.result()
	if err != nil {
		return nil, err
	}
	rep = &Report{Streams: streamReports(streams), Totals: totalsFrom(counters), Engine: string(opts.Engine), Ports: opts.Ports}
	rep.StreamsTotal = len(rep.Streams)
	rep.Totals.Skipped = skipped
	cands, err := eng.candidates()
	if err != nil {
		return nil, err
	}
	rep.CandidatePorts = candidateReports(cands)
	if err := applyFilter(rep, opts.Filter, out); err != nil {
		return nil, err
	}
	if out != nil {
		if err := out.finish(rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// discoverPorts is --port auto's first pass: the Go decoder (the kernel's
// rules) over every file, reporting the ports with Jmirror-looking traffic.
func discoverPorts(paths []string, ports []uint16) ([]uint16, error) {
	eng := &goEngine{jmirror.NewEngine(jmirror.Config{Ports: ports}, nil)}
	var skipped uint64
	for _, path := range paths {
		if _, err := decodeFile(path, eng, nil, &skipped); err != nil {
			return nil, err
		}
	}
	cands, _ := eng.candidates()
	out := make([]uint16, 0, len(cands))
	for _, c := range cands {
		out = append(out, c.Port)
	}
	return out, nil
}

func decodeFile(path string, eng engine, out *outWriter, skipped *uint64) (int, error) {
	r, err := capfile.Open(path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n := 0
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
		if len(f.Data) < loader.MinFrameLen || len(f.Data) > loader.MaxRunFrameLen {
			*skipped++
			continue
		}
		if err := eng.process(f.Data); err != nil {
			return n, fmt.Errorf("%s: frame %d: %w", path, f.Index, err)
		}
		if out != nil {
			if err := out.frame(f); err != nil {
				return n, err
			}
		}
	}
}
