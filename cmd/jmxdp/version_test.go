package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

func TestResolveBuild(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}}
	}
	pseudo := vcs("38acab62175de239eb8279c5befd773d27ae2cb9", "false")
	pseudo.Main.Version = "v0.0.0-20261203101500-38acab62175d"
	for _, c := range []struct {
		name         string
		ldV, ldR     string
		info         *debug.BuildInfo
		wantV, wantR string
	}{
		{"ldflags win", "v1.2.0", "abc", vcs("def", "true"), "v1.2.0", "abc"},
		{"ldflags version, revision from vcs", "v1.2.0", "", vcs("def", "false"), "v1.2.0", "def"},
		{"vcs only", "", "", vcs("def", "false"), "dev", "def"},
		{"vcs modified", "", "", vcs("def", "true"), "dev+dirty", "def"},
		{"pseudo-version", "", "", pseudo, "v0.0.0-20261203101500-38acab62175d", "38acab62175de239eb8279c5befd773d27ae2cb9"},
		{"no vcs", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev", ""},
		{"no build info", "", "", nil, "dev", ""},
	} {
		b := resolveBuild(c.ldV, c.ldR, c.info)
		if b.Version != c.wantV || b.Revision != c.wantR {
			t.Errorf("%s: version %q revision %q, want %q %q", c.name, b.Version, b.Revision, c.wantV, c.wantR)
		}
	}
}

// `jmxdp version` names everything that tells two builds apart, the BPF
// object among them; --version is one line.
func TestVersionCommand(t *testing.T) {
	out, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"jmxdp ", "revision:", "go:         " + runtime.Version(), "bpf object: sha256:" + loader.ObjectSHA256()} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "--version")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(out, "jmxdp ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("--version: %q, want one line", out)
	}
}

// makeBuild runs `make build` into a temporary directory and returns the
// binary: what an operator builds, with the version from git.
func makeBuild(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	testenv.Tool(t, "make")
	bin := filepath.Join(t.TempDir(), "jmxdp")
	cmd := exec.Command("make", "-C", testenv.RepoRoot(), "build", "BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	return bin
}

// gitOut is the output of a git command in the repository, "" without git
// or outside a checkout.
func gitOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", testenv.RepoRoot()}, args...)...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// make build: a static binary (the DaemonSet's distroless image has no
// libc) that reports git describe and the commit.
func TestMakeBuildStaticWithVersion(t *testing.T) {
	bin := makeBuild(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a PT_INTERP (dynamic loader): not static; is CGO_ENABLED=0 missing?")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("shared libraries %v (%v), want none", libs, err)
	}

	describe, rev := gitOut(t, "describe", "--tags", "--always", "--dirty"), gitOut(t, "rev-parse", "HEAD")
	if describe == "" {
		testenv.SkipOrFail(t, "not a git checkout: make build has no version to stamp")
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("jmxdp %s (revision %s, %s, %s/%s)\n", describe, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if string(out) != want {
		t.Errorf("--version: %q, want %q", out, want)
	}
	out, err = exec.Command(bin, "version").Output()
	if err != nil || !strings.Contains(string(out), "revision:   "+rev+"\n") || !strings.HasPrefix(string(out), "jmxdp "+describe+"\n") {
		t.Errorf("version: %v\n%s", err, out)
	}
}

// A plain `go build` (no -ldflags) reports what Go stamped into the
// binary, as `go version -m` reads it.
func TestGoBuildFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "jmxdp")
	// -buildvcs=auto: stamp the VCS where Go finds one (this machine's
	// GOFLAGS may turn it off).
	build := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	m, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	rev, modified := "", false
	for _, l := range strings.Split(string(m), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "build" {
			if v, ok := strings.CutPrefix(f[1], "vcs.revision="); ok {
				rev = v
			}
			modified = modified || f[1] == "vcs.modified=true"
		}
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if rev == "" {
		// A git worktree or a tarball: Go stamps nothing.
		t.Logf("go build stamped no VCS revision here (git worktree or no checkout)")
		if !strings.Contains(string(out), "revision:   unknown") {
			t.Errorf("without a VCS stamp, version says:\n%s", out)
		}
		return
	}
	if head := gitOut(t, "rev-parse", "HEAD"); head != "" && rev != head {
		t.Errorf("vcs.revision %s, HEAD %s", rev, head)
	}
	if !strings.Contains(string(out), "revision:   "+rev+"\n") {
		t.Errorf("version does not report vcs.revision %s:\n%s", rev, out)
	}
	if first, _, _ := strings.Cut(string(out), "\n"); modified != strings.Contains(first, "dirty") {
		t.Errorf("vcs.modified=%v, but the version line is %q", modified, first)
	}
}
