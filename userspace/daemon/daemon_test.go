package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/capfile"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
	"github.com/jmxdp/jmxdp/userspace/tools/send"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// env is one test's lab, pin directory and output directory.
type env struct {
	lab    *lab.Lab
	pinDir string
	out    string
	logs   *testenv.LogBuffer
	runDir string // the per-interface lock and state file (runstate)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.RequireRoot(t)
	l := labtest.New(t, "jxd")
	pin := filepath.Join(loader.BPFFSRoot, "jmxdp-test-"+l.Name)
	t.Cleanup(func() { os.RemoveAll(pin) })
	out := filepath.Join(t.TempDir(), "streams")
	return &env{lab: l, pinDir: pin, out: out, logs: &testenv.LogBuffer{}, runDir: t.TempDir()}
}

// config is a small daemon config for the lab.
func (e *env) config(ports ...uint16) config.Config {
	cfg := config.Default()
	cfg.Interface = e.lab.HostIface
	cfg.Output.Dir = e.out
	cfg.Capture.PinDir = e.pinDir
	cfg.Capture.MaxStreams = 1 << 14
	cfg.Metrics.Addr = ""
	if len(ports) > 0 {
		cfg.Ports, cfg.PortsSet = ports, true
	}
	return cfg
}

func (e *env) start(t *testing.T, cfg config.Config) *daemon.Daemon {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, testWriter{t}), nil)), daemon.WithRunDir(e.runDir))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { d.Stop() })
	return d
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (e *env) sender(t *testing.T) *send.Sender {
	t.Helper()
	s, err := e.lab.Sender()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (e *env) send(t *testing.T, frames [][]byte) {
	t.Helper()
	n, err := e.sender(t).Send(frames)
	if err != nil || n != len(frames) {
		t.Fatalf("sent %d of %d frames: %v", n, len(frames), err)
	}
}

func counter(t *testing.T, d *daemon.Daemon, s vocab.Stat) uint64 {
	t.Helper()
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c[s]
}

// settle waits until every frame the kernel handed to AF_XDP has been
// through the writers: the capture counter is still, and the pipeline has
// as many outcomes as the kernel redirected frames.
func settle(t *testing.T, d *daemon.Daemon, frames int) {
	t.Helper()
	testenv.WaitFor(t, fmt.Sprintf("%d frames through the kernel", frames), 10*time.Second, func() bool {
		return counter(t, d, vocab.StatFrames) >= uint64(frames)
	})
	testenv.WaitFor(t, "the pipeline to drain", 10*time.Second, func() bool {
		var got uint64
		for _, q := range d.Capture().Stats().Queues {
			got += q.Frames
		}
		redirected := counter(t, d, vocab.StatActionCapture) - counter(t, d, vocab.StatCaptureFailed)
		return got >= redirected
	})
	// The decode loop is asynchronous: let it finish its last batch.
	testenv.WaitFor(t, "the writers", 10*time.Second, func() bool {
		cs := d.Capture().Stats()
		var got uint64
		for _, q := range cs.Queues {
			got += q.Frames
		}
		return cs.Written+cs.Refused+cs.Fragments+cs.Unexpected+cs.QueueDrops >= got
	})
}

// streamFiles maps "mid-M/sid-S" to the completed pcapng files of that
// stream, in time order.
func streamFiles(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() || strings.HasPrefix(de.Name(), ".") {
			return nil // the writer's lock file
		}
		if strings.HasSuffix(p, ".part") {
			t.Errorf("file still in progress after stop: %s", p)
		}
		rel, _ := filepath.Rel(dir, p)
		parts := strings.Split(rel, string(filepath.Separator))
		if len(parts) != 3 {
			t.Errorf("unexpected file in the output directory: %s", rel)
			return nil
		}
		key := parts[0] + "/" + parts[1]
		out[key] = append(out[key], p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, files := range out {
		slices.Sort(files)
	}
	return out
}

// packet is what a pcapng file holds for one mirrored packet.
type packet struct {
	Iface string
	Data  string
}

// tsharkPackets reads a pcapng file with tshark: the interface each
// packet is on and its bytes.
func tsharkPackets(t *testing.T, path string) []packet {
	t.Helper()
	tshark := testenv.Tool(t, "tshark")
	out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "separator=|",
		"-e", "frame.interface_name", "-e", "frame.len").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", path, err)
	}
	var pkts []packet
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		f := strings.Split(strings.TrimSpace(line), "|")
		if len(f) != 2 {
			t.Fatalf("tshark line %q", line)
		}
		pkts = append(pkts, packet{Iface: f[0], Data: f[1]})
	}
	return pkts
}

