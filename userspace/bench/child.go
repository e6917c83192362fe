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

	"github.com/jmxdp/jmxdp/userspace/bench/udprecv"
	"github.com/jmxdp/jmxdp/userspace/tools/xmit"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// ChildArg is the first argument of a process the bench re-executes to play
// a part: `<exe> bench-child ROLE [ARGS...]`. jmxdp has it as a hidden
// subcommand; a test binary that runs the bench checks for it in TestMain
// (RunChild). No environment variable switches a binary into a sender.
const ChildArg = "bench-child"

// Roles of a re-executed bench process.
const (
	// roleXmit is the capture section's sender.
	roleXmit = "xmit"
	// roleUdprecv is the userspace UDP collector the capture section
	// measures jmxdp against.
	roleUdprecv = "udprecv"
	// roleMain is jmxdp itself: the process runs the command line after
	// the role (`run --iface ...`) through the function SetMain
	// registered. Only a test binary needs it, whose own main would run
	// tests instead; the jmxdp binary takes the same path, so that the
	// bench never has to know which one it runs.
	roleMain = "main"
)

// childMaxLife bounds a receiver child's life, so that a lost parent cannot
// leave one running; the parent stops it long before.
const childMaxLife = 10 * time.Minute

// mainFunc is the program's command line, when it is jmxdp (SetMain).
var mainFunc func(args []string) int

// SetMain tells the bench that this program is jmxdp and main runs its
// command line (the arguments after the program name) and returns the exit
// code: the capture section then runs this executable as `jmxdp run`.
// jmxdp's command package calls it from an init function, so that its test
// binary can play jmxdp too.
func SetMain(main func(args []string) int) { mainFunc = main }

// IsChild reports whether args (os.Args) make this process a bench child.
func IsChild(args []string) bool { return len(args) > 1 && args[1] == ChildArg }

// RunChild plays the role named first in args (os.Args after ChildArg):
// the job comes from stdin, the result goes to stdout. It returns the
// process's exit code.
//
// The capture section runs every receiver it measures, and the sender, as
// processes of their own: each receiver's CPU time is then its own (wait4's
// rusage), and none shares the Go scheduler, the garbage collector or the
// threads of another.
func RunChild(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "jmxdp bench helper: no role")
		return 2
	}
	if args[0] == roleMain {
		if mainFunc == nil {
			fmt.Fprintln(stderr, "jmxdp bench helper: this program is not jmxdp (no bench.SetMain)")
			return 2
		}
		return mainFunc(args[1:])
	}
	if err := runChild(args[0], stdin, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "jmxdp bench helper:", err)
		return 1
	}
	return 0
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
	return exec.CommandContext(ctx, exe, append([]string{ChildArg, role}, args...)...), nil
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
