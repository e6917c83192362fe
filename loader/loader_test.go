package loader_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// The configuration maps read back what Configure wrote, and a second
// Configure replaces (not merges) the previous one.
func TestConfigureRoundTrip(t *testing.T) {
	rules := []vocab.PolicyRule{
		{MID: 7, AnySID: true, Action: vocab.ActionCount},
		{MID: 7, SID: 1, Action: vocab.ActionCapture},
		{MID: 9, SID: 4294967295, Action: vocab.ActionPass},
	}
	allow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	p := loadProgram(t, loader.Config{Ports: []uint16{6502, 5000}, DefaultAction: vocab.ActionPass, Policies: rules, Allowlist: allow})
	ports, err := p.Maps.Ports()
	if err != nil || !slices.Equal(ports, []uint16{5000, 6502}) {
		t.Errorf("ports %v %v", ports, err)
	}
	got, err := p.Maps.Policies()
	if err != nil || !slices.Equal(got, rules) {
		t.Errorf("policies %v %v, want %v", got, err, rules)
	}
	gotAllow, err := p.Maps.Allowlist()
	if err != nil || !slices.Equal(gotAllow, allow) {
		t.Errorf("allowlist %v %v, want %v", gotAllow, err, allow)
	}
	s, err := p.Maps.Settings()
	if err != nil || s != (vocab.Settings{DefaultAction: vocab.ActionPass, AllowlistEnabled: true}) {
		t.Errorf("settings %+v %v", s, err)
	}

	if err := p.Configure(loader.Config{}); err != nil {
		t.Fatal(err)
	}
	ports, _ = p.Maps.Ports()
	got, _ = p.Maps.Policies()
	gotAllow, _ = p.Maps.Allowlist()
	s, _ = p.Maps.Settings()
	if !slices.Equal(ports, []uint16{loader.DefaultPort}) || len(got) != 0 || len(gotAllow) != 0 ||
		s != (vocab.Settings{DefaultAction: vocab.ActionCapture}) {
		t.Errorf("after reset: ports %v policies %v allowlist %v settings %+v", ports, got, gotAllow, s)
	}
}

func TestConfigureRefusesBadInput(t *testing.T) {
	p := loadProgram(t, loader.Config{})
	for _, cfg := range []loader.Config{
		{Ports: []uint16{0}},
		{Policies: []vocab.PolicyRule{{MID: 1 << 30, Action: vocab.ActionCount}}},
		{Policies: []vocab.PolicyRule{{MID: 1, Action: vocab.Action(7)}}},
		{Policies: []vocab.PolicyRule{{MID: 1, SID: 5, AnySID: true}}},
		{DefaultAction: vocab.Action(3)},
	} {
		if err := p.Configure(cfg); err == nil {
			t.Errorf("Configure(%+v) accepted", cfg)
		}
	}
}

// A first fragment's record reads back with the right addresses and IP id.
func TestFragmentTable(t *testing.T) {
	p := loadProgram(t, loader.Config{DefaultAction: vocab.ActionCount})
	m := mirror(20, 21, make([]byte, 3000))
	m.MTU = 1500
	m.IPID = 0xbeef
	if _, err := p.Run(frames(t, m)[0]); err != nil {
		t.Fatal(err)
	}
	fr, err := p.Maps.Fragments()
	if err != nil {
		t.Fatal(err)
	}
	want := vocab.FragKey{Src: router1, Dst: collector, ID: 0xbeef, Proto: 17}
	e, ok := fr[want]
	if !ok || e.MID != 20 || e.SID != 21 || e.Action != vocab.ActionCount || e.Untrusted || e.NotJmirror || len(fr) != 1 {
		t.Fatalf("fragment table %+v, want %v -> mid 20 sid 21 count", fr, want)
	}
	// What tells a copy of this first fragment from another datagram.
	if e.InnerLen != 3000 || e.FirstSeen == 0 || e.Fingerprint == 0 {
		t.Errorf("fragment record %+v: want inner length 3000, a first-seen time and a fingerprint", e)
	}
}

