package natsink

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jmxdp/jmxdp/userspace/natstest"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

var routerA = netip.MustParseAddr("192.0.2.1")

// packet is the i-th packet of stream k: an IPv4-looking payload that
// names its stream and number, of a length that varies with i.
func packet(k writer.Key, i int) []byte {
	b := make([]byte, 40+i%200)
	b[0] = 0x45
	binary.BigEndian.PutUint32(b[4:], k.MID)
	binary.BigEndian.PutUint32(b[8:], k.SID)
	binary.BigEndian.PutUint32(b[12:], uint32(i))
	for j := 16; j < len(b); j++ {
		b[j] = byte(i + j)
	}
	return b
}

// sent is what a test wrote, per stream, in order.
type sent map[writer.Key][][]byte

// feed writes n packets round-robin over keys through sh, ticking as the
// capture does, pacing them over about dur; events[i] runs before packet
// i.
func feed(t *testing.T, sh *Shard, keys []writer.Key, n int, dur time.Duration, events map[int]func()) sent {
	t.Helper()
	out := sent{}
	start := time.Now()
	lastTick := start
	for i := range n {
		if ev := events[i]; ev != nil {
			ev()
		}
		k := keys[i%len(keys)]
		p := packet(k, len(out[k]))
		sh.SetClock(time.Now())
		if !sh.WriteAt(k, uint64(time.Now().UnixNano()), routerA, pcapng.LinkRawIP, p) {
			t.Fatalf("packet %d refused", i)
		}
		out[k] = append(out[k], p)
		if time.Since(lastTick) >= 20*time.Millisecond {
			sh.Tick()
			lastTick = time.Now()
		}
		if want := start.Add(dur * time.Duration(i) / time.Duration(n)); time.Until(want) > 0 {
			time.Sleep(time.Until(want))
		}
	}
	return out
}

type stored struct {
	subject, id string
	packets     int
	data        []byte
}

// collect reads every message of the stream, in stream order.
func collect(t *testing.T, js jetstream.JetStream, stream string) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		var n int
		fmt.Sscan(m.Header.Get(HeaderPackets), &n)
		out = append(out, stored{subject: m.Subject, id: m.Header.Get("Nats-Msg-Id"), packets: n, data: m.Data})
	}
	return out
}

