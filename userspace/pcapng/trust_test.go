package pcapng

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

func TestCheckTrustedDir(t *testing.T) {
	base := t.TempDir()
	ok := filepath.Join(base, "ok")
	if err := os.Mkdir(ok, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := CheckTrustedDir(ok); err != nil {
		t.Errorf("a 0700 directory of our own: %v", err)
	}
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	if err := CheckTrustedDir(open); !errors.Is(err, ErrUntrustedDir) || !strings.Contains(err.Error(), "others") {
		t.Errorf("a 0777 directory: %v", err)
	}
	// Under a directory others can write without the sticky bit.
	under := filepath.Join(open, "out")
	os.Mkdir(under, 0o700)
	if err := CheckTrustedDir(under); !errors.Is(err, ErrUntrustedDir) || !strings.Contains(err.Error(), "sticky") {
		t.Errorf("under a 0777 directory: %v", err)
	}
	os.Chmod(open, 0o777|os.ModeSticky) // as /tmp
	if err := CheckTrustedDir(under); err != nil {
		t.Errorf("under a sticky 1777 directory: %v", err)
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o700)
		os.Chown(other, 65534, 65534)
		if err := CheckTrustedDir(other); !errors.Is(err, ErrUntrustedDir) || !strings.Contains(err.Error(), "uid 65534") {
			t.Errorf("a directory of nobody's: %v", err)
		}
	} else {
		testenv.PartSkip(t, "the other-owner case needs root to chown")
	}
}

func TestCheckNoLinks(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "mid-1", "sid-1"), 0o700)
	if err := CheckNoLinks(root, filepath.Join(root, "mid-1", "sid-1")); err != nil {
		t.Error(err)
	}
	target := t.TempDir()
	os.Symlink(target, filepath.Join(root, "mid-2"))
	if err := CheckNoLinks(root, filepath.Join(root, "mid-2", "sid-1")); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("a linked mid directory: %v", err)
	}
	os.Mkdir(filepath.Join(root, "mid-3"), 0o700)
	os.Symlink(target, filepath.Join(root, "mid-3", "sid-1"))
	if err := CheckNoLinks(root, filepath.Join(root, "mid-3", "sid-1")); err == nil {
		t.Error("a linked sid directory accepted")
	}
	if err := CheckNoLinks(root, "/etc"); err == nil {
		t.Error("a path outside the root accepted")
	}
}
