// Package xmit is jmxdp's fast traffic generator: it transmits Jmirror
// frames at (close to) line rate without a socket, in the manner of
// xdp-trafficgen. A template frame goes to BPF_PROG_TEST_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES and a large repeat count; the kernel runs the
// jmxdp_xmit program (bpf/xmit) on a fresh copy per repeat, which stamps the
// next (mid, sid) of an Intercepts x Sessions cycle into the Jmirror header
// and redirects the frame out of the interface through the driver's
// ndo_xdp_xmit. One system call pushes thousands of frames.
//
// The interface's driver must implement ndo_xdp_xmit. A veth delivers such
// frames to its peer only when the peer has an XDP program attached (or GRO
// on); otherwise the peer drops them, uncounted here.
package xmit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	xmitbpf "github.com/jmxdp/jmxdp/bpf/xmit"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
)

// MaxMID is the largest 30-bit intercept id.
const MaxMID = 1<<30 - 1

// MaxFrameLen is the largest template: live-frames mode puts each frame in
// one page after XDP_PACKET_HEADROOM, with skb_shared_info at its end.
const MaxFrameLen = 4096 - 256 - 320

// minFrameLen is an Ethernet header: the least the test runner takes.
const minFrameLen = 14

// Call sizing. Each BPF_PROG_TEST_RUN call in live-frames mode costs a
// fixed 20 to 40 ms (measured on 6.18), nearly all of it asleep (the kernel
// tears down the call's page pool), whatever its repeat count. So calls are
// made long, about callTarget of sending. The sending speed is measured in
// the thread's CPU time, which that sleep does not blur: the veth peer's
// receive path runs in the sending thread's softirqs, so it is in there
// too. The last call is sized to end at Duration.
const (
	callTarget = 200 * time.Millisecond
	firstChunk = 1 << 16
	minChunk   = 64
	maxChunk   = 1 << 26
	// DefaultBatch is how many frames the kernel runs, then flushes to the
	// device, at a time (the kernel's default; at most 256). A veth's peer
	// ring holds 256 frames and is drained between batches.
	DefaultBatch = 64
	maxBatch     = 256
)

// Options control Run.
type Options struct {
	// Iface is the interface frames leave by; Netns the network namespace
	// it is in ("" for the caller's).
	Iface string
	Netns string
	// Templates are complete Ethernet frames (see CheckTemplate); call k
	// of a thread sends copies of one template, cycling over them.
	Templates [][]byte
	// Intercepts x Sessions streams: consecutive frames on a CPU get
	// (BaseMID + i, BaseSID + j), j varying fastest. 0 means 1.
	Intercepts, Sessions int
	BaseMID, BaseSID     uint32
	// StreamsPerCPU gives each CPU streams of its own: CPU c's session
	// ids start at BaseSID + c x Sessions, as RSS keeps one flow on one
	// RX queue (veth hands a frame to the queue of the sending CPU).
	// false: every CPU cycles over the same streams.
	StreamsPerCPU bool
	// Rate is the total in frames per second; 0 sends as fast as possible.
	// A call sends up to 200 ms worth at once (the kernel paces nothing),
	// so the rate holds on average, not frame by frame.
	Rate float64
	// Duration stops sending after this long; Packets after that many
	// frames. At least one must be set; the first reached stops.
	Duration time.Duration
	Packets  uint64
	// Threads sending in parallel (each a BPF_PROG_TEST_RUN loop on its own
	// OS thread); 0 means 1.
	Threads int
	// CPUs pins thread t to CPUs[t % len(CPUs)] (nil: wherever the
	// scheduler runs it). veth hands a redirected frame to the peer's RX
	// queue of the sending CPU, so pinned threads choose the queues.
	CPUs []int
	// Batch is the kernel's batch size; 0 means DefaultBatch.
	Batch int
	// MaxBurst caps the frames of one call (0: no cap). A call sends at
	// full speed, so with Rate set this is the burst a receiver sees; each
	// call also costs a fixed tens of milliseconds asleep, so a small cap
	// needs more Threads to reach Rate.
	MaxBurst int
	// RestoreHeaders writes each frame's first RestoreLen bytes back from
	// the (one) template before stamping it: live frames reuse their
	// pages and the kernel resets only their pointers, so a receiver that
	// rewrites frames in place (jmxdp's forward action) would be sent its
	// own output again. It costs a 64-byte copy a frame: measure a
	// baseline with it too.
	RestoreHeaders bool
}

