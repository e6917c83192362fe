package natsink

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/natstest"
)

// streamLeader is the server that leads the stream now.
func streamLeader(t *testing.T, c *natstest.Cluster, s *Sink) *natstest.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info := st.CachedInfo()
	if info.Cluster == nil {
		t.Fatal("no cluster info")
	}
	for _, srv := range c.Servers {
		if srv.Name == info.Cluster.Leader {
			return srv
		}
	}
	t.Fatalf("leader %q is none of the servers", info.Cluster.Leader)
	return nil
}

// SIGKILL the stream's leader under traffic, with three replicas: the
// others elect a new one, the publishes that failed meanwhile are spooled
// and re-sent, and every packet is stored exactly once. Not always in
// order: a batch whose publish failed over can land after batches sent
// after it (docs/scale-out.md).
func TestNodeKilled(t *testing.T) {
	c := natstest.Start(t, 3)
	_, js := c.Connect(t)
	s, err := New(Config{URLs: c.URLs(), SpoolDir: filepath.Join(t.TempDir(), "spool"), Replicas: 3, BatchPackets: 32,
		MaxBytes: 512 << 20, AckTimeout: 2 * time.Second, Logger: testLogger(t)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	const n = 30000
	want := feed(t, s.Shards()[0], keys, n, 4*time.Second, map[int]func(){
		n / 4: func() {
			l := streamLeader(t, c, s)
			t.Logf("SIGKILL the stream leader %s", l.Name)
			l.Kill()
		},
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	t.Logf("stats %+v", st)
	if st.PacketsAcked != n || st.PacketsDropped != 0 || st.SpoolBatches != 0 {
		t.Fatalf("%d of %d packets acked, %d dropped, %d batches left in the spool", st.PacketsAcked, n, st.PacketsDropped, st.SpoolBatches)
	}
	check(t, collect(t, js, DefaultStream), want, false)
}

// Stop the whole cluster for a few seconds under traffic: the batches go
// to the spool (0600 files in a 0700 directory), then reach the stream,
// in order, once it is back; nothing is lost or stored twice.
func TestClusterDown(t *testing.T) {
	c := natstest.Start(t, 3)
	spoolDir := filepath.Join(t.TempDir(), "spool")
	s, err := New(Config{URLs: c.URLs(), SpoolDir: spoolDir, Replicas: 3, BatchPackets: 32,
		MaxBytes: 512 << 20, AckTimeout: 2 * time.Second, Logger: testLogger(t)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	const n = 30000
	var spooled Stats
	want := feed(t, s.Shards()[0], keys, n, 6*time.Second, map[int]func(){
		n / 5: func() { t.Log("stopping the cluster"); c.Kill() },
		n / 2: func() {
			spooled = s.Stats()
			checkModes(t, spoolDir)
			t.Log("starting the cluster again")
			for _, srv := range c.Servers {
				srv.Restart()
			}
		},
	})
	if spooled.Spooled == 0 || spooled.SpoolBytes == 0 {
		t.Fatalf("nothing spooled while the cluster was down: %+v", spooled)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	t.Logf("stats %+v", st)
	if st.PacketsAcked != n || st.PacketsDropped != 0 || st.SpoolBatches != 0 || st.Resent == 0 {
		t.Fatalf("%d of %d packets acked, %d dropped, %d batches left in the spool, %d re-sent", st.PacketsAcked, n, st.PacketsDropped, st.SpoolBatches, st.Resent)
	}
	c.WaitReady(t)
	_, js := c.Connect(t)
	check(t, collect(t, js, DefaultStream), want, true)
}

func checkModes(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spool dir: %v %v", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) == 0 {
		t.Fatal("no spool segment")
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v", e.Name(), fi.Mode())
		}
	}
}
