package gen_test

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
)

func trafficTestConfig() gen.TrafficConfig {
	cfg := gen.DefaultTraffic()
	cfg.Seed = 7
	cfg.Intercepts, cfg.SessionsPer = 5, 3
	cfg.Packets = 3000
	cfg.Routers = 3
	cfg.FragmentRatio = 0.05
	cfg.MalformedRatio = 0.03
	cfg.NoiseRatio = 0.1
	return cfg
}

func pcapBytes(t testing.TB, pkts []gen.Packet) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gen.WritePcap(&b, pkts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestTrafficDeterministic(t *testing.T) {
	cfg := trafficTestConfig()
	p1, s1, err := gen.Traffic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p2, _, err := gen.Traffic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pcapBytes(t, p1), pcapBytes(t, p2)) {
		t.Fatal("same seed, different bytes")
	}
	cfg.Seed++
	p3, _, err := gen.Traffic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(pcapBytes(t, p1), pcapBytes(t, p3)) {
		t.Fatal("different seeds, same bytes")
	}
	if s1.Frames != len(p1) || s1.Frames != s1.JmirrorDatagrams+s1.Fragments+s1.NotJmirror+s1.Malformed {
		t.Fatalf("frames %d (%d packets) != %d jmirror + %d fragments + %d noise + %d malformed",
			s1.Frames, len(p1), s1.JmirrorDatagrams, s1.Fragments, s1.NotJmirror, s1.Malformed)
	}
	if s1.JmirrorDatagrams+s1.Malformed != cfg.Packets {
		t.Fatalf("%d datagrams + %d malformed, want %d", s1.JmirrorDatagrams, s1.Malformed, cfg.Packets)
	}
	if s1.Fragmented == 0 || s1.Malformed == 0 || s1.NotJmirror == 0 || len(s1.Streams) != 15 {
		t.Fatalf("summary lacks something: %+v", s1)
	}
}

func writeTrafficPcap(t *testing.T, cfg gen.TrafficConfig) (string, gen.Summary) {
	t.Helper()
	pkts, sum, err := gen.Traffic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "traffic.pcap")
	if err := os.WriteFile(path, pcapBytes(t, pkts), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, sum
}

// CheckReport compares a decode report with a Traffic summary: per (mid, sid,
// router) packets and bytes, inner kinds and the totals.
func checkReport(t *testing.T, rep *decode.Report, sum gen.Summary) {
	t.Helper()
	if len(rep.Streams) != len(sum.Streams) {
		t.Errorf("%d streams decoded, want %d", len(rep.Streams), len(sum.Streams))
	}
	for _, s := range rep.Streams {
		want, ok := sum.Streams[gen.StreamID{MID: s.MID, SID: s.SID}]
		if !ok {
			t.Errorf("unexpected stream %#x/%#x", s.MID, s.SID)
			continue
		}
		if s.Packets != want.Packets || s.Bytes != want.Bytes {
			t.Errorf("stream %#x/%#x: %d packets %d bytes, want %d %d", s.MID, s.SID, s.Packets, s.Bytes, want.Packets, want.Bytes)
		}
		if len(s.Routers) != len(want.ByRouter) {
			t.Errorf("stream %#x/%#x: routers %v, want %v", s.MID, s.SID, s.Routers, want.ByRouter)
		}
		for _, r := range s.Routers {
			found := false
			for a, w := range want.ByRouter {
				if a.String() == r.Addr {
					found = true
					if r.Packets != w[0] || r.Bytes != w[1] {
						t.Errorf("stream %#x/%#x router %s: %d/%d, want %d/%d", s.MID, s.SID, r.Addr, r.Packets, r.Bytes, w[0], w[1])
					}
				}
			}
			if !found {
				t.Errorf("stream %#x/%#x: unexpected router %s", s.MID, s.SID, r.Addr)
			}
		}
		got := [gen.NumInnerKinds]uint64{s.Inner.IPv4, s.Inner.IPv6, s.Inner.PPP, s.Inner.Unknown, s.Inner.Empty}
		if got != want.Inner {
			t.Errorf("stream %#x/%#x: inner %v, want %v", s.MID, s.SID, got, want.Inner)
		}
	}
	tot := rep.Totals
	if tot.Frames != uint64(sum.Frames) || tot.Jmirror != uint64(sum.JmirrorDatagrams) || tot.NotJmirror != uint64(sum.NotJmirror) ||
		tot.Malformed != uint64(sum.Malformed) || tot.Fragments != uint64(sum.Fragments) || tot.FragmentedDatagrams != uint64(sum.Fragmented) ||
		tot.FragmentsUnmatched != 0 || tot.Skipped != 0 {
		t.Errorf("totals %+v, want frames %d jmirror %d not_jmirror %d malformed %d fragments %d fragmented %d",
			tot, sum.Frames, sum.JmirrorDatagrams, sum.NotJmirror, sum.Malformed, sum.Fragments, sum.Fragmented)
	}
}