// RestoreLen is how many bytes RestoreHeaders restores (XMIT_RESTORE_LEN).
const RestoreLen = 64

// Stream is one (mid, sid).
type Stream struct{ MID, SID uint32 }

// Stats is what Run sent.
type Stats struct {
	// Sent is how many frames the program stamped and redirected (its own
	// per-CPU count, so exact even when a call is interrupted and retried).
	// A frame the driver then drops (a full ring) is in Sent: see the
	// driver's statistics.
	Sent uint64
	// Elapsed is from the first call to the end of the last one.
	Elapsed time.Duration
	// Busy is the sending threads' CPU time inside the calls, summed: the
	// time the path (program, veth, the peer's receive in softirq) took for
	// Sent, without each call's fixed teardown sleep. Frames per Busy second
	// is the path's capacity.
	Busy time.Duration
	// PerCPU is Sent by CPU: each CPU's frames cycle over the streams from
	// the first, which PerStream relies on.
	PerCPU []uint64
	// The stream cycle the frames went over.
	Intercepts, Sessions int
	BaseMID, BaseSID     uint32
	StreamsPerCPU        bool
}

// Rate is Sent per second of Elapsed.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sent) / s.Elapsed.Seconds()
}

// sidBlocks is how many blocks of Sessions session ids the CPUs use.
func sidBlocks(o Options) int {
	if o.StreamsPerCPU {
		return runtime.NumCPU()
	}
	return 1
}

// PerStream is how many frames went to each stream: frame k on a CPU went
// to stream k mod (Intercepts x Sessions). Streams that got none are absent.
func (s Stats) PerStream() map[Stream]uint64 {
	out := make(map[Stream]uint64)
	nm := uint64(s.Intercepts) * uint64(s.Sessions)
	if nm == 0 {
		return out
	}
	for cpu, k := range s.PerCPU {
		var off uint32
		if s.StreamsPerCPU {
			off = uint32(cpu) * uint32(s.Sessions)
		}
		q, r := k/nm, k%nm
		for j := range nm {
			c := q
			if j < r {
				c++
			}
			if c == 0 {
				break // j >= r and q == 0: no more on this CPU
			}
			st := Stream{
				MID: (s.BaseMID + uint32(j/uint64(s.Sessions))) & MaxMID,
				SID: s.BaseSID + uint32(j%uint64(s.Sessions)) + off,
			}
			out[st] += c
		}
	}
	return out
}

// CheckTemplate checks that the fast path can send frame and a receiver
// count it: Ethernet, up to two VLAN tags, an unfragmented IPv4 datagram
// (or IPv6 without extension headers) whose lengths agree with the frame,
// UDP with checksum 0 (rewriting the ids then needs no checksum update; so
// outer IPv6, which must carry one, never qualifies) and room for the
// 8-byte Jmirror header. It returns the UDP destination port.
func CheckTemplate(frame []byte) (port uint16, err error) {
	if len(frame) < minFrameLen || len(frame) > MaxFrameLen {
		return 0, fmt.Errorf("frame of %d bytes: want %d to %d", len(frame), minFrameLen, MaxFrameLen)
	}
	off := 12
	et := binary.BigEndian.Uint16(frame[off:])
	off += 2
	for range 2 {
		if et != 0x8100 && et != 0x88a8 {
			break
		}
		if len(frame) < off+4 {
			return 0, errors.New("truncated VLAN tag")
		}
		et = binary.BigEndian.Uint16(frame[off+2:])
		off += 4
	}
	var udpLen int
	switch et {
	case 0x0800:
		if len(frame) < off+20 || frame[off]>>4 != 4 || frame[off]&0xf < 5 {
			return 0, errors.New("not a valid IPv4 header")
		}
		hl := int(frame[off]&0xf) * 4
		total := int(binary.BigEndian.Uint16(frame[off+2:]))
		if frag := binary.BigEndian.Uint16(frame[off+6:]); frag&0x3fff != 0 {
			return 0, errors.New("an IPv4 fragment: only unfragmented datagrams make templates")
		}
		if frame[off+9] != unix.IPPROTO_UDP {
			return 0, errors.New("not UDP")
		}
		if total < hl+8 || off+total > len(frame) {
			return 0, fmt.Errorf("IPv4 total length %d does not fit the frame", total)
		}
		udpLen = total - hl
		off += hl
	case 0x86dd:
		if len(frame) < off+40 || frame[off]>>4 != 6 {
			return 0, errors.New("not a valid IPv6 header")
		}
		if frame[off+6] != unix.IPPROTO_UDP {
			return 0, errors.New("not UDP (or IPv6 extension headers)")
		}
		udpLen = int(binary.BigEndian.Uint16(frame[off+4:]))
		off += 40
		if off+udpLen > len(frame) {
			return 0, fmt.Errorf("IPv6 payload length %d does not fit the frame", udpLen)
		}
	default:
		return 0, fmt.Errorf("EtherType %#04x is neither IPv4 nor IPv6", et)
	}
	if udpLen < 16 || int(binary.BigEndian.Uint16(frame[off+4:])) != udpLen {
		return 0, errors.New("UDP length does not match the IP length or leaves no room for a Jmirror header")
	}
	if binary.BigEndian.Uint16(frame[off+6:]) != 0 {
		return 0, errors.New("UDP checksum is not 0: rewriting the ids would invalidate it")
	}
	return binary.BigEndian.Uint16(frame[off+2:]), nil
}

