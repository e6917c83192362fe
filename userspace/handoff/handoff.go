// Package handoff runs an operator's command on each completed stream file
// (output.on_complete), for hand-off to a mediation function: argv only,
// no shell, a bounded number at once, each with a timeout after which its
// whole process group is killed. Failures are counted by reason and
// logged; nothing is retried (the file stays where it is).
//
// See docs/output.md, "Retention and hand-off".
package handoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Placeholder in an argument is replaced by the file's absolute path. With
// no argument holding it, the path is appended as the last argument.
const Placeholder = "{path}"

// Reason says why a hand-off failed.
type Reason int

const (
	// Exit: the command exited non-zero or was killed by a signal.
	Exit Reason = iota
	// Timeout: still running after Config.Timeout; its process group was
	// killed.
	Timeout
	// Start: the command could not be started (not found, not
	// executable).
	Start
	// QueueFull: the queue was full; the file was never handed off.
	QueueFull
	// Shutdown: the daemon stopped before the command ran or finished.
	Shutdown
	// NumReasons is the number of reasons, for arrays indexed by them.
	NumReasons
)

func (r Reason) String() string {
	switch r {
	case Exit:
		return "exit"
	case Timeout:
		return "timeout"
	case Start:
		return "start"
	case QueueFull:
		return "queue_full"
	case Shutdown:
		return "shutdown"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Defaults of Config.
const (
	DefaultWorkers = 4
	DefaultTimeout = 30 * time.Second
	// DefaultQueue holds a burst such as the one a clean stop makes (every
	// stream's file completed at once): a path each, tens of MB at most.
	DefaultQueue = 65536
	// outputTail is how much of a failed command's output is logged.
	outputTail = 512
	// waitDelay bounds how long Wait waits for output pipes after the
	// group was killed (a process that left the group may hold them).
	waitDelay = 2 * time.Second
	// summaryEvery bounds the lines that files not handed off (queue
	// full, shutdown) cost: one a burst, at most one this often.
	summaryEvery = time.Minute
)

// Config configures a Runner.
type Config struct {
	// Argv is the command and its arguments; Argv[0] is an absolute path
	// or a name looked up in PATH. Required: New checks that it exists.
	Argv []string
	// Workers is the most commands running at once; default
	// DefaultWorkers.
	Workers int
	// Timeout is how long a command may run; default DefaultTimeout.
	Timeout time.Duration
	// Queue is how many files may wait for a worker; default DefaultQueue.
	Queue int
	// Logger receives a line per failed hand-off; nil discards them.
	Logger *slog.Logger
	// FileAttr is how a file is named in log lines; default
	// slog.String("file", path). (The daemon may log a hash instead, to
	// keep ids out of its logs.)
	FileAttr func(path string) slog.Attr
	// Done, if set, is called (on a worker) after each hand-off that ran,
	// whatever its outcome: the command may have moved the file away.
	Done func(path string)
}

// Stats are a Runner's counters.
type Stats struct {
	// Succeeded counts commands that exited 0.
	Succeeded uint64
	// Failed counts files whose hand-off failed, by reason.
	Failed [NumReasons]uint64
	// Queued is the files waiting for a worker now, Running the commands
	// running now.
	Queued, Running int
}

// Runner runs the command for each file Submit is given.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	queue  chan string
	ctx    context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	pending map[string]int // queued or running, by path
	stats   Stats
	// Files not handed off for QueueFull or Shutdown: summarised.
	missed     [NumReasons]uint64
	missedAt   time.Time
	missedLast string
}

// New checks cfg and starts the workers.
func New(cfg Config) (*Runner, error) {
	if err := CheckArgv(cfg.Argv); err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	if _, err := exec.LookPath(cfg.Argv[0]); err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	if cfg.Workers < 0 || cfg.Timeout < 0 || cfg.Queue < 0 {
		return nil, errors.New("handoff: negative workers, timeout or queue")
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FileAttr == nil {
		cfg.FileAttr = func(p string) slog.Attr { return slog.String("file", p) }
	}
	r := &Runner{cfg: cfg, log: cfg.Logger, queue: make(chan string, cfg.Queue), pending: map[string]int{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for range cfg.Workers {
		r.wg.Add(1)
		go r.work()
	}
	return r, nil
}

// Submit queues path for its hand-off. It never blocks: with the queue
// full (or after Close) the file is counted as not handed off and false
// returned. The file counts as Pending from now until its command ends.
func (r *Runner) Submit(path string) bool {
	path = abs(path)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.missLocked(Shutdown, path)
		return false
	}
	select {
	case r.queue <- path:
		r.pending[path]++
		r.stats.Queued++
		return true
	default:
		r.missLocked(QueueFull, path)
		return false
	}
}

// Pending reports whether path is queued or its command is running.
func (r *Runner) Pending(path string) bool {
	path = abs(path)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending[path] > 0
}

// Stats returns the counters. Safe for concurrent use.
func (r *Runner) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Close stops taking files and waits up to wait for the queued and
// running hand-offs to finish; then it kills the commands still running
// and counts them, and the files never started, as Shutdown. It returns
// an error if it had to give up on any.
func (r *Runner) Close(wait time.Duration) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.queue) // Submit no longer sends: closed is set under mu
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		r.cancel() // workers kill what runs and skip the rest
		<-done
	}
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.summariseLocked(true)
	if n := r.stats.Failed[Shutdown]; n > 0 {
		return fmt.Errorf("handoff: %d files not handed off: the stop did not wait longer than %v", n, wait)
	}
	return nil
}

