package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
)

// Bad configs and flags are refused before anything is loaded, with a
// message naming the problem.
func TestRunRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notDir := write("file", "x")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "no interface"},
		{[]string{"run", "--iface", "eth0", "--port", "0"}, "not a UDP port"},
		{[]string{"run", "--iface", "eth0", "--default-action", "keep"}, "unknown action"},
		{[]string{"run", "--iface", "eth0", "--allow", "10.0.0.0/33"}, "--allow"},
		{[]string{"run", "--iface", "eth0", "--rotate-size", "lots"}, "--rotate-size"},
		{[]string{"run", "--iface", "eth0", "--queues", "0,x"}, "not a queue number"},
		{[]string{"run", "--iface", "eth0", "--xdp-mode", "turbo"}, "xdp_mode"},
		{[]string{"run", "--iface", "eth0", "--max-open-files", "0"}, "max_open_files"},
		{[]string{"run", "--iface", "eth0", "--bogus"}, "unknown flag"},
		{[]string{"run", "--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
		{[]string{"run", "--config", write("unknown.yaml", "interface: eth0\nportz: [1]\n")}, "portz"},
		{[]string{"run", "--config", write("mid.yaml", "interface: eth0\npolicy:\n  - {mid: 0x40000000, action: count}\n")}, "mid"},
		{[]string{"run", "--config", write("prefix.yaml", "interface: eth0\nallowlist: [192.0.2.1/24]\n")}, "host bits"},
		{[]string{"detach"}, "--iface"},
	} {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("jmxdp %s: error %v, want %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	// An unusable output directory is refused at start (as root; the
	// check runs before anything is loaded).
	if os.Geteuid() == 0 {
		_, err := run(t, "run", "--iface", "lo", "--out", filepath.Join(notDir, "sub"), "--pin-dir", filepath.Join(loader.BPFFSRoot, "jmxdp-test-unused"))
		if err == nil || !strings.Contains(err.Error(), notDir) {
			t.Errorf("output directory under a file: %v", err)
		}
	}
}

// The binary, run in a lab and stopped with SIGTERM: it writes the files,
// finalizes them, detaches and exits 0.
func TestRunBinarySIGTERM(t *testing.T) {
	e := newBinaryEnv(t, "jxr")
	l, out := e.lab, e.out
	cmd, stderr := e.start(t, e.runArgs()...)
	s, err := l.Sender()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(icmpMirrors(t, l, 9, 9, 0, 0, 20)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) || err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	files, _ := filepath.Glob(filepath.Join(out, "mid-9", "sid-9", "*.pcapng"))
	parts, _ := filepath.Glob(filepath.Join(out, "mid-9", "sid-9", "*.part"))
	if len(files) != 1 || len(parts) != 0 {
		t.Fatalf("files %v, in progress %v:\n%s", files, parts, stderr.String())
	}
	if st, err := os.Stat(files[0]); err != nil || st.Mode().Perm() != 0o600 || st.Size() == 0 {
		t.Errorf("%s: %v %v", files[0], err, st)
	}
	if o, _ := exec.Command("ip", "-d", "link", "show", l.HostIface).CombinedOutput(); strings.Contains(string(o), "prog/xdp") {
		t.Error("still attached after SIGTERM")
	}
}

// detach validates --iface before it builds a path from it, says when
// there was nothing to detach, and --purge removes only what jmxdp pins
// (issue 19 item 1, issue 13 item 4).
func TestDetachRefusesPathsAndSaysNothing(t *testing.T) {
	testenv.RequireRoot(t)
	base := filepath.Join(loader.BPFFSRoot, fmt.Sprintf("jmxdp-test-detach-%d", os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(base) })
	// An instance's pin dir with something that is not jmxdp's beside it.
	dir := filepath.Join(base, "jmxdt0")
	p, err := loader.Load(loader.Options{MaxStreams: 1024, PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	foreign := filepath.Join(dir, "not-jmxdp")
	if err := os.Mkdir(foreign, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"..", ".", "a/b", "../../..", "sixteen-chars-xx"} {
		if _, err := run(t, "detach", "--iface", bad, "--purge", "--pin-dir", dir); err == nil || !strings.Contains(err.Error(), "interface name") {
			t.Errorf("detach --iface %q: %v", bad, err)
		}
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("a refused detach removed something: %v", err)
	}
	out, err := run(t, "detach", "--iface", "jmxdt0", "--pin-dir", base)
	if err != nil || !strings.Contains(out, "nothing to detach") {
		t.Errorf("detach of what was never attached: %q, %v", out, err)
	}
	out, err = run(t, "detach", "--iface", "jmxdt0", "--purge", "--pin-dir", base)
	if err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("purge: %q, %v", out, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "not-jmxdp" {
		t.Errorf("after purge the pin dir holds %v (%v), want only what jmxdp did not pin", ents, err)
	}
}

// SIGHUP reloads the config file: the daemon logs what changed and applies
// it (a new port); an invalid file is refused with its file, line and key,
// and the daemon goes on with the old config; SIGTERM still stops it
// cleanly, every file completed and the program detached (issue 13, bug 2).
func TestRunBinarySIGHUPReloads(t *testing.T) {
	e := newBinaryEnv(t, "jxh")
	l, out, pin := e.lab, e.out, e.pin
	file := filepath.Join(t.TempDir(), "jmxdp.yaml")
	base := "interface: " + l.HostIface + "\noutput:\n  dir: " + out + "\ncapture:\n  pin_dir: " + pin + "\n  max_streams: 4096\nmetrics:\n  addr: \"\"\n"
	if err := os.WriteFile(file, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, stderr := e.start(t, "run", "--config", file)
	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(stderr.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", what, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLog("msg=capturing")
	ports := func() []uint16 {
		t.Helper()
		m, err := maps.OpenPinned(filepath.Join(pin, l.HostIface))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		p, err := m.Ports()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.WriteFile(file, []byte(base+"ports: [30030, 30099]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("msg=reloaded")
	if !strings.Contains(stderr.String(), "ports: [30030] -> [30030 30099]") {
		t.Errorf("reload log does not say what changed:\n%s", stderr.String())
	}
	if p := ports(); !slices.Equal(p, []uint16{30030, 30099}) {
		t.Errorf("ports after reload %v", p)
	}
	// An invalid file: refused with file:line: key, nothing changes.
	if err := os.WriteFile(file, []byte(base+"ports: [30030, 70000]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("reload refused")
	if want := filepath.Base(file) + ":9: ports[1]: 70000"; !strings.Contains(stderr.String(), want) {
		t.Errorf("refusal does not name %q:\n%s", want, stderr.String())
	}
	if p := ports(); !slices.Equal(p, []uint16{30030, 30099}) {
		t.Errorf("ports after a refused reload %v", p)
	}
	// Still capturing, on the reloaded port.
	s, err := l.Sender()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(icmpMirrors(t, l, 9, 9, 30099, 0, 10)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after HUPs and TERM: %v\n%s", err, stderr.String())
	}
	files, _ := filepath.Glob(filepath.Join(out, "mid-9", "sid-9", "*.pcapng"))
	parts, _ := filepath.Glob(filepath.Join(out, "*", "*", "*.part"))
	if len(files) != 1 || len(parts) != 0 {
		t.Errorf("files %v, in progress %v:\n%s", files, parts, stderr.String())
	}
	if o, _ := exec.Command("ip", "-d", "link", "show", l.HostIface).CombinedOutput(); strings.Contains(string(o), "prog/xdp") {
		t.Error("still attached after SIGTERM")
	}
}

// syncBuf is a bytes.Buffer safe for the child's writes and the test's reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A SIGKILL loses what was in flight (rings, queue, buffers); the next
// start reports it as "lost in the previous run" from the kernel's
// redirect counter and the last checkpoint, an upper bound of what is
// missing from the files; a clean stop leaves nothing to report (issue 19
// item 10).
func TestRunBinaryReportsLossAfterSIGKILL(t *testing.T) {
	e := newBinaryEnv(t, "jxk")
	l, out := e.lab, e.out
	start := func() (*exec.Cmd, *syncBuf) { t.Helper(); return e.start(t, e.runArgs()...) }
	first, _ := start()
	s, err := l.Sender()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	seq := 0
	batch := func() {
		frames := icmpMirrors(t, l, 9, 9, 0, seq+1, 20)
		seq += len(frames)
		if _, err := s.Send(frames); err != nil {
			t.Fatal(err)
		}
	}
	// Half a second of traffic, then a kill while packets sit in the
	// writer's buffers (flush_interval 1s).
	for range 25 {
		batch()
		time.Sleep(20 * time.Millisecond)
	}
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()

	second, log2 := start()
	line := ""
	for _, l := range strings.Split(log2.String(), "\n") {
		if strings.Contains(l, "did not stop cleanly") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no report of the killed run:\n%s", log2.String())
	}
	field := func(name string) uint64 {
		t.Helper()
		_, rest, ok := strings.Cut(line, " "+name+"=")
		if !ok {
			t.Fatalf("no %s in %q", name, line)
		}
		v, _, _ := strings.Cut(rest, " ")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
		return n
	}
	lost, redirected := field("lost_in_previous_run"), field("redirected")
	if redirected != uint64(seq) {
		t.Errorf("redirected %d, want the %d frames sent", redirected, seq)
	}
	// What the files hold once the second run recovered them (in the
	// background: a stop before it is over leaves the rest .part).
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log2.String(), "msg=\"completed the unfinished files"); {
		if time.Now().After(deadline) {
			t.Fatalf("the second run did not complete the first's files:\n%s", log2.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	second.Process.Signal(syscall.SIGTERM)
	if err := second.Wait(); err != nil {
		t.Fatalf("second run: %v\n%s", err, log2.String())
	}
	var inFiles uint64
	files, _ := filepath.Glob(filepath.Join(out, "mid-9", "sid-9", "*.pcapng"))
	for _, f := range files {
		inFiles += uint64(len(tsharkFrames(t, f)))
	}
	if lost+inFiles < redirected || lost > redirected {
		t.Errorf("lost %d, in files %d, redirected %d: lost must bound what the files miss", lost, inFiles, redirected)
	}
	if lost == 0 {
		t.Errorf("a kill with packets in the buffers reported nothing lost (in files %d of %d)", inFiles, redirected)
	}
	t.Logf("redirected %d, in files %d, reported lost %d", redirected, inFiles, lost)
	// After the clean stop, the next start reports nothing.
	third, log3 := start()
	third.Process.Signal(syscall.SIGTERM)
	third.Wait()
	if strings.Contains(log3.String(), "did not stop cleanly") {
		t.Errorf("a report after a clean stop:\n%s", log3.String())
	}
}

// tsharkFrames reads a file's frames with tshark (a real reader).
func tsharkFrames(t *testing.T, path string) []string {
	t.Helper()
	tshark := testenv.Tool(t, "tshark")
	out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", path, err)
	}
	return strings.Fields(string(out))
}

// icmpMirrors are n mirrored ICMP echoes of stream (mid, sid) from the lab's
// router to port (0: the default), numbered from seq.
func icmpMirrors(t *testing.T, l *lab.Lab, mid, sid uint32, port uint16, seq, n int) [][]byte {
	t.Helper()
	var frames [][]byte
	for i := range n {
		m := gen.Mirror{SrcMAC: l.RouterMAC, DstMAC: l.HostMAC, Router: l.RouterAddr.Addr(), Collector: l.HostAddr.Addr(), Port: port,
			MID: mid, SID: sid, Inner: gen.InnerIPv4ICMPEcho(l.RouterAddr.Addr(), l.HostAddr.Addr(), 1, uint16(seq+i), 32)}
		f, err := m.Frame()
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	return frames
}

// binaryEnv is a lab with a built jmxdp and the pin and output directories
// its runs use.
type binaryEnv struct {
	lab      *lab.Lab
	bin      string
	out, pin string
}

func newBinaryEnv(t *testing.T, prefix string) *binaryEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	testenv.RequireRoot(t)
	l := labtest.New(t, prefix)
	e := &binaryEnv{lab: l, bin: buildBinary(t), out: filepath.Join(t.TempDir(), "out"),
		pin: filepath.Join(loader.BPFFSRoot, "jmxdp-test-"+l.Name)}
	t.Cleanup(func() { os.RemoveAll(e.pin) })
	return e
}

// start runs `jmxdp ARGS` (killed after 2 minutes, or at the test's end)
// and waits up to 10 s for its "capturing" line.
func (e *binaryEnv) start(t *testing.T, args ...string) (*exec.Cmd, *syncBuf) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, e.bin, args...)
	stderr := &syncBuf{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "msg=capturing") {
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not start:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, stderr
}

// runArgs are `run`'s flags for the lab with no config file.
func (e *binaryEnv) runArgs() []string {
	return []string{"run", "--iface", e.lab.HostIface, "--out", e.out, "--pin-dir", e.pin, "--max-streams", "4096", "--metrics-addr", ""}
}
