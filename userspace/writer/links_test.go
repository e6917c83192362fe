package writer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// An output directory other users can change is refused, unless the
// config says otherwise; a link planted for a mid's directory, or for the
// lock file, is never written through (issue 19 item 5).
func TestUntrustedDirAndPlantedLinks(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	if _, err := New(Config{Dir: open}); !errors.Is(err, pcapng.ErrUntrustedDir) {
		t.Fatalf("a 0777 output directory: %v", err)
	}
	var logs testenv.LogBuffer
	m, err := New(Config{Dir: open, AllowUntrustedDir: true, Logger: logs.Logger()})
	if err != nil {
		t.Fatalf("with AllowUntrustedDir: %v", err)
	}
	m.Close()
	if w := logs.Lines("level=WARN"); len(w) == 0 || !strings.Contains(strings.Join(w, "\n"), "allow_untrusted_dir") {
		t.Errorf("no warning with AllowUntrustedDir: %q", w)
	}

	// Links planted in a trusted directory (left from when it was not).
	dir := outDir(t)
	victim := t.TempDir()
	if err := os.Symlink(victim, filepath.Join(dir, "mid-5")); err != nil {
		t.Fatal(err)
	}
	m, err = New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ts := newClock().Now()
	if write(t, m, Key{MID: 5, SID: 1}, ts, 0, 100) {
		t.Error("a write through a linked mid directory succeeded")
	}
	if !write(t, m, Key{MID: 6, SID: 1}, ts, 0, 100) {
		t.Error("another mid's stream failed")
	}
	m.Close()
	if entries, _ := os.ReadDir(victim); len(entries) != 0 {
		t.Errorf("the link's target got %v", entries)
	}
	if st := m.Stats(); st.Drops[DropDisk] != 1 {
		t.Errorf("disk drops %d, want the one packet counted", st.Drops[DropDisk])
	}

	// A lock file planted as a link: refused, the target untouched.
	dir2 := outDir(t)
	target := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(target, []byte("root:x:0:0\n"), 0o600)
	os.Symlink(target, filepath.Join(dir2, lockName))
	if m, err := New(Config{Dir: dir2}); err == nil {
		m.Close()
		t.Error("a linked lock file was accepted")
	}
	if b, _ := os.ReadFile(target); string(b) != "root:x:0:0\n" {
		t.Errorf("the lock link's target changed: %q", b)
	}
}
