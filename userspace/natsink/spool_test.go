package natsink

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/natstest"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// A spool keeps its records in order across a reopen and cuts a torn
// tail off (what a power cut leaves) instead of refusing the segment.
func TestSpoolReopenAndTornTail(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	sp, err := openSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := sp.add(&msg{subject: "jmxdp.1.2", id: fmt.Sprint("id-", i), routers: "192.0.2.1", packets: i, data: bytes.Repeat([]byte{byte(i)}, 100+i)}); err != nil {
			t.Fatal(err)
		}
	}
	sp.close()
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	f, _ := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3}) // a record cut short
	f.Close()
	sp, err = openSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if sp.records != 5 || sp.empty() {
		t.Fatalf("%d records after reopening", sp.records)
	}
	recs, err := sp.oldest()
	if err != nil || len(recs) != 5 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	for i, m := range recs {
		if m.id != fmt.Sprint("id-", i) || m.packets != i || len(m.data) != 100+i || m.subject != "jmxdp.1.2" || m.routers != "192.0.2.1" {
			t.Fatalf("record %d: %+v", i, m)
		}
	}
	if err := sp.dropOldest(len(recs)); err != nil || !sp.empty() || sp.size != 0 {
		t.Fatalf("after the replay: %v, %d records, %d bytes", err, sp.records, sp.size)
	}
	if err := sp.add(&msg{subject: "s", id: "big", data: make([]byte, 2<<20)}); err != ErrSpoolFull {
		t.Fatalf("a record past the limit: %v", err)
	}
}

// Started while the cluster is down, stopped before it is back: every
// batch is spooled (none lost), and the next start, with the cluster up,
// re-sends them first, in order.
func TestSpoolAcrossRestart(t *testing.T) {
	c := natstest.Start(t, 1)
	c.Kill()
	spool := filepath.Join(t.TempDir(), "spool")
	cfg := Config{URLs: c.URLs(), SpoolDir: spool, BatchPackets: 10, MaxBytes: 64 << 20, StopTimeout: 300 * time.Millisecond, Logger: testLogger(t)}
	s, err := New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := feed(t, s.Shards()[0], keys, 1000, 0, nil)
	s.Close()
	st := s.Stats()
	// 1000 packets over 3 streams in batches of 10: 33 full ones and the
	// rest of each stream at the stop.
	const batches = 102
	if st.Spooled != batches || st.SpoolBatches != batches || st.Acked != 0 || st.PacketsDropped != 0 {
		t.Fatalf("with the cluster down: %+v", st)
	}
	c.Restart(t)
	s, err = New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.Stats().Resent < batches && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	s.Close()
	if st := s.Stats(); st.Resent != batches || st.SpoolBatches != 0 || st.PacketsAcked != 1000 {
		t.Fatalf("after the restart: %+v", st)
	}
	_, js := c.Connect(t)
	check(t, collect(t, js, DefaultStream), want, true)
}

// A spool at its limit drops batches, counted by reason and in packets.
func TestSpoolFull(t *testing.T) {
	c := natstest.Start(t, 1)
	c.Kill()
	s, err := New(Config{URLs: c.URLs(), SpoolDir: filepath.Join(t.TempDir(), "spool"), SpoolMax: 8 << 10, BatchPackets: 10,
		StopTimeout: 100 * time.Millisecond, Logger: testLogger(t)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	feed(t, s.Shards()[0], keys, 1000, 0, nil)
	s.Close()
	st := s.Stats()
	if st.Dropped[DropSpoolFull] == 0 || st.Spooled == 0 || st.Spooled+st.Dropped[DropSpoolFull] != 102 ||
		st.PacketsDropped == 0 || st.SpoolBytes > 8<<10 || s.WriterStats().Drops[writer.DropOther] != st.PacketsDropped {
		t.Fatalf("stats %+v", st)
	}
}

// A write that fails loses the buffered records, and only those: they
// are counted for takeLoss, cut off the segment, and the records before
// and after them are read back whole.
func TestSpoolFailedWriteIsCounted(t *testing.T) {
	sp, err := openSpool(filepath.Join(t.TempDir(), "spool"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(id string, packets int) *msg {
		return &msg{subject: "jmxdp.1.2", id: id, routers: "192.0.2.1", packets: packets, data: bytes.Repeat([]byte{1}, 100)}
	}
	if err := sp.add(rec("before", 1)); err != nil {
		t.Fatal(err)
	}
	sp.flush()
	for i := range 3 {
		if err := sp.add(rec(fmt.Sprint("lost-", i), 2)); err != nil {
			t.Fatal(err)
		}
	}
	good := sp.cur
	ro, err := os.Open(good.Name()) // read-only: the write fails
	if err != nil {
		t.Fatal(err)
	}
	sp.cur = ro
	sp.flush()
	ro.Close()
	sp.cur = good
	if recs, packets, err := sp.takeLoss(); recs != 3 || packets != 6 || err == nil {
		t.Fatalf("takeLoss = %d records, %d packets, %v; want 3, 6 and the error", recs, packets, err)
	}
	if sp.records != 1 {
		t.Fatalf("%d records counted, want 1", sp.records)
	}
	if err := sp.add(rec("after", 1)); err != nil {
		t.Fatal(err)
	}
	got, err := sp.oldest()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].id != "before" || got[1].id != "after" || sp.records != 2 {
		t.Fatalf("read back %d records (%d counted): %v", len(got), sp.records, got)
	}
}
