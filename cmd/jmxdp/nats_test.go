package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/natstest"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
)

// End to end: `jmxdp run --sink` captures mirrored frames on a veth lab
// and publishes them to a real 3-node cluster with three replicas; after
// SIGTERM, `jmxdp export --idle-exit` writes them to files that hold
// exactly the mirrored packets, byte for byte.
func TestRunSinkNATSThenExport(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	testenv.RequireRoot(t)
	c := natstest.Start(t, 3)
	l := labtest.New(t, "jxn")
	bin := filepath.Join(t.TempDir(), "jmxdp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	tmp := t.TempDir()
	pin := filepath.Join(loader.BPFFSRoot, "jmxdp-test-"+l.Name)
	t.Cleanup(func() { os.RemoveAll(pin) })
	cfg := filepath.Join(tmp, "jmxdp.yaml")
	os.WriteFile(cfg, []byte("sink:\n  max_bytes: 256MiB\n"), 0o600)
	spool := filepath.Join(tmp, "spool")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--iface", l.HostIface, "--out", filepath.Join(tmp, "unused"),
		"--pin-dir", pin, "--max-streams", "4096", "--metrics-addr", "", "--sink", c.URLs(), "--nats-replicas", "3", "--spool-dir", spool)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(stderr.String(), "msg=capturing") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("daemon did not start:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fi, err := os.Stat(spool); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("--spool-dir %s: %v %v", spool, fi, err)
	}
	s, err := l.Sender()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var frames, inner [][]byte
	for i := range 500 {
		in := gen.InnerIPv4ICMPEcho(l.RouterAddr.Addr(), l.HostAddr.Addr(), 1, uint16(i), 32+i%64)
		m := gen.Mirror{SrcMAC: l.RouterMAC, DstMAC: l.HostMAC, Router: l.RouterAddr.Addr(), Collector: l.HostAddr.Addr(),
			MID: 11, SID: 22, Inner: in}
		f, err := m.Frame()
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
		inner = append(inner, in)
	}
	for i := 0; i < len(frames); i += 50 {
		if _, err := s.Send(frames[i : i+50]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "every batch is in the stream") || !strings.Contains(stderr.String(), "replicas=3") {
		t.Fatalf("the stop did not report every batch stored:\n%s", stderr.String())
	}
	out := filepath.Join(tmp, "out")
	exp := exec.CommandContext(ctx, bin, "export", "--nats", c.URLs(), "--out", out, "--idle-exit", "2s")
	if o, err := exp.CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, o)
	}
	files, _ := filepath.Glob(filepath.Join(out, "mid-11", "sid-22", "*.pcapng"))
	var got [][]byte
	for _, name := range files {
		for _, p := range testenv.MustReadPcapng(t, name, testenv.Mixed) {
			got = append(got, p.Data)
		}
	}
	if len(got) != len(inner) {
		t.Fatalf("%d packets exported, %d mirrored\n%s", len(got), len(inner), stderr.String())
	}
	for i := range inner {
		if !bytes.Equal(got[i], inner[i]) {
			t.Fatalf("packet %d differs from the mirrored one", i)
		}
	}
}