// Pinned maps survive the process: a second Load with the same PinDir sees
// the counters and streams of the first.
func TestPinnedMapsSurviveReload(t *testing.T) {
	testenv.RequireRoot(t)
	dir := filepath.Join(loader.BPFFSRoot, uniqueName("jmxdp-test-"))
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := frame(t, mirror(1, 2, ipv4Echo()))

	for round := uint64(1); round <= 2; round++ {
		p, err := loader.Load(loader.Options{MaxStreams: 4096, PinDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Configure(loader.Config{}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Run(f); err != nil {
			t.Fatal(err)
		}
		c, err := p.Maps.Counters()
		if err != nil {
			t.Fatal(err)
		}
		st, ok, err := p.Maps.Stream(k1(1, 2))
		if err != nil || !ok {
			t.Fatal("stream missing", err)
		}
		if c[vocab.StatJmirror] != round || st.Packets != round {
			t.Errorf("round %d: jmirror counter %d, stream packets %d", round, c[vocab.StatJmirror], st.Packets)
		}
		p.Close()
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("pin dir: %v %v", err, st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, "jm_streams")); err != nil {
		t.Errorf("jm_streams not pinned: %v", err)
	}
}

// Attach and detach on a veth inside a namespace this test makes.
func TestAttachDetach(t *testing.T) {
	veth := vethInNetns(t)

	xdpOn := func() bool {
		out, _ := exec.Command("ip", "-d", "link", "show", veth).CombinedOutput()
		return strings.Contains(string(out), "prog/xdp")
	}
	for _, mode := range []loader.Mode{loader.ModeAuto, loader.ModeGeneric} {
		p := loadProgram(t, loader.Config{})
		got, err := p.Attach(veth, mode)
		if err != nil {
			t.Fatalf("attach %s: %v", mode, err)
		}
		if mode == loader.ModeAuto && got != loader.ModeDriver {
			t.Errorf("veth supports driver mode, got %s", got)
		}
		if !xdpOn() {
			t.Fatalf("%s: no XDP program on %s after attach", mode, veth)
		}
		if err := p.Detach(); err != nil {
			t.Fatal(err)
		}
		if xdpOn() {
			t.Fatalf("%s: XDP program still on %s after detach", mode, veth)
		}
	}
	p := loadProgram(t, loader.Config{})
	if _, err := p.Attach("jmxdp-no-such-if", loader.ModeAuto); err == nil || !strings.Contains(err.Error(), "jmxdp-no-such-if") {
		t.Errorf("attach to a missing interface: %v", err)
	}
}

// The stream table at its default size costs what docs/datapath.md says:
// well under the 4.6 GiB a per-CPU table would take on 64 cores. The kernel
// reports the memory it charged in the map's fdinfo.
func TestStreamTableMemory(t *testing.T) {
	testenv.RequireRoot(t)
	p, err := loader.Load(loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	m := p.Objects().JmStreams
	if m.MaxEntries() != loader.DefaultMaxStreams {
		t.Fatalf("default table size %d", m.MaxEntries())
	}
	info, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		t.Fatal(err)
	}
	var memlock uint64
	for _, line := range strings.Split(string(info), "\n") {
		if v, ok := strings.CutPrefix(line, "memlock:"); ok {
			memlock, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	if memlock == 0 {
		t.Skip("kernel reports no memlock for maps")
	}
	t.Logf("stream table, %d entries: %d bytes (%.0f MiB), %.0f bytes per stream",
		m.MaxEntries(), memlock, float64(memlock)/(1<<20), float64(memlock)/float64(m.MaxEntries()))
	if memlock > 256<<20 {
		t.Errorf("stream table costs %d MiB, more than the 256 MiB budget", memlock>>20)
	}
}
