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
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
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
	return attach(ifname, xmitbpf.XmitProgXdpDrop)
}

// AttachPass attaches lab's XDP_PASS to ifname in driver mode, so that
// frames xmit sends to a veth reach the host's stack on the other end (veth
// takes redirected frames only when the receiving end runs an XDP program).
// Close detaches it.
func AttachPass(ifname string) (*Drop, error) {
	_ = rlimit.RemoveMemlock()
	prog, err := lab.PassProgram()
	if err != nil {
		return nil, err
	}
	return attachProg(ifname, lab.PassProgramName, prog)
}

func attach(ifname, name string) (*Drop, error) {
	_ = rlimit.RemoveMemlock()
	spec, err := xmitbpf.LoadXmit()
	if err != nil {
		return nil, fmt.Errorf("%s: read embedded BPF object: %w", name, err)
	}
	ps := spec.Programs[name]
	if ps == nil {
		return nil, fmt.Errorf("%s: not in the BPF object", name)
	}
	prog, err := ebpf.NewProgram(ps)
	if err != nil {
		return nil, fmt.Errorf("%s: load: %w", name, err)
	}
	return attachProg(ifname, name, prog)
}

// attachProg attaches prog to ifname in driver mode; on failure prog is
// closed.
func attachProg(ifname, name string, prog *ebpf.Program) (*Drop, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("%s: interface %q: %w", name, ifname, err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("%s: attach to %s in driver mode: %w", name, ifname, err)
	}
	return &Drop{prog: prog, link: l}, nil
}

// Close detaches and unloads the program.
func (d *Drop) Close() error {
	return errors.Join(d.link.Close(), d.prog.Close())
}

var _ io.Closer = (*Drop)(nil)
