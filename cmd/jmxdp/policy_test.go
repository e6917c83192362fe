package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Bad ids, actions, prefixes and flags, and nothing to change, are refused
// with a message naming the problem (and so a non-zero exit), before
// anything is touched.
func TestPolicyAllowlistStatsRefuseBadInput(t *testing.T) {
	dir := t.TempDir()
	pin := filepath.Join(dir, "pins") // a directory with nothing pinned
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := write("other.yaml", "interface: eth1\n")
	bad := write("bad.yaml", "interface: eth0\nallowlist: [10.0.0.1/8]\n")
	good := write("good.yaml", "# mine\ninterface: eth0\n")
	add := func(extra ...string) []string {
		return append([]string{"policy", "add", "--iface", "eth0", "--pin-dir", pin}, extra...)
	}
	allow := func(extra ...string) []string {
		return append([]string{"allowlist", "add", "--iface", "eth0", "--pin-dir", pin}, extra...)
	}
	nothing := "no running instance on eth0 (nothing pinned in " + filepath.Join(pin, "eth0") + "); give --config FILE to change a stopped instance's configuration"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"policy"}, "missing subcommand"},
		{[]string{"policy", "add", "--mid", "1", "--action", "count"}, "--iface is required"},
		{[]string{"policy", "add", "--iface", "a/b", "--mid", "1", "--action", "count"}, "not an interface name"},
		{add("--action", "count"), "--mid is required"},
		{add("--mid", "0x40000000", "--action", "count"), "--mid 0x40000000: not a 30-bit intercept id (max 0x3fffffff)"},
		{add("--mid", "1073741824", "--action", "count"), "not a 30-bit intercept id"},
		{add("--mid", "-1", "--action", "count"), `--mid: "-1" is not a decimal or 0x hex integer`},
		{add("--mid", "12x", "--action", "count"), "not a decimal or 0x hex"},
		{add("--mid", "0o17", "--action", "count"), "not a decimal or 0x hex"},
		{add("--mid", "", "--action", "count"), "not a decimal or 0x hex"},
		{add("--mid", "99999999999999999999", "--action", "count"), "out of range"},
		{add("--mid", "1", "--sid", "0x100000000", "--action", "count"), "--sid 0x100000000: does not fit in 32 bits"},
		{add("--mid", "1", "--sid", "4294967296", "--action", "count"), "does not fit in 32 bits"},
		{add("--mid", "1", "--sid", "some", "--action", "count"), "--sid: \"some\" is not a decimal"},
		{add("--mid", "1", "--sid", "", "--action", "count"), "--sid: empty"},
		{add("--mid", "1", "--action", "keep"), `--action: unknown action "keep"`},
		{add("--mid", "1"), "--action is required"},
		{add("--mid", "1", "--action", "count", "--format", "xml"), "--format"},
		{[]string{"policy", "del", "--iface", "eth0", "--mid", "1", "--action", "count"}, "unknown flag: --action"},
		{add("--mid", "1", "--action", "count"), nothing},
		{[]string{"policy", "del", "--iface", "eth0", "--pin-dir", pin, "--mid", "1"}, nothing},
		{[]string{"policy", "list", "--iface", "eth0", "--pin-dir", pin}, nothing},
		{add("--mid", "1", "--action", "count", "--config", filepath.Join(dir, "missing.yaml")), "missing.yaml"},
		{add("--mid", "1", "--action", "count", "--config", other), "configures interface eth1, not eth0"},
		{add("--mid", "1", "--action", "count", "--config", bad), "bad.yaml:2: allowlist[0]: 10.0.0.1/8 has host bits set"},
		{[]string{"policy", "del", "--iface", "eth0", "--pin-dir", pin, "--config", good, "--mid", "1"}, "no rule for mid 1 (any sid) in " + good + " (which has no policy key)"},

		{[]string{"allowlist"}, "missing subcommand"},
		{[]string{"allowlist", "add", "192.0.2.0/24"}, "--iface is required"},
		{allow(), "give at least one PREFIX"},
		{allow("192.0.2.1/24"), "192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?"},
		{allow("2001:db8::1/32"), "did you mean 2001:db8::/32?"},
		{allow("192.0.2.0/33"), "is not an address or prefix"},
		{allow("router1"), "is not an address or prefix"},
		{allow("fe80::1%eth0"), "is not an address or prefix"},
		{allow("::ffff:192.0.2.0/120"), "IPv4-mapped"},
		{allow("::ffff:203.0.113.1"), "name an IPv4 router as IPv4 (e.g. 203.0.113.1/32)"},
		{allow("::/0"), "would also accept every IPv4 router"},
		{allow("192.0.2.7", "192.0.2.7/32"), "given twice"},
		{allow("192.0.2.0/24"), nothing},
		{[]string{"allowlist", "del", "--iface", "eth0", "--pin-dir", pin, "192.0.2.0/24"}, nothing},
		{[]string{"allowlist", "list", "--iface", "eth0", "--pin-dir", pin}, nothing},
		{[]string{"allowlist", "list", "--iface", "eth0", "192.0.2.0/24"}, "unknown command"},
		{[]string{"allowlist", "del", "--iface", "eth0", "--pin-dir", pin, "--config", good, "10.0.0.0/8"}, "10.0.0.0/8 is not in the allowlist of " + good + " (which has no allowlist key)"},

		{[]string{"stats"}, "--iface is required"},
		{[]string{"stats", "--iface", "eth0", "--pin-dir", pin}, "no running instance on eth0 (nothing pinned in " + filepath.Join(pin, "eth0") + ")"},
		{[]string{"stats", "--iface", "eth0", "--format", "xml"}, "--format"},
		{[]string{"stats", "--iface", "eth0", "--top", "-1"}, "--top -1"},
		{[]string{"stats", "--iface", "eth0", "--watch", "--interval", "0s"}, "--interval 0s: must be positive"},
		{[]string{"stats", "--iface", "eth0", "--interval", "1s"}, "--interval needs --watch"},
		{[]string{"stats", "--iface", "eth0", "--samples", "2"}, "--samples needs --watch"},
	} {
		out, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("jmxdp %s: error %v, want %q\n%s", strings.Join(c.args, " "), err, c.want, out)
		}
	}
	if data, _ := os.ReadFile(good); string(data) != "# mine\ninterface: eth0\n" {
		t.Errorf("a refused command changed %s:\n%s", good, data)
	}
}

