package natexport

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
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jmxdp/jmxdp/userspace/natsink"
	"github.com/jmxdp/jmxdp/userspace/natstest"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// The test binary is also the exporter the tests kill: with
// NATEXPORT_CHILD set it exports and exits.
func TestMain(m *testing.M) {
	if urls := os.Getenv("NATEXPORT_CHILD"); urls != "" {
		e, err := New(Config{URLs: urls, Writer: writer.Config{Dir: os.Getenv("NATEXPORT_OUT"), RotateSize: 64 << 10},
			IdleExit: 2 * time.Second, AckWait: time.Second,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
		if err == nil {
			err = e.Run(context.Background())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var router = netip.MustParseAddr("198.51.100.1")

func packet(k writer.Key, i int) []byte {
	b := make([]byte, 40+i%300)
	b[0] = 0x45
	binary.BigEndian.PutUint32(b[4:], k.MID)
	binary.BigEndian.PutUint32(b[8:], k.SID)
	binary.BigEndian.PutUint32(b[12:], uint32(i))
	for j := 16; j < len(b); j++ {
		b[j] = byte(i * j)
	}
	return b
}

// publish sends n packets over keys through a real natsink.
func publish(t testing.TB, urls string, keys []writer.Key, n int) map[writer.Key][][]byte {
	t.Helper()
	s, err := natsink.New(natsink.Config{URLs: urls, SpoolDir: filepath.Join(t.TempDir(), "spool"), MaxBytes: 256 << 20, BatchPackets: 20}, 1)
	if err != nil {
		t.Fatal(err)
	}
	sh := s.Shards()[0]
	sent := map[writer.Key][][]byte{}
	base := time.Now().UnixNano()
	for i := range n {
		k := keys[i%len(keys)]
		p := packet(k, len(sent[k]))
		if !sh.WriteAt(k, uint64(base+int64(i)*1000), router, pcapng.LinkRawIP, p) {
			t.Fatal("refused")
		}
		sent[k] = append(sent[k], p)
		if i%400 == 0 {
			time.Sleep(2 * time.Millisecond) // the capture's pace, not a flood of the queue
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.PacketsAcked != uint64(n) {
		t.Fatalf("%d of %d packets acked", st.PacketsAcked, n)
	}
	return sent
}

// readFiles reads every packet of the stream's completed files, in file
// (time) order, and fails on a .part left behind.
func readFiles(t *testing.T, out string, k writer.Key) [][]byte {
	t.Helper()
	dir := filepath.Join(out, fmt.Sprintf("mid-%d", k.MID), fmt.Sprintf("sid-%d", k.SID))
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".part") {
			t.Fatalf("%s left in progress", e.Name())
		}
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v", e.Name(), fi.Mode())
		}
		for _, p := range testenv.MustReadPcapng(t, filepath.Join(dir, e.Name()), testenv.Mixed) {
			got = append(got, p.Data)
		}
	}
	return got
}

func compare(t *testing.T, out string, sent map[writer.Key][][]byte) {
	t.Helper()
	for k, want := range sent {
		got := readFiles(t, out, k)
		if len(got) != len(want) {
			t.Errorf("stream %v: %d packets in the files, %d sent", k, len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("stream %v: packet %d differs from what was sent", k, i)
			}
		}
	}
}

var keys = []writer.Key{{MID: 5, SID: 1}, {MID: 5, SID: 2}, {MID: 6, SID: 9}}

// SIGKILL the exporter mid-stream, several times, and restart it: the
// files then hold exactly the packets sent, byte for byte, no duplicate
// and no gap (tshark reads them too).
func TestKilledExporter(t *testing.T) {
	c := natstest.Start(t, 1)
	const n = 60000
	sent := publish(t, c.URLs(), keys, n)
	out := filepath.Join(t.TempDir(), "out")
	child := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "NATEXPORT_CHILD="+c.URLs(), "NATEXPORT_OUT="+out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &stderr
	}
	kills := 0
	for i := range 4 {
		cmd, stderr := child()
		// Kill it once it is writing: some state files exist and a
		// message is (most likely) half-way.
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(stderr.String(), "exporting") && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(30+40*i) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			kills++
		} else {
			t.Logf("exporter %d ended before the kill: %v\n%s", i, err, stderr.String())
		}
	}
	if kills == 0 {
		t.Fatal("the exporter was never killed mid-stream")
	}
	cmd, stderr := child()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("last exporter: %v\n%s", err, stderr.String())
	}
	t.Logf("%d kills; last run:\n%s", kills, stderr.String())
	compare(t, out, sent)
	if _, err := exec.LookPath("tshark"); err != nil {
		testenv.PartSkip(t, "tshark not installed: the files are not read by tshark")
		return
	}
	dir := filepath.Join(out, "mid-5", "sid-1")
	files, _ := filepath.Glob(filepath.Join(dir, "*.pcapng"))
	slices.Sort(files)
	total := 0
	for _, f := range files {
		o, err := exec.Command("tshark", "-r", f, "-T", "fields", "-e", "frame.len").Output()
		if err != nil {
			t.Fatalf("tshark %s: %v", f, err)
		}
		total += len(strings.Fields(string(o)))
	}
	if total != len(sent[keys[0]]) {
		t.Fatalf("tshark reads %d packets of stream 5/1, %d sent", total, len(sent[keys[0]]))
	}
}

// A filter takes one intercept; another exporter with its own durable
// takes the rest; --idle-exit ends both.
func TestFilters(t *testing.T) {
	c := natstest.Start(t, 1)
	sent := publish(t, c.URLs(), keys, 3000)
	run := func(durable, out string, filters ...string) *Exporter {
		var subj []string
		for _, f := range filters {
			s, err := FilterSubject(f)
			if err != nil {
				t.Fatal(err)
			}
			subj = append(subj, s)
		}
		e, err := New(Config{URLs: c.URLs(), Durable: durable, Filters: subj, Writer: writer.Config{Dir: out}, IdleExit: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("idle-exit did not end the export")
		}
		return e
	}
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	ea := run("a", a, "5")
	sa, sb := ea.Stats(), run("b", b, "6.9").Stats()
	if sa.Packets != 2000 || sb.Packets != 1000 {
		t.Fatalf("exported %d and %d packets", sa.Packets, sb.Packets)
	}
	want := fmt.Sprintf("# HELP jmxdp_export_packets_total Packets written to the files.\n# TYPE jmxdp_export_packets_total counter\njmxdp_export_packets_total %d\n", sa.Packets)
	if err := testutil.CollectAndCompare(NewCollector(ea), strings.NewReader(want), "jmxdp_export_packets_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(NewCollector(ea)); n != len(exportFamilies) {
		t.Fatalf("%d export series", n)
	}
	compare(t, a, map[writer.Key][][]byte{keys[0]: sent[keys[0]], keys[1]: sent[keys[1]]})
	compare(t, b, map[writer.Key][][]byte{keys[2]: sent[keys[2]]})
	if _, err := os.Stat(filepath.Join(a, "mid-6")); err == nil {
		t.Fatal("the filter let mid 6 through")
	}
	for _, bad := range []string{"x", "5.", "1.2.3"} {
		if _, err := FilterSubject(bad); err == nil {
			t.Errorf("filter %q taken", bad)
		}
	}
}

// docs/metrics.md has a row for every export family.
func TestExportMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range exportFamilies {
		if !strings.Contains(string(doc), "| `"+f.name+"` |") {
			t.Errorf("docs/metrics.md has no row for %s", f.name)
		}
	}
}

// BenchmarkExport is the exporter's rate and CPU per packet on 100k
// packets in 100 streams, 20 a message (5000 messages) on a 1-node
// cluster: each iteration exports everything again with a new durable
// into a new directory.
//
//	go test -run '^$' -bench Export -benchtime 3x ./userspace/natexport
func BenchmarkExport(b *testing.B) {
	c := natstest.Start(b, 1)
	keys := make([]writer.Key, 100)
	for i := range keys {
		keys[i] = writer.Key{MID: 1, SID: uint32(i)}
	}
	const packets = 100_000
	publish(b, c.URLs(), keys, packets)
	var wall, cpu time.Duration
	var msgs uint64
	b.ResetTimer()
	for i := range b.N {
		e, err := New(Config{URLs: c.URLs(), Durable: fmt.Sprint("bench-", i), Writer: writer.Config{Dir: filepath.Join(b.TempDir(), "out")}})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start, cpu0 := time.Now(), cpuNow()
		go func() { done <- e.Run(ctx) }()
		deadline := start.Add(2 * time.Minute)
		for e.Stats().Packets < packets && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		wall += time.Since(start)
		cpu += cpuNow() - cpu0
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		st := e.Stats()
		if st.Packets != packets {
			b.Fatalf("%d of %d packets exported", st.Packets, packets)
		}
		msgs += st.Messages
	}
	b.ReportMetric(float64(msgs)/wall.Seconds(), "msgs/s")
	b.ReportMetric(float64(packets*b.N)/wall.Seconds(), "pkts/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(packets*b.N), "cpu-ns/pkt")
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
