package main

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
)

// labArgs are the flags that make `jmxdp lab up` build cfg's lab.
func labArgs(cfg lab.Config, up bool) []string {
	args := []string{"--name", cfg.Name, "--host-iface", cfg.HostIface, "--router-iface", cfg.RouterIface}
	if up {
		args = append(args, "--host-addr", cfg.HostAddr.String(), "--router-addr", cfg.RouterAddr.String())
	}
	return args
}

func TestLabUpDown(t *testing.T) {
	testenv.RequireRoot(t)
	cfg := lab.Random("cli")
	t.Cleanup(func() {
		if err := lab.Down(cfg); err != nil {
			t.Error(err)
		}
	})
	up := append([]string{"lab", "up"}, labArgs(cfg, true)...)
	out, err := run(t, up...)
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	for _, want := range []string{
		cfg.HostIface, cfg.RouterIface, cfg.HostAddr.String(), cfg.RouterAddr.String(), "namespace " + cfg.Name,
		"jmxdp run --iface " + cfg.HostIface,
		"jmxdp gen --iface " + cfg.RouterIface + " --netns " + cfg.Name,
		"jmxdp lab down --name " + cfg.Name + " --host-iface " + cfg.HostIface,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lab up output lacks %q:\n%s", want, out)
		}
	}
	if !netns.Exists(cfg.Name) {
		t.Error("no namespace")
	}
	if _, err := net.InterfaceByName(cfg.HostIface); err != nil {
		t.Errorf("host end: %v", err)
	}
	if _, err := os.Lstat(cfg.WithDefaults().PinPath()); err != nil {
		t.Errorf("pin: %v", err)
	}

	_, err = run(t, up...)
	if !errors.Is(err, lab.ErrExists) || !strings.Contains(err.Error(), "jmxdp lab down --name "+cfg.Name) {
		t.Errorf("second lab up: %v", err)
	}

	down := append([]string{"lab", "down"}, labArgs(cfg, false)...)
	for range 2 {
		out, err = run(t, down...)
		if err != nil || !strings.Contains(out, "lab "+cfg.Name+" is down") {
			t.Fatalf("lab down: %v\n%s", err, out)
		}
		if netns.Exists(cfg.Name) {
			t.Error("namespace left")
		}
		if _, err := net.InterfaceByName(cfg.HostIface); err == nil {
			t.Error("host end left")
		}
		if _, err := os.Lstat(cfg.WithDefaults().PinDir); err == nil {
			t.Error("pin directory left")
		}
	}
}

func TestLabNotRoot(t *testing.T) {
	saved := labGeteuid
	labGeteuid = func() int { return 1000 }
	defer func() { labGeteuid = saved }()
	for _, args := range [][]string{{"lab", "up"}, {"lab", "down"}, {"lab", "up", "--name", "x"}} {
		_, err := run(t, args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), "needs root") || !strings.Contains(err.Error(), "sudo") {
			t.Errorf("jmxdp %s as a user: %v", strings.Join(args, " "), err)
		}
	}
}

// Bad arguments are refused before anything is made (and before the root
// check).
func TestLabBadArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"lab"}, "missing subcommand"},
		{[]string{"lab", "sideways"}, "unknown command"},
		{[]string{"lab", "up", "extra"}, "unknown command"},
		{[]string{"lab", "up", "--host-addr", "nope"}, "--host-addr"},
		{[]string{"lab", "up", "--router-addr", "10.0.0.1"}, "--router-addr"},
		{[]string{"lab", "up", "--host-iface", "a-name-too-long-for-linux"}, "interface name"},
		{[]string{"lab", "up", "--host-iface", "same", "--router-iface", "same"}, "both named"},
		{[]string{"lab", "down", "--name", "a/b"}, "lab name"},
		{[]string{"lab", "down", "--bogus"}, "unknown flag"},
	} {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("jmxdp %s: error %v, want %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
