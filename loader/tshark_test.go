package loader_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// jumboIPv6Corpus is the issue 15 corpus: traffic at MTU 9000 with jumbo
// inner packets, half the routers over outer IPv6 behind hop-by-hop,
// destination options and routing headers, IPv4 and IPv6 fragments of
// jumbo datagrams, malformed datagrams and noise; then Jmirror over IPv6
// behind random extension chains, sound and unsound, within the bound and
// past it.
func jumboIPv6Corpus(t *testing.T) []gen.Packet {
	t.Helper()
	cfg := gen.DefaultTraffic()
	cfg.Seed, cfg.Intercepts, cfg.SessionsPer, cfg.Packets, cfg.Routers = 15, 3, 3, 1500, 4
	cfg.MTU, cfg.IPv6 = 9000, 0.5
	cfg.IPv6Ext = []gen.ExtHeader{{Type: gen.ExtHopByHop}, {Type: gen.ExtDstOpts, Len: 16}, {Type: gen.ExtRouting, Len: 24}}
	cfg.Sizes = []gen.SizeWeight{{Size: 64, Weight: 3}, {Size: 1400, Weight: 2}, {Size: 8900, Weight: 2}}
	cfg.FragmentRatio, cfg.MalformedRatio, cfg.NoiseRatio = 0.1, 0.02, 0.3
	pkts, _, err := gen.Traffic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	last := pkts[len(pkts)-1].Time
	for i, f := range gen.CorpusLabeled(15, 6000, []uint16{gen.DefaultPort}) {
		if f.Kind == gen.CorpusIPv6Ext {
			pkts = append(pkts, gen.Packet{Time: last.Add(time.Duration(i+1) * time.Microsecond), Data: f.Data})
		}
	}
	return pkts
}

// tsharkFrame is tshark's dissection of one frame: the outer protocols in
// order, the Jmirror header it found (in the frame, or in the datagram the
// frame completes), and the frames of that datagram if it was fragmented.
type tsharkFrame struct {
	protocols []string
	jmirror   bool
	mid, sid  uint32 // the header's two words: mid includes V
	udpLen    int
	fragments []int // frame numbers, 1-based
	expert    string
}

// tsharkFrames runs tshark over path, decoding port as Jmirror, and
// returns one entry per frame.
func tsharkFrames(t *testing.T, path string, port uint16, n int) []tsharkFrame {
	t.Helper()
	bin := testenv.Tool(t, "tshark")
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-r", path, "-d", fmt.Sprintf("udp.port==%d,jmirror", port),
		"-E", "occurrence=a", "-E", "aggregator=|", "-T", "fields",
		"-e", "frame.protocols", "-e", "jmirror.mid", "-e", "jmirror.sid", "-e", "udp.dstport", "-e", "udp.length",
		"-e", "data.data", "-e", "ip.fragment", "-e", "ipv6.fragment", "-e", "_ws.expert.message")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("tshark dissected %d frames, the file has %d", len(lines), n)
	}
	first := func(s string) string { return strings.Split(s, "|")[0] }
	num := func(line, s string) uint64 {
		v, err := strconv.ParseUint(first(s), 0, 32)
		if err != nil {
			t.Fatalf("tshark line %q: %v", line, err)
		}
		return v
	}
	frames := make([]tsharkFrame, n)
	for i, line := range lines {
		f := strings.Split(line, "\t")
		if len(f) != 9 {
			t.Fatalf("tshark line %q: %d fields", line, len(f))
		}
		tf := tsharkFrame{protocols: strings.Split(f[0], ":"), expert: f[8]}
		if f[4] != "" {
			tf.udpLen = int(num(line, f[4]))
		}
		udp := slices.Index(tf.protocols, "udp")
		switch {
		case f[1] != "":
			tf.jmirror, tf.mid, tf.sid = true, uint32(num(line, f[1])), uint32(num(line, f[2]))
		case udp >= 0 && udp+1 < len(tf.protocols) && tf.protocols[udp+1] == "data" && f[3] != "" && num(line, f[3]) == uint64(port):
			// Wireshark 4.0's dissector declines a datagram whose
			// mirrored packet is neither IP nor PPP: its header is the
			// first 8 bytes of the UDP payload, shown as data.
			d, err := hex.DecodeString(first(f[5]))
			if err != nil {
				t.Fatalf("tshark line %q: %v", line, err)
			}
			if len(d) >= jmirror.HeaderLen {
				tf.jmirror = true
				tf.mid = uint32(d[0])<<24 | uint32(d[1])<<16 | uint32(d[2])<<8 | uint32(d[3])
				tf.sid = uint32(d[4])<<24 | uint32(d[5])<<16 | uint32(d[6])<<8 | uint32(d[7])
			}
		}
		for _, fs := range []string{f[6], f[7]} {
			if fs == "" {
				continue
			}
			for _, s := range strings.Split(fs, "|") {
				tf.fragments = append(tf.fragments, int(num(line, s)))
			}
		}
		frames[i] = tf
	}
	return frames
}