// xdpMD is struct xdp_md, the context BPF_PROG_TEST_RUN takes.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

func (o *Options) validate() error {
	if o.Intercepts == 0 {
		o.Intercepts = 1
	}
	if o.Sessions == 0 {
		o.Sessions = 1
	}
	if o.Threads == 0 {
		o.Threads = 1
	}
	if o.Batch == 0 {
		o.Batch = DefaultBatch
	}
	switch {
	case o.Iface == "":
		return errors.New("no interface")
	case len(o.Templates) == 0:
		return errors.New("no template frames")
	case o.Intercepts < 0 || o.Sessions < 0 || o.Threads < 0 || o.Batch < 0 || o.MaxBurst < 0:
		return errors.New("intercepts, sessions, threads, batch and burst cannot be negative")
	case uint64(o.BaseMID)+uint64(o.Intercepts)-1 > MaxMID:
		return fmt.Errorf("intercept ids %d + %d exceed 30 bits", o.BaseMID, o.Intercepts)
	case uint64(o.BaseSID)+uint64(o.Sessions)*uint64(sidBlocks(*o))-1 > math.MaxUint32:
		return fmt.Errorf("session ids %d + %d exceed 32 bits", o.BaseSID, o.Sessions)
	case o.Batch > maxBatch:
		return fmt.Errorf("batch %d: at most %d", o.Batch, maxBatch)
	case o.Threads > 1024:
		return fmt.Errorf("%d threads: at most 1024", o.Threads)
	case slices.ContainsFunc(o.CPUs, func(c int) bool { return c < 0 || c >= runtime.NumCPU() }):
		return fmt.Errorf("CPUs %v: want 0 to %d", o.CPUs, runtime.NumCPU()-1)
	case o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) || o.Duration < 0:
		return errors.New("rate and duration must be finite and not negative")
	case o.Duration == 0 && o.Packets == 0:
		return errors.New("give a duration or a packet count: nothing would stop the generator")
	}
	for i, t := range o.Templates {
		if _, err := CheckTemplate(t); err != nil {
			return fmt.Errorf("template %d: %w", i, err)
		}
	}
	return nil
}

