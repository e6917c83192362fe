package daemon

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/metrics"
)

// Reload applies a new configuration (a SIGHUP: the config file read
// again) to the running daemon, without a gap in capture:
//
//   - ports, default_action, policy and allowlist go to the program as one
//     diff (loader.Configure: new rules before stale ones go, the
//     allowlist switched on only once its prefixes are in), and if that
//     fails the old configuration is written back;
//   - output.rotate_size and rotate_age apply at the writers' next tick;
//   - metrics options apply at the next scrape; a new metrics address
//     starts the new endpoint before the old one closes;
//   - capture.keep_attached applies at the stop.
//
// Every other key (the interface, the output directory, buffers, queues,
// the pin dir, ...) needs a restart: Reload keeps its old value and says
// so in the log and in the returned list. cfg must have passed Validate.
// On error nothing changed.
func (d *Daemon) Reload(cfg config.Config) (changes []string, err error) {
	old := d.cfg
	// Keys only a restart can change: keep the running values.
	for _, k := range restartOnly(old, cfg) {
		d.log.Warn("reload: this key needs a restart; keeping the running value", "key", k)
		changes = append(changes, k+": needs a restart, unchanged")
	}
	cfg.Interface = old.Interface
	rotSize, rotAge, keep := cfg.Output.RotateSize, cfg.Output.RotateAge, cfg.Capture.KeepAttached
	cfg.Output, cfg.Capture, cfg.Reassembly = old.Output, old.Capture, old.Reassembly
	cfg.Sink = old.Sink // the sink is chosen and connected at start
	cfg.Output.RotateSize, cfg.Output.RotateAge, cfg.Capture.KeepAttached = rotSize, rotAge, keep
	// hide_ids decides the logs' redaction, set up at start: a restart.
	if hide := cfg.Metrics.ChooseHideIDs().Hide; hide != old.Metrics.HideIDs {
		d.log.Warn("reload: this key needs a restart; keeping the running value", "key", "metrics.hide_ids")
		changes = append(changes, "metrics.hide_ids: needs a restart, unchanged")
	}
	cfg.Metrics.HideIDs, cfg.Metrics.HideIDsSet = old.Metrics.HideIDs, old.Metrics.HideIDsSet

	// Metrics first: a new address that cannot be bound is the likeliest
	// failure, and nothing else has changed yet.
	var oldServer *metrics.Server
	if !reflect.DeepEqual(old.Metrics, cfg.Metrics) {
		if old.Metrics.Addr != cfg.Metrics.Addr || old.Metrics.WebConfig != cfg.Metrics.WebConfig || d.collector == nil {
			oldServer = d.metrics
			if cfg.Metrics.Addr != "" {
				if err := metrics.CheckWebConfig(cfg.Metrics.WebConfig); err != nil {
					return nil, fmt.Errorf("reload: metrics.web_config: %w; nothing changed", err)
				}
				if oldServer != nil && old.Metrics.Addr == cfg.Metrics.Addr {
					// The same port: the old endpoint must let go first.
					oldServer.Close()
					oldServer = nil
				}
				srv, col, err := d.newMetrics(cfg)
				if err != nil && d.metrics != nil && old.Metrics.Addr == cfg.Metrics.Addr {
					// Put the old one back.
					if back, bcol, berr := d.newMetrics(old); berr == nil {
						d.metrics, d.collector = back, bcol
					}
					return nil, fmt.Errorf("reload: %w; nothing changed", err)
				}
				if err != nil {
					return nil, fmt.Errorf("reload: %w; nothing changed", err)
				}
				d.metrics, d.collector = srv, col
			} else {
				d.metrics, d.collector = nil, nil
			}
		} else {
			d.collector.SetOptions(d.metricsOptions(cfg))
		}
		changes = append(changes, diffMetrics(old.Metrics, cfg.Metrics)...)
	}

	oldLC, newLC := programConfig(old), programConfig(cfg)
	if pc := diffProgram(oldLC, newLC); len(pc) > 0 {
		if err := d.prog.Configure(newLC); err != nil {
			if rerr := d.prog.Configure(oldLC); rerr != nil {
				err = fmt.Errorf("%w (and writing the old configuration back failed: %v)", err, rerr)
			}
			d.undoMetrics(oldServer)
			return nil, fmt.Errorf("reload: configure the program: %w", err)
		}
		changes = append(changes, pc...)
	}
	if rotSize != old.Output.RotateSize || rotAge != old.Output.RotateAge {
		if err := d.sink.SetRotation(rotSize, rotAge); err != nil {
			return nil, fmt.Errorf("reload: %w", err)
		}
		if rotSize != old.Output.RotateSize {
			changes = append(changes, fmt.Sprintf("output.rotate_size: %d -> %d", old.Output.RotateSize, rotSize))
		}
		if rotAge != old.Output.RotateAge {
			changes = append(changes, fmt.Sprintf("output.rotate_age: %v -> %v", old.Output.RotateAge, rotAge))
		}
	}
	if keep != old.Capture.KeepAttached {
		changes = append(changes, fmt.Sprintf("capture.keep_attached: %v -> %v", old.Capture.KeepAttached, keep))
	}
	if oldServer != nil {
		oldServer.Close()
	}
	d.cfg = cfg
	return changes, nil
}

