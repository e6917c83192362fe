package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// dockerInstr is one instruction of a Dockerfile, continuation lines
// joined.
type dockerInstr struct {
	line int
	op   string
	args string
}

func parseDockerfile(t *testing.T, path string) []dockerInstr {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dockerInstr
	var cur strings.Builder
	start, n := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		op, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{start, strings.ToUpper(op), strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// makeVar is a variable's value as the Makefile assigns it.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + `\s*\??:?=\s*(.*)$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("Makefile sets no %s", name)
	}
	return strings.TrimSpace(string(m[1]))
}

// Docker is not needed to check the Dockerfile's shape: two stages, a
// static build stamped with the version, a distroless run stage holding
// the binary where the DaemonSet runs it, and COPY sources that exist and
// that .dockerignore does not leave out. (Building the image needs docker
// and the network: `make image`.)
func TestDockerfile(t *testing.T) {
	root := testenv.RepoRoot()
	instrs := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var ignored []string
	for _, l := range strings.Split(string(ignore), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			ignored = append(ignored, l)
		}
	}
	for _, must := range []string{".git", "bin"} {
		if !slices.Contains(ignored, must) {
			t.Errorf(".dockerignore does not leave out %s", must)
		}
	}

	var stages []string
	var stageFrom []string
	var build, entry string
	copied := map[string]string{} // destination in the last stage -> source
	for _, in := range instrs {
		f := strings.Fields(in.args)
		switch in.op {
		case "FROM":
			if len(f) != 3 || !strings.EqualFold(f[1], "AS") {
				t.Errorf("line %d: FROM %s: name every stage (FROM image AS name)", in.line, in.args)
				continue
			}
			stages, stageFrom = append(stages, f[2]), append(stageFrom, f[0])
			clear(copied)
		case "RUN":
			if strings.Contains(in.args, "go build") {
				build = in.args
			}
		case "COPY":
			var from string
			var srcs []string
			for _, a := range f[:len(f)-1] {
				if v, ok := strings.CutPrefix(a, "--from="); ok {
					from = v
				} else if !strings.HasPrefix(a, "--") {
					srcs = append(srcs, a)
				}
			}
			dst := f[len(f)-1]
			for _, s := range srcs {
				copied[dst] = s
				if from != "" {
					if !slices.Contains(stages, from) {
						t.Errorf("line %d: COPY --from=%s: no such earlier stage", in.line, from)
					}
					continue
				}
				if _, err := os.Stat(filepath.Join(root, s)); err != nil {
					t.Errorf("line %d: COPY %s: %v", in.line, s, err)
				}
				for _, ig := range ignored {
					if s != "." && (s == ig || strings.HasPrefix(s, ig+"/")) {
						t.Errorf("line %d: COPY %s, which .dockerignore leaves out", in.line, s)
					}
				}
			}
		case "ENTRYPOINT":
			entry = in.args
		}
	}
	if len(stages) != 2 {
		t.Fatalf("stages %v, want a build and a run stage", stages)
	}
	if !strings.HasPrefix(stageFrom[0], "golang:") {
		t.Errorf("build stage from %s, want a golang image", stageFrom[0])
	}
	if !strings.HasPrefix(stageFrom[1], "gcr.io/distroless/static") {
		t.Errorf("run stage from %s, want distroless/static (the binary is static)", stageFrom[1])
	}
	for _, want := range []string{"CGO_ENABLED=0", "-X main.version=${VERSION}", "-X main.revision=${REVISION}", "./cmd/jmxdp"} {
		if !strings.Contains(build, want) {
			t.Errorf("the build stage's go build lacks %s: %s", want, build)
		}
	}
	if copied["/usr/local/bin/jmxdp"] == "" || copied["/etc/jmxdp/jmxdp.yaml"] != "docs/jmxdp.example.yaml" {
		t.Errorf("the run stage copies %v: want the binary at /usr/local/bin/jmxdp and the example config", copied)
	}
	if entry != `["/usr/local/bin/jmxdp"]` {
		t.Errorf("ENTRYPOINT %s", entry)
	}
}