// Run transmits copies of opts.Templates on opts.Iface until opts.Packets
// frames are sent, opts.Duration has passed or ctx is done. It returns
// ctx.Err() in the last case, with what was sent until then. It needs
// root (CAP_BPF, CAP_NET_ADMIN) and Linux 5.18.
func Run(ctx context.Context, opts Options) (Stats, error) {
	if err := opts.validate(); err != nil {
		return Stats{}, fmt.Errorf("xmit: %w", err)
	}
	st := Stats{Intercepts: opts.Intercepts, Sessions: opts.Sessions, BaseMID: opts.BaseMID, BaseSID: opts.BaseSID, StreamsPerCPU: opts.StreamsPerCPU}
	var ifindex int
	err := netns.Do(opts.Netns, func() error {
		ifc, err := net.InterfaceByName(opts.Iface)
		if err != nil {
			return err
		}
		ifindex = ifc.Index
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("xmit: interface %s: %w", opts.Iface, err)
	}
	objs, err := load(opts, uint32(ifindex))
	if err != nil {
		return st, err
	}
	defer objs.Close()

	r := &runner{opts: opts, prog: objs.JmxdpXmit, ifindex: uint32(ifindex)}
	r.start = time.Now()
	if opts.Duration > 0 {
		r.deadline = r.start.Add(opts.Duration)
	}
	var wg sync.WaitGroup
	errs := make([]error, opts.Threads)
	ends := make([]time.Time, opts.Threads)
	for t := range opts.Threads {
		wg.Go(func() {
			errs[t] = netns.Do(opts.Netns, func() error { return r.loop(ctx, t) })
			ends[t] = time.Now()
		})
	}
	wg.Wait()
	end := r.start
	for _, e := range ends {
		if e.After(end) {
			end = e
		}
	}
	st.Elapsed = end.Sub(r.start)
	st.Busy = time.Duration(r.busy.Load())
	per, bad, rerr := readState(objs.XmitStats)
	st.PerCPU = per
	for _, n := range per {
		st.Sent += n
	}
	if err := errors.Join(errs...); err != nil {
		return st, fmt.Errorf("xmit on %s: %w", opts.Iface, err)
	}
	if rerr != nil {
		return st, rerr
	}
	if bad > 0 {
		return st, fmt.Errorf("xmit on %s: the program found no Jmirror header in %d frames", opts.Iface, bad)
	}
	return st, ctx.Err()
}

func load(opts Options, ifindex uint32) (*xmitbpf.XmitObjects, error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()
	spec, err := xmitbpf.LoadXmit()
	if err != nil {
		return nil, fmt.Errorf("xmit: read embedded BPF object: %w", err)
	}
	var stride uint32
	if opts.StreamsPerCPU {
		stride = uint32(opts.Sessions)
	}
	for name, v := range map[string]uint32{
		xmitbpf.XmitVarIfindexOut:   ifindex,
		xmitbpf.XmitVarBaseMid:      opts.BaseMID,
		xmitbpf.XmitVarBaseSid:      opts.BaseSID,
		xmitbpf.XmitVarIntercepts:   uint32(opts.Intercepts),
		xmitbpf.XmitVarSessions:     uint32(opts.Sessions),
		xmitbpf.XmitVarCpuSidStride: stride,
	} {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("xmit: BPF object has no variable %s", name)
		}
		if err := vs.Set(v); err != nil {
			return nil, fmt.Errorf("xmit: set %s: %w", name, err)
		}
	}
	if opts.RestoreHeaders {
		if len(opts.Templates) != 1 || len(opts.Templates[0]) < RestoreLen {
			return nil, fmt.Errorf("xmit: restoring headers takes one template of at least %d bytes", RestoreLen)
		}
		var hdr [RestoreLen / 8]uint64 // restore_hdr: words as the CPU loads them
		for i := range hdr {
			hdr[i] = binary.NativeEndian.Uint64(opts.Templates[0][i*8:])
		}
		if err := spec.Variables[xmitbpf.XmitVarRestore].Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("xmit: set restore: %w", err)
		}
		if err := spec.Variables[xmitbpf.XmitVarRestoreHdr].Set(hdr); err != nil {
			return nil, fmt.Errorf("xmit: set restore_hdr: %w", err)
		}
	}
	var objs xmitbpf.XmitObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("xmit: load BPF program (verifier): %+v", verr)
		}
		return nil, fmt.Errorf("xmit: load BPF program: %w", err)
	}
	return &objs, nil
}

func readState(m *ebpf.Map) (per []uint64, bad uint64, err error) {
	var vals []xmitbpf.XmitXmitState
	if err := m.Lookup(uint32(0), &vals); err != nil {
		return nil, 0, fmt.Errorf("xmit: read counters: %w", err)
	}
	per = make([]uint64, len(vals))
	for i, v := range vals {
		per[i] = v.Sent
		bad += v.Bad
	}
	return per, bad, nil
}

// runner is the state threads share.
type runner struct {
	opts     Options
	prog     *ebpf.Program
	ifindex  uint32
	start    time.Time
	deadline time.Time
	claimed  atomic.Uint64 // frames handed to calls, against Packets
	busy     atomic.Int64  // CPU nanoseconds inside calls, all threads
}