// filePackets reads pcapng files' packets byte for byte, with their
// timestamps.
func filePackets(t *testing.T, paths ...string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, p := range paths {
		for _, pk := range testenv.MustReadPcapng(t, p, testenv.Single) {
			out = append(out, pk.Data)
		}
	}
	return out
}

// compareWithDecode checks the daemon's files against what `jmxdp decode
// --out` writes for the same frames: the same streams, and per stream the
// same packets in the same order, byte for byte and as tshark reads them.
func compareWithDecode(t *testing.T, e *env, pcap string, ports []uint16) *decode.Report {
	t.Helper()
	ref := filepath.Join(t.TempDir(), "decode")
	rep, err := decode.Files([]string{pcap}, decode.Options{Ports: ports, Engine: decode.EngineGo, OutDir: ref})
	if err != nil {
		t.Fatal(err)
	}
	got := streamFiles(t, e.out)
	if len(got) != len(rep.Files) {
		t.Errorf("daemon wrote %d streams, decode %d", len(got), len(rep.Files))
	}
	for _, refFile := range rep.Files {
		rel, _ := filepath.Rel(ref, refFile)
		key := strings.TrimSuffix(rel, ".pcapng")
		files, ok := got[key]
		if !ok {
			t.Errorf("stream %s: no files from the daemon", key)
			continue
		}
		want := filePackets(t, refFile)
		have := filePackets(t, files...)
		if len(have) != len(want) {
			t.Errorf("stream %s: %d packets in the daemon's files, decode wrote %d", key, len(have), len(want))
			continue
		}
		for i := range want {
			if !bytes.Equal(have[i], want[i]) {
				t.Errorf("stream %s packet %d differs", key, i)
				break
			}
		}
		var tsHave []packet
		for _, f := range files {
			tsHave = append(tsHave, tsharkPackets(t, f)...)
		}
		if tsWant := tsharkPackets(t, refFile); !slices.Equal(tsHave, tsWant) {
			t.Errorf("stream %s: tshark reads\n%v\nin the daemon's files, and\n%v\nin decode's", key, tsHave, tsWant)
		}
	}
	return rep
}

// kernelStreams reads the stream table as decode reports it: packets and
// bytes per (router, mid, sid).
func kernelStreams(t *testing.T, d *daemon.Daemon) map[string][2]uint64 {
	t.Helper()
	streams, err := d.Program().Maps.Streams()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]uint64{}
	for _, s := range streams {
		out[fmt.Sprintf("%s/%d/%d", s.Router, s.MID, s.SID)] = [2]uint64{s.Packets, s.Bytes}
	}
	return out
}

// sameCountsAsDecode checks the kernel's per-stream counts of the frames
// sent live against `jmxdp decode`'s figures for the same frames.
func sameCountsAsDecode(t *testing.T, live map[string][2]uint64, rep *decode.Report) {
	t.Helper()
	want := map[string][2]uint64{}
	for _, s := range rep.Streams {
		for _, r := range s.Routers {
			want[fmt.Sprintf("%s/%d/%d", r.Addr, s.MID, s.SID)] = [2]uint64{r.Packets, r.Bytes}
		}
	}
	if !maps.Equal(live, want) {
		t.Errorf("kernel stream table (router/mid/sid: packets, bytes)\n%v\ndecode reports\n%v", live, want)
	}
}

func writePcap(t *testing.T, pkts []gen.Packet) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sent.pcap")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := gen.WritePcap(f, pkts); err != nil {
		t.Fatal(err)
	}
	return p
}

