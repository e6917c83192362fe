package seccomp_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/seccomp"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
)

// childEnv makes the test binary a confined launcher: it installs the
// profile named by the variable, checks that a call outside it is refused,
// then executes what follows "--" in its arguments, as runc does with a
// container's entrypoint.
const childEnv = "JMXDP_SECCOMP_PROFILE"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		confined(path)
	}
	os.Exit(m.Run())
}

func confined(path string) {
	fail := func(code int, format string, args ...any) {
		fmt.Fprintf(os.Stderr, "seccomp child: "+format+"\n", args...)
		os.Exit(code)
	}
	p, err := seccomp.Load(path)
	if err != nil {
		fail(90, "%v", err)
	}
	if err := p.Install(); err != nil {
		fail(91, "%v", err)
	}
	// mount is not in the profile: refused (as root and without the
	// filter, this target gives ENOENT).
	if err := unix.Mount("none", "/nonexistent-jmxdp-seccomp", "tmpfs", 0, ""); !errors.Is(err, unix.EPERM) {
		fail(92, "mount under the filter: %v, want EPERM", err)
	}
	fmt.Fprintln(os.Stderr, "seccomp child: mount refused with EPERM")
	i := slices.Index(os.Args, "--")
	if i < 0 || i+1 >= len(os.Args) {
		fail(93, "nothing to run after --")
	}
	env := slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, childEnv+"=") })
	err = unix.Exec(os.Args[i+1], os.Args[i+1:], env)
	fail(94, "exec %s: %v", os.Args[i+1], err)
}

func profilePath() string {
	return filepath.Join(testenv.RepoRoot(), "deploy", "kubernetes", "jmxdp-seccomp.json")
}

func loadProfile(t *testing.T) *seccomp.Profile {
	t.Helper()
	p, err := seccomp.Load(profilePath())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// confinedCmd runs argv under profile p in a child of the test binary.
func confinedCmd(t *testing.T, p *seccomp.Profile, argv ...string) *exec.Cmd {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		testenv.SkipOrFail(t, "the seccomp call table covers amd64 only")
	}
	testenv.RequireRoot(t)
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], append([]string{"--"}, argv...)...)
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	return cmd
}

