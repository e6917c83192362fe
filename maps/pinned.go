package maps

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/userspace/pins"
)

// ErrNotPinned means no jmxdp maps are pinned in the directory: no instance
// has run on that interface (or its maps were purged).
var ErrNotPinned = errors.New("no jmxdp maps pinned there")

// Pinned is a running (or kept-attached) instance's maps, opened from its
// pin directory, for the CLI to read and change without loading a program.
type Pinned struct {
	*Maps
	objs *bpf.Maps
}

// OpenPinned opens the maps pinned in dir (PIN_DIR/IFACE). Changes through
// them take effect on the next packet the instance's program sees.
func OpenPinned(dir string) (*Pinned, error) {
	var objs bpf.Maps
	targets := []struct {
		name string
		m    **ebpf.Map
	}{
		{"jm_allowlist", &objs.JmAllowlist}, {"jm_candidates", &objs.JmCandidates}, {"jm_config", &objs.JmConfig}, {"jm_frags", &objs.JmFrags},
		{"jm_policy", &objs.JmPolicy}, {"jm_policy_gen", &objs.JmPolicyGen}, {"jm_ports", &objs.JmPorts}, {"jm_stats", &objs.JmStats},
		{"jm_streams", &objs.JmStreams}, {"jm_untrusted", &objs.JmUntrusted}, {"jm_xsks", &objs.JmXsks},
		{"jm_fwd_streams", &objs.JmFwdStreams}, {"jm_fwd_devs", &objs.JmFwdDevs}, {"jm_fwd_src", &objs.JmFwdSrc},
		{"jm_fwd_cfg", &objs.JmFwdCfg},
		{"jm_stream_cache", &objs.JmStreamCache}, {"jm_router_overflow", &objs.JmRouterOverflow}, {"jm_router_retired", &objs.JmRouterRetired},
	}
	for _, t := range targets {
		m, err := ebpf.LoadPinnedMap(pins.Map(dir, t.name), nil)
		if errors.Is(err, os.ErrNotExist) && (strings.HasPrefix(t.name, "jm_fwd_") || optionalCounterMaps[t.name]) {
			// An instance an older jmxdp started has no forward maps
			// (reads of them come back empty, writes are refused) and
			// no stream cache or router totals (the table is all).
			continue
		}
		if errors.Is(err, os.ErrNotExist) {
			objs.Close()
			return nil, fmt.Errorf("%s: %w", dir, ErrNotPinned)
		}
		if err != nil {
			objs.Close()
			return nil, fmt.Errorf("open pinned map %s: %w", t.name, err)
		}
		*t.m = m
	}
	return &Pinned{Maps: New(&objs), objs: &objs}, nil
}

// The maps an instance pinned before issue 17's cache and router totals
// lacks; without them the stream table is read alone.
var optionalCounterMaps = map[string]bool{"jm_stream_cache": true, "jm_router_overflow": true, "jm_router_retired": true}

// Close releases the maps; the pins stay.
func (p *Pinned) Close() error { return p.objs.Close() }
