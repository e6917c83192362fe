// Package natstest runs real nats-server processes for tests: one node or
// a cluster of several on loopback, each with its JetStream directory in
// the test's temporary directory, killed and cleaned up when the test
// ends. The server is the module's `go tool nats-server`, built once (the
// go command caches it) and found with `go tool -n`.
package natstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary is the nats-server of the module's tool dependency, built on
// first use.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		cmd := exec.Command("go", "tool", "-n", "nats-server")
		cmd.Dir = testenv.RepoRoot()
		out, err := cmd.Output()
		if err != nil {
			binErr = fmt.Errorf("go tool -n nats-server: %w", err)
			if ee, ok := err.(*exec.ExitError); ok {
				binErr = fmt.Errorf("%w: %s", binErr, ee.Stderr)
			}
			return
		}
		binPath = strings.TrimSpace(string(out))
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// Server is one nats-server process.
type Server struct {
	Name              string
	Port, ClusterPort int
	Dir               string
	conf              string
	t                 testing.TB
	cmd               *exec.Cmd
	exited            chan struct{}
}

// Cluster is n servers routed to each other (n = 1: a lone server).
type Cluster struct {
	Servers []*Server
}

// Start starts an n-node cluster with JetStream and waits until it has
// a JetStream meta leader.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := Binary(t)
	c := &Cluster{}
	base := t.TempDir()
	for i := range n {
		s := &Server{Name: fmt.Sprintf("n%d", i+1), Port: testenv.FreePort(t), t: t}
		if n > 1 {
			s.ClusterPort = testenv.FreePort(t)
		}
		s.Dir = filepath.Join(base, s.Name)
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\n", s.Name, s.Port)
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: 64MB\n  max_file_store: 2GB\n}\n", filepath.Join(s.Dir, "js"))
		if n > 1 {
			var routes []string
			for _, o := range c.Servers {
				if o != s {
					routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.ClusterPort))
				}
			}
			fmt.Fprintf(&b, "cluster {\n  name: jmxdp-test\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n", s.ClusterPort, strings.Join(routes, ", "))
		}
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		s.conf = filepath.Join(s.Dir, "server.conf")
		if err := os.WriteFile(s.conf, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		s.start(bin)
	}
	t.Cleanup(c.Kill)
	c.WaitReady(t)
	return c
}

func (s *Server) start(bin string) {
	s.t.Helper()
	cmd := exec.Command(bin, "-c", s.conf)
	log, err := os.OpenFile(filepath.Join(s.Dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		s.t.Fatalf("start nats-server %s: %v", s.Name, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(s.exited) }()
}

// Kill SIGKILLs the server and waits for it to be gone.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Stop stops the server with SIGTERM (a clean shutdown).
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

func (s *Server) signal(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Restart starts a stopped server again on the same ports and directory.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd == nil {
		s.start(Binary(s.t))
	}
}

// URL is the server's client URL.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.Port) }

// URLs are every server's client URL, comma-separated.
func (c *Cluster) URLs() string {
	var u []string
	for _, s := range c.Servers {
		u = append(u, s.URL())
	}
	return strings.Join(u, ",")
}

// Kill kills every server.
func (c *Cluster) Kill() {
	for _, s := range c.Servers {
		s.Kill()
	}
}

// Stop stops every server cleanly.
func (c *Cluster) Stop() {
	for _, s := range c.Servers {
		s.Stop()
	}
}

// Restart starts every stopped server again and waits until JetStream
// answers.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	for _, s := range c.Servers {
		s.Restart()
	}
	c.WaitReady(t)
}

// Log is a server's log, for a failing test's report.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
	return string(b)
}

// WaitReady waits (30 s at most) until JetStream answers account
// requests, which needs a meta leader in a cluster.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		last = func() error {
			nc, err := nats.Connect(c.URLs(), nats.Timeout(time.Second))
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err = js.AccountInfo(ctx)
			return err
		}()
		if last == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, s := range c.Servers {
		t.Logf("%s log:\n%s", s.Name, s.Log())
	}
	t.Fatalf("nats cluster not ready after 30s: %v", last)
}

// Connect is a client of the cluster, closed when the test ends.
func (c *Cluster) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
