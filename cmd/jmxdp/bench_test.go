package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/bench"
)

// TestBenchShortJSON runs `jmxdp bench --short --format json --out DIR`
// end to end and checks the JSON on stdout and the files in DIR have every
// section with positive figures. No timing is asserted.
func TestBenchShortJSON(t *testing.T) {
	dir := t.TempDir()
	cmd := newRootCmd()
	var stdout, stderr strings.Builder
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"bench", "--short", "--format", "json", "--out", dir})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	var res bench.Result
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	if res.Mode != "short" || res.Runs != 1 {
		t.Errorf("mode %q runs %d", res.Mode, res.Runs)
	}
	if err := res.Validate(); err != nil {
		t.Error(err)
	}
	// As root the capture section ran this test binary as `jmxdp run`.
	if os.Geteuid() == 0 && !hasFigure(res, bench.SectionCapture, "cpu_100_jmxdp") {
		t.Errorf("no jmxdp figure in the capture section: %+v", res.Sections)
	}
	base := filepath.Join(dir, res.Timestamp.Format(time.DateOnly))
	b, err := os.ReadFile(base + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var fromFile bench.Result
	if err := json.Unmarshal(b, &fromFile); err != nil {
		t.Fatal(err)
	}
	if err := fromFile.Validate(); err != nil {
		t.Error(err)
	}
	md, err := os.ReadFile(base + ".md")
	if err != nil || !strings.Contains(string(md), "| scale | peak_rss |") {
		t.Fatalf("markdown: %v\n%s", err, md)
	}
}

func TestBenchBadFormat(t *testing.T) {
	if _, err := run(t, "bench", "--format", "xml"); err == nil {
		t.Fatal("--format xml accepted")
	}
}

// --only runs the sections named and refuses names that are none.
func TestBenchOnly(t *testing.T) {
	out, err := run(t, "bench", "--short", "--only", "scale", "--format", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// run mixes stderr's progress into out: the JSON starts at "{".
	var res bench.Result
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Sections) != 1 || res.Sections[0].Name != bench.SectionScale {
		t.Errorf("sections %+v", res.Sections)
	}
	if _, err := run(t, "bench", "--only", "nosuch"); err == nil || !strings.Contains(err.Error(), "no section") {
		t.Errorf("--only nosuch: %v", err)
	}
}

func hasFigure(res bench.Result, section, name string) bool {
	for _, s := range res.Sections {
		for _, f := range s.Figures {
			if s.Name == section && f.Name == name {
				return true
			}
		}
	}
	return false
}