// refusal is why jmxdp does not count a datagram tshark decodes, by the
// rules of docs/datapath.md ("Outer shapes"), read from tshark's own view
// of the frame; ClassJmirror if none applies.
func (tf tsharkFrame) refusal() jmirror.Class {
	if strings.Contains(tf.expert, "Bad length value") {
		// tshark marks the UDP length beyond the packet, and decodes
		// what is there; jmxdp counts it cut.
		return jmirror.ClassMalformedTruncated
	}
	v6 := slices.Index(tf.protocols, "ipv6")
	udp := slices.Index(tf.protocols, "udp")
	if v6 < 0 || udp < v6 {
		return jmirror.ClassJmirror
	}
	chain := tf.protocols[v6+1 : udp]
	frags := 0
	for i, h := range chain {
		if i == jmirror.MaxIPv6Ext {
			return jmirror.ClassIPv6ExtTooLong
		}
		switch h {
		case "ipv6.hopopts":
			if i > 0 {
				return jmirror.ClassNotJmirror // hop-by-hop not first
			}
		case "ipv6.fraghdr":
			if frags++; frags > 1 {
				return jmirror.ClassNotJmirror // two fragment headers
			}
		}
	}
	return jmirror.ClassJmirror
}

// TestDifferentialTshark: on the jumbo and IPv6-extension corpus, both
// engines agree frame by frame (verdicts and every counter), and agree with
// tshark on every frame it decodes: each datagram tshark finds a Jmirror
// header in, in one frame or reassembled from fragments, is counted by the
// engines at the same frames with the same (mid, sid, V) and mirrored length,
// unless a documented rule refuses its shape (its outer chain as tshark
// reads it: hop-by-hop not first, two fragment headers, more than 8
// headers; or a UDP length tshark marks as beyond the packet), and then the
// engines give exactly that class; and every datagram the engines count is
// one tshark decodes.
func TestDifferentialTshark(t *testing.T) {
	pkts := jumboIPv6Corpus(t)
	var b bytes.Buffer
	if err := gen.WritePcap(&b, pkts); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jumbo-ipv6.pcap")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := tsharkFrames(t, path, gen.DefaultPort, len(pkts))

	cfg := loader.Config{}
	p := loadProgramSized(t, cfg, 1<<16)
	eng := jmirror.NewEngine(engineConfig(cfg), nil)
	res := make([]jmirror.Result, len(pkts))
	for i, pk := range pkts {
		kv, err := p.Run(pk.Data)
		if err != nil {
			t.Fatalf("frame %d: %v", i+1, err)
		}
		res[i] = eng.Process(pk.Data)
		if vocab.Verdict(res[i].Verdict) != kv {
			t.Fatalf("frame %d: kernel %v, Go %v (class %v)", i+1, kv, vocab.Verdict(res[i].Verdict), res[i].Class)
		}
		kc, err := p.Maps.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if gc := eng.Counters(); gc != kc {
			t.Fatalf("frame %d: counters differ (class %v):\n kernel %v\n Go     %v", i+1, res[i].Class, named(kc), named(gc))
		}
	}

	counted := func(c jmirror.Class) bool {
		return c == jmirror.ClassJmirror || c == jmirror.ClassFragTracked || c == jmirror.ClassFragDuplicate
	}
	explained := make([]bool, len(pkts)) // a counted frame tshark accounts for
	var agreed, fragmented int
	refused := map[jmirror.Class]int{}
	for i, tf := range ts {
		if !tf.jmirror {
			continue
		}
		where := fmt.Sprintf("frame %d (tshark %s)", i+1, strings.Join(tf.protocols, ":"))
		mid, v := tf.mid&gen.MaxMID, uint8(tf.mid>>30)
		frames := tf.fragments
		if len(frames) == 0 {
			frames = []int{i + 1}
		} else {
			fragmented++
		}
		if why := tf.refusal(); why != jmirror.ClassJmirror {
			// None of its frames counts it, and one is given the reason.
			hit := false
			for _, n := range frames {
				if c := res[n-1].Class; counted(c) {
					t.Errorf("%s: jmxdp's rules refuse it (%v), the engines count frame %d (%v)", where, why, n, c)
				} else if c == why {
					hit = true
				}
			}
			if !hit {
				t.Errorf("%s: tshark decodes mid %#x sid %#x, jmxdp's rules say %v, the engines %v", where, mid, tf.sid, why, res[frames[0]-1].Class)
			}
			refused[why]++
			continue
		}
		// Exactly one frame of the datagram counts it (its first
		// fragment); the others follow its stream.
		firsts := 0
		for _, n := range frames {
			r := res[n-1]
			if !counted(r.Class) || r.Header.MID != mid || r.Header.SID != tf.sid {
				t.Errorf("%s: tshark decodes mid %#x sid %#x; the engines give frame %d class %v, mid %#x sid %#x",
					where, mid, tf.sid, n, r.Class, r.Header.MID, r.Header.SID)
				continue
			}
			explained[n-1] = true
			if r.Class != jmirror.ClassJmirror {
				continue
			}
			firsts++
			if r.Header.Version != v || r.Header.InnerLen != tf.udpLen-jmirror.MinUDPLen {
				t.Errorf("%s: tshark V %d, mirrored length %d; the engines V %d, length %d at frame %d",
					where, v, tf.udpLen-jmirror.MinUDPLen, r.Header.Version, r.Header.InnerLen, n)
			}
		}
		if firsts != 1 {
			t.Errorf("%s: the engines count the datagram at %d of its frames %v, want 1", where, firsts, frames)
		}
		agreed++
	}
	for i, r := range res {
		if counted(r.Class) && !explained[i] {
			t.Errorf("frame %d: the engines count it (class %v, mid %#x sid %#x), tshark decodes no Jmirror there (%s)",
				i+1, r.Class, r.Header.MID, r.Header.SID, strings.Join(ts[i].protocols, ":"))
		}
	}
	// The corpus must hold every shape, or agreement means little.
	c := eng.Counters()
	if agreed < 1000 || fragmented == 0 || refused[jmirror.ClassNotJmirror] == 0 || refused[jmirror.ClassIPv6ExtTooLong] == 0 ||
		refused[jmirror.ClassMalformedTruncated] == 0 || c[vocab.StatFragFirst] == 0 {
		t.Errorf("corpus too thin: %d datagrams agreed (%d fragmented), refusals %v, counters %v", agreed, fragmented, refused, named(c))
	}
	t.Logf("%d frames: %d datagrams tshark and both engines agree on (%d reassembled from fragments); tshark decodes %v that jmxdp's rules refuse",
		len(pkts), agreed, fragmented, refused)
}
