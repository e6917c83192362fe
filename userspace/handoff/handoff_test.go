package handoff

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// script writes an executable /bin/sh script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func newRunner(t *testing.T, cfg Config) *Runner {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(10 * time.Second) })
	return r
}

func settled(r *Runner) func() bool {
	return func() bool { s := r.Stats(); return s.Queued == 0 && s.Running == 0 }
}

func TestArgs(t *testing.T) {
	for _, c := range []struct {
		argv, want []string
	}{
		{[]string{"/bin/h"}, []string{"/bin/h", "/d/f"}},
		{[]string{"/bin/h", "--in", "{path}"}, []string{"/bin/h", "--in", "/d/f"}},
		{[]string{"/bin/h", "--in={path}", "{path}.done"}, []string{"/bin/h", "--in=/d/f", "/d/f.done"}},
	} {
		if got := Args(c.argv, "/d/f"); !slices.Equal(got, c.want) {
			t.Errorf("Args(%q) = %q, want %q", c.argv, got, c.want)
		}
	}
}

func TestCheckArgv(t *testing.T) {
	for _, argv := range [][]string{nil, {}, {""}, {"bin/handoff"}, {"./handoff"}, {"/bin/true", "a\x00b"}} {
		if err := CheckArgv(argv); err == nil {
			t.Errorf("CheckArgv(%q) accepted", argv)
		}
	}
	for _, argv := range [][]string{{"/bin/true"}, {"true", "{path}"}} {
		if err := CheckArgv(argv); err != nil {
			t.Errorf("CheckArgv(%q): %v", argv, err)
		}
	}
	if _, err := New(Config{Argv: []string{"/nonexistent/handoff"}}); err == nil || !strings.Contains(err.Error(), "/nonexistent/handoff") {
		t.Errorf("New with a missing command: %v", err)
	}
}

// TestArgvRecorded: a real script gets the file's absolute path where
// {path} is, or as its last argument, with no shell in between (a space
// and a quote in the path arrive as they are).
func TestArgvRecorded(t *testing.T) {
	out := t.TempDir()
	rec := script(t, `for a in "$@"; do printf '%s\n' "$a"; done > "`+out+`/$$.args"`)
	dir := t.TempDir()
	file := filepath.Join(dir, "mid-1", "sid-2", "it's a file.pcapng")
	for _, c := range []struct {
		argv []string
		want []string
	}{
		{[]string{rec, "--in", "{path}", "x{path}y"}, []string{"--in", file, "x" + file + "y"}},
		{[]string{rec, "-v"}, []string{"-v", file}},
	} {
		for _, f := range must(filepath.Glob(filepath.Join(out, "*.args"))) {
			os.Remove(f)
		}
		r := newRunner(t, Config{Argv: c.argv, Workers: 1})
		if !r.Submit(file) {
			t.Fatal("Submit refused")
		}
		testenv.WaitFor(t, "the hand-off", 10*time.Second, settled(r))
		if st := r.Stats(); st.Succeeded != 1 || st.Failed != [NumReasons]uint64{} {
			t.Fatalf("stats %+v", st)
		}
		got := must(filepath.Glob(filepath.Join(out, "*.args")))
		if len(got) != 1 {
			t.Fatalf("want one run recorded, got %v", got)
		}
		data := must(os.ReadFile(got[0]))
		if args := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"); !slices.Equal(args, c.want) {
			t.Errorf("argv %q: script got %q, want %q", c.argv, args, c.want)
		}
	}
	// A relative path is made absolute.
	wd := must(os.Getwd())
	r := newRunner(t, Config{Argv: []string{rec}, Workers: 1})
	for _, f := range must(filepath.Glob(filepath.Join(out, "*.args"))) {
		os.Remove(f)
	}
	r.Submit("rel/x.pcapng")
	testenv.WaitFor(t, "the hand-off", 10*time.Second, settled(r))
	got := must(filepath.Glob(filepath.Join(out, "*.args")))
	if len(got) != 1 || string(must(os.ReadFile(got[0]))) != filepath.Join(wd, "rel/x.pcapng")+"\n" {
		t.Errorf("relative path: recorded %v", got)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestFailures: a non-zero exit and a command gone since the start are
// counted by reason and logged with the file, the output's tail too.
func TestFailures(t *testing.T) {
	var log testenv.LogBuffer
	fail := script(t, `echo "cannot reach the mediation function" >&2; exit 3`)
	r := newRunner(t, Config{Argv: []string{fail}, Logger: log.Logger(), Workers: 1})
	r.Submit("/out/mid-1/sid-2/a.pcapng")
	testenv.WaitFor(t, "the hand-off", 10*time.Second, settled(r))
	st := r.Stats()
	if st.Failed[Exit] != 1 || st.Succeeded != 0 {
		t.Fatalf("stats %+v, want one exit failure", st)
	}
	line := log.String()
	for _, want := range []string{"level=WARN", "file=/out/mid-1/sid-2/a.pcapng", "reason=exit", "exit status 3", "cannot reach the mediation function"} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}

	gone := script(t, "exit 0")
	r2 := newRunner(t, Config{Argv: []string{gone}, Workers: 1})
	os.Remove(gone)
	r2.Submit("/out/x.pcapng")
	testenv.WaitFor(t, "the hand-off", 10*time.Second, settled(r2))
	if st := r2.Stats(); st.Failed[Start] != 1 {
		t.Fatalf("stats %+v, want one start failure", st)
	}
}

