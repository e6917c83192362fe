package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/decode"
)

const badFilterMessage = `bad filter: unknown name "sidd" (known: mid, sid, router, inner, packets, bytes)
  router in 64.230.0.0/16 and sidd > 3
                              ^`

// A bad --filter stops decode and stats before anything is read, with the
// caret message.
func TestFilterFlagErrors(t *testing.T) {
	const bad = "router in 64.230.0.0/16 and sidd > 3"
	missing := filepath.Join(t.TempDir(), "missing.pcap")
	for _, args := range [][]string{
		{"decode", "--engine", "go", "--filter", bad, missing},
		{"stats", "--iface", "jmsf9", "--pin-dir", t.TempDir(), "--filter", bad},
	} {
		_, err := run(t, args...)
		if err == nil || err.Error() != badFilterMessage {
			t.Errorf("jmxdp %s: error\n%v\nwant\n%s", strings.Join(args, " "), err, badFilterMessage)
		}
	}
	for _, c := range []struct{ filter, want string }{
		{"", "empty filter"},
		{"mid", "mid is a number, not a condition"},
		{"router in 10.0.0.0/33", `bad prefix "10.0.0.0/33"`},
		{"mid == 1 and", "unexpected end of the filter"},
	} {
		_, err := run(t, "decode", "--engine", "go", "--filter", c.filter, missing)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--filter %q: error %v, want %q", c.filter, err, c.want)
		}
	}
}

// The process: exit status 1, the message on stderr.
func TestFilterFlagExitStatus(t *testing.T) {
	if os.Getenv("JMXDP_FILTER_TEST_MAIN") == "1" {
		os.Args = []string{"jmxdp", "decode", "--engine", "go", "--filter", "router in 64.230.0.0/16 and sidd > 3", "x.pcap"}
		main()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFilterFlagExitStatus$")
	cmd.Env = append(os.Environ(), "JMXDP_FILTER_TEST_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if want := "jmxdp: " + badFilterMessage + "\n"; stderr.String() != want {
		t.Errorf("stderr:\n%s\nwant\n%s", stderr.String(), want)
	}
}

func TestDecodeFilterFlag(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "demo.pcap")
	if _, err := run(t, "gen", "--out", pcap); err != nil {
		t.Fatal(err)
	}
	decodeJSON := func(args ...string) decode.Report {
		t.Helper()
		out, err := run(t, append([]string{"decode", "--engine", "go", "--format", "json"}, append(args, pcap)...)...)
		if err != nil {
			t.Fatal(err)
		}
		var rep decode.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return rep
	}
	all := decodeJSON()
	outDir := filepath.Join(dir, "out")
	ppp := decodeJSON("--filter", "inner == ppp", "--out", outDir)
	if len(ppp.Streams) == 0 || len(ppp.Streams) >= len(all.Streams) {
		t.Fatalf("inner == ppp: %d of %d streams", len(ppp.Streams), len(all.Streams))
	}
	for _, s := range ppp.Streams {
		if s.Inner.PPP == 0 {
			t.Errorf("stream without ppp: %+v", s)
		}
	}
	files, _ := filepath.Glob(filepath.Join(outDir, "*", "*.pcapng"))
	if len(files) != len(ppp.Streams) || len(ppp.Files) != len(ppp.Streams) {
		t.Errorf("%d files, report lists %d, for %d streams", len(files), len(ppp.Files), len(ppp.Streams))
	}
	if ppp.Totals.Frames != all.Totals.Frames || ppp.Totals.Jmirror != all.Totals.Jmirror {
		t.Errorf("totals %+v, unfiltered %+v", ppp.Totals, all.Totals)
	}
	mid := all.Streams[0].MID
	one := decodeJSON("--filter", "mid == "+itoa(int(mid)))
	for _, s := range one.Streams {
		if s.MID != mid {
			t.Errorf("mid == %d: stream %+v", mid, s)
		}
	}
	table, err := run(t, "decode", "--engine", "go", "--filter", "inner == ppp", pcap)
	if err != nil || !strings.Contains(table, "streams filtered by: inner == ppp") || !strings.Contains(table, itoa(len(ppp.Streams))+" streams;") {
		t.Errorf("table: %v\n%s", err, table)
	}
}

// stats --filter: only the matching entries of the stream table, each
// (router, mid, sid) on its own.
func TestStatsFilterFlag(t *testing.T) {
	p, base := statsProgram(t, "jmsf0")
	a := testMirror{"10.0.0.1", 7, 1, 0, 40}
	b := testMirror{"10.0.0.2", 8, 2, 0, 100}
	c := testMirror{"10.0.0.3", 8, 2, 0, 100} // b's stream from a second router
	runFrames(t, p, a, 3)
	runFrames(t, p, b, 5)
	runFrames(t, p, c, 2)
	args := []string{"stats", "--iface", "jmsf0", "--pin-dir", base}
	for _, tc := range []struct {
		filter  string
		routers []string // busiest first
	}{
		{"mid == 8", []string{"10.0.0.2", "10.0.0.3"}},
		{"mid == 8 and packets > 2", []string{"10.0.0.2"}},
		{"router in 10.0.0.0/31", []string{"10.0.0.1"}},
		{"router != 10.0.0.2 and inner == ipv4", []string{"10.0.0.3", "10.0.0.1"}},
		{"inner == ppp", nil},
	} {
		out, err := run(t, append(args, "--format", "json", "--filter", tc.filter)...)
		if err != nil {
			t.Fatal(err)
		}
		var doc statsDoc
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var got []string
		for _, s := range doc.Streams {
			got = append(got, s.Router)
		}
		if strings.Join(got, ",") != strings.Join(tc.routers, ",") || doc.StreamsTotal != 3 {
			t.Errorf("--filter %q: routers %v of %d, want %v of 3", tc.filter, got, doc.StreamsTotal, tc.routers)
		}
	}
	out, err := run(t, append(args, "--filter", "mid == 8", "--top", "1")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`STREAMS: 1 of 2 matching mid == 8, by bytes`, `(?m)^10\.0\.0\.2\s+8 \(0x8\)`, `streams: 3 in a table of 1024`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("table lacks %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "10.0.0.1 ") || strings.Contains(out, "10.0.0.3 ") {
		t.Errorf("table shows streams the filter refuses:\n%s", out)
	}
}
