package loader

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Mode is how the program is attached.
type Mode string

const (
	ModeAuto    Mode = "auto"    // driver, else generic
	ModeDriver  Mode = "driver"  // native XDP in the NIC driver
	ModeGeneric Mode = "generic" // skb mode: works everywhere, slower
)

type attachment struct {
	link    link.Link
	iface   string
	mode    Mode
	pinPath string
}

// close releases our reference; a pinned link stays attached.
func (a *attachment) close() error { return a.link.Close() }

// Attach attaches the program to ifname. ModeAuto tries driver mode and
// falls back to generic mode, logging why.
func (p *Program) Attach(ifname string, mode Mode) (Mode, error) {
	if p.att != nil {
		return "", fmt.Errorf("already attached to %s", p.att.iface)
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return "", fmt.Errorf("interface %q: %w", ifname, err)
	}
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: p.objs.Jmxdp, Interface: ifc.Index, Flags: flags})
	}
	var l link.Link
	switch mode {
	case ModeDriver:
		l, err = try(link.XDPDriverMode)
	case ModeGeneric:
		l, err = try(link.XDPGenericMode)
	case ModeAuto, "":
		mode = ModeDriver
		l, err = try(link.XDPDriverMode)
		if err != nil {
			p.log.Warn("driver-mode XDP unavailable, falling back to generic mode", "iface", ifname, "reason", err)
			mode = ModeGeneric
			l, err = try(link.XDPGenericMode)
		}
	default:
		return "", fmt.Errorf("unknown attach mode %q (want auto, driver or generic)", mode)
	}
	if err != nil {
		return "", fmt.Errorf("attach XDP to %s (%s mode): %w", ifname, mode, err)
	}
	p.att = &attachment{link: l, iface: ifname, mode: mode}
	p.log.Info("attached", "iface", ifname, "mode", mode)
	return mode, nil
}

// PinLink pins the attachment so the program stays attached after this
// process exits (the kernel keeps a pinned link alive).
func (p *Program) PinLink(path string) error {
	if p.att == nil {
		return errors.New("not attached")
	}
	if err := p.att.link.Pin(path); err != nil {
		return fmt.Errorf("pin XDP link at %s: %w", path, err)
	}
	p.att.pinPath = path
	return nil
}

// Detach removes the program from its interface, unpinning the link.
func (p *Program) Detach() error {
	if p.att == nil {
		return nil
	}
	a := p.att
	p.att = nil
	if a.pinPath != "" {
		if err := a.link.Unpin(); err != nil {
			return fmt.Errorf("unpin XDP link: %w", err)
		}
	}
	if err := a.link.Close(); err != nil {
		return fmt.Errorf("detach XDP from %s: %w", a.iface, err)
	}
	return nil
}

// BPFFSRoot is where bpffs is mounted on every modern distribution.
const BPFFSRoot = "/sys/fs/bpf"

// ensurePinDir makes dir (mode 0700) on a bpffs, mounting bpffs at
// BPFFSRoot first if the system has not.
func ensurePinDir(dir string) error {
	if rel, err := filepath.Rel(BPFFSRoot, dir); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		if err := EnsureBPFFS(BPFFSRoot); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
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
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
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
