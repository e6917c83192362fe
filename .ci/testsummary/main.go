// Command testsummary runs `go test -json` and prints what a plain `go test`
// prints (an ok line per package, the whole output of every failing test),
// then a summary: each skipped test with its reason, each test that ran
// only in part (testenv.PartSkip), each failure, and the counts. It exits
// with the command's status, so a failure stays a failure.
//
// It lives under .ci so that ./... (which skips dot-directories) leaves it
// out of the product's build; `make test` runs it with `go run`:
//
//	go run ./.ci/testsummary go test -json ./...
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run starts the command, renders its events to stdout, prints the summary
// and returns the command's exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: testsummary go test -json [flags] [packages]")
		return 2
	}
	// Ctrl-C reaches go test through the terminal's process group; this
	// process stays to print what was seen and pass the status on.
	signal.Ignore(os.Interrupt, syscall.SIGTERM)

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(stderr, "testsummary: %v\n", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "testsummary: start %s: %v\n", args[0], err)
		return 1
	}
	s := newSummary(stdout, modulePath("go.mod"))
	readErr := s.read(out)
	waitErr := cmd.Wait()
	s.print()

	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(waitErr, &exit):
		code = exit.ExitCode()
		if code < 0 { // killed by a signal
			code = 1
		}
	case waitErr != nil:
		fmt.Fprintf(stderr, "testsummary: %v\n", waitErr)
		code = 1
	}
	if readErr != nil {
		fmt.Fprintf(stderr, "testsummary: reading %s's output: %v\n", args[0], readErr)
		code = max(code, 1)
	}
	// A failure the events show is a failure whatever the status says.
	if code == 0 && len(s.failed) > 0 {
		code = 1
	}
	return code
}

// event is one line of `go test -json` (cmd/test2json), with the build
// events of Go 1.24 and later.
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string
}

// result is a test that did not simply pass.
type result struct {
	pkg, test, reason string
}

type summary struct {
	w      io.Writer
	module string // trimmed from package paths in the summary
	events int
	passed int

	// A top-level test's output, its subtests' included, in order: printed
	// whole if it fails, dropped if it passes or skips.
	top map[string][]string
	// Each test's own lines, for its skip reason and PartSkip lines.
	own map[string][]string
	// Output of a package outside its tests (ok/FAIL lines, panics).
	pkg map[string][]string

	skipped, partly, failed []result
}

func newSummary(w io.Writer, module string) *summary {
	return &summary{w: w, module: module,
		top: map[string][]string{}, own: map[string][]string{}, pkg: map[string][]string{}}
}

func key(pkg, test string) string { return pkg + "\x00" + test }

func topName(test string) string {
	if i := strings.IndexByte(test, '/'); i >= 0 {
		return test[:i]
	}
	return test
}

// read renders the events as they come, so a long run shows each package
// when it ends.
func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(s.w, "%s\n", line) // not an event: show it as it is
			continue
		}
		s.events++
		s.handle(e)
	}
	return sc.Err()
}

func (s *summary) handle(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.w, e.Output)
	case "build-fail":
		// "pkg [pkg.test]": the package's own fail event follows.
		pkg, _, _ := strings.Cut(e.ImportPath, " ")
		s.failed = append(s.failed, result{pkg: pkg, reason: "build failed"})
	case "output":
		if e.Test == "" {
			s.pkg[e.Package] = append(s.pkg[e.Package], e.Output)
			return
		}
		k := key(e.Package, topName(e.Test))
		s.top[k] = append(s.top[k], e.Output)
		s.own[key(e.Package, e.Test)] = append(s.own[key(e.Package, e.Test)], e.Output)
	case "pass", "fail", "skip":
		if e.Test == "" {
			s.endPackage(e)
		} else {
			s.endTest(e)
		}
	}
}

