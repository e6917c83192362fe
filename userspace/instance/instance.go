// Package instance is a running (or pinned) jmxdp instance, seen from
// outside the process that runs it: find it by interface and pin
// directory, read its state, apply a policy or allowlist change to its
// pinned maps and to its config file as one transaction (the maps are put
// back when the file cannot be written), and sample its counters and
// compute rates. It returns plain structs; `jmxdp policy`, `allowlist`
// and `stats` only parse flags and render them, as tubectl does with
// tubular's Dispatcher.
package instance

import (
	"errors"
	"fmt"
	"os"

	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/configedit"
	"github.com/jmxdp/jmxdp/userspace/pins"
	"github.com/jmxdp/jmxdp/userspace/runstate"
)

// Where says where to look for the instance on an interface.
type Where struct {
	Iface string
	// PinBase is the base directory given explicitly (--pin-dir), used
	// when PinBaseSet: it holds IFACE's directory.
	PinBase    string
	PinBaseSet bool
	// RunDir holds the running instances' state files
	// (runstate.DefaultDir but in tests).
	RunDir string
}

// Locate is where the instance on w.Iface has its maps (PIN_DIR/IFACE):
// the explicit base when given, else the config file's capture.pin_dir
// (configPath, if not ""), else what the running `jmxdp run` recorded in
// its state file, else the default. The state file is what makes `stats
// --iface X` find a daemon whose pin dir came from its config file; st is
// that state, when it was used.
func Locate(w Where, configPath string) (dir string, st *runstate.State, err error) {
	if !w.PinBaseSet && configPath != "" {
		cfg, err := config.Load(configPath)
		if err != nil {
			return "", nil, err
		}
		return pins.Dir(cfg.Capture.PinDir, w.Iface), nil, nil
	}
	dir, st = w.locate()
	return dir, st, nil
}

// locate is Locate without a config file.
func (w Where) locate() (string, *runstate.State) {
	if w.PinBaseSet {
		return pins.Dir(w.PinBase, w.Iface), nil
	}
	if s, _, err := runstate.Read(w.RunDir, w.Iface); err == nil && s.PinDir != "" {
		return s.PinDir, &s
	}
	return pins.Dir(config.DefaultPinDir, w.Iface), nil
}

// Instance is what a change or a listing applies to: the instance's
// pinned maps, its config file, or both.
type Instance struct {
	iface    string
	dir      string       // PIN_DIR/IFACE
	pinned   *maps.Pinned // nil: nothing pinned
	attached bool         // a pinned XDP link: the program runs
	file     *configedit.File
	state    *runstate.State // the running instance's state file, when it told where the maps are
	// save writes a changed config file; tests make it fail.
	save func(*configedit.File) error
}

// Open finds the instance on w.Iface and opens its pinned maps, and with
// configPath (if not "") its config file, taking the file's edit lock
// until Close. At least one of the two must be there. The file's
// capture.pin_dir is where the maps are looked for unless w gives a base.
func Open(w Where, configPath string) (_ *Instance, err error) {
	t := &Instance{iface: w.Iface, save: (*configedit.File).Save}
	defer func() {
		if err != nil {
			t.Close() // the file's edit lock, the maps
		}
	}()
	switch {
	case configPath != "":
		file, err := configedit.Load(configPath)
		if err != nil {
			return nil, err
		}
		t.file = file
		if ifc := file.Config().Interface; ifc != "" && ifc != w.Iface {
			return nil, fmt.Errorf("%s configures interface %s, not %s", configPath, ifc, w.Iface)
		}
		t.dir = pins.Dir(file.Config().Capture.PinDir, w.Iface)
		if w.PinBaseSet {
			t.dir = pins.Dir(w.PinBase, w.Iface)
		}
	default:
		// Where the running instance said it pinned its maps.
		t.dir, t.state = w.locate()
	}
	pinned, err := OpenPinned(t.dir)
	switch {
	case errors.Is(err, maps.ErrNotPinned):
		if t.file == nil {
			return nil, NoInstance(w.Iface, t.dir, true)
		}
	case err != nil:
		return nil, err
	default:
		t.pinned = pinned
		t.attached = linked(t.dir)
	}
	return t, nil
}

// linked reports whether an XDP link is pinned in dir: the program runs.
func linked(dir string) bool {
	_, err := os.Lstat(pins.Link(dir))
	return err == nil
}

// Close releases the maps and the file's edit lock.
func (t *Instance) Close() {
	if t.pinned != nil {
		t.pinned.Close()
	}
	t.file.Close()
}

// Iface is the instance's interface.
func (t *Instance) Iface() string { return t.iface }

// Dir is its pin directory, PIN_DIR/IFACE, whether or not anything is
// pinned there.
func (t *Instance) Dir() string { return t.dir }

// Pinned reports whether its maps are pinned: it runs, or ran and left
// them.
func (t *Instance) Pinned() bool { return t.pinned != nil }

// Attached reports whether its program is attached (a pinned link).
func (t *Instance) Attached() bool { return t.attached }

// File is the config file's name; "" without one.
func (t *Instance) File() string {
	if t.file == nil {
		return ""
	}
	return t.file.Name()
}

// Name names the pinned instance in messages.
func (t *Instance) Name() string {
	if t.attached {
		return fmt.Sprintf("running instance on %s", t.iface)
	}
	return fmt.Sprintf("stopped instance on %s (maps still pinned, no program attached)", t.iface)
}

// targetsName names what a change applies to.
func (t *Instance) targetsName() string {
	switch {
	case t.pinned != nil && t.file != nil:
		return fmt.Sprintf("the %s and in %s", t.Name(), t.file.Name())
	case t.pinned != nil:
		return "the " + t.Name()
	}
	return t.file.Name()
}

// liveOnlyNote says that a change made to the instance only is undone at
// its next start, which applies the config (file and flags) and never
// what the pinned maps held.
func (t *Instance) liveOnlyNote(key string) string {
	n := "not written to a config file: live until the next start, which applies the config's " + key + " (give --config FILE to keep it)"
	if s := StateNote(t.state); s != "" {
		n += "; " + s
	}
	return n
}

// StateNote says which config file the running instance was started
// with, when the command was not given one: a change made only live is
// undone by that file at the next start.
func StateNote(st *runstate.State) string {
	if st == nil || st.Config == "" {
		return ""
	}
	return fmt.Sprintf("the instance was started with --config %s: give --config %s to keep this change across a restart", st.Config, st.Config)
}

// NoInstance is the error for nothing pinned in dir; hintConfig adds
// that --config FILE changes a stopped instance's configuration.
func NoInstance(iface, dir string, hintConfig bool) error {
	msg := fmt.Sprintf("no running instance on %s (nothing pinned in %s)", iface, dir)
	if hintConfig {
		msg += "; give --config FILE to change a stopped instance's configuration"
	}
	return errors.New(msg)
}

// OpenPinned opens the maps pinned in dir, explaining a permission error;
// maps.ErrNotPinned when nothing is pinned there.
func OpenPinned(dir string) (*maps.Pinned, error) {
	p, err := maps.OpenPinned(dir)
	if err == nil || errors.Is(err, maps.ErrNotPinned) {
		return p, err
	}
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("read the pinned maps in %s: %w (needs root: CAP_BPF)", dir, err)
	}
	return nil, fmt.Errorf("read the pinned maps in %s: %w", dir, err)
}