func framesOf(pkts []gen.Packet) [][]byte {
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		out[i] = p.Data
	}
	return out
}

// Generated traffic (every inner kind, two routers sharing ids, outer IPv6,
// VLANs, fragments, noise) sent into the attached program lands in the
// files exactly as `jmxdp decode --out` writes it, with kernel timestamps.
func TestCaptureGeneratedTraffic(t *testing.T) {
	e := newEnv(t)
	d := e.start(t, e.config())
	if d.Mode() != loader.ModeDriver {
		t.Errorf("attach mode %s, want driver on veth", d.Mode())
	}
	dc := gen.DefaultDemo()
	dc.FragmentEvery = 2
	pkts, sum, err := gen.Demo(dc)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	e.send(t, framesOf(pkts))
	settle(t, d, len(pkts))
	after := time.Now()
	cs := d.Capture().Stats()
	if cs.NoMetadata != 0 || cs.Unexpected != 0 || cs.QueueDrops != 0 {
		t.Errorf("capture stats %+v: want every frame stamped by the kernel, Jmirror, and kept", cs)
	}
	if cs.Reassembly.Reassembled != uint64(sum.Fragmented) {
		t.Errorf("reassembled %d datagrams, sent %d fragmented", cs.Reassembly.Reassembled, sum.Fragmented)
	}
	live := kernelStreams(t, d)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	rep := compareWithDecode(t, e, writePcap(t, pkts), nil)
	sameCountsAsDecode(t, live, rep)
	if rep.Totals.Written != uint64(sum.JmirrorDatagrams) {
		t.Errorf("decode wrote %d, generator made %d datagrams", rep.Totals.Written, sum.JmirrorDatagrams)
	}
	// Timestamps are the kernel's receive times, not the generator's.
	for _, files := range streamFiles(t, e.out) {
		ts := testenv.MustReadPcapng(t, files[0], testenv.Single)[0].Time
		if ts.Before(before.Add(-time.Second)) || ts.After(after.Add(time.Second)) {
			t.Errorf("%s: first packet stamped %v, sent between %v and %v", files[0], ts, before, after)
		}
	}
}

// The real router captures replayed into the lab give the same streams
// and packets as decoding the files.
func TestCaptureRealCaptures(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	for _, c := range []struct {
		file string
		port uint16
	}{{"jmirror_ip.pcap", 6502}, {"jmirror_l2tp.pcap", 5000}, {"jmirror_ipv6_ppp.pcap", 54301}} {
		t.Run(c.file, func(t *testing.T) {
			e := newEnv(t)
			d := e.start(t, e.config(c.port))
			path := filepath.Join(dir, c.file)
			r, err := capfile.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			var frames [][]byte
			for {
				f, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				frames = append(frames, bytes.Clone(f.Data))
			}
			r.Close()
			e.send(t, frames)
			settle(t, d, len(frames))
			live := kernelStreams(t, d)
			if err := d.Stop(); err != nil {
				t.Fatal(err)
			}
			sameCountsAsDecode(t, live, compareWithDecode(t, e, path, []uint16{c.port}))
		})
	}
}

