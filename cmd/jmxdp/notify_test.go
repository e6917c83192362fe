package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
)

func attached(iface string) bool {
	out, _ := exec.Command("ip", "-d", "link", "show", iface).CombinedOutput()
	return strings.Contains(string(out), "prog/xdp")
}

// The binary `make build` makes, run as systemd runs it (Type=notify,
// $NOTIFY_SOCKET) on a lab's veth: READY=1 arrives once the program is
// attached, with jmxdp_build_info carrying make's version and revision;
// SIGTERM brings STOPPING=1 and a clean exit; with --log-format json every
// line of the log is a JSON object.
func TestRunNotifiesReadyAndStopping(t *testing.T) {
	bin := makeBuild(t)
	testenv.RequireRoot(t)
	l := labtest.New(t, "jxn")
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	next := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}

	pin := filepath.Join(loader.BPFFSRoot, "jmxdp-test-"+l.Name)
	t.Cleanup(func() { exec.Command("rm", "-rf", pin).Run() })
	port := testenv.FreePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--log-format", "json", "run", "--iface", l.HostIface, "--out", filepath.Join(t.TempDir(), "out"),
		"--pin-dir", pin, "--max-streams", "4096", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Env = append(cmd.Environ(), "NOTIFY_SOCKET="+sock)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if attached(l.HostIface) {
		t.Fatal("attached before the start")
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	ready := next()
	// Checked at once: the program must already be there when systemd hears
	// READY=1.
	if !attached(l.HostIface) {
		t.Errorf("READY=1 before the program is attached")
	}
	if !strings.HasPrefix(ready, "READY=1\nSTATUS=capturing on "+l.HostIface) {
		t.Errorf("first notification %q, want READY=1 with a status", ready)
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	describe, rev := gitOut(t, "describe", "--tags", "--always", "--dirty"), gitOut(t, "rev-parse", "HEAD")
	if describe != "" {
		want := fmt.Sprintf(`jmxdp_build_info{goversion="%s",revision="%s",version="%s"} 1`, goVersion(t, bin), rev, describe)
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(string(body), "jmxdp_build_info"))
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if got := next(); !strings.HasPrefix(got, "STOPPING=1\n") {
		t.Errorf("after SIGTERM %q, want STOPPING=1", got)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) || err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}

	msgs := map[string]bool{}
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("log line is not JSON: %q: %v", sc.Text(), err)
			continue
		}
		msg, _ := line["msg"].(string)
		msgs[msg] = true
		if line["level"] == nil || line["time"] == nil {
			t.Errorf("log line without level or time: %q", sc.Text())
		}
	}
	for _, m := range []string{"capturing", "stopped"} {
		if !msgs[m] {
			t.Errorf("no %q in the JSON log", m)
		}
	}
}

// goVersion is the Go version the binary was built with.
func goVersion(t *testing.T, bin string) string {
	out, err := exec.Command("go", "version", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	return f[len(f)-1]
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
