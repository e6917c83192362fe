package lab

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"golang.org/x/sys/unix"
)

// PassProgramName is the name PassProgram's program has in the kernel.
const PassProgramName = "xdp_pass"

// PassProgram loads a program that returns XDP_PASS and nothing else: what
// a veth end needs so that frames redirected to it (XDP_REDIRECT from its
// peer) are received, as a NIC's driver would without a program. Two
// instructions, so the tools need no BPF object of their own for it.
func PassProgram() (*ebpf.Program, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: PassProgramName,
		Type: ebpf.XDP,
		// Multi-buffer aware (SEC("xdp.frags")): a veth end with a
		// program that is not caps its MTU at a page, and the jumbo labs
		// run at 9000.
		Flags:   unix.BPF_F_XDP_HAS_FRAGS,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, int32(vocab.VerdictPass)),
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", PassProgramName, err)
	}
	return p, nil
}
