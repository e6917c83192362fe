package daemon_test

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	jmmaps "github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/pins"
	"github.com/jmxdp/jmxdp/userspace/runstate"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// A second `jmxdp run` on an interface that a running instance holds is
// refused before it opens the maps: the running instance keeps its ports,
// default action and policy, and goes on capturing (issue 13, bug 1).
func TestRefusedStartChangesNothing(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Policy, cfg.PolicySet = []vocab.PolicyRule{{MID: 7, AnySID: true, Action: vocab.ActionCapture}}, true
	d := e.start(t, cfg)
	ports0, err := d.Program().Maps.Ports()
	if err != nil {
		t.Fatal(err)
	}
	set0, err := d.Program().Maps.Settings()
	if err != nil {
		t.Fatal(err)
	}
	pol0, err := d.Program().Maps.Policies()
	if err != nil {
		t.Fatal(err)
	}

	bad := e.config(40000)
	bad.DefaultAction, bad.DefaultActionSet = vocab.ActionCount, true
	bad.Policy, bad.PolicySet = nil, true
	if err := bad.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs testenv.LogBuffer
	d2, err := daemon.Start(bad, slog.New(slog.NewTextHandler(&logs, nil)), daemon.WithRunDir(e.runDir))
	if err == nil {
		d2.Stop()
		t.Fatal("a second start on the same interface was accepted")
	}
	if !errors.Is(err, runstate.ErrBusy) || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("refusal: %v", err)
	}
	ports, _ := d.Program().Maps.Ports()
	set, _ := d.Program().Maps.Settings()
	pol, _ := d.Program().Maps.Policies()
	if !slices.Equal(ports, ports0) || set != set0 || !slices.Equal(pol, pol0) {
		t.Errorf("the refused start changed the running instance: ports %v -> %v, settings %+v -> %+v, policy %v -> %v",
			ports0, ports, set0, set, pol0, pol)
	}
	// The running instance still captures on its own port.
	router := e.lab.RouterAddr.Addr()
	var frames [][]byte
	for i := range 20 {
		frames = append(frames, e.mirror(t, router, 7, 1, gen.DefaultPort, i))
	}
	e.send(t, frames)
	testenv.WaitFor(t, "capture by the running instance", 10*time.Second, func() bool { return d.Writer().Stats().Packets >= 20 })
	if n := counter(t, d, vocab.StatActionPass) + counter(t, d, vocab.StatActionCount); n != 0 {
		t.Errorf("%d frames counted or passed: the refused start's settings leaked in", n)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	// Once the first one stopped, the same config starts.
	d3 := e.start(t, bad)
	if err := d3.Stop(); err != nil {
		t.Fatal(err)
	}
}