func (r *Runner) work() {
	defer r.wg.Done()
	for path := range r.queue {
		r.mu.Lock()
		r.stats.Queued--
		if r.ctx.Err() != nil {
			r.finishLocked(path)
			r.missLocked(Shutdown, path)
			r.mu.Unlock()
			continue
		}
		r.stats.Running++
		r.mu.Unlock()

		reason, detail, err := r.run(path)

		r.mu.Lock()
		r.stats.Running--
		r.finishLocked(path)
		switch {
		case err == nil:
			r.stats.Succeeded++
		case reason == Shutdown:
			r.missLocked(Shutdown, path)
		default:
			r.stats.Failed[reason]++
		}
		r.mu.Unlock()
		if err == nil {
			r.log.Debug("handed off", r.cfg.FileAttr(path))
		}
		if err != nil && reason != Shutdown {
			args := []any{r.cfg.FileAttr(path), "reason", reason.String(), "error", err}
			if detail != "" {
				args = append(args, "output", detail)
			}
			r.log.Warn("on_complete command failed; the file was not handed off", args...)
		}
		if r.cfg.Done != nil {
			r.cfg.Done(path)
		}
	}
}

func (r *Runner) finishLocked(path string) {
	if r.pending[path] <= 1 {
		delete(r.pending, path)
	} else {
		r.pending[path]--
	}
}

// missLocked counts a file not handed off for QueueFull or Shutdown and
// logs a summary line per burst, not one per file: a clean stop with many
// streams completes them all at once.
func (r *Runner) missLocked(why Reason, path string) {
	r.stats.Failed[why]++
	r.missed[why]++
	r.missedLast = path
	r.summariseLocked(false)
}

func (r *Runner) summariseLocked(final bool) {
	n := r.missed[QueueFull] + r.missed[Shutdown]
	if n == 0 {
		return
	}
	now := time.Now()
	if !final && !r.missedAt.IsZero() && now.Sub(r.missedAt) < summaryEvery {
		return
	}
	r.missedAt = now
	r.log.Warn("files completed but not handed off to on_complete (they stay in the output directory)",
		"queue_full", r.missed[QueueFull], "shutdown", r.missed[Shutdown], "queue", r.cfg.Queue,
		slog.Group("last", r.cfg.FileAttr(r.missedLast)))
	r.missed = [NumReasons]uint64{}
}

// run runs the command for path: its own process group, no stdin, output
// kept (the tail) for the log line of a failure.
func (r *Runner) run(path string) (Reason, string, error) {
	argv := Args(r.cfg.Argv, path)
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: a script's children go too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = waitDelay
	var out tail
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		if r.ctx.Err() != nil {
			return Shutdown, "", err
		}
		return Start, "", fmt.Errorf("start %s: %w", argv[0], err)
	}
	err := cmd.Wait()
	if err == nil {
		return 0, "", nil
	}
	switch {
	case r.ctx.Err() != nil:
		return Shutdown, out.String(), fmt.Errorf("killed at shutdown: %w", err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Timeout, out.String(), fmt.Errorf("killed after %v: %w", r.cfg.Timeout, err)
	}
	return Exit, out.String(), err
}

// Args is the command line for path: argv with every Placeholder replaced
// by path, or path appended when no argument holds one.
func Args(argv []string, path string) []string {
	out := make([]string, len(argv), len(argv)+1)
	found := false
	for i, a := range argv {
		if strings.Contains(a, Placeholder) {
			found = true
			a = strings.ReplaceAll(a, Placeholder, path)
		}
		out[i] = a
	}
	if !found {
		out = append(out, path)
	}
	return out
}

// CheckArgv refuses a command line that can never run: none, an empty
// name, a NUL byte, a relative path with a slash (it would depend on the
// daemon's working directory). It does not look at the file system: New
// does.
func CheckArgv(argv []string) error {
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("no command: give a list, the program first (e.g. [/usr/local/bin/handoff, \"{path}\"])")
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argument %d holds a NUL byte", i)
		}
	}
	name := argv[0]
	if strings.Contains(name, "/") && !filepath.IsAbs(name) {
		return fmt.Errorf("%q is a relative path: give an absolute one, or a name found in PATH", name)
	}
	return nil
}

// tail keeps the last outputTail bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > outputTail {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-outputTail:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// abs makes path absolute, as the command gets it (and as Pending is
// asked), without asking for the working directory when it already is.
func abs(path string) string {
	if filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	if a, err := filepath.Abs(path); err == nil {
		return a
	}
	return path
}