func TestTrafficDecodes(t *testing.T) {
	cfg := trafficTestConfig()
	path, sum := writeTrafficPcap(t, cfg)
	for _, eng := range []decode.Engine{decode.EngineGo, decode.EngineBPF} {
		t.Run(string(eng), func(t *testing.T) {
			if eng == decode.EngineBPF {
				testenv.RequireRoot(t)
			}
			rep, err := decode.Files([]string{path}, decode.Options{Ports: []uint16{cfg.Port}, Engine: eng})
			if err != nil {
				t.Fatal(err)
			}
			checkReport(t, rep, sum)
		})
	}
}

// TestTrafficTshark counts (mid, sid) in Wireshark's dissection. tshark
// reassembles outer IPv4 fragments by default and dissects Jmirror once, on
// the last fragment, so fragmented datagrams count once like the others;
// malformed datagrams are left out of this capture (Wireshark would still
// show the header of a truncated one).
func TestTrafficTshark(t *testing.T) {
	tshark := testenv.Tool(t, "tshark")
	cfg := trafficTestConfig()
	cfg.MalformedRatio = 0
	path, sum := writeTrafficPcap(t, cfg)
	out, err := exec.Command(tshark, "-r", path, "-d", fmt.Sprintf("udp.port==%d,jmirror", cfg.Port),
		"-T", "fields", "-e", "jmirror.mid", "-e", "jmirror.sid").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	got := map[gen.StreamID]uint64{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 2 || f[0] == "" {
			continue
		}
		mid, err1 := strconv.ParseUint(f[0], 0, 32)
		sid, err2 := strconv.ParseUint(f[1], 0, 32)
		if err1 != nil || err2 != nil {
			t.Fatalf("tshark line %q", line)
		}
		got[gen.StreamID{MID: uint32(mid) & gen.MaxMID, SID: uint32(sid)}]++
	}
	if len(got) != len(sum.Streams) {
		t.Errorf("tshark sees %d streams, want %d", len(got), len(sum.Streams))
	}
	for id, c := range sum.Streams {
		if got[id] != c.Packets {
			t.Errorf("stream %#x/%#x: tshark counts %d, want %d", id.MID, id.SID, got[id], c.Packets)
		}
	}
}

func TestTrafficSizeMix(t *testing.T) {
	cfg := gen.DefaultTraffic()
	cfg.Packets = 100_000
	cfg.FragmentRatio, cfg.MalformedRatio, cfg.NoiseRatio = 0, 0, 0
	cfg.Kinds = []gen.KindWeight{{Kind: gen.KindIPv4, Weight: 1}} // size = inner length exactly
	pkts, sum, err := gen.Traffic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != cfg.Packets {
		t.Fatalf("%d frames", len(pkts))
	}
	var bytes uint64
	for _, c := range sum.Streams {
		bytes += c.Bytes
	}
	// Count sizes from the frames: outer 14+20+8+8 bytes of headers.
	n := map[int]int{}
	for _, p := range pkts {
		n[max(len(p.Data)-50, 0)]++
	}
	want := map[int]float64{64: 7.0 / 12, 576: 4.0 / 12, 1400: 1.0 / 12}
	for size, share := range want {
		got := float64(n[size]) / float64(cfg.Packets)
		if got < share*0.95 || got > share*1.05 {
			t.Errorf("size %d: share %.4f, want %.4f ±5%%", size, got, share)
		}
	}
	if avg := float64(bytes) / float64(cfg.Packets); avg < 340 || avg > 370 { // 7*64+4*576+1400 / 12 = 346
		t.Errorf("average inner size %.1f", avg)
	}
}

