package labtest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
)

func exists(cfg lab.Config) bool {
	_, err := net.InterfaceByName(cfg.HostIface)
	return netns.Exists(cfg.Name) || err == nil
}

// New's lab is there during the test and gone after it, also when the test
// fails.
func TestNewCleansUp(t *testing.T) {
	testenv.RequireRoot(t)
	var l *lab.Lab
	var lockPath string
	t.Run("inner", func(t *testing.T) {
		l = New(t, "new")
		if !exists(l.Config) {
			t.Fatal("lab not up")
		}
		lockPath = filepath.Join(LockDir, l.Name+".json")
		if _, err := os.Stat(lockPath); err != nil {
			t.Errorf("lock file: %v", err)
		}
		// Ends the subtest early, as a failure would; the reason shows in
		// make test's skip summary.
		t.Skip("deliberate: the lab must go however its test ends")
	})
	if l == nil {
		t.Fatal("no lab")
	}
	if exists(l.Config) {
		t.Errorf("lab %s left after its test", l.Name)
	}
	if _, err := os.Stat(lockPath); err == nil {
		t.Errorf("lock file %s left", lockPath)
	}
}

// A lab whose process died (its lock released) is removed by the next
// Sweep; a lab whose process lives is not.
func TestSweep(t *testing.T) {
	l := New(t, "sweep") // also checks root
	cfg := lab.Random("stale")
	lock, err := register(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Down(cfg); os.Remove(lock.path) })
	if _, err := lab.Up(cfg); err != nil {
		lock.Close()
		t.Fatal(err)
	}
	Sweep(t)
	if !exists(cfg) || !exists(l.Config) {
		t.Fatal("Sweep removed a lab whose owner lives")
	}
	lock.Close() // the owner "dies"
	Sweep(t)
	if exists(cfg) {
		t.Error("stale lab left")
	}
	if _, err := os.Stat(lock.path); err == nil {
		t.Error("stale lock file left")
	}
	if !exists(l.Config) {
		t.Error("Sweep removed a live lab")
	}
}
