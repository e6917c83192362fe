package decode_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
)

// realCapture is a capture from ../shared/testdata with the figures its
// README gives.
type realCapture struct {
	file    string
	port    uint16
	mid     uint32
	sid     uint32
	packets uint64
	routers map[string][2]uint64 // addr -> packets, bytes
	inner   decode.InnerReport
}

var realCaptures = []realCapture{
	{"jmirror_ip.pcap", 6502, 0x2, 0x10f447, 38,
		map[string][2]uint64{"67.70.219.162": {38, 2280}}, decode.InnerReport{IPv4: 38}},
	{"jmirror_l2tp.pcap", 5000, 0x3039, 0x1e240, 6,
		map[string][2]uint64{"10.15.6.50": {6, 72}}, decode.InnerReport{PPP: 6}},
	{"jmirror_ipv6_ppp.pcap", 54301, 0x8000, 0x1, 100,
		map[string][2]uint64{"64.230.56.119": {83, 6262}, "64.230.45.123": {17, 596}}, decode.InnerReport{PPP: 100}},
}

// engines are both engines as root; without root only the Go one (and CI,
// which runs as root, fails instead).
func engines(t *testing.T) []decode.Engine {
	if os.Geteuid() != 0 {
		if testenv.InCI() {
			t.Fatal("CI=true: the bpf engine needs root")
		}
		t.Log("not root: testing the go engine only")
		return []decode.Engine{decode.EngineGo}
	}
	return []decode.Engine{decode.EngineBPF, decode.EngineGo}
}

func TestRealCaptures(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	for _, eng := range engines(t) {
		for _, c := range realCaptures {
			t.Run(string(eng)+"/"+c.file, func(t *testing.T) {
				rep, err := decode.Files([]string{filepath.Join(dir, c.file)}, decode.Options{Ports: []uint16{c.port}, Engine: eng, MaxStreams: 4096})
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Streams) != 1 {
					t.Fatalf("%d streams, want 1: %+v", len(rep.Streams), rep.Streams)
				}
				s := rep.Streams[0]
				var bytes uint64
				for _, r := range c.routers {
					bytes += r[1]
				}
				if s.MID != c.mid || s.SID != c.sid || s.Packets != c.packets || s.Bytes != bytes || s.Inner != c.inner {
					t.Errorf("stream %+v, want mid %#x sid %#x packets %d bytes %d inner %+v", s, c.mid, c.sid, c.packets, bytes, c.inner)
				}
				if len(s.Routers) != len(c.routers) {
					t.Fatalf("routers %+v, want %v", s.Routers, c.routers)
				}
				for _, r := range s.Routers {
					if w := c.routers[r.Addr]; w != [2]uint64{r.Packets, r.Bytes} {
						t.Errorf("router %s: %d packets %d bytes, want %v", r.Addr, r.Packets, r.Bytes, w)
					}
				}
				want := decode.Totals{Frames: c.packets, Jmirror: c.packets, JmirrorBytes: bytes}
				if rep.Totals != want {
					t.Errorf("totals %+v, want %+v", rep.Totals, want)
				}
			})
		}
	}
}

// The same captures on a port they do not use: nothing is Jmirror.
func TestWrongPortCountsNothing(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	rep, err := decode.Files([]string{filepath.Join(dir, "jmirror_ip.pcap")}, decode.Options{Engine: decode.EngineGo})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Streams) != 0 || rep.Totals.NotJmirror != 38 || rep.Totals.Frames != 38 {
		t.Fatalf("default port on a 6502 capture: %+v", rep)
	}
}

