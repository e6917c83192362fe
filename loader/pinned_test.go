package loader_test

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// vethInNetns makes a veth whose peer lives in a namespace of the test's
// own; both go when the test ends.
func vethInNetns(t *testing.T) string {
	t.Helper()
	veth, _ := vethPairInNetns(t)
	return veth
}

// vethPairInNetns is vethInNetns that also names the peer's namespace.
func vethPairInNetns(t *testing.T) (veth, ns string) {
	t.Helper()
	testenv.RequireRoot(t)
	ns = uniqueName("jmxdp-t-")
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	veth = "jmx" + ns[len(ns)-6:]
	if out, err := exec.Command("ip", "link", "add", veth, "type", "veth", "peer", "name", veth+"p", "netns", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", veth).Run() })
	if out, err := exec.Command("ip", "link", "set", veth, "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set up: %v %s", err, out)
	}
	return veth, ns
}

func pinDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(loader.BPFFSRoot, uniqueName("jmxdp-test-"))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func attachedProgID(t *testing.T, veth string) ebpf.ProgramID {
	t.Helper()
	out, _ := exec.Command("ip", "-d", "link", "show", veth).CombinedOutput()
	s := string(out)
	i := strings.Index(s, "prog/xdp id ")
	if i < 0 {
		return 0
	}
	var id uint32
	for _, c := range s[i+len("prog/xdp id "):] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint32(c-'0')
	}
	return ebpf.ProgramID(id)
}