// With nothing pinned, --config FILE changes the file only, and says so;
// duplicates and absent rules are refused; list and JSON read the file.
func TestPolicyConfigOnly(t *testing.T) {
	dir := t.TempDir()
	pin := filepath.Join(dir, "pins")
	file := filepath.Join(dir, "jmxdp.yaml")
	const orig = "# lab A\ninterface: eth0 # the NIC\n\n# rules\npolicy:\n  - {mid: 5, action: pass} # five\n\nmetrics:\n  addr: \"\"\n"
	if err := os.WriteFile(file, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--iface", "eth0", "--pin-dir", pin, "--config", file}
	cli := func(args ...string) (string, error) {
		t.Helper()
		return run(t, append(args, base...)...)
	}
	out, err := cli("policy", "add", "--mid", "0x3c", "--sid", "1", "--action", "count")
	if err != nil || !strings.Contains(out, "no running instance on eth0") || !strings.Contains(out, "changed "+file+" only") {
		t.Fatalf("add: %v\n%s", err, out)
	}
	cfg, err := config.Load(file)
	if err != nil || !slices.Equal(cfg.Policy, []vocab.PolicyRule{{MID: 5, AnySID: true, Action: vocab.ActionPass}, {MID: 60, SID: 1, Action: vocab.ActionCount}}) {
		t.Fatalf("file after add: %v %v", cfg.Policy, err)
	}
	data, _ := os.ReadFile(file)
	if want := strings.Replace(orig, "# five\n", "# five\n  - {mid: 60, sid: 1, action: count}\n", 1); string(data) != want {
		t.Errorf("file after add:\n%s\nwant\n%s", data, want)
	}
	if _, err := cli("policy", "add", "--mid", "60", "--sid", "0x1", "--action", "count"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate add: %v", err)
	}
	if _, err := cli("policy", "add", "--mid", "60", "--sid", "1", "--action", "pass"); err == nil || !strings.Contains(err.Error(), "--replace") {
		t.Errorf("add over another action: %v", err)
	}
	if out, err := cli("policy", "add", "--mid", "60", "--sid", "1", "--action", "pass", "--replace"); err != nil || !strings.Contains(out, "count -> pass") {
		t.Errorf("replace: %v\n%s", err, out)
	}
	if out, err := cli("policy", "list"); err != nil || !strings.Contains(out, "60 (0x3c)") || !strings.Contains(out, "5 (0x5)") || !strings.Contains(out, "any") {
		t.Errorf("list: %v\n%s", err, out)
	}
	if out, err := cli("policy", "list", "--format", "json"); err != nil ||
		out != `[{"mid":5,"sid":0,"any_sid":true,"action":"pass"},{"mid":60,"sid":1,"any_sid":false,"action":"pass"}]`+"\n" {
		t.Errorf("list json: %v\n%s", err, out)
	}
	if _, err := cli("policy", "del", "--mid", "60", "--sid", "2"); err == nil || !strings.Contains(err.Error(), "no rule for mid 60 sid 2 in "+file) {
		t.Errorf("del of an absent rule: %v", err)
	}
	out, err = cli("policy", "del", "--mid", "60", "--sid", "1", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var ch struct {
		Op       string
		Instance *json.RawMessage
		Config   struct {
			File      string
			Changed   []ruleJSON
			Unchanged []ruleJSON
		}
	}
	if err := json.Unmarshal([]byte(out), &ch); err != nil || ch.Op != "del" || ch.Instance != nil || ch.Config.File != file ||
		len(ch.Config.Changed) != 1 || ch.Config.Changed[0] != (ruleJSON{MID: 60, SID: 1, Action: "pass"}) {
		t.Errorf("del json: %v\n%s", err, out)
	}
	if data, _ := os.ReadFile(file); string(data) != orig {
		t.Errorf("add then del did not give back the file:\n%s", data)
	}

	// The allowlist: the key is created, then emptied.
	if out, err := cli("allowlist", "add", "192.0.2.0/24", "2001:db8::/32", "198.51.100.7"); err != nil || !strings.Contains(out, "changed "+file+" only") {
		t.Fatalf("allowlist add: %v\n%s", err, out)
	}
	if out, err := cli("allowlist", "list", "--format", "json"); err != nil ||
		out != `[{"prefix":"192.0.2.0/24"},{"prefix":"198.51.100.7/32"},{"prefix":"2001:db8::/32"}]`+"\n" {
		t.Errorf("allowlist list: %v\n%s", err, out)
	}
	if _, err := cli("allowlist", "add", "198.51.100.7/32"); err == nil || !strings.Contains(err.Error(), "already in the allowlist") {
		t.Errorf("duplicate prefix: %v", err)
	}
	if _, err := cli("allowlist", "del", "10.0.0.0/8"); err == nil || !strings.Contains(err.Error(), "not in the allowlist") {
		t.Errorf("absent prefix: %v", err)
	}
	if _, err := cli("allowlist", "del", "192.0.2.0/24", "2001:db8::/32", "198.51.100.7"); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.Load(file)
	if err != nil || !cfg.AllowlistSet || len(cfg.Allowlist) != 0 {
		t.Errorf("emptied allowlist: %v %v", cfg.Allowlist, err)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v %v", st.Mode().Perm(), err)
	}
	if !strings.Contains(mustRead(t, file), "# lab A\ninterface: eth0 # the NIC\n") {
		t.Errorf("comments lost:\n%s", mustRead(t, file))
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestPolicyForwardConfigOnly: policy add --action forward --to writes the
// target into the file (to:), reads back, replaces it, and refuses a
// forward without --to and --to without forward.
func TestPolicyForwardConfigOnly(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "jmxdp.yaml")
	if err := os.WriteFile(file, []byte("interface: eth0\npolicy:\n  - {mid: 5, action: pass}\nmetrics:\n  addr: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--iface", "eth0", "--pin-dir", filepath.Join(dir, "pins"), "--config", file}
	cli := func(args ...string) (string, error) {
		t.Helper()
		return run(t, append(args, base...)...)
	}
	if out, err := cli("policy", "add", "--mid", "7", "--action", "forward", "--to", "[2001:db8::50]:30031"); err != nil || !strings.Contains(out, "forward to [2001:db8::50]:30031") {
		t.Fatalf("add: %v\n%s", err, out)
	}
	cfg, err := config.Load(file)
	want := []vocab.PolicyRule{{MID: 5, AnySID: true, Action: vocab.ActionPass},
		{MID: 7, AnySID: true, Action: vocab.ActionForward, Target: netip.MustParseAddrPort("[2001:db8::50]:30031")}}
	if err != nil || !slices.Equal(cfg.Policy, want) {
		t.Fatalf("file after add: %v %v", cfg.Policy, err)
	}
	if _, err := cli("policy", "add", "--mid", "7", "--action", "forward", "--to", "198.19.50.50"); err == nil || !strings.Contains(err.Error(), "--replace") {
		t.Errorf("a new target without --replace: %v", err)
	}
	if out, err := cli("policy", "add", "--mid", "7", "--action", "forward", "--to", "198.19.50.50", "--replace"); err != nil ||
		!strings.Contains(out, "forward to [2001:db8::50]:30031 -> forward to 198.19.50.50") {
		t.Errorf("replace: %v\n%s", err, out)
	}
	cfg, err = config.Load(file)
	want[1].Target = netip.AddrPortFrom(netip.MustParseAddr("198.19.50.50"), 0)
	if err != nil || !slices.Equal(cfg.Policy, want) {
		t.Errorf("file after replace: %v %v", cfg.Policy, err)
	}
	for _, bad := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--mid", "8", "--action", "forward"}, "needs --to"},
		{[]string{"--mid", "8", "--action", "count", "--to", "198.19.50.50:1"}, "--to goes only with --action forward"},
		{[]string{"--mid", "8", "--action", "forward", "--to", "not-an-address"}, "--to"},
	} {
		if _, err := cli(append([]string{"policy", "add"}, bad.args...)...); err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%v: %v, want an error containing %q", bad.args, err, bad.msg)
		}
	}
}
