package writer

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdReserve is what DefaultMaxOpen leaves of RLIMIT_NOFILE for everything
// but stream files: sockets, BPF maps and links, the metrics server, logs.
const fdReserve = 256

// minMaxOpen is DefaultMaxOpen's floor, whatever the limit says.
const minMaxOpen = 64

// DefaultMaxOpen is MaxOpen when the config leaves it 0: RLIMIT_NOFILE's
// hard limit, which RaiseNoFile makes the soft one at start, less a
// reserve for the process's other descriptors (an eighth of the limit, at
// least 256). It reads the limit and changes nothing.
func DefaultMaxOpen() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return minMaxOpen * 8
	}
	n := int64(min(lim.Max, 1<<30))
	reserve := max(int64(fdReserve), n/8)
	return int(max(n-reserve, minMaxOpen))
}

// RaiseNoFile raises RLIMIT_NOFILE's soft limit to its hard limit: what
// `jmxdp run` does at start. (Go's runtime does it too when a program
// starts; this makes the figure in force explicit.)
func RaiseNoFile() error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= lim.Max {
		return nil
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: lim.Max, Max: lim.Max}); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
	}
	return nil
}

// umaskKeepsMode reports whether the process's umask leaves mode's
// permission bits alone (0700, or 0750 with a group), so that directories
// and files come out as asked.
// Reading the umask means setting it: done once, when a Manager starts.
func umaskKeepsMode(mode os.FileMode) bool {
	old := syscall.Umask(0o077)
	syscall.Umask(old)
	return os.FileMode(old)&mode == 0
}
