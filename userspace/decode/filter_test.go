package decode_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/filter"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
)

// demoCapture writes the default demo capture and returns it with its
// ground truth.
func demoCapture(t *testing.T) (string, gen.Summary) {
	t.Helper()
	pkts, sum, err := gen.Demo(gen.DefaultDemo())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := gen.WritePcap(&buf, pkts); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "demo.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, sum
}

func streamIDs(streams []decode.StreamReport) []gen.StreamID {
	out := make([]gen.StreamID, len(streams))
	for i, s := range streams {
		out[i] = gen.StreamID{MID: s.MID, SID: s.SID}
	}
	return out
}

func sortIDs(ids []gen.StreamID) []gen.StreamID {
	sort.Slice(ids, func(i, j int) bool {
		if ids[i].MID != ids[j].MID {
			return ids[i].MID < ids[j].MID
		}
		return ids[i].SID < ids[j].SID
	})
	return ids
}

// filesUnder lists the regular files under dir, and fails on anything left
// of a staging directory.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".jmxdp-filter") {
			t.Errorf("staging left behind: %s", p)
		}
		if d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// decode --filter on a generated capture: exactly the streams the ground
// truth says match, with the counts of an unfiltered decode, the same
// totals, and --out writes exactly their files, identical to the
// unfiltered run's.
func TestFilterGenerated(t *testing.T) {
	capture, sum := demoCapture(t)
	baseDir := filepath.Join(t.TempDir(), "all")
	base, err := decode.Files([]string{capture}, decode.Options{Ports: []uint16{gen.DefaultPort}, Engine: decode.EngineGo, OutDir: baseDir})
	if err != nil {
		t.Fatal(err)
	}
	if len(base.Streams) != len(sum.Streams) {
		t.Fatalf("unfiltered: %d streams, the capture has %d", len(base.Streams), len(sum.Streams))
	}
	byID := map[gen.StreamID]decode.StreamReport{}
	var allPackets uint64
	for _, s := range base.Streams {
		byID[gen.StreamID{MID: s.MID, SID: s.SID}] = s
		allPackets += s.Packets
	}
	if base.Totals.Written != allPackets || base.Totals.ReassemblyFailed != 0 {
		t.Fatalf("unfiltered --out wrote %d of %d packets (%d not reassembled)", base.Totals.Written, allPackets, base.Totals.ReassemblyFailed)
	}

	// Figures of the capture to filter on.
	dn := gen.DemoNetwork()
	var ids []gen.StreamID
	var sizes []uint64
	for id, c := range sum.Streams {
		ids = append(ids, id)
		sizes = append(sizes, c.Bytes)
	}
	sortIDs(ids)
	slices.Sort(sizes)
	median := sizes[len(sizes)/2]
	first := ids[0]
	has := func(a netip.Addr) func(gen.StreamID, gen.StreamCount) bool {
		return func(_ gen.StreamID, c gen.StreamCount) bool { _, ok := c.ByRouter[a]; return ok }
	}
	for _, c := range []struct {
		expr string
		want func(gen.StreamID, gen.StreamCount) bool
	}{
		{fmt.Sprintf("mid == %#x", first.MID), func(id gen.StreamID, _ gen.StreamCount) bool { return id.MID == first.MID }},
		{fmt.Sprintf("mid == %d and sid != %d", first.MID, first.SID), func(id gen.StreamID, _ gen.StreamCount) bool {
			return id.MID == first.MID && id.SID != first.SID
		}},
		{fmt.Sprintf("mid != %#x and not sid == %d", first.MID, ids[3].SID), func(id gen.StreamID, _ gen.StreamCount) bool {
			return id.MID != first.MID && id.SID != ids[3].SID
		}},
		{"router == " + dn.RouterB.String(), has(dn.RouterB)},
		{"router in 2001:db8::/32", has(dn.Router6)},
		{"router in 198.51.100.0/24 or router == 192.0.2.1", func(id gen.StreamID, c gen.StreamCount) bool {
			return has(dn.RouterC)(id, c) || has(dn.RouterA)(id, c)
		}},
		{"router != 192.0.2.1", func(id gen.StreamID, c gen.StreamCount) bool { return !has(dn.RouterA)(id, c) }},
		{"inner == ppp", func(_ gen.StreamID, c gen.StreamCount) bool { return c.Inner[gen.KindPPP] > 0 }},
		{"inner in [unknown, empty]", func(_ gen.StreamID, c gen.StreamCount) bool {
			return c.Inner[gen.KindUnknown] > 0 || c.Inner[gen.KindEmpty] > 0
		}},
		{fmt.Sprintf("bytes > %d", median), func(_ gen.StreamID, c gen.StreamCount) bool { return c.Bytes > median }},
		{fmt.Sprintf("not inner == ipv4 and bytes <= %d", median), func(_ gen.StreamID, c gen.StreamCount) bool {
			return c.Inner[gen.KindIPv4] == 0 && c.Bytes <= median
		}},
		{"packets >= 40 and router in 192.0.2.0/24 and inner == ppp", func(id gen.StreamID, c gen.StreamCount) bool {
			return c.Packets >= 40 && (has(dn.RouterA)(id, c) || has(dn.RouterB)(id, c)) && c.Inner[gen.KindPPP] > 0
		}},
		{"mid == 0x3fffffff and sid == 0xffffffff", func(id gen.StreamID, _ gen.StreamCount) bool {
			return id.MID == 0x3fffffff && id.SID == 0xffffffff
		}},
	} {
		t.Run(c.expr, func(t *testing.T) {
			var want []gen.StreamID
			for _, id := range ids {
				if c.want(id, sum.Streams[id]) {
					want = append(want, id)
				}
			}
			if len(want) == len(ids) {
				t.Fatalf("every stream matches: not a test")
			}
			t.Logf("%d of %d streams match", len(want), len(ids))
			flt, err := filter.Compile(c.expr)
			if err != nil {
				t.Fatal(err)
			}
			outDir := filepath.Join(t.TempDir(), "out")
			rep, err := decode.Files([]string{capture}, decode.Options{Ports: []uint16{gen.DefaultPort}, Engine: decode.EngineGo, OutDir: outDir, Filter: flt})
			if err != nil {
				t.Fatal(err)
			}
			got := streamIDs(rep.Streams)
			if !slices.Equal(got, want) {
				t.Fatalf("streams %v, want %v", got, want)
			}
			var wantFiles []string
			var wantWritten uint64
			for _, s := range rep.Streams {
				b := byID[gen.StreamID{MID: s.MID, SID: s.SID}]
				path := decode.StreamPath(outDir, s.MID, s.SID)
				if s.File != path {
					t.Errorf("stream %#x/%#x: file %q, want %q", s.MID, s.SID, s.File, path)
				}
				s.File, b.File = "", ""
				if fmt.Sprint(s) != fmt.Sprint(b) {
					t.Errorf("filtered %+v, unfiltered %+v", s, b)
				}
				wantFiles = append(wantFiles, path)
				wantWritten += b.Packets
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if orig, _ := os.ReadFile(decode.StreamPath(baseDir, s.MID, s.SID)); !bytes.Equal(data, orig) {
					t.Errorf("%s differs from the unfiltered run's file", path)
				}
			}
			slices.Sort(wantFiles)
			if files := filesUnder(t, outDir); !slices.Equal(files, wantFiles) {
				t.Errorf("files %v, want %v", files, wantFiles)
			}
			if !slices.Equal(rep.Files, wantFiles) {
				t.Errorf("report files %v, want %v", rep.Files, wantFiles)
			}
			if rep.Totals.Written != wantWritten {
				t.Errorf("written %d, want %d", rep.Totals.Written, wantWritten)
			}
			totals := rep.Totals
			totals.Written = base.Totals.Written
			if totals != base.Totals {
				t.Errorf("totals %+v, unfiltered %+v", rep.Totals, base.Totals)
			}

			// Without --out: the same streams.
			rep, err = decode.Files([]string{capture}, decode.Options{Ports: []uint16{gen.DefaultPort}, Engine: decode.EngineGo, Filter: flt})
			if err != nil {
				t.Fatal(err)
			}
			if got := streamIDs(rep.Streams); !slices.Equal(got, want) || len(rep.Files) != 0 {
				t.Errorf("without --out: streams %v files %v, want %v", got, rep.Files, want)
			}
		})
	}
}

