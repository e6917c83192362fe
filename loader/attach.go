package loader

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf/link"
	"github.com/jmxdp/jmxdp/userspace/pins"
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

// BPFFSRoot is where bpffs is mounted: pins.BPFFSRoot, kept here for the
// tests that make their pin directories under it.
const BPFFSRoot = pins.BPFFSRoot
