package runstate

import (
	"errors"
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

func TestSecondAcquireIsRefusedWithThePID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	l, err := Acquire(dir, "eth9")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, "eth9")
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("second Acquire: %v, want ErrBusy", err)
	}
	if want := "pid " + strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("refusal %q does not name the holder (%s)", err, want)
	}
	// Another interface is independent.
	other, err := Acquire(dir, "eth10")
	if err != nil {
		t.Fatalf("another interface: %v", err)
	}
	other.Release()
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir, "eth9")
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	l2.Release()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("run dir mode %o, want 700", fi.Mode().Perm())
	}
}

func TestStateFileRoundTripAndKeptOnRelease(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, "veth0")
	if err != nil {
		t.Fatal(err)
	}
	want := State{PID: os.Getpid(), Iface: "veth0", PinDir: "/sys/fs/bpf/x/veth0", Config: "/etc/jmxdp/jmxdp.yaml",
		Out: "/var/lib/jmxdp/streams", Metrics: "127.0.0.1:9877", Started: time.Now().UTC().Truncate(time.Second)}
	if err := l.Write(want); err != nil {
		t.Fatal(err)
	}
	got, running, err := Read(dir, "veth0")
	if err != nil {
		t.Fatal(err)
	}
	if !running {
		t.Error("Read: running = false while the lock is held")
	}
	if got != want {
		t.Errorf("Read = %+v, want %+v", got, want)
	}
	fi, err := os.Stat(filepath.Join(dir, "veth0.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %o, want 600", fi.Mode().Perm())
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	// Kept, for the commands that look for a stopped instance's maps.
	got, running, err = Read(dir, "veth0")
	if err != nil || running || got != want {
		t.Errorf("Read after Release: %+v running=%v err=%v; want the same state, not running", got, running, err)
	}
}

func TestLockDiesWithItsProcess(t *testing.T) {
	flock := testenv.Tool(t, "flock")
	dir := t.TempDir()
	path := filepath.Join(dir, "eth1.lock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command(flock, "--exclusive", path, "sleep", "30")
	// Its own process group: flock(1) runs sleep as a child that inherits
	// the locked descriptor, and both must die.
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for !held(dir, "eth1") {
		if time.Now().After(deadline) {
			t.Fatal("flock never took the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := Acquire(dir, "eth1"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Acquire while another process holds it: %v", err)
	}
	// SIGKILL: no cleanup runs, the kernel drops the lock.
	syscall.Kill(-holder.Process.Pid, syscall.SIGKILL)
	holder.Wait()
	// sleep, flock's child, is not ours to wait for: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); held(dir, "eth1") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	l, err := Acquire(dir, "eth1")
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	l.Release()
}

func TestAcquireRefusesBadNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", ".", "..", "a/b", "../x"} {
		if l, err := Acquire(dir, name); err == nil {
			l.Release()
			t.Errorf("Acquire(%q) accepted", name)
		}
	}
}

func TestCheckpointRoundTripAndUnaccounted(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadCheckpoint(dir, "eth1"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no checkpoint yet: %v", err)
	}
	l, err := Acquire(dir, "eth1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	cp := Checkpoint{Time: time.Unix(1700000000, 5).UTC(), RedirectedAtStart: 1000, Redirected: 1900,
		Received: 880, RingDrops: 20, Written: 850, Dropped: 10, Fragments: 5}
	for _, c := range []Checkpoint{{Clean: true, Written: 1 << 40}, cp} { // the second overwrites in place
		if err := l.WriteCheckpoint(c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadCheckpoint(dir, "eth1")
	if err != nil || got != cp {
		t.Fatalf("ReadCheckpoint = %+v, %v; want %+v", got, err, cp)
	}
	// 1000 redirected to the run; 885 accounted (20 + 850 + 10 + 5).
	if n := cp.Unaccounted(2000); n != 115 {
		t.Errorf("Unaccounted(2000) = %d, want 115", n)
	}
	if n := cp.Unaccounted(500); n != 0 {
		t.Errorf("after a counter reset: %d, want 0", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "eth2.account"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCheckpoint(dir, "eth2"); err == nil {
		t.Error("a garbage checkpoint was accepted")
	}
}

// Remove deletes a stopped instance's lock, state and checkpoint files,
// and only that interface's.
func TestRemove(t *testing.T) {
	dir := t.TempDir()
	for _, iface := range []string{"veth0", "veth1"} {
		l, err := Acquire(dir, iface)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Write(State{PID: os.Getpid(), Iface: iface}); err != nil {
			t.Fatal(err)
		}
		if err := l.WriteCheckpoint(Checkpoint{}); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
	}
	Remove(dir, "veth0")
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, p := range left {
		if strings.HasPrefix(filepath.Base(p), "veth0.") {
			t.Errorf("%s left", p)
		}
	}
	if len(left) != 3 {
		t.Errorf("%d files left, want veth1's 3: %v", len(left), left)
	}
}