// TestProfileShape: the shipped profile is an allowlist this package can
// compile, with the calls the daemon cannot do without, and without those
// a capture daemon has no business making.
func TestProfileShape(t *testing.T) {
	p := loadProfile(t)
	if p.DefaultAction != "SCMP_ACT_ERRNO" {
		t.Errorf("defaultAction %s: want an allowlist", p.DefaultAction)
	}
	names := p.Names()
	for _, n := range []string{"bpf", "socket", "setsockopt", "mmap", "execve", "renameat", "fchownat"} {
		if !slices.Contains(names, n) {
			t.Errorf("the profile lacks %s", n)
		}
	}
	for _, n := range []string{"mount", "umount2", "unshare", "setns", "ptrace", "init_module", "kexec_load", "perf_event_open", "chroot", "keyctl", "userfaultfd"} {
		if slices.Contains(names, n) {
			t.Errorf("the profile allows %s", n)
		}
	}
	if runtime.GOARCH == "amd64" {
		if _, err := p.Filter(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Without("bpf").Filter(); err != nil && runtime.GOARCH == "amd64" {
		t.Fatal(err)
	}
	if slices.Contains(p.Without("bpf").Names(), "bpf") || !slices.Contains(p.Names(), "bpf") {
		t.Error("Without changed the original or kept the call")
	}
}

// TestDaemonSetUsesProfile: the DaemonSet's container runs under this
// profile, as a Localhost profile of the kubelet's seccomp directory.
func TestDaemonSetUsesProfile(t *testing.T) {
	f, err := os.Open(filepath.Join(testenv.RepoRoot(), "deploy", "kubernetes", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	for {
		var o struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							SecurityContext struct {
								SeccompProfile struct {
									Type             string `yaml:"type"`
									LocalhostProfile string `yaml:"localhostProfile"`
								} `yaml:"seccompProfile"`
							} `yaml:"securityContext"`
						} `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&o); err == io.EOF {
			t.Fatal("no DaemonSet")
		} else if err != nil {
			t.Fatal(err)
		}
		if o.Kind != "DaemonSet" {
			continue
		}
		sp := o.Spec.Template.Spec.Containers[0].SecurityContext.SeccompProfile
		if sp.Type != "Localhost" || filepath.Base(sp.LocalhostProfile) != filepath.Base(profilePath()) {
			t.Errorf("seccompProfile %+v: want Localhost, %s", sp, filepath.Base(profilePath()))
		}
		return
	}
}

// buildJmxdp builds the real binary, as the image holds it.
func buildJmxdp(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "jmxdp")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/jmxdp")
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDaemonUnderProfile runs the real jmxdp binary under the shipped
// profile: it loads the program, attaches to a lab's veth (its other end
// in a namespace the test made), serves metrics, captures generated
// traffic to files with a group and hidden ids, rotates, and stops cleanly
// on SIGTERM.
func TestDaemonUnderProfile(t *testing.T) {
	p := loadProfile(t)
	cmd := confinedCmd(t, p) // skips early where it cannot run
	bin := buildJmxdp(t)
	l := labtest.New(t, "jsc")
	pin := filepath.Join(loader.BPFFSRoot, "jmxdp-test-"+l.Name)
	t.Cleanup(func() { os.RemoveAll(pin) })
	out := filepath.Join(t.TempDir(), "streams")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := fmt.Sprintf(`interface: %s
output: {dir: %q, group: "4711", rotate_size: 4KiB}
capture: {pin_dir: %q, max_streams: 4096}
metrics: {addr: %q, hide_ids: true}
`, l.HostIface, out, pin, addr)
	cfgPath := filepath.Join(t.TempDir(), "jmxdp.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Args = append(cmd.Args, bin, "run", "--config", cfgPath, "--status-every", "1s")
	var logs testenv.LogBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	defer func() {
		cmd.Process.Kill() // if still running
		<-done
		if t.Failed() {
			t.Logf("jmxdp under the profile:\n%s", logs.String())
		}
	}()
	scrape := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testenv.WaitFor(t, "/readyz", 30*time.Second, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("jmxdp exited under the profile: %v", err)
		default:
		}
		code, _ := scrape("/readyz")
		return code == http.StatusOK
	})

	pkts, _, err := gen.Demo(gen.DefaultDemo())
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for _, pk := range pkts {
		frames = append(frames, pk.Data)
	}
	s, err := l.Sender()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.Send(frames); err != nil || n != len(frames) {
		t.Fatalf("sent %d of %d: %v", n, len(frames), err)
	}
	written := regexp.MustCompile(`(?m)^jmxdp_writer_packets_total (\d+)`)
	testenv.WaitFor(t, "packets written", 20*time.Second, func() bool {
		_, body := scrape("/metrics")
		m := written.FindStringSubmatch(body)
		n, _ := strconv.Atoi(m2(m))
		return n > 100
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("jmxdp under the profile did not stop cleanly: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("jmxdp did not stop on SIGTERM")
	}
	text := logs.String()
	for _, want := range []string{"seccomp child: mount refused with EPERM", "msg=attached", "msg=\"capture stopped\"", "msg=stopped"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(text, "operation not permitted") {
		t.Errorf("a call was refused:\n%s", text)
	}
	var files int
	filepath.Walk(out, func(path string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(path, ".pcapng") {
			files++
			if fi.Sys().(*syscall.Stat_t).Gid != 4711 || fi.Mode().Perm() != 0o640 {
				t.Errorf("%s: %v gid %d", path, fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid)
			}
		}
		if err == nil && strings.HasSuffix(path, ".part") {
			t.Errorf("left unfinished: %s", path)
		}
		return nil
	})
	if files < 8 {
		t.Errorf("%d files written under the profile", files)
	}
}

func m2(m []string) string {
	if len(m) < 2 {
		return ""
	}
	return m[1]
}

// TestProfileIsEnforced: the filter is really on in the executed program:
// without bpf in the profile, jmxdp cannot load its program.
func TestProfileIsEnforced(t *testing.T) {
	cmd := confinedCmd(t, loadProfile(t).Without("bpf"))
	bin := buildJmxdp(t)
	l := labtest.New(t, "jse")
	pin := filepath.Join(loader.BPFFSRoot, "jmxdp-test-"+l.Name)
	t.Cleanup(func() { os.RemoveAll(pin) })
	cmd.Args = append(cmd.Args, bin, "run", "--iface", l.HostIface, "--out", filepath.Join(t.TempDir(), "out"),
		"--pin-dir", pin, "--max-streams", "4096", "--metrics-addr", "")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), "operation not permitted") {
		t.Fatalf("jmxdp without bpf: %v\n%s", err, out)
	}
}

// TestShellUnderProfile: output.on_complete commands inherit the filter;
// a shell moving and reading files runs under it.
func TestShellUnderProfile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `set -e; cd "$1"; cp a b; mv b c; test "$(cat c)" = data; ls -l . >/dev/null; mkdir d; mv c d/; rm -r d; echo done`
	cmd := confinedCmd(t, loadProfile(t), "/bin/sh", "-c", script, "sh", dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "done") {
		t.Fatalf("shell under the profile: %v\n%s", err, out)
	}
}