// check asserts that the stream holds exactly the packets sent, once
// each, byte for byte, and unless !ordered in order per stream.
func check(t *testing.T, msgs []stored, want sent, ordered bool) {
	t.Helper()
	got := sent{}
	ids := map[string]bool{}
	for _, m := range msgs {
		if ids[m.id] {
			t.Errorf("Nats-Msg-Id %s stored twice", m.id)
		}
		ids[m.id] = true
		mid, sid, err := pcapng.DecodeSection(m.data, func(p pcapng.SectionPacket) error {
			if p.Router != routerA || p.Kind != pcapng.LinkRawIP {
				return fmt.Errorf("router %v kind %v", p.Router, p.Kind)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("message %s: %v", m.id, err)
		}
		if m.subject != Subject(mid, sid) {
			t.Fatalf("message of stream %d/%d on subject %s", mid, sid, m.subject)
		}
		k := writer.Key{MID: mid, SID: sid}
		pcapng.DecodeSection(m.data, func(p pcapng.SectionPacket) error {
			got[k] = append(got[k], bytes.Clone(p.Data))
			return nil
		})
	}
	for k, w := range want {
		g := got[k]
		if !ordered {
			g, w = sortedCopy(g), sortedCopy(w)
		}
		if len(g) != len(w) {
			t.Errorf("stream %v: %d packets stored, %d sent", k, len(g), len(w))
		}
		for i := range min(len(g), len(w)) {
			if !bytes.Equal(g[i], w[i]) {
				t.Fatalf("stream %v packet %d differs (stored %d bytes, sent %d; first bad order or duplicate)", k, i, len(g[i]), len(w[i]))
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d streams stored, %d sent", len(got), len(want))
	}
}

func sortedCopy(l [][]byte) [][]byte {
	c := slices.Clone(l)
	slices.SortFunc(c, bytes.Compare)
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

var keys = []writer.Key{{MID: 1, SID: 1}, {MID: 1, SID: 2}, {MID: 7, SID: 300}}

// publishAll runs a sink with cfg (servers, spool and logger filled in)
// on a fresh 1-node cluster, feeds it 3000 packets over keys as fast as
// it takes them and closes it.
func publishAll(t *testing.T, cfg Config) (*Sink, jetstream.JetStream, sent) {
	t.Helper()
	c := natstest.Start(t, 1)
	_, js := c.Connect(t)
	cfg.URLs, cfg.SpoolDir, cfg.Logger = c.URLs(), filepath.Join(t.TempDir(), "spool"), testLogger(t)
	s, err := New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := feed(t, s.Shards()[0], keys, 3000, 0, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return s, js, want
}

// A lone server: the sink creates the stream as configured, and every
// packet is stored once, in order, in messages that are pcapng on their
// own (tshark reads one).
func TestPublish(t *testing.T) {
	s, js, want := publishAll(t, Config{BatchPackets: 50, MaxBytes: 256 << 20, MaxAge: time.Hour})
	st := s.Stats()
	if st.Acked == 0 || st.Acked != st.Published || st.Spooled != 0 || st.PacketsAcked != 3000 || st.PacketsAccepted != 3000 {
		t.Fatalf("stats %+v", st)
	}
	msgs := collect(t, js, DefaultStream)
	check(t, msgs, want, true)
	if uint64(len(msgs)) != st.Acked {
		t.Fatalf("%d messages, %d acked", len(msgs), st.Acked)
	}
	for _, m := range msgs {
		if !strings.HasPrefix(m.id, s.Instance()+"-") {
			t.Fatalf("Nats-Msg-Id %q lacks the instance %q", m.id, s.Instance())
		}
	}
	info, err := js.Stream(context.Background(), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	sc := info.CachedInfo().Config
	if sc.Replicas != 1 || sc.MaxBytes != 256<<20 || sc.MaxAge != time.Hour || sc.Discard != jetstream.DiscardNew || sc.Duplicates != DefaultDuplicates {
		t.Fatalf("stream config %+v", sc)
	}
	// One message is a capture file for any pcapng reader.
	if _, err := exec.LookPath("tshark"); err != nil {
		testenv.PartSkip(t, "tshark not installed: the message is not read by tshark")
		return
	}
	f := filepath.Join(t.TempDir(), "one.pcapng")
	os.WriteFile(f, msgs[0].data, 0o600)
	out, err := exec.Command("tshark", "-r", f, "-T", "fields", "-e", "frame.len").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	if n := len(strings.Fields(string(out))); n != msgs[0].packets {
		t.Fatalf("tshark read %d packets of a message of %d", n, msgs[0].packets)
	}
}

// Batches close at the linger time even when a stream is slow.
func TestLinger(t *testing.T) {
	c := natstest.Start(t, 1)
	_, js := c.Connect(t)
	s, err := New(Config{URLs: c.URLs(), SpoolDir: t.TempDir() + "/spool", Linger: 20 * time.Millisecond, MaxBytes: 64 << 20, Logger: testLogger(t)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sh := s.Shards()[0]
	k := keys[0]
	sh.WriteAt(k, 1, routerA, pcapng.LinkRawIP, packet(k, 0))
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Acked == 0 && time.Now().Before(deadline) {
		sh.Tick()
		time.Sleep(10 * time.Millisecond)
	}
	if got := collect(t, js, DefaultStream); len(got) != 1 || got[0].packets != 1 {
		t.Fatalf("after the linger time: %d messages", len(got))
	}
}

// A cluster slower than the traffic (here: an in-flight window of two
// acks, and a message a packet sent as fast as the loop goes): a burst
// waits in memory for the window, and past pendingMax bytes goes to the
// spool and is re-sent, in order, as the acks catch up. Either way no
// batch is dropped from the queue.
func TestSlowCluster(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pendingMax int
		spooled    bool
	}{
		{"burst held in memory", 0, false},
		{"behind past the memory bound: spooled", 4 << 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, js, want := publishAll(t, Config{BatchPackets: 1, MaxInFlight: 2, MaxBytes: 256 << 20, pendingMax: tc.pendingMax})
			st := s.Stats()
			if st.Acked+st.Resent != 3000 || st.Resent != st.Spooled || st.Dropped != [NumDrops]uint64{} ||
				st.PacketsAcked != 3000 || st.SpoolBatches != 0 || st.Pending != 0 {
				t.Fatalf("stats %+v", st)
			}
			if got := st.Overflows > 0 && st.Spooled > 0; got != tc.spooled {
				t.Fatalf("spooled: %v, want %v (stats %+v)", got, tc.spooled, st)
			}
			t.Logf("%d batches sent first, %d spooled and re-sent, %d overflows", st.Acked, st.Resent, st.Overflows)
			check(t, collect(t, js, DefaultStream), want, true)
		})
	}
}

// A batch published because it was full leaves a due entry behind; the
// stream's next batch lingers its own full time, and both are published.
// Lingers are spread over [linger/2, linger] by stream.
func TestLingerAfterFullBatch(t *testing.T) {
	const linger = 300 * time.Millisecond
	for _, k := range keys {
		if l := spreadLinger(linger, k); l < linger/2 || l > linger {
			t.Fatalf("stream %v lingers %v, outside [%v, %v]", k, l, linger/2, linger)
		}
	}
	c := natstest.Start(t, 1)
	_, js := c.Connect(t)
	s, err := New(Config{URLs: c.URLs(), SpoolDir: t.TempDir() + "/spool", Linger: linger, BatchPackets: 2, MaxBytes: 64 << 20, Logger: testLogger(t)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sh := s.Shards()[0]
	k := keys[0]
	sh.SetClock(time.Now())
	sh.WriteAt(k, 1, routerA, pcapng.LinkRawIP, packet(k, 0))
	time.Sleep(spreadLinger(linger, k) / 2)
	sh.WriteAt(k, 2, routerA, pcapng.LinkRawIP, packet(k, 1)) // full: published
	started := time.Now()
	sh.SetClock(started)
	sh.WriteAt(k, 3, routerA, pcapng.LinkRawIP, packet(k, 2))
	deadline := started.Add(10 * time.Second)
	for s.Stats().Acked < 2 && time.Now().Before(deadline) {
		sh.Tick()
		if s.Stats().Published == 2 && time.Since(started) < spreadLinger(linger, k) {
			t.Fatalf("the second batch was published %v after its first packet, before its linger %v", time.Since(started), spreadLinger(linger, k))
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := collect(t, js, DefaultStream)
	if len(got) != 2 || got[0].packets != 2 || got[1].packets != 1 {
		t.Fatalf("%d messages: %+v", len(got), got)
	}
}
