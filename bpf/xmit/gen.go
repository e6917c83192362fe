// Package xmit holds the XDP programs of jmxdp's fast traffic generator
// (userspace/tools/xmit) and the Go bindings bpf2go generates for them: jmxdp_xmit,
// run with BPF_PROG_TEST_RUN in live-frames mode, stamps each template frame
// with the next (mid, sid) and redirects it out of an interface; xdp_drop is
// the line-rate baseline a receiver is measured against. Run `make generate`
// (clang-19) after changing the C.
package xmit

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -type xmit_state Xmit xmit.c