// lanFrame is a frame addressed to the lab's host end, as the host's stack
// accepts it.
func (e *env) mirror(t *testing.T, router netip.Addr, mid, sid uint32, port uint16, seq int) []byte {
	t.Helper()
	m := gen.Mirror{
		SrcMAC: e.lab.RouterMAC, DstMAC: e.lab.HostMAC,
		Router: router, Collector: e.lab.HostAddr.Addr(),
		MID: mid, SID: sid, Port: port,
		Inner: gen.InnerIPv4ICMPEcho(netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2"), 7, uint16(seq), 40),
	}
	f, err := m.Frame()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Policy decides what reaches the files: capture writes, count and pass do
// not, and the allowlist drops a forged router.
func TestPolicyAndAllowlist(t *testing.T) {
	e := newEnv(t)
	router := e.lab.RouterAddr.Addr()
	forged := netip.MustParseAddr("192.0.2.66")
	cfg := e.config()
	cfg.Policy, cfg.PolicySet = []vocab.PolicyRule{
		{MID: 10, AnySID: true, Action: vocab.ActionCount},
		{MID: 20, SID: 1, Action: vocab.ActionPass},
	}, true
	cfg.Allowlist, cfg.AllowlistSet = []netip.Prefix{e.lab.RouterAddr.Masked()}, true
	d := e.start(t, cfg)
	var frames [][]byte
	for i := range 5 {
		frames = append(frames,
			e.mirror(t, router, 10, uint32(i), gen.DefaultPort, i), // count
			e.mirror(t, router, 20, 1, gen.DefaultPort, i),         // pass
			e.mirror(t, router, 30, 3, gen.DefaultPort, i),         // capture (default)
			e.mirror(t, forged, 30, 3, gen.DefaultPort, i),         // untrusted
		)
	}
	e.send(t, frames)
	settle(t, d, len(frames))
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c[vocab.StatActionCount] != 5 || c[vocab.StatActionPass] != 5 || c[vocab.StatActionCapture] != 5 || c[vocab.StatUntrusted] != 5 {
		t.Errorf("actions: count %d pass %d capture %d untrusted %d, want 5 each",
			c[vocab.StatActionCount], c[vocab.StatActionPass], c[vocab.StatActionCapture], c[vocab.StatUntrusted])
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	files := streamFiles(t, e.out)
	if len(files) != 1 || len(filePackets(t, files["mid-30/sid-3"]...)) != 5 {
		t.Errorf("files %v: want only mid-30/sid-3 with 5 packets", files)
	}
}

// udpListener listens on the lab host's address and collects datagrams.
func udpListener(t *testing.T, addr netip.Addr, port uint16) (*net.UDPConn, func(n int, wait time.Duration) int) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	count := func(n int, wait time.Duration) int {
		got := 0
		buf := make([]byte, 2048)
		deadline := time.Now().Add(wait)
		for got < n {
			conn.SetReadDeadline(deadline)
			if _, _, err := conn.ReadFromUDP(buf); err != nil {
				break
			}
			got++
		}
		return got
	}
	return conn, count
}

// A pass stream reaches a plain UDP listener on the Jmirror port while
// jmxdp runs; a captured stream on the same port does not.
func TestPassReachesListener(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Policy, cfg.PolicySet = []vocab.PolicyRule{{MID: 20, AnySID: true, Action: vocab.ActionPass}}, true
	d := e.start(t, cfg)
	_, count := udpListener(t, e.lab.HostAddr.Addr(), gen.DefaultPort)
	router := e.lab.RouterAddr.Addr()
	var pass, capt [][]byte
	for i := range 10 {
		pass = append(pass, e.mirror(t, router, 20, 1, gen.DefaultPort, i))
		capt = append(capt, e.mirror(t, router, 30, 1, gen.DefaultPort, i))
	}
	e.send(t, capt)
	e.send(t, pass)
	if got := count(10, 3*time.Second); got != 10 {
		t.Errorf("listener got %d of the pass stream's 10 datagrams (and none of the captured)", got)
	}
	settle(t, d, 20)
	if got := count(1, 200*time.Millisecond); got != 0 {
		t.Errorf("listener got %d more datagrams: the captured stream leaked to the stack", got)
	}
	if ws := d.Writer().Stats(); ws.Packets+ws.Buffered != 10 {
		w := ws.Packets + ws.Buffered
		t.Errorf("wrote %d packets, want the captured stream's 10", w)
	}
}

// Traffic that is not Jmirror still reaches the host: ping, TCP and UDP to
// another port.
func TestOtherTrafficReachesHost(t *testing.T) {
	e := newEnv(t)
	d := e.start(t, e.config())
	host := e.lab.HostAddr.Addr()
	if ping, err := exec.LookPath("ping"); err != nil {
		testenv.PartSkip(t, "ping not installed: ICMP to the host not checked")
	} else if out, err := exec.Command("ip", "netns", "exec", e.lab.Name, ping, "-c", "3", "-i", "0.2", "-W", "2", host.String()).CombinedOutput(); err != nil {
		t.Errorf("ping the host through jmxdp: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(host, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, err = io.Copy(io.Discard, c)
			c.Close()
		}
		accepted <- err
	}()
	err = netns.Do(e.lab.Name, func() error {
		c, err := net.DialTimeout("tcp4", ln.Addr().String(), 3*time.Second)
		if err != nil {
			return err
		}
		_, err = c.Write([]byte("hello over TCP"))
		c.Close()
		return err
	})
	if err != nil {
		t.Errorf("TCP to the host: %v", err)
	}
	select {
	case err := <-accepted:
		if err != nil {
			t.Errorf("accept: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the host never accepted the TCP connection")
	}
	conn, count := udpListener(t, host, 0)
	port := conn.LocalAddr().(*net.UDPAddr).Port
	err = netns.Do(e.lab.Name, func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(host, uint16(port)).String())
		if err != nil {
			return err
		}
		defer c.Close()
		for range 5 {
			if _, err := c.Write([]byte("other udp")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := count(5, 3*time.Second); got != 5 {
		t.Errorf("UDP listener on port %d got %d of 5 datagrams", port, got)
	}
	if c := counter(t, d, vocab.StatNotJmirror); c == 0 {
		t.Error("the program saw none of this traffic")
	}
	if c := counter(t, d, vocab.StatJmirror); c != 0 {
		t.Errorf("%d frames taken for Jmirror", c)
	}
}

// Restarts with traffic flowing: the kernel's counters never go back, the
// program keeps counting while the daemon is down with keep_attached, and
// the policy that the config file holds applies again.
func TestRestartKeepsCountersAndPolicy(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Capture.KeepAttached = true
	cfg.Policy, cfg.PolicySet = []vocab.PolicyRule{{MID: 40, SID: 4, Action: vocab.ActionCount}}, true
	d := e.start(t, cfg)

	router := e.lab.RouterAddr.Addr()
	var frames [][]byte
	for i := range 50 {
		frames = append(frames, e.mirror(t, router, 40, 4, gen.DefaultPort, i), e.mirror(t, router, 41, 1, gen.DefaultPort, i))
	}
	s := e.sender(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := make(chan send.Report, 1)
	go func() {
		rep, _ := s.Run(ctx, frames, send.Options{Rate: 2000, Duration: 20 * time.Second})
		sent <- rep
	}()

	key := vocab.StreamKey{Router: router, MID: 40, SID: 4}
	readStream := func(d *daemon.Daemon) uint64 {
		st, _, err := d.Program().Maps.Stream(key)
		if err != nil {
			t.Fatal(err)
		}
		return st.Packets
	}
	var last uint64
	check := func(d *daemon.Daemon, when string) {
		t.Helper()
		n := readStream(d)
		if n < last {
			t.Fatalf("%s: stream counter went back from %d to %d", when, last, n)
		}
		last = n
	}
	testenv.WaitFor(t, "traffic", 10*time.Second, func() bool { return readStream(d) > 20 })
	check(d, "first run")
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	// Down, but attached: the kernel keeps counting.
	time.Sleep(300 * time.Millisecond)

	cfg2 := e.config()
	cfg2.Capture.KeepAttached = false // this run detaches when it stops
	cfg2.Policy, cfg2.PolicySet = cfg.Policy, true
	d2 := e.start(t, cfg2)
	check(d2, "after restart")
	prev := last
	testenv.WaitFor(t, "counting after restart", 10*time.Second, func() bool { return readStream(d2) > prev+20 })
	check(d2, "second run")
	rules, err := d2.Program().Maps.Policies()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 1 || rules[0] != (vocab.PolicyRule{MID: 40, SID: 4, Action: vocab.ActionCount}) {
		t.Errorf("policy after restart %v", rules)
	}
	if strings.Contains(e.logs.String(), "start from zero") {
		t.Errorf("a map was reset:\n%s", e.logs.String())
	}
	cancel()
	<-sent
	if err := d2.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ip", "-d", "link", "show", e.lab.HostIface).CombinedOutput(); strings.Contains(string(out), "prog/xdp") {
		t.Error("still attached after a run without keep_attached stopped")
	}
}

// A full disk: the daemon keeps running, counts the drops per stream and in
// total, logs the condition once, and writes again once there is space.
// Files already written stay readable.
func TestDiskFull(t *testing.T) {
	e := newEnv(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	e.out = filepath.Join(mnt, "streams")
	cfg := e.config()
	cfg.Output.MaxOpenFiles = 8
	// Small files complete often: removing them is how space comes back.
	cfg.Output.RotateSize = 32 << 10
	d := e.start(t, cfg)

	router := e.lab.RouterAddr.Addr()
	burst := func(base int) [][]byte {
		var frames [][]byte
		for i := range 200 {
			// Big inner packets fill the disk quickly.
			m := gen.Mirror{SrcMAC: e.lab.RouterMAC, DstMAC: e.lab.HostMAC, Router: router, Collector: e.lab.HostAddr.Addr(),
				MID: 50, SID: uint32(i % 4), Inner: gen.InnerIPv4ICMPEcho(router, router, 1, uint16(base+i), 1200)}
			f, err := m.Frame()
			if err != nil {
				t.Fatal(err)
			}
			frames = append(frames, f)
		}
		return frames
	}
	sent := 0
	for round := 0; round < 20 && d.Writer().Stats().Drops[writer.DropDisk] == 0; round++ {
		fr := burst(sent)
		e.send(t, fr)
		sent += len(fr)
		settle(t, d, sent)
	}
	ws := d.Writer().Stats()
	if ws.Drops[writer.DropDisk] == 0 {
		t.Fatal("256 KiB of tmpfs never filled")
	}
	var perStream uint64
	for _, s := range d.Writer().Streams() {
		perStream += s.Drops
	}
	if perStream != ws.Drops[writer.DropDisk] {
		t.Errorf("per-stream drops %d, total %d", perStream, ws.Drops[writer.DropDisk])
	}
	var warned int
	for line := range strings.Lines(e.logs.String()) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "no space left on device") {
			warned++
		}
	}
	if n := warned; n != 1 {
		t.Errorf("the full disk was logged %d times, want once:\n%s", n, e.logs.String())
	}
	// Make room: remove the completed files a consumer would have taken.
	written := ws.Packets
	filepath.WalkDir(e.out, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() && strings.HasSuffix(p, ".pcapng") {
			os.Remove(p)
		}
		return nil
	})
	time.Sleep(1100 * time.Millisecond) // the retry interval
	fr := burst(sent)
	e.send(t, fr[:20])
	sent += 20
	settle(t, d, sent)
	if d.Writer().Stats().Packets <= written {
		t.Errorf("no packets written after space returned (%d before)", written)
	}
	if err := d.Stop(); err != nil {
		t.Logf("stop: %v", err)
	}
	for _, files := range streamFiles(t, e.out) {
		for _, f := range files {
			tsharkPackets(t, f) // fails the test if tshark cannot read it
		}
	}
}

// Port discovery live: Jmirror sent to a port jmxdp does not decode is
// counted as a candidate for that port, and still reaches the host's stack
// (a plain UDP listener on it gets every datagram).
func TestCandidatePortReachesHost(t *testing.T) {
	e := newEnv(t)
	d := e.start(t, e.config())
	const port = 6502
	_, count := udpListener(t, e.lab.HostAddr.Addr(), port)
	var frames [][]byte
	for i := range 12 {
		frames = append(frames, e.mirror(t, e.lab.RouterAddr.Addr(), 3, 4, port, i))
	}
	e.send(t, frames)
	if got := count(12, 3*time.Second); got != 12 {
		t.Errorf("the UDP listener on port %d got %d of 12 datagrams", port, got)
	}
	cands, err := d.Program().Maps.Candidates()
	if err != nil {
		t.Fatal(err)
	}
	if len(cands) != 1 || cands[0].Port != port || cands[0].Packets != 12 {
		t.Errorf("candidates %+v, want port %d with 12 packets", cands, port)
	}
	if c := counter(t, d, vocab.StatJmirror); c != 0 {
		t.Errorf("%d frames decoded on a port not configured", c)
	}
}
