package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"
)

// Machine describes where a run happened.
type Machine struct {
	Kernel    string `json:"kernel"`
	Arch      string `json:"arch"`
	CPUModel  string `json:"cpu_model"`
	CPUs      int    `json:"cpus"`
	MemoryMiB uint64 `json:"memory_mib"`
	GoVersion string `json:"go_version"`
}

// ReadMachine reads the kernel from uname, the CPU from /proc/cpuinfo and
// the memory from /proc/meminfo; what it cannot read stays empty.
func ReadMachine() Machine {
	m := Machine{Arch: runtime.GOARCH, GoVersion: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			k, v, ok := strings.Cut(s.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "processor":
				m.CPUs++
			case "model name":
				if m.CPUModel == "" {
					m.CPUModel = strings.TrimSpace(v)
				}
			}
		}
		f.Close()
	}
	if m.CPUs == 0 {
		m.CPUs = runtime.NumCPU()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kb, ok := kbField(string(b), "MemTotal"); ok {
			m.MemoryMiB = kb / 1024
		}
	}
	return m
}

// kbField finds "Field:   123 kB" in a /proc file.
func kbField(s, field string) (uint64, bool) {
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != field {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// metString is "met", "missed by ..." or "-" (no target).
func metString(f Figure) string {
	switch {
	case f.Met == nil || f.Target == nil:
		return "-"
	case *f.Met:
		return "met"
	}
	return "missed by " + f.Target.missedBy(f.Value, f.Ratio, f.Unit)
}

// missedBy says how far x (the value or the ratio, as t is on) is from
// the bound: a percentage or a factor when both are positive, else the
// difference (in unit for a value).
func (t Target) missedBy(value, ratio float64, unit string) string {
	x, u := ratio, ""
	if t.On == "value" {
		x, u = value, " "+unit
	}
	if t.Bound > 0 && x > 0 {
		f := x / t.Bound
		if t.Op == ">=" {
			f = t.Bound / x
		}
		switch p := (f - 1) * 100; {
		case p < 10:
			return fmt.Sprintf("%.1f%%", p)
		case f < 2:
			return fmt.Sprintf("%.0f%%", p)
		}
		return num(f) + "x"
	}
	return num(math.Abs(x-t.Bound)) + u
}

func targetString(f Figure) string {
	if f.Target == nil {
		return "-"
	}
	return f.Target.String()
}

func num(x float64) string {
	switch {
	case x >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 1:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strconv.FormatFloat(x, 'g', 3, 64)
}

// WriteTable writes r as an aligned text table, then the notes.
func (r *Result) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "jmxdp bench (%s mode, median of %d runs) %s\n", r.Mode, r.Runs, r.Timestamp.Format("2006-01-02 15:04:05Z"))
	fmt.Fprintf(w, "%s, %s, %d CPUs (%s), %d MiB, %s\n\n", r.Machine.Kernel, r.Machine.Arch, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemoryMiB, r.Machine.GoVersion)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tFIGURE\tVALUE\tBASELINE\tRATIO\tTARGET\tMET")
	for _, s := range r.Sections {
		for _, f := range s.Figures {
			fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s (%s)\t%s %s\t%s\t%s\n", s.Name, f.Name, num(f.Value), f.Unit,
				num(f.Baseline), f.BaselineName, num(f.Ratio), f.RatioDesc, targetString(f), metString(f))
		}
		for _, sk := range s.Skipped {
			fmt.Fprintf(tw, "%s\t(skipped)\t%s\t\t\t\t\n", s.Name, sk)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, s := range r.Sections {
		if s.Note != "" {
			fmt.Fprintf(w, "%s: %s\n", s.Name, s.Note)
		}
		for _, f := range s.Figures {
			if f.Note != "" {
				fmt.Fprintf(w, "  %s: %s\n", f.Name, f.Note)
			}
		}
	}
	_, err := fmt.Fprintf(w, "elapsed %.1fs\n", r.Elapsed)
	return err
}

// WriteMarkdown writes r as a Markdown report.
func (r *Result) WriteMarkdown(w io.Writer) error {
	fmt.Fprintf(w, "# jmxdp bench, %s\n\n", r.Timestamp.Format("2006-01-02 15:04:05Z"))
	fmt.Fprintf(w, "%s mode, each figure the median of %d runs. Machine: %s, %s, %d CPUs (%s), %d MiB, %s.\n\n",
		r.Mode, r.Runs, r.Machine.Kernel, r.Machine.Arch, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemoryMiB, r.Machine.GoVersion)
	fmt.Fprintln(w, "| Section | Figure | Value | Baseline | Ratio | Target | Met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, s := range r.Sections {
		for _, f := range s.Figures {
			fmt.Fprintf(w, "| %s | %s | %s %s | %s (%s) | %s %s | %s | %s |\n", s.Name, f.Name, num(f.Value), f.Unit,
				num(f.Baseline), f.BaselineName, num(f.Ratio), f.RatioDesc, targetString(f), metString(f))
		}
		for _, sk := range s.Skipped {
			fmt.Fprintf(w, "| %s | skipped | %s | | | | |\n", s.Name, sk)
		}
	}
	fmt.Fprintln(w)
	for _, s := range r.Sections {
		if s.Note != "" {
			fmt.Fprintf(w, "- **%s**: %s\n", s.Name, s.Note)
		}
		for _, f := range s.Figures {
			if f.Note != "" {
				fmt.Fprintf(w, "  - %s: %s\n", f.Name, f.Note)
			}
		}
	}
	return nil
}

// WriteFiles writes dir/<date>.json and dir/<date>.md (the run's UTC date).
func (r *Result) WriteFiles(dir string) (jsonPath, mdPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	base := filepath.Join(dir, r.Timestamp.Format("2006-01-02"))
	write := func(path string, fn func(io.Writer) error) error {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := write(base+".json", r.WriteJSON); err != nil {
		return "", "", err
	}
	if err := write(base+".md", r.WriteMarkdown); err != nil {
		return "", "", err
	}
	return base + ".json", base + ".md", nil
}
