// Package netns runs code inside named network namespaces (the ones `ip
// netns` manages under /run/netns) and creates and removes them.
package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is where iproute2 keeps named network namespaces.
const Dir = "/run/netns"

// Path is the file of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

// validName rejects names that are not a single path element.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid network namespace name %q", name)
	}
	return nil
}

// Do runs fn on an OS thread switched into the named namespace and returns
// what fn returns. Sockets fn creates stay in that namespace after Do
// returns; goroutines fn starts do not run in it. An empty name runs fn in
// the caller's namespace.
//
// fn runs on a goroutine of its own, locked to its thread: the caller's
// thread is never switched. If the thread cannot be switched back it stays
// locked, so the runtime discards it when that goroutine ends. A panic in
// fn is re-raised in the caller.
func Do(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	if err := validName(name); err != nil {
		return err
	}
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		var res result
		defer func() { done <- res }()
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			res.err = fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(Path(name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			if errors.Is(err, unix.ENOENT) {
				res.err = fmt.Errorf("network namespace %q does not exist (no %s): %w", name, Path(name), fs.ErrNotExist)
			} else {
				res.err = fmt.Errorf("open network namespace %q: %w", name, err)
			}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			res.err = fmt.Errorf("enter network namespace %q: %w", name, err)
			return
		}
		defer func() {
			if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
				// Stay locked: this thread dies with the goroutine.
				if res.err == nil && res.panic == nil {
					res.err = fmt.Errorf("leave network namespace %q: %w", name, err)
				}
				return
			}
			runtime.UnlockOSThread()
		}()
		defer func() {
			if p := recover(); p != nil {
				res.err, res.panic = nil, p
			}
		}()
		// Overwritten when fn returns; stays if fn calls runtime.Goexit.
		res.err = errors.New("netns.Do: fn did not return (runtime.Goexit)")
		res.err = fn()
	}()
	res := <-done
	if res.panic != nil {
		panic(res.panic)
	}
	return res.err
}

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	if validName(name) != nil {
		return false
	}
	_, err := os.Stat(Path(name))
	return err == nil
}

// Add creates the named namespace with `ip netns add`.
func Add(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	if Exists(name) {
		return fmt.Errorf("network namespace %q already exists: %w", name, fs.ErrExist)
	}
	if err := IP("netns", "add", name); err != nil {
		return fmt.Errorf("create network namespace %q: %w", name, err)
	}
	return nil
}

// Delete removes the named namespace with `ip netns del`. The kernel frees
// it, and the interfaces in it, once no process or socket uses it. Deleting
// a namespace that does not exist is an error wrapping fs.ErrNotExist.
func Delete(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	if !Exists(name) {
		return fmt.Errorf("network namespace %q does not exist: %w", name, fs.ErrNotExist)
	}
	if err := IP("netns", "del", name); err != nil {
		return fmt.Errorf("delete network namespace %q: %w", name, err)
	}
	return nil
}

// IP runs iproute2's ip, folding its stderr into the error (lab runs
// its commands with it too).
func IP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("ip %s: %w (install iproute2)", strings.Join(args, " "), err)
		}
		if msg == "" {
			return fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
		}
		return fmt.Errorf("ip %s: %s (%w)", strings.Join(args, " "), msg, err)
	}
	return nil
}
