package maps_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The CLI's view of a running instance: a rule put through the pinned
// maps is what the loaded program reads.
func TestOpenPinned(t *testing.T) {
	testenv.RequireRoot(t)
	dir := filepath.Join(loader.BPFFSRoot, "jmxdp-test-pinned-"+filepath.Base(t.TempDir()))
	t.Cleanup(func() { os.RemoveAll(dir) })
	if _, err := maps.OpenPinned(dir); !errors.Is(err, maps.ErrNotPinned) {
		t.Fatalf("nothing pinned: %v", err)
	}
	p, err := loader.Load(loader.Options{MaxStreams: 1024, PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pm, err := maps.OpenPinned(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	rule := vocab.PolicyRule{MID: 5, AnySID: true, Action: vocab.ActionPass}
	if err := pm.PutPolicy(rule); err != nil {
		t.Fatal(err)
	}
	got, err := p.Maps.Policies()
	if err != nil || len(got) != 1 || got[0] != rule {
		t.Fatalf("program's policy map: %v %v", got, err)
	}
}