func (s *summary) endTest(e event) {
	k := key(e.Package, e.Test)
	own := s.own[k]
	delete(s.own, k)
	for _, l := range own {
		if _, reason, ok := strings.Cut(l, partSkipPrefix); ok {
			s.partly = append(s.partly, result{e.Package, e.Test, strings.TrimSpace(reason)})
		}
	}
	switch e.Action {
	case "pass":
		s.passed++
	case "skip":
		s.skipped = append(s.skipped, result{e.Package, e.Test, skipReason(own)})
	case "fail":
		s.failed = append(s.failed, result{pkg: e.Package, test: e.Test})
	}
	if e.Test != topName(e.Test) {
		return
	}
	if e.Action == "fail" {
		fmt.Fprint(s.w, strings.Join(s.top[k], ""))
	}
	delete(s.top, k)
}

func (s *summary) endPackage(e event) {
	lines := s.pkg[e.Package]
	delete(s.pkg, e.Package)
	if e.Action == "fail" {
		// Tests that never ended (a panic, a timeout) show what they printed.
		var open []string
		for k := range s.top {
			if strings.HasPrefix(k, e.Package+"\x00") {
				open = append(open, k)
			}
		}
		sort.Strings(open)
		for _, k := range open {
			fmt.Fprint(s.w, strings.Join(s.top[k], ""))
			delete(s.top, k)
		}
		if !s.failedIn(e.Package) {
			s.failed = append(s.failed, result{pkg: e.Package, reason: "the package failed outside its tests"})
		}
	}
	for _, l := range lines {
		// -json runs the tests verbosely; a plain `go test` prints no PASS.
		if e.Action != "fail" && l == "PASS\n" {
			continue
		}
		fmt.Fprint(s.w, l)
	}
}

func (s *summary) failedIn(pkg string) bool {
	for _, f := range s.failed {
		if f.pkg == pkg {
			return true
		}
	}
	return false
}

// partSkipPrefix is testenv.PartSkipPrefix (a test checks), not imported:
// testenv is test code, and this command would link the testing package.
const partSkipPrefix = "partly skipped: "

// logLine is the start of a t.Log/t.Skip entry: "    file_test.go:12: ".
var logLine = regexp.MustCompile(`^\s+\S+\.go:\d+: `)

// skipReason is a skipped test's last log entry (what t.Skip said), with
// its continuation lines.
func skipReason(lines []string) string {
	start := -1
	for i, l := range lines {
		if logLine.MatchString(l) {
			start = i
		}
	}
	if start < 0 {
		return "(no reason given)"
	}
	var parts []string
	for _, l := range lines[start:] {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "--- ") || strings.HasPrefix(t, "=== ") {
			break
		}
		if t != "" {
			parts = append(parts, t)
		}
	}
	return strings.Join(parts, " ")
}

func (s *summary) name(r result) string {
	p := r.pkg
	if s.module != "" {
		if p == s.module {
			p = "."
		} else {
			p = strings.TrimPrefix(p, s.module+"/")
		}
	}
	if r.test == "" {
		return p
	}
	return p + " " + r.test
}

func (s *summary) print() {
	if s.events == 0 {
		fmt.Fprintln(s.w, "testsummary: no test events: does the command have -json?")
		return
	}
	section := func(title string, rs []result) {
		if len(rs) == 0 {
			return
		}
		fmt.Fprintf(s.w, "\n== %s (%d)\n", title, len(rs))
		for _, r := range rs {
			if r.reason == "" {
				fmt.Fprintf(s.w, "  %s\n", s.name(r))
			} else {
				fmt.Fprintf(s.w, "  %s: %s\n", s.name(r), r.reason)
			}
		}
	}
	section("SKIPPED", s.skipped)
	section("PARTLY SKIPPED (the test passed without these checks)", s.partly)
	section("FAILED", s.failed)
	fmt.Fprintf(s.w, "\n== %d passed, %d skipped, %d partly skipped, %d failed\n",
		s.passed, len(s.skipped), len(s.partly), len(s.failed))
}

// modulePath is the module line of go.mod, or "" when there is none.
func modulePath(gomod string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(l), "module "); ok {
			return strings.Trim(strings.TrimSpace(m), `"`)
		}
	}
	return ""
}