// tsharkPayloads returns the mirrored packets tshark finds in an original
// capture (UDP payload minus the Jmirror header), with tshark's own IP
// reassembly, the outer source and the (mid, sid) of each. It selects by
// port, not by the jmirror dissector, which skips empty and unknown inners.
func tsharkPayloads(t *testing.T, file string, port uint16) (pkts [][]byte, routers []string, ids [][2]uint32) {
	t.Helper()
	out, err := exec.Command(testenv.Tool(t, "tshark"), "-r", file, "-d", "udp.port=="+itoa(port)+",jmirror",
		"-Y", "udp.dstport=="+itoa(port),
		"-T", "fields", "-e", "udp.payload", "-e", "ip.src", "-e", "ipv6.src").Output()
	if err != nil {
		t.Fatalf("tshark on %s: %v", file, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		// The outer UDP comes first; a mirrored UDP packet adds its own.
		payload := strings.Split(f[0], ",")[0]
		b, err := hex.DecodeString(payload)
		if err != nil || len(b) < 8 {
			t.Fatalf("tshark udp.payload %q: %v", payload, err)
		}
		pkts = append(pkts, b[8:])
		ids = append(ids, [2]uint32{binary.BigEndian.Uint32(b) & 0x3fffffff, binary.BigEndian.Uint32(b[4:])})
		src := f[1]
		if src == "" {
			src = f[2]
		}
		routers = append(routers, strings.Split(src, ",")[0]) // outer first
	}
	return pkts, routers, ids
}

// tsharkFrames reads a pcapng we wrote: each frame's bytes and comment.
func tsharkFrames(t *testing.T, file string) (pkts [][]byte, comments []string) {
	t.Helper()
	out, err := exec.Command(testenv.Tool(t, "tshark"), "-r", file, "-T", "json", "-x").Output()
	if err != nil {
		t.Fatalf("tshark cannot read %s: %v", file, err)
	}
	var doc []struct {
		Source struct {
			Layers map[string]json.RawMessage `json:"layers"`
		} `json:"_source"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("tshark JSON for %s: %v", file, err)
	}
	for _, p := range doc {
		// An empty mirrored packet is a 0-byte frame: tshark gives no raw.
		var raw []any
		var b []byte
		if r, ok := p.Source.Layers["frame_raw"]; ok {
			if err := json.Unmarshal(r, &raw); err != nil || len(raw) == 0 {
				t.Fatalf("%s: frame_raw: %v", file, err)
			}
			var err error
			if b, err = hex.DecodeString(raw[0].(string)); err != nil {
				t.Fatal(err)
			}
		}
		pkts = append(pkts, b)
		// tshark 4.0 puts packet comments in a pkt_comment layer, later
		// versions in the frame layer.
		var c string
		for _, layer := range []string{"pkt_comment", "frame"} {
			var m map[string]any
			if json.Unmarshal(p.Source.Layers[layer], &m) == nil {
				if s, ok := m["frame.comment"].(string); ok {
					c = s
				}
			}
		}
		comments = append(comments, c)
	}
	return pkts, comments
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// checkOutAgainstTshark decodes file with --out and requires tshark to read
// every file written and find, stream by stream and in order, the very
// mirrored packets tshark itself finds in the original.
func checkOutAgainstTshark(t *testing.T, file string, port uint16, eng decode.Engine) *decode.Report {
	t.Helper()
	outDir := filepath.Join(t.TempDir(), "out")
	rep, err := decode.Files([]string{file}, decode.Options{Ports: []uint16{port}, Engine: eng, OutDir: outDir, MaxStreams: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) == 0 {
		t.Fatal("no files written")
	}
	wantPkts, wantRouters, wantIDs := tsharkPayloads(t, file, port)
	var got int
	for _, s := range rep.Streams {
		st, err := os.Stat(s.File)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", s.File, st.Mode().Perm())
		}
		dst, err := os.Stat(filepath.Dir(s.File))
		if err != nil || dst.Mode().Perm() != 0o700 {
			t.Errorf("%s: directory mode %v, want 0700 (%v)", s.File, dst.Mode().Perm(), err)
		}
		pkts, comments := tsharkFrames(t, s.File)
		if uint64(len(pkts)) != s.Packets {
			t.Errorf("%s: tshark reads %d packets, report says %d", s.File, len(pkts), s.Packets)
		}
		got += len(pkts)
		// The stream's packets, in order, are the original's packets of that
		// stream: match them against tshark's decode of the original.
		var want [][]byte
		var wantR []string
		for i, p := range wantPkts {
			if wantIDs[i] == [2]uint32{s.MID, s.SID} {
				want = append(want, p)
				wantR = append(wantR, wantRouters[i])
			}
		}
		if len(want) != len(pkts) {
			t.Fatalf("%s: %d packets, tshark finds %d in the original", s.File, len(pkts), len(want))
		}
		for i := range pkts {
			if !bytes.Equal(pkts[i], want[i]) {
				t.Fatalf("%s packet %d differs from the original's mirrored packet:\n got  %x\n want %x", s.File, i+1, pkts[i], want[i])
			}
			if comments[i] != "router="+wantR[i] {
				t.Errorf("%s packet %d comment %q, want router=%s", s.File, i+1, comments[i], wantR[i])
			}
		}
	}
	if got != len(wantPkts) {
		t.Errorf("wrote %d packets in all, tshark finds %d in the original", got, len(wantPkts))
	}
	return rep
}

func TestOutRealCapturesMatchTshark(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	for _, c := range realCaptures {
		t.Run(c.file, func(t *testing.T) {
			checkOutAgainstTshark(t, filepath.Join(dir, c.file), c.port, decode.EngineGo)
		})
	}
}

// A generated capture with fragmented datagrams, every inner kind and
// non-Jmirror noise: the files hold the reassembled datagrams.
func TestOutGeneratedMatchesTshark(t *testing.T) {
	cfg := gen.DefaultDemo()
	pkts, sum, err := gen.Demo(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Fragments == 0 {
		t.Fatal("demo capture has no fragments")
	}
	file := filepath.Join(t.TempDir(), "demo.pcap")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := gen.WritePcap(f, pkts); err != nil {
		t.Fatal(err)
	}
	f.Close()
	eng := decode.EngineGo
	if os.Geteuid() == 0 {
		eng = decode.EngineBPF
	}
	rep := checkOutAgainstTshark(t, file, cfg.Port, eng)
	if rep.Totals.FragmentedDatagrams == 0 || rep.Totals.ReassemblyFailed != 0 {
		t.Errorf("fragmented datagrams %d, reassembly failures %d", rep.Totals.FragmentedDatagrams, rep.Totals.ReassemblyFailed)
	}
	// The report agrees with what the generator says it made.
	if len(rep.Streams) != len(sum.Streams) {
		t.Fatalf("%d streams, generator made %d", len(rep.Streams), len(sum.Streams))
	}
	for _, s := range rep.Streams {
		w := sum.Streams[gen.StreamID{MID: s.MID, SID: s.SID}]
		if s.Packets != w.Packets || s.Bytes != w.Bytes {
			t.Errorf("mid %d sid %d: %d packets %d bytes, generator made %d/%d", s.MID, s.SID, s.Packets, s.Bytes, w.Packets, w.Bytes)
		}
	}
}

func TestBadInputs(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pcap")
	os.WriteFile(empty, nil, 0o600)
	garbage := filepath.Join(dir, "garbage.pcap")
	os.WriteFile(garbage, []byte("this is not a capture file at all"), 0o600)
	headerOnly := filepath.Join(dir, "header-only.pcap")
	f, _ := os.Create(headerOnly)
	gen.WritePcap(f, nil)
	f.Close()
	for _, c := range []struct{ file, want string }{
		{filepath.Join(dir, "missing.pcap"), "no such file"},
		{empty, "empty"},
		{garbage, "not a pcap"},
		{headerOnly, "no frames"},
	} {
		_, err := decode.Files([]string{c.file}, decode.Options{Engine: decode.EngineGo})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Base(c.file)) {
			t.Errorf("%s: error %v, want one naming the file and %q", c.file, err, c.want)
		}
	}
}

// A capture cut in the middle: an error naming the frame, and the files
// already written are complete, readable pcapng.
func TestTruncatedInputKeepsWrittenFiles(t *testing.T) {
	pkts, _, err := gen.Demo(gen.DefaultDemo())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := gen.WritePcap(&buf, pkts); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "cut.pcap")
	os.WriteFile(file, buf.Bytes()[:buf.Len()/2+7], 0o600)
	outDir := filepath.Join(dir, "out")
	_, err = decode.Files([]string{file}, decode.Options{Engine: decode.EngineGo, OutDir: outDir})
	if err == nil || !strings.Contains(err.Error(), "frame") {
		t.Fatalf("error %v, want one naming the frame", err)
	}
	files, _ := filepath.Glob(filepath.Join(outDir, "*", "*.pcapng"))
	if len(files) == 0 {
		t.Fatal("no files kept")
	}
	for _, f := range files {
		if p, _ := tsharkFrames(t, f); len(p) == 0 {
			t.Errorf("%s: no packets readable", f)
		}
	}
}

func TestJSONSchema(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	rep, err := decode.Files([]string{filepath.Join(dir, "jmirror_ip.pcap")}, decode.Options{Ports: []uint16{6502}, Engine: decode.EngineGo})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	s := doc["streams"].([]any)[0].(map[string]any)
	if s["mid"] != float64(2) || s["sid"] != float64(1111111) || s["packets"] != float64(38) || s["bytes"] != float64(2280) {
		t.Errorf("stream %v", s)
	}
	r := s["routers"].([]any)[0].(map[string]any)
	if r["addr"] != "67.70.219.162" || r["packets"] != float64(38) || r["bytes"] != float64(2280) {
		t.Errorf("router %v", r)
	}
	in := s["inner"].(map[string]any)
	for k, v := range map[string]float64{"ipv4": 38, "ipv6": 0, "ppp": 0, "unknown": 0, "empty": 0} {
		if in[k] != v {
			t.Errorf("inner.%s = %v, want %v", k, in[k], v)
		}
	}
	tot := doc["totals"].(map[string]any)
	for k, v := range map[string]float64{"frames": 38, "jmirror": 38, "not_jmirror": 0, "malformed": 0, "fragments": 0} {
		if tot[k] != v {
			t.Errorf("totals.%s = %v, want %v", k, tot[k], v)
		}
	}
}
