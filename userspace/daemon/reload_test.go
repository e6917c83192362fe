package daemon_test

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// A reload applies ports, default action, policy, allowlist, rotation and
// metrics to the running daemon and names what changed; a key that needs
// a restart keeps its running value; a reload that cannot be applied (a
// metrics address already taken) changes nothing (issue 13, bug 2).
func TestReload(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Metrics.Addr = freeAddr(t, "127.0.0.1")
	d := e.start(t, cfg)
	oldAddr := d.MetricsAddr()

	next := e.config(gen.DefaultPort, 30031)
	next.DefaultAction, next.DefaultActionSet = vocab.ActionCount, true
	rule := vocab.PolicyRule{MID: 5, AnySID: true, Action: vocab.ActionCapture}
	next.Policy, next.PolicySet = []vocab.PolicyRule{rule}, true
	next.Output.RotateSize = 4096
	next.Output.Dir = t.TempDir() // needs a restart
	next.Metrics.Addr = cfg.Metrics.Addr
	next.Metrics.TopStreams = 3
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	changes, err := d.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(changes, "\n")
	for _, want := range []string{"ports: [30030] -> [30030 30031]", "default_action: capture -> count", "policy: 0 -> 1 rules",
		"output.rotate_size: ", "output.dir: needs a restart", "metrics.top_streams: 20 -> 3"} {
		if !strings.Contains(joined, want) {
			t.Errorf("changes lack %q:\n%s", want, joined)
		}
	}
	m := d.Program().Maps
	if ports, _ := m.Ports(); !slices.Equal(ports, []uint16{gen.DefaultPort, 30031}) {
		t.Errorf("ports after reload %v", ports)
	}
	if s, _ := m.Settings(); s.DefaultAction != vocab.ActionCount {
		t.Errorf("default action after reload %v", s.DefaultAction)
	}
	if p, _ := m.Policies(); !slices.Equal(p, []vocab.PolicyRule{rule}) {
		t.Errorf("policy after reload %v", p)
	}
	if d.MetricsAddr() != oldAddr {
		t.Errorf("metrics address %s -> %s with the same configured address", oldAddr, d.MetricsAddr())
	}

	// The new policy and rotation apply to traffic: mid 5 is captured (on
	// the new port too), rotated by size; mid 6 only counted.
	router := e.lab.RouterAddr.Addr()
	var frames [][]byte
	for i := range 40 {
		frames = append(frames, e.mirror(t, router, 5, 1, 30031, i), e.mirror(t, router, 6, 1, gen.DefaultPort, i))
	}
	e.send(t, frames)
	testenv.WaitFor(t, "capture of mid 5", 10*time.Second, func() bool { return d.Writer().Stats().Packets >= 40 })
	testenv.WaitFor(t, "a size rotation", 10*time.Second, func() bool { return d.Writer().Stats().RotationsSize > 0 })
	if n := counter(t, d, vocab.StatActionCount); n < 40 {
		t.Errorf("counted %d, want mid 6's 40", n)
	}
	if got := streamFiles(t, e.out); len(got) != 1 {
		t.Errorf("stream dirs %v: want mid 5 only, in the running output dir", got)
	}

	// A reload whose metrics address is taken changes nothing.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	bad := next
	bad.Ports, bad.PortsSet = []uint16{40000}, true
	bad.Metrics.Addr = taken.Addr().String()
	if _, err := d.Reload(bad); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("reload onto a taken metrics address: %v", err)
	}
	if ports, _ := m.Ports(); !slices.Equal(ports, []uint16{gen.DefaultPort, 30031}) {
		t.Errorf("ports after a failed reload %v", ports)
	}
	if d.MetricsAddr() != oldAddr {
		t.Errorf("metrics moved to %s after a failed reload", d.MetricsAddr())
	}
	// A new free address: the endpoint moves.
	moved := next
	moved.Metrics.Addr = freeAddr(t, "127.0.0.2")
	if _, err := d.Reload(moved); err != nil {
		t.Fatal(err)
	}
	if a := d.MetricsAddr(); !strings.HasPrefix(a, "127.0.0.2:") {
		t.Errorf("metrics address after reload %s", a)
	}
	if c, err := net.DialTimeout("tcp", oldAddr, time.Second); err == nil {
		c.Close()
		t.Errorf("old metrics endpoint %s still listens", oldAddr)
	}
}

// freeAddr is host with a port free a moment ago.
func freeAddr(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
