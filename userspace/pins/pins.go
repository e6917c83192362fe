// Package pins is the layout of what a jmxdp instance pins in bpffs, in one
// place: under a base directory (capture.pin_dir, DefaultBase unless
// configured) each interface has a directory, PIN_DIR/IFACE, holding every
// map under its own name and the XDP link as LinkName. The loader pins
// there, the daemon attaches through it, and `jmxdp stats`, `policy`,
// `allowlist` and `detach` find an instance by it.
package pins

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// BPFFSRoot is where bpffs is mounted on every modern distribution.
const BPFFSRoot = "/sys/fs/bpf"

// DefaultBase is the base directory when the config sets no
// capture.pin_dir.
const DefaultBase = BPFFSRoot + "/jmxdp"

// LinkName is the pinned XDP link's file in an interface's directory.
const LinkName = "link"

// Dir is the directory of the instance on iface: its maps and its link.
func Dir(base, iface string) string { return filepath.Join(base, iface) }

// Link is the pinned XDP link's path in an instance's directory.
func Link(dir string) string { return filepath.Join(dir, LinkName) }

// Map is the path of the map called name in an instance's directory.
func Map(dir, name string) string { return filepath.Join(dir, name) }

// EnsureDir makes dir (mode 0700) on a bpffs, mounting bpffs at BPFFSRoot
// first if dir is under it and the system has not.
func EnsureDir(dir string) error {
	if rel, err := filepath.Rel(BPFFSRoot, dir); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		if err := EnsureBPFFS(BPFFSRoot); err != nil {
			return err
		}
	}
	// Someone else (another lab's Down, a purge) may remove an empty
	// parent between MkdirAll's steps: try again.
	var err error
	for range 5 {
		if err = os.MkdirAll(dir, 0o700); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("pin directory %s: %w", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin directory %s is not on a bpffs", dir)
	}
	return nil
}

// EnsureBPFFS mounts bpffs at dir unless a bpffs is already there.
func EnsureBPFFS(dir string) error {
	if OnBPFFS(dir) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create bpffs mount point %s: %w", dir, err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", filepath.Clean(dir), err)
	}
	return nil
}

// OnBPFFS reports whether path exists on a bpffs.
func OnBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}