// The DaemonSet runs the image `make image` builds, by the path the
// Dockerfile puts the binary at.
func TestDaemonSetNamesTheImage(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "deploy", "kubernetes", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	image := makeVar(t, "IMAGE")
	dec := yaml.NewDecoder(bytes.NewReader(data))
	found := false
	for {
		var doc struct {
			Kind string
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Image   string
							Command []string
						}
					}
				}
			}
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if doc.Kind != "DaemonSet" {
			continue
		}
		for _, c := range doc.Spec.Template.Spec.Containers {
			found = true
			repo, tag, _ := strings.Cut(c.Image, ":")
			if repo != image || tag == "" || tag == "latest" {
				t.Errorf("image %s, want %s:VERSION (make image)", c.Image, image)
			}
			if len(c.Command) == 0 || c.Command[0] != "/usr/local/bin/jmxdp" {
				t.Errorf("command %v, want the Dockerfile's /usr/local/bin/jmxdp", c.Command)
			}
		}
	}
	if !found {
		t.Fatal("no DaemonSet container")
	}
}

// make deb: a package dpkg accepts, with the binary, the unit pointing at
// it, the config as a root-only conffile and the docs.
func TestMakeDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	testenv.Tool(t, "make")
	dpkgDeb := testenv.Tool(t, "dpkg-deb")
	out := t.TempDir()
	bin := filepath.Join(out, "jmxdp")
	mk, err := exec.Command("make", "-C", testenv.RepoRoot(), "deb", "BIN="+bin, "DEB_OUT="+out).CombinedOutput()
	if err != nil {
		t.Fatalf("make deb: %v\n%s", err, mk)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "jmxdp_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("packages %v\n%s", debs, mk)
	}
	deb := debs[0]

	field := func(name string) string {
		v, err := exec.Command(dpkgDeb, "-f", deb, name).Output()
		if err != nil {
			t.Fatalf("dpkg-deb -f %s: %v", name, err)
		}
		return strings.TrimSpace(string(v))
	}
	if field("Package") != "jmxdp" || field("Architecture") == "" || field("Maintainer") == "" {
		t.Errorf("control: package %q, architecture %q, maintainer %q", field("Package"), field("Architecture"), field("Maintainer"))
	}
	if v := field("Version"); !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*-1$`).MatchString(v) {
		t.Errorf("Version %q is not a Debian version", v)
	}
	if d := field("Depends"); d != "" {
		t.Errorf("Depends %q: the binary is static, it needs nothing", d)
	}
	info, err := exec.Command(dpkgDeb, "-I", deb, "conffiles").Output()
	if err != nil || strings.TrimSpace(string(info)) != "/etc/jmxdp/jmxdp.yaml" {
		t.Errorf("conffiles %q (%v)", info, err)
	}

	list, err := exec.Command(dpkgDeb, "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]string{} // path -> mode and owner
	for _, l := range strings.Split(strings.TrimSpace(string(list)), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", l)
		}
		entries[strings.TrimSuffix(strings.TrimPrefix(f[len(f)-1], "."), "/")] = f[0] + " " + f[1]
	}
	for path, want := range map[string]string{
		"":                                          "drwxr-xr-x root/root",
		"/usr/bin/jmxdp":                            "-rwxr-xr-x root/root",
		"/usr/lib/systemd/system/jmxdp.service":     "-rw-r--r-- root/root",
		"/etc/jmxdp":                                "drwx------ root/root",
		"/etc/jmxdp/jmxdp.yaml":                     "-rw------- root/root",
		"/usr/share/doc/jmxdp/README.md":            "-rw-r--r-- root/root",
		"/usr/share/doc/jmxdp/CHANGELOG.md":         "-rw-r--r-- root/root",
		"/usr/share/doc/jmxdp/copyright":            "-rw-r--r-- root/root",
		"/usr/share/doc/jmxdp/docs/config.md":       "-rw-r--r-- root/root",
		"/usr/share/doc/jmxdp/docs/operating.md":    "-rw-r--r-- root/root",
		"/usr/share/doc/jmxdp/examples/alerts.yaml": "-rw-r--r-- root/root",
		"/usr/share/doc/jmxdp/examples/jmxdp.json":  "-rw-r--r-- root/root",
	} {
		if got, ok := entries[path]; !ok {
			t.Errorf("%s not in the package", path)
		} else if got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}

	// Unpacked: the binary runs and reports the version make gave it, the
	// unit runs that binary, the config is the example.
	x := t.TempDir()
	if o, err := exec.Command(dpkgDeb, "-x", deb, x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, o)
	}
	v, err := exec.Command(filepath.Join(x, "usr/bin/jmxdp"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(v), "jmxdp ") {
		t.Errorf("packaged binary --version: %v %q", err, v)
	}
	if d := gitOut(t, "describe", "--tags", "--always", "--dirty"); d != "" && !strings.HasPrefix(string(v), "jmxdp "+d+" ") {
		t.Errorf("packaged binary is %q, want version %s", v, d)
	}
	unit, err := os.ReadFile(filepath.Join(x, "usr/lib/systemd/system/jmxdp.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^ExecStart=/usr/bin/jmxdp run --config /etc/jmxdp/jmxdp.yaml$`).Match(unit) {
		t.Errorf("packaged unit's ExecStart is not /usr/bin/jmxdp:\n%s", grepLines(string(unit), "Exec"))
	}
	cfg, _ := os.ReadFile(filepath.Join(x, "etc/jmxdp/jmxdp.yaml"))
	example, _ := os.ReadFile(examplePath())
	if !bytes.Equal(cfg, example) {
		t.Error("/etc/jmxdp/jmxdp.yaml is not docs/jmxdp.example.yaml")
	}
	// The packaged config is one jmxdp accepts.
	if o, err := exec.Command(filepath.Join(x, "usr/bin/jmxdp"), "config", "check", filepath.Join(x, "etc/jmxdp/jmxdp.yaml")).CombinedOutput(); err != nil {
		t.Errorf("config check of the packaged config: %v\n%s", err, o)
	}
	// systemd-analyze verify the unit as packaged, with its binary.
	analyze := testenv.Tool(t, "systemd-analyze")
	tmp := filepath.Join(t.TempDir(), "jmxdp.service")
	if err := os.WriteFile(tmp, bytes.ReplaceAll(unit, []byte("/usr/bin/jmxdp"), []byte(filepath.Join(x, "usr/bin/jmxdp"))), 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command(analyze, "verify", tmp).CombinedOutput(); err != nil || len(bytes.TrimSpace(o)) > 0 {
		t.Errorf("systemd-analyze verify of the packaged unit: %v\n%s", err, o)
	}
}

// The unit waits for READY=1 (Type=notify) and reloads with SIGHUP; the
// notification socket is AF_UNIX, which the sandbox must allow.
// (dashboards' TestSystemdUnit has systemd-analyze verify the unit.)
func TestUnitNotifyAndReload(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "deploy", "systemd", "jmxdp.service"))
	if err != nil {
		t.Fatal(err)
	}
	values := map[string][]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			values[k] = append(values[k], v)
		}
	}
	for key, want := range map[string]string{"Type": "notify", "NotifyAccess": "main", "ExecReload": "/bin/kill -HUP $MAINPID"} {
		if got := values[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", key, got, want)
		}
	}
	if af := strings.Join(values["RestrictAddressFamilies"], " "); !slices.Contains(strings.Fields(af), "AF_UNIX") {
		t.Errorf("RestrictAddressFamilies=%s: sd_notify needs AF_UNIX", af)
	}
}