// A key the config does not set takes its documented default on start,
// whatever a stale pinned map holds: a default_action and ports left by
// an earlier run with another config are not inherited (issue 13, bug 1).
func TestStartTakesDefaultsNotPinnedValues(t *testing.T) {
	e := newEnv(t)
	first := e.config(40000, 40001)
	first.DefaultAction, first.DefaultActionSet = vocab.ActionCount, true
	first.Policy, first.PolicySet = []vocab.PolicyRule{{MID: 9, SID: 9, Action: vocab.ActionPass}}, true
	d := e.start(t, first)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	// The maps stay pinned with the first run's values.
	maps, err := jmmaps.OpenPinned(pins.Dir(e.pinDir, e.lab.HostIface))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := maps.Settings(); s.DefaultAction != vocab.ActionCount {
		t.Fatalf("pinned default action %v, want count (the test's premise)", s.DefaultAction)
	}
	maps.Close()

	plain := e.config() // sets neither ports, default_action nor policy
	d2 := e.start(t, plain)
	m := d2.Program().Maps
	ports, _ := m.Ports()
	set, _ := m.Settings()
	pol, _ := m.Policies()
	if !slices.Equal(ports, []uint16{gen.DefaultPort}) {
		t.Errorf("ports %v, want the default [%d]", ports, gen.DefaultPort)
	}
	if set.DefaultAction != vocab.ActionCapture {
		t.Errorf("default action %v, want capture (the default)", set.DefaultAction)
	}
	if len(pol) != 0 {
		t.Errorf("policy %v, want none (the config sets none)", pol)
	}
	logs := e.logs.String()
	for _, want := range []string{"pinned default_action differs", "ports the config does not name", "pinned policy rules"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	// And it captures with them.
	router := e.lab.RouterAddr.Addr()
	var frames [][]byte
	for i := range 10 {
		frames = append(frames, e.mirror(t, router, 3, 3, gen.DefaultPort, i))
	}
	e.send(t, frames)
	testenv.WaitFor(t, "capture with the default action", 10*time.Second, func() bool { return d2.Writer().Stats().Packets >= 10 })
}

// The state file names the running instance's pin dir and config; after a
// stop it is still there, no longer running.
func TestRunStateFile(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), daemon.WithRunDir(e.runDir),
		daemon.WithConfigPath("/etc/jmxdp/test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	st, running, err := runstate.Read(e.runDir, e.lab.HostIface)
	if err != nil {
		t.Fatal(err)
	}
	if !running || st.PinDir != pins.Dir(e.pinDir, e.lab.HostIface) || st.Config != "/etc/jmxdp/test.yaml" || st.Out != e.out {
		t.Errorf("state %+v running=%v", st, running)
	}
	if time.Since(st.Started) > time.Minute {
		t.Errorf("started %v", st.Started)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, running, err := runstate.Read(e.runDir, e.lab.HostIface); err != nil || running {
		t.Errorf("after a stop: running=%v err=%v, want the state file, not running", running, err)
	}
}

// A start that fails after loading (here: another writer holds the output
// directory) removes the maps it pinned, and keeps those an earlier
// instance pinned, with their counters (issue 19, item 6).
func TestFailedStartRemovesWhatItPinned(t *testing.T) {
	e := newEnv(t)
	holder, err := writer.New(writer.Config{Dir: e.out})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), daemon.WithRunDir(e.runDir))
	if err == nil {
		d.Stop()
		t.Fatal("started while another writer holds the output directory")
	}
	if _, serr := os.Stat(e.pinDir); !errors.Is(serr, os.ErrNotExist) {
		entries, _ := os.ReadDir(pins.Dir(e.pinDir, e.lab.HostIface))
		t.Errorf("pin dir left after a failed first start (%v): %v", serr, entries)
	}
	holder.Close()

	// An instance that ran leaves its maps; a failed start keeps them.
	d = e.start(t, cfg)
	router := e.lab.RouterAddr.Addr()
	e.send(t, [][]byte{e.mirror(t, router, 1, 1, gen.DefaultPort, 0)})
	testenv.WaitFor(t, "a counted frame", 10*time.Second, func() bool { return counter(t, d, vocab.StatJmirror) >= 1 })
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	holder, err = writer.New(writer.Config{Dir: e.out})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), daemon.WithRunDir(e.runDir)); err == nil {
		d.Stop()
		t.Fatal("started while another writer holds the output directory")
	}
	m, err := jmmaps.OpenPinned(pins.Dir(e.pinDir, e.lab.HostIface))
	if err != nil {
		t.Fatalf("the earlier instance's maps are gone after a failed start: %v", err)
	}
	defer m.Close()
	if c, err := m.Counters(); err != nil || c[vocab.StatJmirror] < 1 {
		t.Errorf("the earlier instance's counters: %v %v", c[vocab.StatJmirror], err)
	}
}

// A start with no allowlist on a non-loopback interface says so once; one
// with an allowlist does not (issue 19 item 3).
func TestNoAllowlistWarning(t *testing.T) {
	e := newEnv(t)
	d := e.start(t, e.config())
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(e.logs.String(), "no allowlist:"); n != 1 {
		t.Errorf("%d no-allowlist warnings without an allowlist, want 1:\n%s", n, e.logs.String())
	}
	e.logs = &testenv.LogBuffer{}
	cfg := e.config()
	cfg.Allowlist, cfg.AllowlistSet = []netip.Prefix{netip.PrefixFrom(e.lab.RouterAddr.Addr(), 32)}, true
	d = e.start(t, cfg)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.logs.String(), "no allowlist:") {
		t.Errorf("warned with an allowlist:\n%s", e.logs.String())
	}
}
