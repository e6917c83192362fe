package writer

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// fdReserve is what DefaultMaxOpen leaves of RLIMIT_NOFILE for everything
// but stream files: sockets, BPF maps and links, the metrics server, logs.
const fdReserve = 256

// minMaxOpen is DefaultMaxOpen's floor, whatever the limit says.
const minMaxOpen = 64

// DefaultMaxOpen is MaxOpen when the config leaves it 0: RLIMIT_NOFILE's
// soft limit, first raised to the hard limit, less a reserve for the
// process's other descriptors (an eighth of the limit, at least 256). Go
// raises the soft limit at start too; this does it explicitly, so that the
// figure is the one in force.
func DefaultMaxOpen() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return minMaxOpen * 8
	}
	if lim.Cur < lim.Max {
		raised := unix.Rlimit{Cur: lim.Max, Max: lim.Max}
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	n := int64(min(lim.Cur, 1<<30))
	reserve := max(int64(fdReserve), n/8)
	return int(max(n-reserve, minMaxOpen))
}

// umaskKeepsMode reports whether the process's umask leaves the owner's
// bits alone, so that 0700 directories and 0600 files come out as asked.
// Reading the umask means setting it: done once, when a Manager starts.
func umaskKeepsMode() bool {
	old := syscall.Umask(0o077)
	syscall.Umask(old)
	return old&0o700 == 0
}