// claim reserves up to n of the Packets budget; 0 when it is spent.
func (r *runner) claim(n uint64) uint64 {
	if r.opts.Packets == 0 {
		return n
	}
	for {
		c := r.claimed.Load()
		if c >= r.opts.Packets {
			return 0
		}
		n = min(n, r.opts.Packets-c)
		if r.claimed.CompareAndSwap(c, c+n) {
			return n
		}
	}
}

// loop is one thread: BPF_PROG_TEST_RUN calls until a limit is reached.
func (r *runner) loop(ctx context.Context, t int) error {
	// The thread's CPU time measures the calls: keep to one thread.
	runtime.LockOSThread()
	o := r.opts
	if len(o.CPUs) > 0 {
		var set unix.CPUSet
		set.Set(o.CPUs[t%len(o.CPUs)])
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			runtime.UnlockOSThread() // its affinity is unchanged
			return fmt.Errorf("pin sender thread %d to CPU %d: %w", t, o.CPUs[t%len(o.CPUs)], err)
		}
		// Pinned: never unlocked, so the thread exits with this
		// goroutine and no other goroutine inherits its affinity.
	} else {
		defer runtime.UnlockOSThread()
	}
	rate := o.Rate / float64(o.Threads) // this thread's share
	// phase, in frames of this thread: t/Threads of a burst.
	phase := 0.0
	if o.MaxBurst > 0 {
		phase = float64(t) / float64(o.Threads) * float64(o.MaxBurst)
	}
	var (
		speed float64       // frames per CPU second
		sleep time.Duration // the last call's wall time beyond its CPU time
		sent  uint64        // by this thread, for pacing
		calls int           // made by this thread: picks the template
	)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			return nil // Run reports ctx.Err()
		}
		now := time.Now()
		if !r.deadline.IsZero() && !now.Before(r.deadline) {
			return nil
		}
		if rate > 0 {
			// Frame n of this thread is due at start + n/rate, shifted by
			// the thread's share of one burst's interval: threads that all
			// burst at the same instants would hand the receiver Threads
			// bursts at once.
			due := r.start.Add(time.Duration((float64(sent) + phase) / rate * float64(time.Second)))
			if !r.deadline.IsZero() && due.After(r.deadline) {
				return nil
			}
			if d := due.Sub(now); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return nil
				case <-timer.C:
				}
				continue
			}
		}
		n := uint64(firstChunk)
		if speed > 0 {
			budget := callTarget
			if !r.deadline.IsZero() {
				budget = min(budget, r.deadline.Sub(now)-sleep)
			}
			if budget <= 0 {
				return nil // a call would end past Duration
			}
			n = uint64(min(max(speed*budget.Seconds(), minChunk), maxChunk))
		}
		if rate > 0 {
			// Bursts of at most callTarget's worth at the asked rate.
			n = min(n, uint64(max(1, rate*callTarget.Seconds())))
		}
		if o.MaxBurst > 0 {
			n = min(n, uint64(o.MaxBurst))
		}
		if n = r.claim(n); n == 0 {
			return nil
		}
		tpl := o.Templates[(calls*o.Threads+t)%len(o.Templates)]
		calls++
		cpu0 := threadCPU()
		t0 := time.Now()
		_, err := r.prog.Run(&ebpf.RunOptions{
			Data:      tpl,
			Repeat:    uint32(n),
			Flags:     unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			Context:   xdpMD{DataEnd: uint32(len(tpl)), IngressIfindex: r.ifindex},
			BatchSize: uint32(o.Batch),
		})
		if err != nil {
			return fmt.Errorf("BPF_PROG_TEST_RUN (live frames, %d repeats): %w", n, err)
		}
		d := time.Since(t0)
		cpu := threadCPU() - cpu0
		r.busy.Add(int64(cpu))
		sent += n
		sleep = max(d-cpu, 0)
		// The CPU clock ticks in jiffies (or finer): floor it so a short
		// call cannot claim an absurd speed.
		speed = float64(n) / max(cpu, time.Millisecond).Seconds()
	}
}

// threadCPU is the calling thread's CPU time, user and system (softirqs
// run in its context included).
func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
