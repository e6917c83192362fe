package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens a real unixgram socket, as systemd does, and returns a
// function reading the next datagram.
func listen(t *testing.T, name string) func() string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read notification: %v", err)
		}
		return string(buf[:n])
	}
}

func TestPathSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	next := listen(t, path)
	n, err := New(path)
	if err != nil {
		t.Fatal(err)
	}
	if !n.Enabled() {
		t.Fatal("not enabled with a socket")
	}
	if err := n.Ready("capturing on eth1"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "READY=1\nSTATUS=capturing on eth1\n" {
		t.Errorf("ready: %q", got)
	}
	if err := n.Status("two\nlines"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "STATUS=two lines\n" {
		t.Errorf("status: %q", got)
	}
	if err := n.Stopping(""); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "STOPPING=1\n" {
		t.Errorf("stopping: %q", got)
	}
}

// RELOADING=1 carries CLOCK_MONOTONIC in microseconds, which systemd
// compares with its own clock.
func TestReloadingMonotonic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	next := listen(t, path)
	n, _ := New(path)
	var before, after unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &before)
	if err := n.Reloading("reloading /etc/jmxdp/jmxdp.yaml"); err != nil {
		t.Fatal(err)
	}
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &after)
	lines := strings.Split(strings.TrimSuffix(next(), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "RELOADING=1" || lines[2] != "STATUS=reloading /etc/jmxdp/jmxdp.yaml" {
		t.Fatalf("reloading: %q", lines)
	}
	v, ok := strings.CutPrefix(lines[1], "MONOTONIC_USEC=")
	usec, err := strconv.ParseUint(v, 10, 64)
	if !ok || err != nil {
		t.Fatalf("%q: want MONOTONIC_USEC=N", lines[1])
	}
	lo, hi := uint64(before.Nano()/1000), uint64(after.Nano()/1000)
	if usec < lo || usec > hi {
		t.Errorf("MONOTONIC_USEC=%d, not within [%d, %d]", usec, lo, hi)
	}
}

// systemd writes abstract socket names with a leading '@'.
func TestAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@jmxdp-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	next := listen(t, name)
	t.Setenv(EnvSocket, name)
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Ready(""); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "READY=1\n" {
		t.Errorf("ready: %q", got)
	}
}

// Without $NOTIFY_SOCKET (a shell, a container) nothing is sent and
// nothing fails; a nil Notifier behaves the same.
func TestUnsetIsNoop(t *testing.T) {
	t.Setenv(EnvSocket, "")
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	var none *Notifier
	for _, x := range []*Notifier{n, none} {
		if x.Enabled() {
			t.Error("enabled without a socket")
		}
		if err := x.Ready("x"); err != nil {
			t.Error(err)
		}
		if err := x.Reloading("x"); err != nil {
			t.Error(err)
		}
		if err := x.Stopping("x"); err != nil {
			t.Error(err)
		}
	}
}

func TestRefusesBadInput(t *testing.T) {
	for _, s := range []string{"relative/path", "vsock:2:1234"} {
		if _, err := New(s); err == nil || !strings.Contains(err.Error(), EnvSocket) {
			t.Errorf("New(%q): %v", s, err)
		}
	}
	n, _ := New(filepath.Join(t.TempDir(), "nobody-listens"))
	if err := n.Ready(""); err == nil {
		t.Error("no error sending to a socket nobody listens on")
	}
	if err := n.Send("READY=1\nSTOPPING=1"); err == nil {
		t.Error("accepted a newline inside an assignment")
	}
	if err := n.Send("READY"); err == nil {
		t.Error("accepted an assignment without '='")
	}
}