// undoMetrics puts the old metrics endpoint back after a failed reload.
func (d *Daemon) undoMetrics(oldServer *metrics.Server) {
	if d.metrics == oldServer {
		return
	}
	if d.metrics != nil {
		d.metrics.Close()
	}
	d.metrics = oldServer
	if oldServer == nil {
		d.collector = nil
	}
}

// programConfig is what the program gets of cfg.
func programConfig(cfg config.Config) loader.Config {
	return loader.Config{Ports: cfg.Ports, DefaultAction: cfg.DefaultAction, Policies: cfg.Policy, Allowlist: cfg.Allowlist,
		ForwardLookupInterface: cfg.ForwardLookupInterface}
}

func diffProgram(a, b loader.Config) []string {
	var out []string
	if !slices.Equal(a.Ports, b.Ports) {
		out = append(out, fmt.Sprintf("ports: %v -> %v", a.Ports, b.Ports))
	}
	if a.DefaultAction != b.DefaultAction {
		out = append(out, fmt.Sprintf("default_action: %v -> %v", a.DefaultAction, b.DefaultAction))
	}
	if gone, added := diffCount(a.Policies, b.Policies); gone+added > 0 {
		out = append(out, fmt.Sprintf("policy: %d -> %d rules (%d removed, %d added or changed)", len(a.Policies), len(b.Policies), gone, added))
	}
	if gone, added := diffCount(a.Allowlist, b.Allowlist); gone+added > 0 {
		out = append(out, fmt.Sprintf("allowlist: %d -> %d prefixes (%d removed, %d added)", len(a.Allowlist), len(b.Allowlist), gone, added))
	}
	return out
}

func diffMetrics(a, b config.Metrics) []string {
	return diffFields("metrics", reflect.ValueOf(a), reflect.ValueOf(b), nil)
}

// restartOnly names the keys that differ between a and b and that only a
// restart applies.
func restartOnly(a, b config.Config) []string {
	var out []string
	if a.Interface != b.Interface {
		out = append(out, "interface")
	}
	out = append(out, diffFields("output", reflect.ValueOf(a.Output), reflect.ValueOf(b.Output), []string{"RotateSize", "RotateAge"})...)
	out = append(out, diffFields("capture", reflect.ValueOf(a.Capture), reflect.ValueOf(b.Capture), []string{"KeepAttached"})...)
	out = append(out, diffFields("reassembly", reflect.ValueOf(a.Reassembly), reflect.ValueOf(b.Reassembly), nil)...)
	out = append(out, diffFields("sink", reflect.ValueOf(a.Sink), reflect.ValueOf(b.Sink), nil)...)
	// Strip the values: for restart-only keys the name is enough.
	for i, s := range out {
		out[i], _, _ = strings.Cut(s, ":")
	}
	return out
}

// diffFields lists "section.key: old -> new" for the fields of two
// structs of one type that differ, but those in skip. Keys are the
// fields' names in snake case, as the config file spells them.
func diffFields(section string, a, b reflect.Value, skip []string) []string {
	var out []string
	for i := range a.NumField() {
		f := a.Type().Field(i)
		if !f.IsExported() || slices.Contains(skip, f.Name) || strings.HasSuffix(f.Name, "Set") {
			continue
		}
		x, y := a.Field(i).Interface(), b.Field(i).Interface()
		if !reflect.DeepEqual(x, y) {
			out = append(out, fmt.Sprintf("%s.%s: %v -> %v", section, snake(f.Name), x, y))
		}
	}
	return out
}

// snake turns a Go field name into the config key: MaxOpenFiles ->
// max_open_files, XDPMode -> xdp_mode.
func snake(name string) string {
	var b strings.Builder
	r := []rune(name)
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 && (unicode.IsLower(r[i-1]) || (i+1 < len(r) && unicode.IsLower(r[i+1]))) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}
