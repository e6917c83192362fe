package bench

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jmxdp/jmxdp/userspace/natsink"
	"github.com/jmxdp/jmxdp/userspace/natstest"
)

// TestNATSStoredPackets starts a real 3-node cluster the way the section
// does, stores messages with Jmxdp-Packets headers on two subjects, and
// checks the count of messages, packets and subjects; then that a deleted
// stream counts nothing and that a message without a count is an error.
func TestNATSStoredPackets(t *testing.T) {
	c, err := startNATS(natstest.Binary(t), 3, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	nc, js, err := c.connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: natsink.DefaultStream, Subjects: []string{"jmxdp.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	pub := func(subject, packets string) {
		t.Helper()
		m := nats.NewMsg(subject)
		if packets != "" {
			m.Header.Set(natsink.HeaderPackets, packets)
		}
		m.Data = []byte("x")
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	want := uint64(0)
	for i := range 5000 { // more than one fetch
		n := i%7 + 1
		want += uint64(n)
		pub(natsink.Subject(1, uint32(i%2+1)), strconv.Itoa(n))
	}
	msgs, packets, subjects, err := c.storedPackets(natsink.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if msgs != 5000 || packets != want || subjects != 2 {
		t.Errorf("stored: %d messages, %d packets, %d subjects; want 5000, %d, 2", msgs, packets, subjects, want)
	}

	if err := c.deleteStream(natsink.DefaultStream); err != nil {
		t.Fatal(err)
	}
	if msgs, packets, subjects, err := c.storedPackets(natsink.DefaultStream); err != nil || msgs+packets != 0 || subjects != 0 {
		t.Errorf("after delete: %d, %d, %d, %v; want nothing", msgs, packets, subjects, err)
	}
	if err := c.deleteStream(natsink.DefaultStream); err != nil {
		t.Errorf("deleting a missing stream: %v", err)
	}

	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: natsink.DefaultStream, Subjects: []string{"jmxdp.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	pub(natsink.Subject(2, 2), "")
	if _, _, _, err := c.storedPackets(natsink.DefaultStream); err == nil || !strings.Contains(err.Error(), natsink.HeaderPackets) {
		t.Errorf("a message without %s: err %v", natsink.HeaderPackets, err)
	}
}

// TestNATSFigures: each cluster's CPU per frame is against the file
// sink's, with the 2x target, its loss is sent minus stored, and the
// loss-free rates are against the file sink's.
func TestNATSFigures(t *testing.T) {
	run := func(cpu, idle time.Duration, sent, written uint64) cpuRun {
		return cpuRun{traffic: captureStep{CPU: cpu, Sent: sent, Written: written, Loss: 1 - float64(written)/float64(sent)}, idle: captureStep{CPU: idle}}
	}
	res := []cpuResult{{c: cpuCase{name: "3000", intercepts: 300, sessions: 10}, runs: map[string]cpuRun{
		"jmxdp":  run(3*time.Second, time.Second, 1000_000, 1000_000),  // 2000 ns/frame
		"nats-1": run(5*time.Second, time.Second, 1000_000, 1000_000),  // 4000: 2x, met
		"nats-3": run(6*time.Second, time.Second, 1000_000, 900_000)}}} // 5556: missed, 100k lost
	lad := func(rates ...float64) *captureLadders {
		l := &captureLadders{}
		var steps []captureStep
		for _, r := range rates {
			steps = append(steps, captureStep{Offered: r, Sent: 10, Written: 10})
		}
		l.add(steps)
		return l
	}
	lads := map[string]*captureLadders{"jmxdp": lad(100e3, 200e3), "nats-1": lad(100e3), "nats-3": lad(50e3)}
	figs := natsFigures(res, lads)
	by := map[string]Figure{}
	for _, f := range figs {
		f.check()
		by[f.Name] = f
	}
	f := by["nats_cpu_3000_nats1"]
	if f.Value != 4000 || f.Baseline != 2000 || f.Ratio != 2 || f.Target == nil || f.Met == nil || !*f.Met {
		t.Errorf("nats-1 CPU: %+v", f)
	}
	f = by["nats_cpu_3000_nats3"]
	if f.Ratio <= 2 || f.Met == nil || *f.Met {
		t.Errorf("nats-3 CPU: %+v", f)
	}
	if l := by["nats_loss_3000_nats3"]; l.Value != 100_000 || l.Baseline != 1000_000 {
		t.Errorf("nats-3 loss: %+v", l)
	}
	if g := by["nats_lossfree_nats3"]; g.Value != 50 || g.Baseline != 200 || g.Ratio != 0.25 {
		t.Errorf("nats-3 loss-free: %+v", g)
	}
	if _, ok := by["nats_lossfree_files"]; !ok {
		t.Errorf("no file sink loss-free figure: %v", figs)
	}
}
