package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/xmit"
)

// childEnv names the role a re-executed bench process plays.
const childEnv = "JMXDP_BENCH_CHILD"

// roleXmit is the capture section's sender.
const roleXmit = "xmit"

// RunChildIfAsked is called first thing by every program that runs the
// bench (jmxdp's main, the bench package's TestMain). In a process the bench
// started as a helper it plays that role, reading its job from stdin and
// writing the result to stdout, and exits; otherwise it returns at once.
//
// The capture section sends from a process of its own so that the
// receivers measured in the bench process share nothing with the sender:
// not the Go scheduler's Ps, not its garbage collector, not its threads.
// tcpdump, the baseline, is a process of its own too.
func RunChildIfAsked() {
	role := os.Getenv(childEnv)
	if role == "" {
		return
	}
	err := runChild(role, os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jmxdp bench helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(role string, in io.Reader, out io.Writer) error {
	if role != roleXmit {
		return fmt.Errorf("unknown role %q", role)
	}
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

// sendFromChild runs xmit with o in a process of its own (this executable,
// re-executed), all of whose threads run on cpus, and returns its stats.
func sendFromChild(ctx context.Context, o xmit.Options, cpus []int) (xmit.Stats, error) {
	var st xmit.Stats
	exe, err := os.Executable()
	if err != nil {
		return st, fmt.Errorf("find this executable: %w", err)
	}
	job, err := json.Marshal(o)
	if err != nil {
		return st, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), childEnv+"="+roleXmit)
	cmd.Stdin = bytes.NewReader(job)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A child starts on the CPUs of the thread that forks it, every thread
	// it ever makes included: fork from a thread pinned to cpus.
	if err := startPinned(cmd, cpus); err != nil {
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
// thread is not given back to Go: it ends with the goroutine.
func startPinned(cmd *exec.Cmd, cpus []int) error {
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
		errc <- cmd.Start()
	}()
	return <-errc
}
