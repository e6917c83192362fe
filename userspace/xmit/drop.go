package xmit

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	xmitbpf "github.com/jmxdp/jmxdp/bpf/xmit"
)

// Drop is the xdp_drop program attached to an interface: the receiver
// baseline, the least an XDP program can do with a frame. It counts
// nothing itself; the driver does (XDPDrops).
type Drop struct {
	prog *ebpf.Program
	link link.Link
}

// AttachDrop attaches xdp_drop to ifname (in the caller's network
// namespace) in driver mode: the baseline is only meaningful natively.
func AttachDrop(ifname string) (*Drop, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("xdp_drop: interface %q: %w", ifname, err)
	}
	_ = rlimit.RemoveMemlock()
	spec, err := xmitbpf.LoadXmit()
	if err != nil {
		return nil, fmt.Errorf("xdp_drop: read embedded BPF object: %w", err)
	}
	ps := spec.Programs[xmitbpf.XmitProgXdpDrop]
	if ps == nil {
		return nil, errors.New("xdp_drop: not in the BPF object")
	}
	prog, err := ebpf.NewProgram(ps)
	if err != nil {
		return nil, fmt.Errorf("xdp_drop: load: %w", err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("xdp_drop: attach to %s in driver mode: %w", ifname, err)
	}
	return &Drop{prog: prog, link: l}, nil
}

// Close detaches and unloads the program.
func (d *Drop) Close() error {
	return errors.Join(d.link.Close(), d.prog.Close())
}

var _ io.Closer = (*Drop)(nil)