// The real captures together: the filter picks the stream and router the
// captures' README describes.
func TestFilterRealCaptures(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	files := []string{
		filepath.Join(dir, "jmirror_ip.pcap"),
		filepath.Join(dir, "jmirror_l2tp.pcap"),
		filepath.Join(dir, "jmirror_ipv6_ppp.pcap"),
	}
	ports := []uint16{6502, 5000, 54301}
	ip := gen.StreamID{MID: 0x2, SID: 0x10f447}
	l2tp := gen.StreamID{MID: 0x3039, SID: 0x1e240}
	ppp := gen.StreamID{MID: 0x8000, SID: 0x1}
	engines := []decode.Engine{decode.EngineGo}
	if os.Geteuid() == 0 {
		engines = append(engines, decode.EngineBPF)
	}
	for _, eng := range engines {
		for _, c := range []struct {
			expr string
			want []gen.StreamID
		}{
			{"mid == 0x8000 and router in 64.230.56.0/24", []gen.StreamID{ppp}},
			{"router in 64.230.45.0/24", []gen.StreamID{ppp}}, // the stream's other router
			{"router == 64.230.56.119 and router == 64.230.45.123", []gen.StreamID{ppp}},
			{"mid == 0x8000 and router in 64.230.57.0/24", nil},
			{"router == 67.70.219.162", []gen.StreamID{ip}},
			{"router in 10.0.0.0/8", []gen.StreamID{l2tp}},
			{"inner == ppp", []gen.StreamID{l2tp, ppp}},
			{"inner == ppp and packets < 10", []gen.StreamID{l2tp}},
			{"mid == 0x3039 and sid >= 100000", []gen.StreamID{l2tp}},
			{"mid == 12345 and sid == 123456", []gen.StreamID{l2tp}},
			{"sid in 1..0x10f447 and not inner == ppp", []gen.StreamID{ip}},
			{"bytes > 2280 or mid == 2", []gen.StreamID{ip, ppp}},
			{"router not in 64.230.0.0/16", []gen.StreamID{ip, l2tp}},
		} {
			t.Run(string(eng)+"/"+c.expr, func(t *testing.T) {
				outDir := filepath.Join(t.TempDir(), "out")
				rep, err := decode.Files(files, decode.Options{Ports: ports, Engine: eng, OutDir: outDir, MaxStreams: 4096, Filter: filter.MustCompile(c.expr)})
				if err != nil {
					t.Fatal(err)
				}
				if got := streamIDs(rep.Streams); !slices.Equal(got, c.want) {
					t.Fatalf("streams %v, want %v", got, c.want)
				}
				var wantFiles []string
				for _, id := range c.want {
					wantFiles = append(wantFiles, decode.StreamPath(outDir, id.MID, id.SID))
				}
				slices.Sort(wantFiles)
				if got := filesUnder(t, outDir); !slices.Equal(got, wantFiles) {
					t.Errorf("files %v, want %v", got, wantFiles)
				}
				if rep.Totals.Frames != 38+6+100 || rep.Totals.Jmirror != 38+6+100 {
					t.Errorf("totals %+v: not over every frame", rep.Totals)
				}
				for _, s := range rep.Streams {
					if s.MID == ppp.MID {
						var routers []string
						for _, r := range s.Routers {
							routers = append(routers, r.Addr)
						}
						if !slices.Equal(routers, []string{"64.230.45.123", "64.230.56.119"}) || s.Packets != 100 {
							t.Errorf("ppp stream %+v: want both routers, 100 packets", s)
						}
					}
				}
			})
		}
	}
}

