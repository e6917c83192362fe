package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// liveEnv is a daemon on a lab, restartable with its config file.
type liveEnv struct {
	lab     *lab.Lab
	pinBase string
	file    string
	d       *daemon.Daemon
	seq     int
}

func (e *liveEnv) start(t *testing.T) {
	t.Helper()
	cfg, err := config.Load(e.file)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), daemon.WithConfigPath(e.file))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { d.Stop() })
	e.d = d
}

func (e *liveEnv) counters(t *testing.T) vocab.Counters {
	t.Helper()
	c, err := e.d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// send sends n frames of (mid, sid) from router and waits (up to 10 s)
// until the kernel has seen them all, as Jmirror or as untrusted.
func (e *liveEnv) send(t *testing.T, router netip.Addr, mid, sid uint32, n int) {
	t.Helper()
	before := e.counters(t)
	frames := make([][]byte, n)
	for i := range frames {
		e.seq++
		m := gen.Mirror{SrcMAC: e.lab.RouterMAC, DstMAC: e.lab.HostMAC, Router: router, Collector: e.lab.HostAddr.Addr(),
			MID: mid, SID: sid, Inner: gen.InnerIPv4ICMPEcho(netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2"), 7, uint16(e.seq), 40)}
		f, err := m.Frame()
		if err != nil {
			t.Fatal(err)
		}
		frames[i] = f
	}
	s, err := e.lab.Sender()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if sent, err := s.Send(frames); err != nil || sent != n {
		t.Fatalf("sent %d of %d: %v", sent, n, err)
	}
	seen := func(c vocab.Counters) uint64 { return c[vocab.StatJmirror] + c[vocab.StatUntrusted] }
	testenv.WaitFor(t, "the kernel to see the frames", 10*time.Second, func() bool { return seen(e.counters(t)) >= seen(before)+uint64(n) })
	time.Sleep(50 * time.Millisecond) // nothing more should come
}

func diff(a, b vocab.Counters, s vocab.Stat) uint64 { return b[s] - a[s] }

// The requirement, end to end: a live daemon captures (60, 1); a
// policy added through the CLI makes the very next packets counted and
// dropped; an allowlist without the router makes them untrusted, and
// deleting it lets them in again. A rule added with --config goes into the
// file with the instance's whole policy, so a restart with the file keeps
// both; a rule added live only is gone after a restart.
func TestPolicyLive(t *testing.T) {
	testenv.RequireRoot(t)
	l := labtest.New(t, "jxp")
	e := &liveEnv{lab: l, pinBase: filepath.Join(loader.BPFFSRoot, "jmxdp-test-"+l.Name)}
	t.Cleanup(func() { os.RemoveAll(e.pinBase) })
	out := t.TempDir()
	e.file = filepath.Join(t.TempDir(), "jmxdp.yaml")
	conf := "# live test\ninterface: " + l.HostIface + "\n\noutput:\n  dir: " + out + " # files\ncapture:\n  pin_dir: " + e.pinBase +
		"\n  max_streams: 4096\nmetrics:\n  addr: \"\"\n"
	if err := os.WriteFile(e.file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	router := l.RouterAddr.Addr()
	iface := []string{"--iface", l.HostIface, "--pin-dir", e.pinBase}
	cli := func(args ...string) string {
		t.Helper()
		o, err := run(t, append(args, iface...)...)
		if err != nil {
			t.Fatalf("jmxdp %s: %v\n%s", strings.Join(args, " "), err, o)
		}
		t.Logf("jmxdp %s:\n%s", strings.Join(args, " "), o)
		return o
	}
	written := func() uint64 { st := e.d.Writer().Stats(); return st.Packets + st.Buffered }

	// Default: captured.
	c0 := e.counters(t)
	e.send(t, router, 60, 1, 5)
	c1 := e.counters(t)
	if diff(c0, c1, vocab.StatActionCapture) != 5 {
		t.Fatalf("captured %d of 5", diff(c0, c1, vocab.StatActionCapture))
	}
	testenv.WaitFor(t, "the writer", 10*time.Second, func() bool { return written() >= 5 })
	w1 := written()

	// count through the CLI: the next packets are counted and dropped.
	o := cli("policy", "add", "--mid", "60", "--sid", "1", "--action", "count")
	if !strings.Contains(o, "running instance on "+l.HostIface) || !strings.Contains(o, "next packet") {
		t.Errorf("policy add output:\n%s", o)
	}
	e.send(t, router, 60, 1, 7)
	c2 := e.counters(t)
	if n := diff(c1, c2, vocab.StatActionCount); n != 7 {
		t.Errorf("counted %d of the 7 frames sent after the change", n)
	}
	if n := diff(c1, c2, vocab.StatActionCapture); n != 0 {
		t.Errorf("%d frames captured after the change", n)
	}
	time.Sleep(100 * time.Millisecond)
	if w := written(); w != w1 {
		t.Errorf("writer packets %d -> %d after the change to count", w1, w)
	}
	if o := cli("policy", "list", "--format", "json"); o != `[{"mid":60,"sid":1,"any_sid":false,"action":"count"}]`+"\n" {
		t.Errorf("policy list: %s", o)
	}

	// An allowlist without the router: untrusted. Deleted: accepted again.
	other := netip.MustParsePrefix("192.0.2.0/24")
	if other.Contains(router) {
		t.Fatalf("lab router %v inside %v", router, other)
	}
	cli("allowlist", "add", other.String())
	if s, _ := e.d.Program().Maps.Settings(); !s.AllowlistEnabled {
		t.Error("allowlist switch off after add")
	}
	e.send(t, router, 60, 1, 4)
	c3 := e.counters(t)
	if diff(c2, c3, vocab.StatUntrusted) != 4 || diff(c2, c3, vocab.StatJmirror) != 0 || diff(c2, c3, vocab.StatActionCount) != 0 {
		t.Errorf("with the allowlist: untrusted %d jmirror %d counted %d, want 4 0 0",
			diff(c2, c3, vocab.StatUntrusted), diff(c2, c3, vocab.StatJmirror), diff(c2, c3, vocab.StatActionCount))
	}
	if o := cli("allowlist", "del", other.String()); !strings.Contains(o, "any source") {
		t.Errorf("allowlist del output:\n%s", o)
	}
	if s, _ := e.d.Program().Maps.Settings(); s.AllowlistEnabled {
		t.Error("allowlist switch on with an empty list")
	}
	e.send(t, router, 60, 1, 3)
	c4 := e.counters(t)
	if diff(c3, c4, vocab.StatUntrusted) != 0 || diff(c3, c4, vocab.StatActionCount) != 3 {
		t.Errorf("after allowlist del: untrusted %d counted %d, want 0 3", diff(c3, c4, vocab.StatUntrusted), diff(c3, c4, vocab.StatActionCount))
	}

	// stats reads the same counts from the pins.
	o = cli("stats", "--format", "json")
	var doc struct {
		Totals  map[string]uint64
		Streams []struct {
			Router   string
			MID, SID uint32
			Packets  uint64
		}
	}
	if err := json.Unmarshal([]byte(o), &doc); err != nil {
		t.Fatalf("stats json: %v\n%s", err, o)
	}
	if doc.Totals["action_count"] != c4[vocab.StatActionCount] || len(doc.Streams) != 1 || doc.Streams[0].Packets != 5+7+3 || doc.Streams[0].Router != router.String() {
		t.Errorf("stats: %+v", doc)
	}

	// --config: the file gets a policy key holding the instance's whole
	// policy, and a restart with it (now authoritative) keeps both rules.
	o = cli("policy", "add", "--mid", "61", "--action", "pass", "--config", e.file)
	if !strings.Contains(o, "pass to "+e.file) || !strings.Contains(o, "whole policy (2 rules)") {
		t.Errorf("policy add --config output:\n%s", o)
	}
	want60 := vocab.PolicyRule{MID: 60, SID: 1, Action: vocab.ActionCount}
	want61 := vocab.PolicyRule{MID: 61, AnySID: true, Action: vocab.ActionPass}
	cfg, err := config.Load(e.file)
	if err != nil || !cfg.PolicySet || !slices.Equal(cfg.Policy, []vocab.PolicyRule{want60, want61}) {
		t.Fatalf("file policy: %v %v\n%s", cfg.Policy, err, mustRead(t, e.file))
	}
	t.Logf("%s:\n%s", e.file, mustRead(t, e.file))
	if !strings.HasPrefix(mustRead(t, e.file), "# live test\ninterface: ") || !strings.Contains(mustRead(t, e.file), " # files\n") {
		t.Errorf("comments lost:\n%s", mustRead(t, e.file))
	}
	if err := e.d.Stop(); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	if rules, err := e.d.Program().Maps.Policies(); err != nil || !slices.Equal(rules, []vocab.PolicyRule{want60, want61}) {
		t.Fatalf("policy after restart with the file: %v %v", rules, err)
	}
	c7 := e.counters(t)
	e.send(t, router, 61, 9, 3)
	e.send(t, router, 60, 1, 2)
	if c8 := e.counters(t); diff(c7, c8, vocab.StatActionPass) != 3 || diff(c7, c8, vocab.StatActionCount) != 2 || diff(c7, c8, vocab.StatActionCapture) != 0 {
		t.Errorf("after restart with the file: pass %d count %d capture %d, want 3 2 0",
			diff(c7, c8, vocab.StatActionPass), diff(c7, c8, vocab.StatActionCount), diff(c7, c8, vocab.StatActionCapture))
	}

	// A rule added live only is gone after a restart: the file is what a
	// start applies, never what the pinned maps held (issue 13, bug 1).
	o = cli("policy", "add", "--mid", "62", "--sid", "2", "--action", "count")
	if !strings.Contains(o, "live until the next start") {
		t.Errorf("live-only add does not say it is undone at the next start:\n%s", o)
	}
	if err := e.d.Stop(); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	if rules, err := e.d.Program().Maps.Policies(); err != nil || !slices.Equal(rules, []vocab.PolicyRule{want60, want61}) {
		t.Fatalf("policy after a restart with a live-only rule: %v %v (want the file's two)", rules, err)
	}

	// del with --config removes it from both.
	cli("policy", "del", "--mid", "61", "--config", e.file)
	if rules, _ := e.d.Program().Maps.Policies(); !slices.Equal(rules, []vocab.PolicyRule{want60}) {
		t.Errorf("instance policy after del: %v", rules)
	}
	if cfg, err := config.Load(e.file); err != nil || !slices.Equal(cfg.Policy, []vocab.PolicyRule{want60}) {
		t.Errorf("file policy after del: %v %v", cfg.Policy, err)
	}

	// The allowlist with --config: the router's network, in both; the
	// router's frames still get in. Deleted from both: the file says empty.
	routerNet := l.RouterAddr.Masked()
	cli("allowlist", "add", routerNet.String(), "--config", e.file)
	m := e.d.Program().Maps
	if list, _ := m.Allowlist(); !slices.Equal(list, []netip.Prefix{routerNet}) {
		t.Errorf("instance allowlist %v", list)
	}
	if cfg, err := config.Load(e.file); err != nil || !slices.Equal(cfg.Allowlist, []netip.Prefix{routerNet}) {
		t.Errorf("file allowlist %v %v", cfg.Allowlist, err)
	}
	c9 := e.counters(t)
	e.send(t, router, 60, 1, 2)
	if c10 := e.counters(t); diff(c9, c10, vocab.StatUntrusted) != 0 || diff(c9, c10, vocab.StatActionCount) != 2 {
		t.Errorf("router inside the allowlist: untrusted %d counted %d", diff(c9, c10, vocab.StatUntrusted), diff(c9, c10, vocab.StatActionCount))
	}
	cli("allowlist", "del", routerNet.String(), "--config", e.file)
	if s, _ := m.Settings(); s.AllowlistEnabled {
		t.Error("allowlist switch on after the last prefix went")
	}
	if cfg, err := config.Load(e.file); err != nil || !cfg.AllowlistSet || len(cfg.Allowlist) != 0 {
		t.Errorf("file allowlist after del %v %v", cfg.Allowlist, err)
	}
}

// A stopped instance (maps pinned, no program attached) is changed, and
// the output says so. (The rollback when the config file cannot be
// written is userspace/instance's TestChangeRollback.)
func TestPolicyStoppedInstance(t *testing.T) {
	p, base := statsProgram(t, "jmrb0") // loaded and pinned, not attached
	out, err := run(t, "policy", "add", "--mid", "1", "--action", "count", "--iface", "jmrb0", "--pin-dir", base)
	if err != nil || !strings.Contains(out, "stopped instance on jmrb0 (maps still pinned, no program attached)") {
		t.Errorf("stopped instance: %v\n%s", err, out)
	}
	rules, _ := p.Maps.Policies()
	if want := []vocab.PolicyRule{{MID: 1, AnySID: true, Action: vocab.ActionCount}, {MID: 7, AnySID: true, Action: vocab.ActionCount}}; !slices.Equal(rules, want) {
		t.Errorf("policy after the change: %v, want %v", rules, want)
	}
}