// TestTimeoutKillsGroup: a script that outlives the timeout is killed
// with its children (the process group), and counted.
func TestTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	slow := script(t, `sleep 60 & echo $! > `+pidFile+`; wait`)
	var log testenv.LogBuffer
	r := newRunner(t, Config{Argv: []string{slow}, Timeout: 300 * time.Millisecond, Logger: log.Logger(), Workers: 1})
	start := time.Now()
	r.Submit("/out/slow.pcapng")
	testenv.WaitFor(t, "the hand-off", 10*time.Second, settled(r))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v with a 300ms timeout", took)
	}
	if st := r.Stats(); st.Failed[Timeout] != 1 {
		t.Fatalf("stats %+v, want one timeout", st)
	}
	if !strings.Contains(log.String(), "reason=timeout") {
		t.Errorf("log %q", log.String())
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(must(os.ReadFile(pidFile)))))
	if err != nil {
		t.Fatal(err)
	}
	// The child was killed with the group; it is reaped by init, so wait
	// until it is gone rather than a zombie.
	testenv.WaitFor(t, fmt.Sprintf("child %d to die", pid), 10*time.Second, func() bool {
		if err := syscall.Kill(pid, 0); err != nil {
			return true
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(stat), ") Z ")
	})
}

// TestConcurrencyBound: with 2 workers, never more than 2 commands at
// once, and 2 are reached.
func TestConcurrencyBound(t *testing.T) {
	dir := t.TempDir()
	running := filepath.Join(dir, "running")
	os.Mkdir(running, 0o700)
	hook := script(t, `touch `+running+`/$$; ls `+running+` | wc -l >> `+dir+`/seen; sleep 0.2; rm `+running+`/$$`)
	r := newRunner(t, Config{Argv: []string{hook}, Workers: 2})
	for i := range 8 {
		if !r.Submit(fmt.Sprintf("/out/%d.pcapng", i)) {
			t.Fatal("Submit refused")
		}
	}
	testenv.WaitFor(t, "the hand-offs", 10*time.Second, settled(r))
	if st := r.Stats(); st.Succeeded != 8 {
		t.Fatalf("stats %+v", st)
	}
	most := 0
	for _, l := range strings.Fields(string(must(os.ReadFile(filepath.Join(dir, "seen"))))) {
		most = max(most, must(strconv.Atoi(l)))
	}
	if most != 2 {
		t.Errorf("at most %d commands ran at once, want 2", most)
	}
}

// TestQueueFullAndPending: a full queue refuses (and counts) the file;
// Pending holds from Submit to the command's end.
func TestQueueFullAndPending(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	hook := script(t, `while [ ! -e `+release+` ]; do sleep 0.02; done`)
	var log testenv.LogBuffer
	r := newRunner(t, Config{Argv: []string{hook}, Workers: 1, Queue: 1, Logger: log.Logger()})
	r.Submit("/out/a.pcapng")
	testenv.WaitFor(t, "a to run", 10*time.Second, func() bool { return r.Stats().Running == 1 })
	if !r.Submit("/out/b.pcapng") {
		t.Fatal("b refused with room in the queue")
	}
	if r.Submit("/out/c.pcapng") {
		t.Fatal("c accepted with the queue full")
	}
	if !r.Pending("/out/a.pcapng") || !r.Pending("/out/b.pcapng") || r.Pending("/out/c.pcapng") {
		t.Error("Pending wrong while a runs and b waits")
	}
	if st := r.Stats(); st.Failed[QueueFull] != 1 || st.Queued != 1 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(log.String(), "queue_full=1") || !strings.Contains(log.String(), "/out/c.pcapng") {
		t.Errorf("log %q", log.String())
	}
	os.WriteFile(release, nil, 0o600)
	testenv.WaitFor(t, "the hand-offs", 10*time.Second, settled(r))
	if r.Pending("/out/a.pcapng") || r.Pending("/out/b.pcapng") {
		t.Error("still pending after the commands ended")
	}
	if st := r.Stats(); st.Succeeded != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestCloseBounded: Close waits for what runs, then kills it and counts it
// and what never ran as shutdown.
func TestCloseBounded(t *testing.T) {
	hook := script(t, `sleep 30`)
	r, err := New(Config{Argv: []string{hook}, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	r.Submit("/out/a.pcapng")
	r.Submit("/out/b.pcapng")
	testenv.WaitFor(t, "a to run", 10*time.Second, func() bool { return r.Stats().Running == 1 })
	start := time.Now()
	if err := r.Close(200 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "2 files") {
		t.Errorf("Close: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %v", took)
	}
	if st := r.Stats(); st.Failed[Shutdown] != 2 || st.Running != 0 || st.Queued != 0 {
		t.Errorf("stats %+v", st)
	}
	if r.Submit("/out/c.pcapng") {
		t.Error("Submit after Close accepted")
	}

	// What finishes within the wait is not counted.
	quick := script(t, `exit 0`)
	r2, _ := New(Config{Argv: []string{quick}})
	for i := range 10 {
		r2.Submit(fmt.Sprintf("/out/%d.pcapng", i))
	}
	if err := r2.Close(10 * time.Second); err != nil {
		t.Errorf("Close: %v", err)
	}
	if st := r2.Stats(); st.Succeeded != 10 {
		t.Errorf("stats %+v", st)
	}
}
