package instance

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/configedit"
	"github.com/jmxdp/jmxdp/userspace/pins"
	"github.com/jmxdp/jmxdp/userspace/runstate"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Locate's order: an explicit base, else the config file's
// capture.pin_dir, else the running instance's state file, else the
// default.
func TestLocate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "jmxdp.yaml")
	if err := os.WriteFile(file, []byte("interface: eth0\ncapture:\n  pin_dir: /sys/fs/bpf/fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runDir := t.TempDir()
	lock, err := runstate.Acquire(runDir, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	if err := lock.Write(runstate.State{PID: os.Getpid(), Iface: "eth0", PinDir: "/sys/fs/bpf/fromstate/eth0", Config: "/etc/jmxdp/a.yaml", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		w      Where
		config string
		want   string
		state  bool
	}{
		{"base", Where{Iface: "eth0", PinBase: "/sys/fs/bpf/given", PinBaseSet: true, RunDir: runDir}, file, "/sys/fs/bpf/given/eth0", false},
		{"config", Where{Iface: "eth0", RunDir: runDir}, file, "/sys/fs/bpf/fromfile/eth0", false},
		{"state", Where{Iface: "eth0", RunDir: runDir}, "", "/sys/fs/bpf/fromstate/eth0", true},
		{"default", Where{Iface: "eth0", RunDir: t.TempDir()}, "", pins.Dir(config.DefaultPinDir, "eth0"), false},
	} {
		got, st, err := Locate(c.w, c.config)
		if err != nil || got != c.want || (st != nil) != c.state {
			t.Errorf("%s: %q %v %v, want %q (state %v)", c.name, got, st, err, c.want, c.state)
		}
		if c.state && StateNote(st) != "the instance was started with --config /etc/jmxdp/a.yaml: give --config /etc/jmxdp/a.yaml to keep this change across a restart" {
			t.Errorf("state note %q", StateNote(st))
		}
	}
	if _, _, err := Locate(Where{Iface: "eth0"}, filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing config file: %v", err)
	}
	// Nothing pinned and no file: an error that says where it looked.
	if _, err := Open(Where{Iface: "eth0", PinBase: dir, PinBaseSet: true}, ""); err == nil ||
		err.Error() != "no running instance on eth0 (nothing pinned in "+filepath.Join(dir, "eth0")+"); give --config FILE to change a stopped instance's configuration" {
		t.Errorf("open with nothing pinned: %v", err)
	}
}

// pinBase is a directory of bpffs for the test alone: unique across
// processes, as other test runs on the machine pin there too.
func pinBase(t *testing.T, name string) string {
	t.Helper()
	if err := pins.EnsureBPFFS(pins.BPFFSRoot); err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp(pins.BPFFSRoot, "jmxdp-test-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	return base
}

// A stopped instance (maps pinned, no program attached) is changed and
// named so; when the config file cannot be written, every change (a new
// rule, a replaced one, a deleted one, an allowlist that would switch the
// allowlist on) is undone in the maps, and the file is left as it was.
func TestChangeRollback(t *testing.T) {
	testenv.RequireRoot(t)
	base := pinBase(t, "rollback")
	p, err := loader.Load(loader.Options{MaxStreams: 1024, PinDir: pins.Dir(base, "jmrb0")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	old := vocab.PolicyRule{MID: 9, SID: 9, Action: vocab.ActionPass}
	if err := p.Configure(loader.Config{DefaultAction: vocab.ActionCapture, Policies: []vocab.PolicyRule{old}}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "jmxdp.yaml")
	const body = "interface: jmrb0\npolicy: [{mid: 9, sid: 9, action: pass}]\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	w := Where{Iface: "jmrb0", PinBase: base, PinBaseSet: true}

	live, err := Open(w, "")
	if err != nil {
		t.Fatal(err)
	}
	if live.Attached() || !live.Pinned() || live.Name() != "stopped instance on jmrb0 (maps still pinned, no program attached)" {
		t.Errorf("stopped instance: attached %v pinned %v name %q", live.Attached(), live.Pinned(), live.Name())
	}
	one := vocab.PolicyRule{MID: 1, AnySID: true, Action: vocab.ActionCount}
	c, err := live.AddPolicy(one, false)
	live.Close()
	if err != nil || c.Config != nil || c.Instance == nil || c.Instance.Attached || len(c.Instance.Changed) != 1 || c.Instance.Changed[0].Rule != one {
		t.Fatalf("add to the stopped instance: %v %+v", err, c)
	}

	for _, op := range []struct {
		name string
		do   func(*Instance) error
	}{
		{"add", func(i *Instance) error {
			_, err := i.AddPolicy(vocab.PolicyRule{MID: 2, AnySID: true, Action: vocab.ActionCount}, false)
			return err
		}},
		{"replace", func(i *Instance) error {
			_, err := i.AddPolicy(vocab.PolicyRule{MID: 9, SID: 9, Action: vocab.ActionCount}, true)
			return err
		}},
		{"del", func(i *Instance) error { _, err := i.DeletePolicy(vocab.PolicyRule{MID: 9, SID: 9}); return err }},
		{"allowlist add", func(i *Instance) error {
			_, err := i.ChangeAllowlist(true, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
			return err
		}},
	} {
		i, err := Open(w, file)
		if err != nil {
			t.Fatal(err)
		}
		i.save = func(*configedit.File) error { return errors.New("disk on fire") }
		err = op.do(i)
		i.Close()
		if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), "unchanged") {
			t.Errorf("%s: %v", op.name, err)
		}
	}
	rules, _ := p.Maps.Policies()
	if want := []vocab.PolicyRule{one, old}; !slices.Equal(rules, want) {
		t.Errorf("policy after failed writes: %v, want %v", rules, want)
	}
	if list, _ := p.Maps.Allowlist(); len(list) != 0 {
		t.Errorf("allowlist after a failed write: %v", list)
	}
	if s, _ := p.Maps.Settings(); s.AllowlistEnabled {
		t.Error("allowlist switch left on")
	}
	if data, _ := os.ReadFile(file); string(data) != body {
		t.Errorf("file changed:\n%s", data)
	}
}

// The allowlist switch follows the list: on once the first prefix is in,
// off when the last goes, and a change read back through Allowlist.
func TestAllowlistSwitch(t *testing.T) {
	testenv.RequireRoot(t)
	base := pinBase(t, "allow")
	p, err := loader.Load(loader.Options{MaxStreams: 1024, PinDir: pins.Dir(base, "jmal0")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Configure(loader.Config{DefaultAction: vocab.ActionCapture}); err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")
	step := func(add bool, ps []netip.Prefix, want []netip.Prefix, on bool) {
		t.Helper()
		i, err := Open(Where{Iface: "jmal0", PinBase: base, PinBaseSet: true}, "")
		if err != nil {
			t.Fatal(err)
		}
		defer i.Close()
		c, err := i.ChangeAllowlist(add, ps)
		if err != nil || !slices.Equal(c.Instance.Changed, ps) {
			t.Fatalf("change %v %v: %v %+v", add, ps, err, c)
		}
		l, err := i.Allowlist()
		if err != nil || !slices.Equal(l.Prefixes, want) || l.Enabled != on {
			t.Errorf("after %v %v: %v on %v (%v), want %v on %v", add, ps, l.Prefixes, l.Enabled, err, want, on)
		}
		if s, _ := p.Maps.Settings(); s.AllowlistEnabled != on || s.DefaultAction != vocab.ActionCapture {
			t.Errorf("after %v %v: settings %+v", add, ps, s)
		}
	}
	step(true, []netip.Prefix{a}, []netip.Prefix{a}, true)
	step(true, []netip.Prefix{b}, []netip.Prefix{a, b}, true)
	step(false, []netip.Prefix{a}, []netip.Prefix{b}, true)
	step(false, []netip.Prefix{b}, nil, false)
}
