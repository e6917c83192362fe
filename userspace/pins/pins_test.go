package pins

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// The layout: PIN_DIR/IFACE, the link and the maps by name in it.
func TestLayout(t *testing.T) {
	d := Dir(DefaultBase, "eth0")
	if d != "/sys/fs/bpf/jmxdp/eth0" || Link(d) != "/sys/fs/bpf/jmxdp/eth0/link" || Map(d, "jm_stats") != "/sys/fs/bpf/jmxdp/eth0/jm_stats" {
		t.Errorf("layout: %s %s %s", d, Link(d), Map(d, "jm_stats"))
	}
}

// EnsureDir makes the directory 0700 on bpffs, and refuses one that is
// not on a bpffs.
func TestEnsureDir(t *testing.T) {
	notBPF := filepath.Join(t.TempDir(), "pins")
	if err := EnsureDir(notBPF); err == nil || !strings.Contains(err.Error(), "is not on a bpffs") {
		t.Errorf("a directory off bpffs: %v", err)
	}
	testenv.RequireRoot(t)
	base := filepath.Join(BPFFSRoot, "jmxdp-test-pins-"+filepath.Base(t.TempDir()))
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := Dir(base, "jmp0")
	if err := EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 || !OnBPFFS(dir) {
		t.Errorf("pin directory %v %v on bpffs %v", st.Mode(), err, OnBPFFS(dir))
	}
	if err := EnsureDir(dir); err != nil {
		t.Errorf("again: %v", err)
	}
}