// A decode that fails with a staged --out leaves nothing behind: which
// streams would have matched is unknown.
func TestFilterOutFailure(t *testing.T) {
	capture, _ := demoCapture(t)
	outDir := filepath.Join(t.TempDir(), "out")
	_, err := decode.Files([]string{capture, filepath.Join(t.TempDir(), "missing.pcap")},
		decode.Options{Ports: []uint16{gen.DefaultPort}, Engine: decode.EngineGo, OutDir: outDir, Filter: filter.MustCompile("inner == ppp")})
	if err == nil || !strings.Contains(err.Error(), "missing.pcap") {
		t.Fatalf("error %v, want one naming missing.pcap", err)
	}
	if files := filesUnder(t, outDir); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
}

// Files already in the output directory stay: only the staging directory
// is removed.
func TestFilterOutKeepsOtherFiles(t *testing.T) {
	capture, _ := demoCapture(t)
	outDir := t.TempDir()
	other := filepath.Join(outDir, "notes.txt")
	if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := decode.Files([]string{capture}, decode.Options{Ports: []uint16{gen.DefaultPort}, Engine: decode.EngineGo, OutDir: outDir, Filter: filter.MustCompile("packets > 0")})
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(rep.Files), other)
	slices.Sort(want)
	if got := filesUnder(t, outDir); !slices.Equal(got, want) || len(rep.Files) == 0 {
		t.Errorf("files %v, want %v", got, want)
	}
}
