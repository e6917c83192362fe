package loader

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"golang.org/x/sys/unix"
)

// MinFrameLen is the shortest frame BPF_PROG_TEST_RUN accepts: an Ethernet
// header. No NIC delivers shorter frames to XDP.
const MinFrameLen = 14

// MaxFrameLen is the largest frame the program sees in one buffer:
// a page minus XDP headroom and skb_shared_info. Larger frames need
// multi-buffer XDP, which a NIC only delivers with jumbo MTUs.
const MaxFrameLen = 4096 - 256 - 320

// MaxRunFrameLen is the largest frame Run and Benchmark take: the program
// is frags-aware, so BPF_PROG_TEST_RUN puts what does not fit in one
// buffer into fragments, as a NIC does with a jumbo MTU. 65535-byte IP
// packets behind Ethernet and two VLAN tags.
const MaxRunFrameLen = 65535 + 14 + 8

// ErrFrameSize is returned for frames the XDP test runner cannot take.
var ErrFrameSize = errors.New("frame size outside what XDP sees in one buffer")

// xdpMD mirrors struct xdp_md, the context BPF_PROG_TEST_RUN takes.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// Run runs the program once over frame with BPF_PROG_TEST_RUN, updating the
// maps exactly as live traffic would, and returns its verdict.
func (p *Program) Run(frame []byte) (vocab.Verdict, error) {
	return runFrame(p.objs.Jmxdp, frame)
}

func runFrame(prog *ebpf.Program, frame []byte) (vocab.Verdict, error) {
	if len(frame) < MinFrameLen || len(frame) > MaxRunFrameLen {
		return 0, fmt.Errorf("%w: %d bytes", ErrFrameSize, len(frame))
	}
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		return 0, fmt.Errorf("run XDP program: %w", err)
	}
	return vocab.Verdict(ret), nil
}

// RunSplit is Run with only the frame's first linear bytes in the linear
// part and the rest in fragments, as a driver that splits headers from
// payload delivers it (BPF_PROG_TEST_RUN takes the linear size from the
// context's data_end, Linux 6.18).
func (p *Program) RunSplit(frame []byte, linear int) (vocab.Verdict, error) {
	if len(frame) < MinFrameLen || len(frame) > MaxRunFrameLen || linear < MinFrameLen || linear > len(frame) {
		return 0, fmt.Errorf("%w: %d bytes, %d linear", ErrFrameSize, len(frame), linear)
	}
	ret, err := p.objs.Jmxdp.Run(&ebpf.RunOptions{Data: frame, Context: xdpMD{DataEnd: uint32(linear)}})
	if err != nil {
		return 0, fmt.Errorf("run XDP program with %d linear bytes: %w", linear, err)
	}
	return vocab.Verdict(ret), nil
}

// BenchmarkSplit is Benchmark over a frame split as RunSplit splits it,
// timed by the kernel as Benchmark is (so time this thread lost to others
// is left out). Whatever a run changes in the frame (a pull) stays for the
// next repeat.
func (p *Program) BenchmarkSplit(frame []byte, linear, repeat int) (vocab.Verdict, time.Duration, error) {
	if len(frame) < MinFrameLen || len(frame) > MaxRunFrameLen || linear < MinFrameLen || linear > len(frame) {
		return 0, 0, fmt.Errorf("%w: %d bytes, %d linear", ErrFrameSize, len(frame), linear)
	}
	if repeat < 1 || repeat > math.MaxUint32 {
		return 0, 0, fmt.Errorf("benchmark XDP program: repeat %d out of range", repeat)
	}
	ctx := xdpMD{DataEnd: uint32(linear)}
	// cilium/ebpf's Run takes a context but drops the kernel's duration:
	// the command itself (union bpf_attr's test member, Linux 5.x).
	attr := progTestRunAttr{
		ProgFD:     uint32(p.objs.Jmxdp.FD()),
		DataSizeIn: uint32(len(frame)),
		DataIn:     uint64(uintptr(unsafe.Pointer(&frame[0]))),
		Repeat:     uint32(repeat),
		CtxSizeIn:  uint32(unsafe.Sizeof(ctx)),
		CtxIn:      uint64(uintptr(unsafe.Pointer(&ctx))),
	}
	for {
		_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		runtime.KeepAlive(frame)
		runtime.KeepAlive(&ctx)
		if errno == unix.EINTR || errno == unix.EAGAIN {
			continue // a signal: the kernel ran none or some; again
		}
		if errno != 0 {
			return 0, 0, fmt.Errorf("benchmark XDP program with %d linear bytes: %w", linear, errno)
		}
		return vocab.Verdict(attr.Retval), time.Duration(attr.Duration), nil
	}
}

// progTestRunAttr is union bpf_attr's test member (BPF_PROG_TEST_RUN).
type progTestRunAttr struct {
	ProgFD, Retval           uint32
	DataSizeIn, DataSizeOut  uint32
	DataIn, DataOut          uint64
	Repeat, Duration         uint32 // Duration: mean ns per repeat
	CtxSizeIn, CtxSizeOut    uint32
	CtxIn, CtxOut            uint64
	Flags, CPU, BatchSize, _ uint32
}

// Benchmark runs the program repeat times over frame in the kernel and
// returns the mean time per run. Maps are updated by every run.
func (p *Program) Benchmark(frame []byte, repeat int) (vocab.Verdict, time.Duration, error) {
	return benchmark(p.objs.Jmxdp, frame, repeat)
}

func benchmark(prog *ebpf.Program, frame []byte, repeat int) (vocab.Verdict, time.Duration, error) {
	if len(frame) < MinFrameLen || len(frame) > MaxRunFrameLen {
		return 0, 0, fmt.Errorf("%w: %d bytes", ErrFrameSize, len(frame))
	}
	ret, d, err := prog.Benchmark(frame, repeat, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("benchmark XDP program: %w", err)
	}
	return vocab.Verdict(ret), d, nil
}

// RunOn is Run as if the frame arrived on interface ifindex (queue 0) of
// the caller's network namespace, which the forward action's fib lookup
// reads, and also returns the frame as the program left it.
func (p *Program) RunOn(frame []byte, ifindex uint32) (vocab.Verdict, []byte, error) {
	return p.RunSplitOn(frame, len(frame), ifindex)
}

// RunSplitOn is RunOn with only the frame's first linear bytes in the
// linear part, as RunSplit splits it.
func (p *Program) RunSplitOn(frame []byte, linear int, ifindex uint32) (vocab.Verdict, []byte, error) {
	if len(frame) < MinFrameLen || len(frame) > MaxRunFrameLen || linear < MinFrameLen || linear > len(frame) {
		return 0, nil, fmt.Errorf("%w: %d bytes, %d linear", ErrFrameSize, len(frame), linear)
	}
	out := make([]byte, len(frame)+xdpHeadroomSlack)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out, Context: xdpMD{DataEnd: uint32(linear), IngressIfindex: ifindex}}
	ret, err := p.objs.Jmxdp.Run(opts)
	if err != nil {
		return 0, nil, fmt.Errorf("run XDP program on interface %d: %w", ifindex, err)
	}
	return vocab.Verdict(ret), opts.DataOut, nil
}

// xdpHeadroomSlack is room for a frame the program grew (the forward
// action's new headers may be longer than the old).
const xdpHeadroomSlack = 256