func TestTrafficKindMix(t *testing.T) {
	cfg := gen.DefaultTraffic()
	cfg.Packets = 20_000
	_, sum, err := gen.Traffic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var k [gen.NumInnerKinds]uint64
	for _, c := range sum.Streams {
		for i := range k {
			k[i] += c.Inner[i]
		}
	}
	total := float64(sum.JmirrorDatagrams)
	for i, share := range map[gen.InnerKind]float64{gen.KindIPv4: .6, gen.KindIPv6: .3, gen.KindPPP: .1} {
		if got := float64(k[i]) / total; got < share-0.02 || got > share+0.02 {
			t.Errorf("%v: share %.3f, want %.2f", i, got, share)
		}
	}
}

func TestTrafficBadConfig(t *testing.T) {
	for _, mod := range []func(*gen.TrafficConfig){
		func(c *gen.TrafficConfig) { c.Routers = 0 },
		func(c *gen.TrafficConfig) { c.FragmentRatio = 2 },
		func(c *gen.TrafficConfig) { c.Sizes = []gen.SizeWeight{{Size: 64, Weight: 0}} },
		func(c *gen.TrafficConfig) { c.Kinds = []gen.KindWeight{{Kind: gen.KindEmpty, Weight: 1}} },
	} {
		cfg := gen.DefaultTraffic()
		mod(&cfg)
		if _, _, err := gen.Traffic(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

// BenchmarkTraffic1M builds 1M datagrams (plus the default noise and
// fragments) per iteration; ns/frame is reported.
func BenchmarkTraffic1M(b *testing.B) {
	cfg := gen.DefaultTraffic()
	cfg.Packets = 1_000_000
	frames := 0
	for b.Loop() {
		pkts, _, err := gen.Traffic(cfg)
		if err != nil {
			b.Fatal(err)
		}
		frames += len(pkts)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/frame")
}

func TestTrafficRatios(t *testing.T) {
	cfg := gen.DefaultTraffic()
	cfg.Packets = 50_000
	cfg.FragmentRatio, cfg.MalformedRatio, cfg.NoiseRatio = 0.1, 0.05, 1.5
	_, sum, err := gen.Traffic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := float64(cfg.Packets)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"malformed", float64(sum.Malformed) / n, 0.05},
		{"fragmented", float64(sum.Fragmented) / n, 0.1 * 0.95}, // of the well-formed
		{"noise", float64(sum.NotJmirror) / n, 1.5},
	} {
		if c.got < c.want*0.9 || c.got > c.want*1.1 {
			t.Errorf("%s: %.4f per datagram, want %.4f", c.name, c.got, c.want)
		}
	}
}

// trafficHash digests everything Traffic returns: each packet's time and
// bytes, and the summary with its streams in a fixed order.
func trafficHash(t testing.TB, cfg gen.TrafficConfig) string {
	t.Helper()
	pkts, sum, err := gen.Traffic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	var n [8]byte
	for _, p := range pkts {
		binary.BigEndian.PutUint64(n[:], uint64(p.Time.UnixNano()))
		h.Write(n[:])
		binary.BigEndian.PutUint64(n[:], uint64(len(p.Data)))
		h.Write(n[:])
		h.Write(p.Data)
	}
	ids := slices.SortedFunc(maps.Keys(sum.Streams), func(a, b gen.StreamID) int {
		return cmp.Or(cmp.Compare(a.MID, b.MID), cmp.Compare(a.SID, b.SID))
	})
	fmt.Fprintf(h, "%d %d %d %d %d %d\n", sum.Frames, sum.JmirrorDatagrams, sum.Fragmented, sum.Fragments, sum.Malformed, sum.NotJmirror)
	for _, id := range ids {
		fmt.Fprintf(h, "%v %v\n", id, sum.Streams[id])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestTrafficGolden pins Traffic's output for fixed configurations: the
// hashes were computed before frames were built into shared buffers, so a
// faster builder must produce the very same bytes.
func TestTrafficGolden(t *testing.T) {
	big := trafficTestConfig()
	big.Seed = 11
	big.Routers = 300 // past 254: routers from 198.18.0.0/15
	big.Intercepts, big.SessionsPer = 40, 10
	// Sizes above the MTU from the user's mix, so that some malformed
	// datagrams are fragmented too.
	big.Sizes = []gen.SizeWeight{{Size: 0, Weight: 1}, {Size: 64, Weight: 5}, {Size: 1490, Weight: 2}, {Size: 4000, Weight: 1}}
	big.Kinds = []gen.KindWeight{{Kind: gen.KindIPv4, Weight: 1}, {Kind: gen.KindIPv6, Weight: 1}, {Kind: gen.KindPPP, Weight: 1}}
	big.MalformedRatio = 0.1
	big.NoiseRatio = 2.5
	for _, c := range []struct {
		name string
		cfg  gen.TrafficConfig
		want string
	}{
		{"test", trafficTestConfig(), "45a66155cb097c3c4259f135f7303e48afadbe62330e7f3d7d0656c5712deee1"},
		{"default", gen.DefaultTraffic(), "af51b29fb7cb5616aa865074d800938061cc30869ce0367ff117d6dac6efd33c"},
		{"big", big, "752d9d7184afbeeb8b444128dd7859070cb315de4e8cb50a5bda83a8b379421a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := trafficHash(t, c.cfg); got != c.want {
				t.Errorf("hash %s, want %s", got, c.want)
			}
		})
	}
}

// jumboTrafficConfig is traffic at MTU 9000 with jumbo inner packets, half
// of the routers over outer IPv6 behind hop-by-hop and destination
// options, fragments of both families.
func jumboTrafficConfig() gen.TrafficConfig {
	cfg := trafficTestConfig()
	cfg.Packets = 1500
	cfg.Routers = 4
	cfg.MTU = 9000
	cfg.IPv6 = 0.5
	cfg.IPv6Ext = []gen.ExtHeader{{Type: gen.ExtHopByHop}, {Type: gen.ExtDstOpts, Len: 16}}
	cfg.Sizes = []gen.SizeWeight{{Size: 64, Weight: 3}, {Size: 1400, Weight: 2}, {Size: 8900, Weight: 2}}
	cfg.FragmentRatio = 0.1
	return cfg
}

// Both engines count jumbo, IPv6-extension and IPv6-fragment traffic as
// the generator made it, and so does tshark.
func TestTrafficJumboIPv6(t *testing.T) {
	cfg := jumboTrafficConfig()
	pkts, sum, err := gen.Traffic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var v6, jumbo, v6frags int
	for _, p := range pkts {
		if len(p.Data) > 1514+8 {
			jumbo++
		}
		if len(p.Data) > 14 && p.Data[12] == 0x86 && p.Data[13] == 0xdd {
			v6++
			if p.Data[14+6] == gen.ExtHopByHop && p.Data[14+40] == gen.ExtDstOpts && p.Data[14+48] == gen.ExtFragment {
				v6frags++
			}
		}
		if len(p.Data) > 9014 {
			t.Fatalf("a %d-byte frame over MTU 9000", len(p.Data))
		}
	}
	if v6 == 0 || jumbo == 0 || v6frags == 0 || sum.Fragmented == 0 {
		t.Fatalf("%d IPv6 frames, %d jumbo, %d IPv6 fragments, %d fragmented datagrams: want some of each", v6, jumbo, v6frags, sum.Fragmented)
	}
	path, _ := writeTrafficPcap(t, cfg)
	for _, eng := range []decode.Engine{decode.EngineGo, decode.EngineBPF} {
		t.Run(string(eng), func(t *testing.T) {
			if eng == decode.EngineBPF {
				testenv.RequireRoot(t)
			}
			rep, err := decode.Files([]string{path}, decode.Options{Ports: []uint16{cfg.Port}, Engine: eng})
			if err != nil {
				t.Fatal(err)
			}
			checkReport(t, rep, sum)
		})
	}
	t.Run("tshark", func(t *testing.T) {
		tshark := testenv.Tool(t, "tshark")
		cfg.MalformedRatio = 0
		path, sum := writeTrafficPcap(t, cfg)
		out, err := exec.Command(tshark, "-r", path, "-d", fmt.Sprintf("udp.port==%d,jmirror", cfg.Port),
			"-T", "fields", "-e", "jmirror.mid", "-e", "jmirror.sid").Output()
		if err != nil {
			t.Fatalf("tshark: %v", err)
		}
		got := map[gen.StreamID]uint64{}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Split(line, "\t")
			if len(f) != 2 || f[0] == "" {
				continue
			}
			mid, err1 := strconv.ParseUint(f[0], 0, 32)
			sid, err2 := strconv.ParseUint(f[1], 0, 32)
			if err1 != nil || err2 != nil {
				t.Fatalf("tshark line %q", line)
			}
			got[gen.StreamID{MID: uint32(mid) & gen.MaxMID, SID: uint32(sid)}]++
		}
		for id, c := range sum.Streams {
			if got[id] != c.Packets {
				t.Errorf("stream %#x/%#x: tshark counts %d, want %d", id.MID, id.SID, got[id], c.Packets)
			}
		}
	})
}
