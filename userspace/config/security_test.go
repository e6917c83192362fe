package config

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// TestSecurityKeys: output.group, metrics.web_config and whether the file
// set hide_ids are read.
func TestSecurityKeys(t *testing.T) {
	c, err := Parse([]byte("output: {group: mediation}\nmetrics: {web_config: /etc/jmxdp/web.yml}\n"), "cfg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Output.Group != "mediation" || c.Metrics.WebConfig != "/etc/jmxdp/web.yml" || c.Metrics.HideIDsSet {
		t.Fatalf("got output %+v metrics %+v", c.Output, c.Metrics)
	}
	for in, want := range map[string]string{"output: {group: 1234}\n": "1234", "output: {group: \"1234\"}\n": "1234", "output: {group: \"\"}\n": ""} {
		c, err := Parse([]byte(in), "cfg.yaml")
		if err != nil || c.Output.Group != want {
			t.Errorf("%q: group %q, %v; want %q", in, c.Output.Group, err, want)
		}
	}
	for in, want := range map[string]bool{"metrics: {hide_ids: false}\n": false, "metrics: {hide_ids: true}\n": true} {
		c, err := Parse([]byte(in), "cfg.yaml")
		if err != nil || !c.Metrics.HideIDsSet || c.Metrics.HideIDs != want {
			t.Errorf("%q: %+v, %v", in, c.Metrics, err)
		}
	}
	for in, msg := range map[string]string{
		"output: {group: 0}\n":           "cfg.yaml:1: output.group: group 0 (root) already owns the files",
		"output: {group: 99999999999}\n": "cfg.yaml:1: output.group: group 99999999999 is out of range",
		"output: {group: [a]}\n":         "cfg.yaml:1: output.group: want a group name or number, got a list",
		"output: {group: \"a b\"}\n":     `cfg.yaml:1: output.group: "a b" is not a group name or number`,
		"metrics: {web_config: 3}\n":     "cfg.yaml:1: metrics.web_config: want a string, got the number 3",
	} {
		_, err := Parse([]byte(in), "cfg.yaml")
		if err == nil || !strings.HasPrefix(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", in, err, msg)
		}
	}
}

// TestWebConfigRelative: a relative web_config in a file is relative to
// the file's directory, as in Prometheus's own configuration.
func TestWebConfigRelative(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jmxdp.yaml")
	for in, want := range map[string]string{
		"metrics: {web_config: web.yml}\n":      filepath.Join(dir, "web.yml"),
		"metrics: {web_config: /etc/web.yml}\n": "/etc/web.yml",
		"metrics: {web_config: \"\"}\n":         "",
		"metrics: {web_config: ../x/web.yml}\n": filepath.Join(filepath.Dir(dir), "x", "web.yml"),
	} {
		if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil || c.Metrics.WebConfig != want {
			t.Errorf("%q: %q, %v; want %q", in, c.Metrics.WebConfig, err, want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9877": true, "127.1.2.3:1": true, "[::1]:9877": true, "localhost:9877": true, "LOCALHOST:1": true,
		":9877": false, "0.0.0.0:9877": false, "[::]:9877": false, "192.0.2.1:9877": false, "node1:9877": false, "bad": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestChooseHideIDs: on by default exactly when the endpoint is exposed;
// the file's value wins, with a warning when it shows ids on an exposed
// endpoint.
func TestChooseHideIDs(t *testing.T) {
	for _, tc := range []struct {
		m                   Metrics
		hide, exposed, warn bool
		why                 string
	}{
		{Metrics{Addr: "127.0.0.1:9877"}, false, false, false, "is loopback"},
		{Metrics{Addr: ""}, false, false, false, "endpoint is off"},
		{Metrics{Addr: ":9877"}, true, true, false, "is not loopback and there is no metrics.web_config"},
		{Metrics{Addr: "192.0.2.1:9877"}, true, true, false, "not loopback"},
		{Metrics{Addr: ":9877", WebConfig: "/etc/web.yml"}, false, false, false, "uses metrics.web_config"},
		{Metrics{Addr: ":9877", HideIDsSet: true}, false, true, true, "served without TLS or authentication on :9877"},
		{Metrics{Addr: "127.0.0.1:9877", HideIDsSet: true}, false, false, false, "hide_ids: false in the configuration"},
		{Metrics{Addr: "127.0.0.1:9877", HideIDs: true, HideIDsSet: true}, true, false, false, "hide_ids: true"},
		{Metrics{Addr: ":9877", HideIDs: true, HideIDsSet: true}, true, true, false, "hide_ids: true"},
	} {
		c := tc.m.ChooseHideIDs()
		if c.Hide != tc.hide || c.Exposed != tc.exposed || c.Warn != tc.warn || !strings.Contains(c.Why, tc.why) {
			t.Errorf("%+v: %+v, want hide %v exposed %v warn %v why ~%q", tc.m, c, tc.hide, tc.exposed, tc.warn, tc.why)
		}
	}
}

// groupadd makes a group of a unique name for the test, removed after it.
func groupadd(t *testing.T) (string, uint32) {
	t.Helper()
	testenv.RequireRoot(t)
	bin := testenv.Tool(t, "groupadd")
	name := fmt.Sprintf("jmxdpt%d", time.Now().UnixNano()%1e8)
	if out, err := exec.Command(bin, name).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command(testenv.Tool(t, "groupdel"), name).Run() })
	out, err := exec.Command("getent", "group", name).Output()
	if err != nil {
		t.Fatalf("getent group %s: %v", name, err)
	}
	f := strings.Split(strings.TrimSpace(string(out)), ":")
	gid, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return name, uint32(gid)
}

// TestOutputGroup: a group is found by name or taken by number, an unknown
// name is a clear error, and CheckOutputDir makes the directory 2750 with
// the group.
func TestOutputGroup(t *testing.T) {
	name, gid := groupadd(t)
	for group, want := range map[string]uint32{"": 0, name: gid, "4242": 4242} {
		got, err := (Output{Group: group}).GID()
		if err != nil || got != want {
			t.Errorf("GID(%q) = %d, %v; want %d", group, got, err, want)
		}
	}
	_, err := (Output{Group: "jmxdp-no-such-group"}).GID()
	if err == nil || err.Error() != `output.group: unknown group "jmxdp-no-such-group" (not in the system's group database; a number is taken as it is)` {
		t.Errorf("unknown group: %v", err)
	}
	if _, err := (Output{Group: "root"}).GID(); err == nil || !strings.Contains(err.Error(), "group 0 (root)") {
		t.Errorf("root by name: %v", err)
	}

	c := Default()
	c.Output.Dir = filepath.Join(t.TempDir(), "a", "streams")
	c.Output.Group = name
	if err := c.CheckOutputDir(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{c.Output.Dir, filepath.Dir(c.Output.Dir)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&(os.ModePerm|os.ModeSetgid) != 0o750|os.ModeSetgid || fi.Sys().(*syscall.Stat_t).Gid != gid {
			t.Errorf("%s: mode %v gid %d, want drwxr-s--- and %d", d, fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid, gid)
		}
	}
	c.Output.Dir = filepath.Join(t.TempDir(), "b")
	c.Output.Group = "jmxdp-no-such-group"
	if err := c.CheckOutputDir(); err == nil || !strings.Contains(err.Error(), "unknown group") {
		t.Errorf("CheckOutputDir with an unknown group: %v", err)
	}
	if _, err := os.Stat(c.Output.Dir); !os.IsNotExist(err) {
		t.Errorf("an unknown group created %s", c.Output.Dir)
	}
}