// A second run takes over the link the first left pinned: the new program
// replaces the old in place, the mode is read back from the kernel, and a
// final Detach removes it.
func TestAttachPinnedTakesOver(t *testing.T) {
	veth := vethInNetns(t)
	dir := pinDir(t)
	linkPath := filepath.Join(dir, "link")

	p1, err := loader.Load(loader.Options{MaxStreams: 4096, PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	mode, reused, err := p1.AttachPinned(veth, loader.ModeGeneric, linkPath)
	if err != nil {
		t.Fatal(err)
	}
	if mode != loader.ModeGeneric || reused {
		t.Fatalf("first attach: mode %s reused %v", mode, reused)
	}
	id1 := attachedProgID(t, veth)
	// Exit without detaching, as `run --keep-attached` does.
	p1.Close()
	if attachedProgID(t, veth) != id1 || id1 == 0 {
		t.Fatal("the pinned link did not keep the program attached")
	}

	var logs bytes.Buffer
	p2, err := loader.Load(loader.Options{MaxStreams: 4096, PinDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	mode, reused, err = p2.AttachPinned(veth, loader.ModeDriver, linkPath)
	if err != nil {
		t.Fatal(err)
	}
	if !reused || mode != loader.ModeGeneric {
		t.Fatalf("second attach: mode %s reused %v, want the pinned generic link", mode, reused)
	}
	if !strings.Contains(logs.String(), "keeping the pinned attachment's mode") {
		t.Errorf("a mode change that cannot be honoured is not logged:\n%s", logs.String())
	}
	id2 := attachedProgID(t, veth)
	info, err := p2.Objects().Jmxdp.Info()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := info.ID(); id2 != want || id2 == id1 {
		t.Fatalf("attached program %d, want the new one %d (old %d)", id2, want, id1)
	}
	if err := p2.Detach(); err != nil {
		t.Fatal(err)
	}
	if attachedProgID(t, veth) != 0 {
		t.Fatal("program still attached after Detach")
	}
	if _, err := os.Stat(linkPath); !os.IsNotExist(err) {
		t.Fatalf("link pin left behind: %v", err)
	}
}

// DetachPinned removes what a kept attachment left; a stale pin (its
// interface gone) is replaced by a fresh attachment.
func TestDetachPinnedAndStaleLink(t *testing.T) {
	veth := vethInNetns(t)
	dir := pinDir(t)
	linkPath := filepath.Join(dir, "link")
	p, err := loader.Load(loader.Options{MaxStreams: 4096, PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.AttachPinned(veth, loader.ModeAuto, linkPath); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if detached, err := loader.DetachPinned(linkPath); err != nil || !detached {
		t.Fatalf("DetachPinned = %v, %v", detached, err)
	}
	if attachedProgID(t, veth) != 0 {
		t.Fatal("DetachPinned left the program attached")
	}
	if detached, err := loader.DetachPinned(linkPath); err != nil || detached {
		t.Fatalf("nothing pinned: DetachPinned = %v, %v; want false, nil", detached, err)
	}

	// A link pinned for another interface is stale for this one.
	other := vethInNetns(t)
	p, err = loader.Load(loader.Options{MaxStreams: 4096, PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.AttachPinned(other, loader.ModeAuto, linkPath); err != nil {
		t.Fatal(err)
	}
	p.Close()
	var logs bytes.Buffer
	p, err = loader.Load(loader.Options{MaxStreams: 4096, PinDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, reused, err := p.AttachPinned(veth, loader.ModeAuto, linkPath)
	if err != nil {
		t.Fatal(err)
	}
	if reused || !strings.Contains(logs.String(), "unusable") {
		t.Fatalf("stale link: reused %v, log:\n%s", reused, logs.String())
	}
	if attachedProgID(t, veth) == 0 {
		t.Fatal("not attached after replacing a stale link")
	}
	p.Detach()
}

// Maps pinned by an earlier version with another layout are migrated when
// their entries read as the new layout (a smaller stream table; counters
// with fewer fields) and replaced, with a warning, when they cannot be.
func TestPinnedMapMigration(t *testing.T) {
	testenv.RequireRoot(t)
	dir := pinDir(t)
	f := frame(t, mirror(1, 2, ipv4Echo()))

	// The "old version": a 1024-entry stream table and a policy map whose
	// key has another size.
	p, err := loader.Load(loader.Options{MaxStreams: 1024, PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Configure(loader.Config{}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := p.Run(f); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	// The counters of the release before frag_duplicate and frag_held: 18,
	// two fewer than today (the value 16 bytes shorter).
	spec, err := ebpf.LoadPinnedMap(filepath.Join(dir, "jm_stats"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if spec.ValueSize() != 8*uint32(vocab.NumStats) {
		t.Fatalf("jm_stats value %d bytes, want %d", spec.ValueSize(), 8*vocab.NumStats)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8 * uint32(vocab.StatFragDuplicate), MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	ncpu, _ := ebpf.PossibleCPU()
	vals := make([][]byte, ncpu)
	for i := range vals {
		vals[i] = make([]byte, old.ValueSize())
		vals[i][8*int(vocab.StatFrames)] = 7 // every CPU saw 7 frames
		vals[i][8*int(vocab.StatCandidate)] = 5
		// The old layout's last counter.
		vals[i][8*int(vocab.StatUntrustedMapped)] = 4
	}
	if err := old.Put(uint32(0), vals); err != nil {
		t.Fatal(err)
	}
	spec.Close()
	os.Remove(filepath.Join(dir, "jm_stats"))
	if err := old.Pin(filepath.Join(dir, "jm_stats")); err != nil {
		t.Fatal(err)
	}
	old.Close()
	// jm_frags before the duplicate check: a 16-byte value (mid, sid,
	// action, pad), holding a datagram being captured.
	frags, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 12, ValueSize: 16, MaxEntries: 16384})
	if err != nil {
		t.Fatal(err)
	}
	fkey := []byte{192, 0, 2, 1, 198, 51, 100, 1, 0x12, 0x34, 17, 0}
	fval := make([]byte, 16)
	binary.NativeEndian.PutUint32(fval[0:], 77)
	binary.NativeEndian.PutUint32(fval[4:], 88)
	if err := frags.Put(fkey, fval); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "jm_frags"))
	if err := frags.Pin(filepath.Join(dir, "jm_frags")); err != nil {
		t.Fatal(err)
	}
	frags.Close()
	// An older release had no jm_frag_pairs: created at the next start.
	if err := os.Remove(filepath.Join(dir, "jm_frag_pairs")); err != nil {
		t.Fatal(err)
	}
	pol, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "jm_policy"))
	if err := pol.Pin(filepath.Join(dir, "jm_policy")); err != nil {
		t.Fatal(err)
	}
	pol.Close()

	var logs bytes.Buffer
	p, err = loader.Load(loader.Options{MaxStreams: 4096, PinDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("load over old pins: %v", err)
	}
	defer p.Close()
	if got := p.Maps.StreamCapacity(); got != 4096 {
		t.Errorf("stream table capacity %d, want 4096", got)
	}
	st, ok, err := p.Maps.Stream(k1(1, 2))
	if err != nil || !ok || st.Packets != 3 {
		t.Errorf("migrated stream: %+v ok=%v err=%v, want 3 packets", st, ok, err)
	}
	c, err := p.Maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c[vocab.StatFrames] != uint64(7*ncpu) {
		t.Errorf("migrated frame counter %d, want %d", c[vocab.StatFrames], 7*ncpu)
	}
	if c[vocab.StatCandidate] != uint64(5*ncpu) || c[vocab.StatUntrustedMapped] != uint64(4*ncpu) ||
		c[vocab.StatFragDuplicate] != 0 || c[vocab.StatFragHeld] != 0 {
		t.Errorf("migrated candidate %d, untrusted_mapped %d, frag_duplicate %d, frag_held %d; want %d, %d, 0, 0 (appended counters start at zero)",
			c[vocab.StatCandidate], c[vocab.StatUntrustedMapped], c[vocab.StatFragDuplicate], c[vocab.StatFragHeld], 5*ncpu, 4*ncpu)
	}
	// The fragment record kept its stream and action; its appended fields
	// are zero, so no copy of its first fragment can match it.
	fr, err := p.Maps.Fragments()
	if err != nil {
		t.Fatal(err)
	}
	fe, ok := fr[vocab.FragKey{Src: router1, Dst: collector, ID: 0x1234, Proto: 17}]
	if !ok || len(fr) != 1 || fe.MID != 77 || fe.SID != 88 || fe.Action != vocab.ActionCapture || fe.FirstSeen != 0 || fe.Fingerprint != 0 {
		t.Errorf("migrated fragments %+v, want mid 77 sid 88 capture, times zero", fr)
	}
	log := logs.String()
	for _, want := range []string{"map=jm_streams", "map=jm_stats", "map=jm_frags", "migrated", "map=jm_policy", "cannot be migrated"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// The replaced policy map works.
	if err := p.Configure(loader.Config{Policies: []vocab.PolicyRule{{MID: 1, SID: 2, Action: vocab.ActionCount}}}); err != nil {
		t.Fatal(err)
	}
	if v, err := p.Run(f); err != nil || v != vocab.VerdictDrop {
		t.Errorf("count rule after migration: %v %v", v, err)
	}
	// The appended counter counts in the migrated map.
	if _, err := p.Run(frame(t, gen.Mirror{Router: mappedRouter, Collector: coll6, MID: 1, SID: 2, Inner: ipv4Echo()})); err != nil {
		t.Fatal(err)
	}
	if c, err := p.Maps.Counters(); err != nil || c[vocab.StatUntrustedMapped] != uint64(4*ncpu)+1 || c[vocab.StatFrames] != uint64(7*ncpu)+2 {
		t.Errorf("after migration: untrusted_mapped %d, frames %d (%v); want %d and %d", c[vocab.StatUntrustedMapped], c[vocab.StatFrames], err, 4*ncpu+1, 7*ncpu+2)
	}
	// And so do the new ones: a first fragment twice.
	first := frames(t, bigMirror(5, 6, 0x4321, 1))[0]
	for range 2 {
		if _, err := p.Run(first); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := p.Maps.Counters(); err != nil || c[vocab.StatFragDuplicate] != 1 || c[vocab.StatFragFirst] != 1 {
		t.Errorf("after migration: frag_duplicate %d, frag_first %d (%v); want 1 and 1", c[vocab.StatFragDuplicate], c[vocab.StatFragFirst], err)
	}
}
