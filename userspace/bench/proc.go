package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jmxdp/jmxdp/userspace/capfile"
	"golang.org/x/sys/unix"
)

// Receivers and senders as child processes: start, stop, their CPU time
// (wait4), and what they wrote.

// Bounds of a receiver process's start and stop.
const (
	procReadyWait = 30 * time.Second
	// procStopWait is how long a receiver may take to write out and close
	// its files after the signal: jmxdp with 100k streams renames 100k files.
	procStopWait = 2 * time.Minute
	// cpuQuietShare: a receiver is done with what it was sent when it used
	// less than this share of a CPU over captureSettle. Idle, the receivers
	// use well under 1% (timers); busy, close to 100%.
	cpuQuietShare = 0.05
)

// proc is a receiver running as a child process, pinned to the receivers'
// CPUs.
type proc struct {
	what   string
	cmd    *exec.Cmd
	stderr *lineBuffer
	stdout bytes.Buffer
	done   chan struct{} // closed when the process has been waited for
	err    error         // Wait's, once done is closed
}

// startProc starts cmd on the receivers' CPUs and reaps it in the
// background. stderr is kept (the first 64 KiB); "listening on" in it
// closes p.stderr.ready. Should this process die without stopping it, the
// receiver gets SIGTERM (and stops as on any other SIGTERM).
func startProc(what string, cmd *exec.Cmd) (*proc, error) {
	p := &proc{what: what, cmd: cmd, stderr: &lineBuffer{ready: make(chan struct{})}, done: make(chan struct{})}
	cmd.Stderr, cmd.Stdout = p.stderr, &p.stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := startPinned(cmd, receiverCPUs(), p.done); err != nil {
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitListening waits until the process says "listening on" (tcpdump, the
// udprecv child), exits, or procReadyWait passes.
func (p *proc) waitListening() error {
	select {
	case <-p.stderr.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited before listening: %v: %s", p.what, p.err, p.stderr.String())
	case <-time.After(procReadyWait):
		p.kill()
		return fmt.Errorf("%s did not start listening within %v: %s", p.what, procReadyWait, p.stderr.String())
	}
}

// stop sends sig and waits for the process to exit, killing it after
// procStopWait. An exit other than 0 is an error.
func (p *proc) stop(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.kill()
		return fmt.Errorf("signal %s: %w", p.what, err)
	}
	select {
	case <-p.done:
	case <-time.After(procStopWait):
		p.kill()
		return fmt.Errorf("%s did not exit within %v of %v: %s", p.what, procStopWait, sig, p.stderr.String())
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w: %s", p.what, p.err, p.stderr.String())
	}
	return nil
}

// kill ends the process and waits for it (bounded: a process killed is
// reaped at once).
func (p *proc) kill() {
	p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// killProc kills *pp, if any, and forgets it: every system's abort.
func killProc(pp **proc) {
	if *pp != nil {
		(*pp).kill()
		*pp = nil
	}
}

// cpu is the process's user + system time from wait4, after it exited.
func (p *proc) cpu() time.Duration {
	st := p.cmd.ProcessState
	if st == nil {
		return 0
	}
	ru, ok := st.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuNow is the CPU time of the running process's live threads, from
// /proc/PID/task/*/schedstat (nanoseconds, unlike /proc/PID/stat's ticks).
// It reads the process from outside: it costs the process nothing.
func (p *proc) cpuNow() time.Duration {
	dir := fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited since the listing
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum)
}

// waitCPUQuiet waits until the process has used less than cpuQuietShare of
// a CPU over captureSettle (it has dealt with what it was sent), or has
// exited, or captureMaxWait has passed.
func (p *proc) waitCPUQuiet() {
	end := time.Now().Add(captureMaxWait)
	mark, since := p.cpuNow(), time.Now()
	for time.Now().Before(end) {
		select {
		case <-p.done:
			return
		case <-time.After(20 * time.Millisecond):
		}
		c, el := p.cpuNow(), time.Since(since)
		if c-mark > time.Duration(cpuQuietShare*float64(captureSettle)) {
			mark, since = c, time.Now() // still busy: start a new window
			continue
		}
		if el >= captureSettle {
			return
		}
	}
}

// withNofile runs fn with this process's RLIMIT_NOFILE set to n (soft and
// hard), then puts the limit back: the processes fn starts inherit it, as
// a service manager's LimitNOFILE would give them. Without
// CAP_SYS_RESOURCE the hard limit cannot be raised: then both are set to
// the hard limit there is. got is the limit fn ran with; n == 0 runs fn as
// it is.
func withNofile(n uint64, fn func() error) (got uint64, err error) {
	if n == 0 {
		return 0, fn()
	}
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		return 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	// unix.Prlimit goes through package syscall, which then stops
	// restoring Go's original soft limit in the children it starts.
	got = n
	err = unix.Prlimit(0, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}, nil)
	if errors.Is(err, unix.EPERM) && n > old.Max {
		got = old.Max
		err = unix.Prlimit(0, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: got, Max: got}, nil)
	}
	if err != nil {
		return 0, fmt.Errorf("set RLIMIT_NOFILE to %d: %w", got, err)
	}
	err = fn()
	if rerr := unix.Prlimit(0, unix.RLIMIT_NOFILE, &old, nil); rerr != nil {
		err = errors.Join(err, fmt.Errorf("restore RLIMIT_NOFILE: %w", rerr))
	}
	return got, err
}

// countCaptures counts the packets in every file under dir whose name
// ends in ext, with capfile (the files are the product: what a consumer
// would find), and the files ending in ext+".part" (left half-written).
func countCaptures(dir, ext string) (packets uint64, files, parts int, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if path == dir && errors.Is(err, fs.ErrNotExist) {
			return fs.SkipAll // nothing was written, not even the directory
		}
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return nil
		case strings.HasSuffix(path, ext+".part"):
			parts++
			return nil
		case !strings.HasSuffix(path, ext):
			return nil
		}
		n, err := countFile(path)
		packets += n
		files++
		return err
	})
	if err != nil {
		return packets, files, parts, fmt.Errorf("count the packets in %s: %w", dir, err)
	}
	return packets, files, parts, nil
}

func countFile(path string) (uint64, error) {
	r, err := capfile.Open(path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var n uint64
	for {
		if _, err := r.Next(); err == io.EOF {
			return n, nil
		} else if err != nil {
			return n, err
		}
		n++
	}
}

// freePort is a TCP port on 127.0.0.1 that nothing listens on now: jmxdp
// refuses port 0 for its metrics, and 9877, the default, may be taken.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lineBuffer keeps a process's stderr (the first 64 KiB) and closes ready
// when "listening on" appears.
type lineBuffer struct {
	mu    sync.Mutex
	b     []byte
	tail  []byte // the last tailMax bytes: what a process says as it stops
	ready chan struct{}
	once  sync.Once
}

const tailMax = 16 << 10

func (l *lineBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 64<<10 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	l.tail = append(l.tail, p...)
	if over := len(l.tail) - tailMax; over > 0 {
		l.tail = append(l.tail[:0], l.tail[over:]...)
	}
	if strings.Contains(string(l.b), "listening on") {
		l.once.Do(func() { close(l.ready) })
	}
	return len(p), nil
}

// lastLine is the last line of the tail that contains s ("" if none).
func (l *lineBuffer) lastLine(s string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(string(l.tail), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}

func (l *lineBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(string(l.b))
}
