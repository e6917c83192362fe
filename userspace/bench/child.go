package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/udprecv"
	"github.com/jmxdp/jmxdp/userspace/writer"
	"github.com/jmxdp/jmxdp/userspace/xmit"
)

// childEnv names the role a re-executed bench process plays.
const childEnv = "JMXDP_BENCH_CHILD"

// Roles of a re-executed bench process.
const (
	// roleXmit is the capture section's sender.
	roleXmit = "xmit"
	// roleUdprecv is the userspace UDP collector the capture section
	// measures jmxdp against.
	roleUdprecv = "udprecv"
	// roleMain is jmxdp itself: the process runs its command line (`run
	// --iface ...`) through the main function SetMain registered. The
	// variable only matters to test binaries, whose own main would run
	// tests instead.
	roleMain = "main"
)

// childMaxLife bounds a receiver child's life, so that a lost parent cannot
// leave one running; the parent stops it long before.
const childMaxLife = 10 * time.Minute

// mainFunc is the program's main, when it is jmxdp (SetMain).
var mainFunc func()

// SetMain tells the bench that this program is jmxdp and main is its main
// function: the capture section then runs this executable as `jmxdp run`.
// jmxdp's command package calls it from an init function, so that its test
// binary can play jmxdp too.
func SetMain(main func()) { mainFunc = main }

// RunChildIfAsked is called first thing by every program that runs the
// bench (jmxdp's main, the bench package's TestMain). In a process the bench
// started as a helper it plays that role, reading its job from stdin and
// writing the result to stdout, and exits; otherwise it returns at once.
//
// The capture section runs every receiver it measures, and the sender, as
// processes of their own: each receiver's CPU time is then its own (wait4's
// rusage), and none shares the Go scheduler, the garbage collector or the
// threads of another.
func RunChildIfAsked() {
	role := os.Getenv(childEnv)
	if role == "" {
		return
	}
	if role == roleMain {
		// main calls RunChildIfAsked again: without the variable it goes
		// on to jmxdp's command line.
		os.Unsetenv(childEnv)
		if mainFunc == nil {
			fmt.Fprintln(os.Stderr, "jmxdp bench helper: this program is not jmxdp (no bench.SetMain)")
			os.Exit(2)
		}
		mainFunc()
		os.Exit(0)
	}
	err := runChild(role, os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jmxdp bench helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(role string, in io.Reader, out, log io.Writer) error {
	switch role {
	case roleXmit:
		return runXmitChild(in, out)
	case roleUdprecv:
		return runUdprecvChild(in, out, log)
	}
	return fmt.Errorf("unknown role %q", role)
}

func runXmitChild(in io.Reader, out io.Writer) error {
	var o xmit.Options
	if err := json.NewDecoder(in).Decode(&o); err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	// A bound the parent also enforces, so that a lost parent cannot leave
	// a sender running.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := xmit.Run(ctx, o)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return json.NewEncoder(out).Encode(st)
}

// udprecvJob is what the udprecv child is asked to do: the writer.Config
// fields it needs (the rest has funcs, which JSON cannot carry).
type udprecvJob struct {
	Addr       netip.AddrPort
	Dir        string
	MaxOpen    int
	RotateSize int64
	RotateAge  time.Duration
}

// udprecvResult is what the udprecv child prints on stdout when it stops.
type udprecvResult struct {
	Receiver udprecv.Stats
	Writer   writer.Stats
}

// runUdprecvChild listens as udprecv does, says "listening on" on log (as
// tcpdump does: the parent waits for it), and on SIGTERM or SIGINT closes
// the receiver, which writes what is queued on the socket and completes the
// files, then prints its counters as JSON on out.
func runUdprecvChild(in io.Reader, out, log io.Writer) error {
	var job udprecvJob
	if err := json.NewDecoder(in).Decode(&job); err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	// Notify before listening: a signal from then on is never lost.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	r, err := udprecv.Listen(udprecv.Config{Addr: job.Addr, Writer: writer.Config{
		Dir: job.Dir, MaxOpen: job.MaxOpen, RotateSize: job.RotateSize, RotateAge: job.RotateAge,
	}})
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "listening on %v\n", r.Addr())
	select {
	case <-ctx.Done():
	case <-time.After(childMaxLife):
	}
	cerr := r.Close()
	res := udprecvResult{Receiver: r.Stats(), Writer: r.Writer().Stats()}
	if err := json.NewEncoder(out).Encode(res); err != nil {
		return errors.Join(cerr, err)
	}
	return cerr
}

// childCommand is this executable, re-executed to play role.
func childCommand(ctx context.Context, role string, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this executable: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"="+role)
	return cmd, nil
}

// sendFromChild runs xmit with o in a process of its own (this executable,
// re-executed), all of whose threads run on cpus, and returns its stats.
func sendFromChild(ctx context.Context, o xmit.Options, cpus []int) (xmit.Stats, error) {
	var st xmit.Stats
	job, err := json.Marshal(o)
	if err != nil {
		return st, err
	}
	cmd, err := childCommand(ctx, roleXmit)
	if err != nil {
		return st, err
	}
	cmd.Stdin = bytes.NewReader(job)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A child starts on the CPUs of the thread that forks it, every thread
	// it ever makes included: fork from a thread pinned to cpus.
	if err := startPinned(cmd, cpus, nil); err != nil {
		return st, fmt.Errorf("start sender: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return st, fmt.Errorf("sender: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		return st, fmt.Errorf("sender's result: %w", err)
	}
	return st, nil
}

// startPinned starts cmd from an OS thread whose CPU affinity is cpus. The
// thread is not given back to Go: it ends with the goroutine, once hold is
// closed (at once if nil). A child whose parent-death signal is set gets it
// when that thread ends, so hold it until the child has exited.
func startPinned(cmd *exec.Cmd, cpus []int, hold <-chan struct{}) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the pinned thread dies with us
		if len(cpus) > 0 {
			var set unix.CPUSet
			for _, c := range cpus {
				set.Set(c)
			}
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errc <- fmt.Errorf("pin to CPUs %v: %w", cpus, err)
				return
			}
		}
		err := cmd.Start()
		errc <- err
		if err == nil && hold != nil {
			<-hold
		}
	}()
	return <-errc
}
