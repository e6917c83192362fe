package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/gen"
	"github.com/jmxdp/jmxdp/userspace/lab/labtest"
	"github.com/jmxdp/jmxdp/userspace/testenv"
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
	if testing.Short() {
		t.Skip("builds the binary")
	}
	testenv.RequireRoot(t)
	l := labtest.New(t, "jxr")
	bin := filepath.Join(t.TempDir(), "jmxdp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out := filepath.Join(t.TempDir(), "out")
	pin := filepath.Join(loader.BPFFSRoot, "jmxdp-test-"+l.Name)
	t.Cleanup(func() { os.RemoveAll(pin) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--iface", l.HostIface, "--out", out, "--pin-dir", pin, "--max-streams", "4096", "--metrics-addr", "")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "msg=capturing") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("daemon did not start:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s, err := l.Sender()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var frames [][]byte
	for i := range 20 {
		m := gen.Mirror{SrcMAC: l.RouterMAC, DstMAC: l.HostMAC, Router: l.RouterAddr.Addr(), Collector: l.HostAddr.Addr(),
			MID: 9, SID: 9, Inner: gen.InnerIPv4ICMPEcho(l.RouterAddr.Addr(), l.HostAddr.Addr(), 1, uint16(i), 32)}
		f, err := m.Frame()
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	if _, err := s.Send(frames); err != nil {
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
