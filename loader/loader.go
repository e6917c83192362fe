// Package loader loads the jmxdp XDP program and its maps, fills the
// configuration maps, pins them under bpffs and attaches the program to an
// interface.
package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/forward"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/pins"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// DefaultPort is Wireshark's Jmirror port, decoded when none is configured.
const DefaultPort = jmirror.DefaultPort

// DefaultMaxStreams sizes the stream table: see docs/datapath.md for what
// it costs.
const DefaultMaxStreams = 1 << 20

// Options control loading.
type Options struct {
	// MaxStreams overrides the size of the stream table (default 1M).
	MaxStreams uint32
	// PinDir, if set, pins every map there by name and reuses maps already
	// pinned there, so counters survive a restart.
	PinDir string
	// Logger receives what the loader decided and why; nil means slog.Default.
	Logger *slog.Logger
	// ForceHeaderCopy makes the program copy headers that are not in a
	// frame's linear part with bpf_xdp_load_bytes, as on a kernel without
	// bpf_xdp_pull_data (before 6.18), instead of pulling them in: for
	// tests of that path on a kernel that has the kfunc.
	ForceHeaderCopy bool
}

// scratchMaps hold nothing between frames: never pinned, never migrated.
var scratchMaps = map[string]bool{"jm_scratch": true, "jm_clock": true, "jm_count_scratch": true}

// Config is what the configuration maps hold.
type Config struct {
	Ports         []uint16 // UDP destination ports decoded; default {30030}
	DefaultAction vocab.Action
	Policies      []vocab.PolicyRule
	Allowlist     []netip.Prefix // empty: every source is trusted
	// ForwardLookupInterface is the interface the forward action's fib
	// lookups are made from; "" means the ingress (docs/forward.md).
	ForwardLookupInterface string
}

// Program is a loaded jmxdp program with its maps.
type Program struct {
	objs bpf.Objects
	Maps *maps.Maps
	log  *slog.Logger
	att  *attachment
}

// Load loads the program into the kernel. It needs CAP_BPF (and
// CAP_NET_ADMIN to attach).
func Load(opts Options) (*Program, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Debug("could not raise RLIMIT_MEMLOCK", "err", err)
	}
	spec, err := bpf.LoadSpec()
	if err != nil {
		return nil, fmt.Errorf("read embedded BPF object: %w", err)
	}
	if opts.MaxStreams > 0 {
		spec.Maps["jm_streams"].MaxEntries = opts.MaxStreams
	}
	if opts.ForceHeaderCopy {
		v, ok := spec.Variables["jm_force_header_copy"]
		if !ok {
			return nil, errors.New("embedded BPF object has no jm_force_header_copy")
		}
		if err := v.Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("set jm_force_header_copy: %w", err)
		}
	}
	var collOpts ebpf.CollectionOptions
	if opts.PinDir != "" {
		if err := pins.EnsureDir(opts.PinDir); err != nil {
			return nil, err
		}
		for _, m := range spec.Maps {
			if m.Name == "" || m.Name[0] == '.' || scratchMaps[m.Name] {
				continue
			}
			m.Pinning = ebpf.PinByName
		}
		collOpts.Maps.PinPath = opts.PinDir
		if err := migratePins(spec, opts.PinDir, log); err != nil {
			return nil, err
		}
	}
	p := &Program{log: log}
	if err := spec.LoadAndAssign(&p.objs, &collOpts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load XDP program (verifier): %+v", verr)
		}
		return nil, fmt.Errorf("load XDP program: %w", err)
	}
	p.Maps = maps.New(p.objs.MapSet())
	return p, nil
}

// Configure makes the configuration maps hold cfg. It applies the change
// as a diff, in an order that never opens a gap on a running program: new
// and changed rules are written before stale ones are removed, and the
// allowlist is switched on only once its prefixes are in (off before they
// go).
func (p *Program) Configure(cfg Config) error {
	ports := cfg.Ports
	if len(ports) == 0 {
		ports = []uint16{DefaultPort}
	}
	for _, port := range ports {
		if port == 0 {
			return errors.New("port 0 is not a valid Jmirror port")
		}
	}
	for _, r := range cfg.Policies {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("policy: %w", err)
		}
	}
	for _, a := range cfg.Allowlist {
		// Before any change: a refused allowlist changes nothing.
		if err := vocab.CheckAllowPrefix(a); err != nil {
			return fmt.Errorf("allowlist: %w", err)
		}
	}
	settings := vocab.Settings{DefaultAction: cfg.DefaultAction, AllowlistEnabled: len(cfg.Allowlist) > 0}
	if err := settings.Validate(); err != nil {
		return err
	}
	// Before any change: a forward target with no route refuses the
	// whole configuration.
	lookupIfindex, err := forward.LookupInterface(cfg.ForwardLookupInterface, cfg.Policies, p.log)
	if err != nil {
		return err
	}
	if err := forward.Prepare(p.Maps, cfg.Policies, p.log); err != nil {
		return err
	}
	if err := p.Maps.SetForwardLookupInterface(lookupIfindex); err != nil {
		return err
	}
	if err := p.Maps.SetPorts(ports); err != nil {
		return err
	}
	if err := p.configurePolicies(cfg.Policies); err != nil {
		return err
	}
	return p.Maps.SetAllowlist(cfg.Allowlist, settings)
}

func (p *Program) configurePolicies(rules []vocab.PolicyRule) error {
	old, err := p.Maps.Policies()
	if err != nil {
		return err
	}
	keep := make(map[vocab.PolicyRule]bool, len(rules))
	for _, r := range rules {
		if err := p.Maps.PutPolicy(r); err != nil {
			return err
		}
		r.Action, r.Target = 0, netip.AddrPort{}
		keep[r] = true
	}
	for _, r := range old {
		r.Action, r.Target = 0, netip.AddrPort{}
		if !keep[r] {
			if err := p.Maps.DeletePolicy(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// Objects exposes the programs and maps, for tests and benchmarks.
func (p *Program) Objects() *bpf.Objects { return &p.objs }

// Close detaches (unless the attachment is pinned) and releases the
// program's file descriptors. Pinned maps stay in bpffs.
func (p *Program) Close() error {
	var errs []error
	if p.att != nil {
		errs = append(errs, p.att.close())
		p.att = nil
	}
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}

// ObjectSHA256 is the SHA-256 of the BPF object this build embeds and
// loads, for `jmxdp version`.
func ObjectSHA256() string { return bpf.ObjectSHA256() }
