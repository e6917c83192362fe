package netns_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
)

func uniqueName() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "jmxdp-nstest-" + hex.EncodeToString(b)
}

func selfNS(t *testing.T) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func newNS(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	name := uniqueName()
	if err := netns.Add(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if netns.Exists(name) {
			if err := netns.Delete(name); err != nil {
				t.Error(err)
			}
		}
	})
	return name
}

func TestAddExistsDelete(t *testing.T) {
	name := newNS(t)
	if !netns.Exists(name) {
		t.Fatal("Exists false after Add")
	}
	if err := netns.Add(name); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Add: %v, want ErrExist", err)
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), name) {
		t.Errorf("ip netns list: %v %s", err, out)
	}
	if err := netns.Delete(name); err != nil {
		t.Fatal(err)
	}
	if netns.Exists(name) {
		t.Error("Exists true after Delete")
	}
	if err := netns.Delete(name); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), name) {
		t.Errorf("Delete of a missing namespace: %v", err)
	}
	for _, bad := range []string{"", "..", "a/b"} {
		if err := netns.Add(bad); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("Add(%q): %v", bad, err)
		}
	}
}

// fn runs in the namespace, sockets made there stay there, and the calling
// thread never leaves its namespace.
func TestDo(t *testing.T) {
	name := newNS(t)
	outside := selfNS(t)
	var inside uint64
	var fd int
	err := netns.Do(name, func() error {
		inside = selfNS(t)
		// A fresh namespace has only lo.
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		if len(ifs) != 1 || ifs[0].Name != "lo" {
			t.Errorf("interfaces in a new namespace: %v", ifs)
		}
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if inside == outside || inside == 0 {
		t.Errorf("namespace inside %d, outside %d", inside, outside)
	}
	var st unix.Stat_t
	if err := unix.Stat(netns.Path(name), &st); err != nil || st.Ino != inside {
		t.Errorf("fn ran in namespace %d, %s is %d (%v)", inside, name, st.Ino, err)
	}
	// SIOCGSKNS: the namespace a socket belongs to.
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(nsfd)
	var sst unix.Stat_t
	if err := unix.Fstat(nsfd, &sst); err != nil || sst.Ino != inside {
		t.Errorf("socket's namespace %d, want %d (%v)", sst.Ino, inside, err)
	}
	// Many calls leave every thread where it was.
	for range 50 {
		if err := netns.Do(name, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		if selfNS(t) != outside {
			t.Fatal("caller's thread switched namespace")
		}
	}
}

func TestDoErrors(t *testing.T) {
	testenv.RequireRoot(t)
	want := errors.New("from fn")
	name := newNS(t)
	if err := netns.Do(name, func() error { return want }); err != want {
		t.Errorf("fn's error: %v", err)
	}
	err := netns.Do("jmxdp-no-such-ns", func() error { t.Error("fn ran"); return nil })
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing namespace: %v", err)
	}
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v", p)
			}
		}()
		netns.Do(name, func() error { panic("boom") })
	}()
	// "" is the current namespace.
	ran := false
	if err := netns.Do("", func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("Do(\"\"): %v %v", err, ran)
	}
}
