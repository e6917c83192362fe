// Package sdnotify tells the service manager about the daemon's state: the
// sd_notify(3) protocol, without libsystemd. A message is one datagram of
// newline-separated VAR=value assignments, sent to the unix socket named by
// $NOTIFY_SOCKET. systemd sets that variable for Type=notify services; when
// it is unset (a shell, a container) every call is a no-op.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// EnvSocket is the variable that names the service manager's socket.
const EnvSocket = "NOTIFY_SOCKET"

// Notifier sends state changes to one socket. The zero value and a nil
// *Notifier send nothing.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET, or one that sends nothing
// when the variable is unset or empty.
func FromEnv() (*Notifier, error) {
	return New(os.Getenv(EnvSocket))
}

// New returns a Notifier for socket: a path, or an abstract socket name
// starting with '@' (as systemd writes it in $NOTIFY_SOCKET). "" sends
// nothing.
func New(socket string) (*Notifier, error) {
	if socket == "" {
		return &Notifier{}, nil
	}
	// systemd also accepts vsock:CID:PORT (for VMs); jmxdp runs on the
	// host, so only unix sockets are supported, and anything else is an
	// error rather than a silent no-op.
	if socket[0] != '/' && socket[0] != '@' {
		return nil, fmt.Errorf("%s=%q: want an absolute path or an @abstract name", EnvSocket, socket)
	}
	// Go's net package maps a leading '@' to the abstract namespace (a
	// leading NUL in sun_path), which is what systemd means by it.
	return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
}

// Enabled reports whether messages go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Send sends the assignments (e.g. "READY=1", "STATUS=capturing") as one
// datagram. A value must not contain a newline: it would start another
// assignment.
func (n *Notifier) Send(assignments ...string) error {
	if !n.Enabled() || len(assignments) == 0 {
		return nil
	}
	for _, a := range assignments {
		if !strings.Contains(a, "=") || strings.ContainsRune(a, '\n') {
			return fmt.Errorf("sd_notify: %q is not one VAR=value line", a)
		}
	}
	// A fresh unbound socket per message, as libsystemd does: nothing is
	// held open between the rare state changes, and the manager learns the
	// sender's pid from the credentials the kernel attaches.
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(assignments, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Ready says that start-up is complete; status, if not empty, is shown by
// `systemctl status`. Sent again after a reload, it ends the reload.
func (n *Notifier) Ready(status string) error {
	return n.Send(withStatus([]string{"READY=1"}, status)...)
}

// Reloading says that a configuration reload has begun; systemd (253 and
// later) wants the CLOCK_MONOTONIC time with it, to tell this reload from
// an earlier one. Send Ready when the reload is done, whether it applied
// the new configuration or kept the old one.
func (n *Notifier) Reloading(status string) error {
	if !n.Enabled() {
		return nil
	}
	now, err := monotonicUsec()
	if err != nil {
		return err
	}
	return n.Send(withStatus([]string{"RELOADING=1", "MONOTONIC_USEC=" + strconv.FormatUint(now, 10)}, status)...)
}

// Stopping says that the daemon is shutting down.
func (n *Notifier) Stopping(status string) error {
	return n.Send(withStatus([]string{"STOPPING=1"}, status)...)
}

// Status updates the free-form status line alone.
func (n *Notifier) Status(status string) error {
	if status == "" {
		return nil
	}
	return n.Send("STATUS=" + oneLine(status))
}

func withStatus(a []string, status string) []string {
	if status != "" {
		a = append(a, "STATUS="+oneLine(status))
	}
	return a
}

// oneLine keeps a status to one assignment.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func monotonicUsec() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("sd_notify: clock_gettime: %w", err)
	}
	return uint64(time.Duration(ts.Nano()) / time.Microsecond), nil
}
