// Package capture moves the frames jmxdp's XDP program redirects to AF_XDP
// into per-stream writers. One goroutine per RX queue empties its socket's
// ring into fixed-size batches and returns the frames to the kernel at once;
// one goroutine decodes the batches, reassembles outer IPv4 fragments and
// hands each mirrored packet to the sink. The ring loops never wait on the
// disk: when the sink falls behind, the bounded batch pool runs dry and
// frames are dropped, counted per stream and in total.
package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/afxdp"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/reasm"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// Sink takes decapsulated mirrored packets; writer.Manager is one. It is
// called from a single goroutine.
type Sink interface {
	Write(k writer.Key, ts time.Time, router netip.Addr, kind pcapng.LinkKind, data []byte) bool
	Drop(k writer.Key, reason writer.DropReason, n int)
	Tick()
}

// XSKMap registers sockets with the XDP program; *maps.Maps is one.
type XSKMap interface {
	SetXSK(queue uint32, fd int) error
	DeleteXSK(queue uint32) error
}

// Config describes a capture.
type Config struct {
	Ifname string
	// Queues are the RX queues to serve; nil means all of them. A queue
	// without a socket falls back to XDP_PASS (counted as capture_failed).
	Queues []uint32
	// ZeroCopy asks for zero-copy where the driver offers it.
	ZeroCopy bool
	// FramesPerQueue is each socket's UMEM size in frames, and the size of
	// its RX and fill rings (default DefaultFramesPerQueue).
	FramesPerQueue int
	// QueueMemory bounds the frame bytes waiting for the sink (default
	// 64 MiB).
	QueueMemory int64
	Reassembly  reasm.Config
	Logger      *slog.Logger
}

const (
	// metaLen is sizeof(struct jm_xsk_meta): bpf/include/structs.h.
	metaLen = 16
	// metaMagic is JM_META_MAGIC (bpf/include/consts.h).
	metaMagic = 0x4a4d5844
	// batchBytes is the size of one batch slab: large enough to amortise
	// the channel send, small enough that the pool bounds memory finely.
	batchBytes = 256 << 10
	// batchLinger bounds how long a frame waits in a batch that is not
	// full before the batch goes to the decode loop.
	batchLinger = 2 * time.Millisecond
	// pollTimeout bounds how long a ring loop takes to notice a stop.
	pollTimeout = 100 * time.Millisecond
	// tickEvery paces the sink's housekeeping and fragment expiry.
	tickEvery = 100 * time.Millisecond
	// ringLoopNice is the nice value of the ring loops' threads.
	ringLoopNice = -10
	// DefaultQueueMemory is the default bound on queued frame bytes.
	DefaultQueueMemory = 64 << 20
	// DefaultFramesPerQueue: 16384 frames of 2 KiB, 32 MiB per queue, what
	// tcpdump -B 32768 gives its ring. The rings hold every frame, so the
	// kernel can keep delivering for as long as a ring loop is not scheduled
	// (16 ms at 1M frames/s), not just for a 2048-entry ring's worth.
	DefaultFramesPerQueue = 16384
)

// frameRef is one frame in a batch slab.
type frameRef struct {
	off, len int
	mono     int64 // CLOCK_MONOTONIC ns from the kernel; 0 if it gave none
}

type batch struct {
	buf    []byte
	frames []frameRef
}

func (b *batch) reset() { b.buf = b.buf[:0]; b.frames = b.frames[:0] }

// QueueStats describe one RX queue's socket.
type QueueStats struct {
	Queue    uint32
	Mode     string // zerocopy or copy
	Frames   uint64 // frames taken off the RX ring
	Bytes    uint64
	Dropped  uint64 // frames dropped because the batch pool was empty (sink too slow)
	Kernel   afxdp.Stats
	KernelOK bool // false if XDP_STATISTICS could not be read
}

// Stats describe the pipeline.
type Stats struct {
	Queues []QueueStats
	// Written/Refused: packets the sink accepted, or dropped itself.
	Written, Refused uint64
	// QueueDrops: frames dropped for want of a free batch (all queues).
	QueueDrops uint64
	// Unexpected: frames that reached the sockets but are not Jmirror by
	// the userspace decoder (should stay 0: the program only redirects
	// Jmirror).
	Unexpected uint64
	// NoTimestamp: frames without the kernel's receive time (the driver
	// has no XDP metadata), stamped with the time userspace saw them.
	NoTimestamp uint64
	// Fragments: outer IPv4 fragments received; Reassembly their outcome.
	Fragments  uint64
	Reassembly reasm.Stats
}

type queue struct {
	id      uint32
	mode    string
	sock    *afxdp.Socket
	frames  atomic.Uint64
	bytes   atomic.Uint64
	dropped atomic.Uint64
	// kstats is the socket's XDP_STATISTICS, read by the ring loop (the
	// socket is not shared) about once a second.
	kstats   atomic.Pointer[afxdp.Stats]
	kstatsAt time.Time
}

func (q *queue) refreshStats(force bool) {
	if !force && time.Since(q.kstatsAt) < time.Second {
		return
	}
	q.kstatsAt = time.Now()
	if ks, err := q.sock.Stats(); err == nil {
		q.kstats.Store(&ks)
	}
}

// Capture is a running capture.
type Capture struct {
	cfg    Config
	log    *slog.Logger
	xsks   XSKMap
	sink   Sink
	queues []*queue

	work chan *batch
	free chan *batch

	// dropMu guards drops: frames the ring loops dropped, per stream,
	// handed to the sink by the decode loop (the sink is single-threaded).
	dropMu sync.Mutex
	drops  map[writer.Key]int

	written, refused, unexpected, noTS, fragments atomic.Uint64
	reasmMu                                       sync.Mutex
	reasm                                         *reasm.Reassembler

	cancel   context.CancelFunc
	ringsWG  sync.WaitGroup
	decodeWG sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// Start opens one AF_XDP socket per queue, registers each in xsks and
// starts the loops. Stop ends them.
func Start(cfg Config, xsks XSKMap, sink Sink) (*Capture, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueMemory <= 0 {
		cfg.QueueMemory = DefaultQueueMemory
	}
	if cfg.FramesPerQueue <= 0 {
		cfg.FramesPerQueue = DefaultFramesPerQueue
	}
	ifc, err := net.InterfaceByName(cfg.Ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", cfg.Ifname, err)
	}
	queues := cfg.Queues
	if queues == nil {
		n, err := afxdp.RxQueues(cfg.Ifname)
		if err != nil {
			return nil, err
		}
		for q := range n {
			queues = append(queues, uint32(q))
		}
	}
	nb := max(int(cfg.QueueMemory/batchBytes), 2*len(queues))
	c := &Capture{
		cfg:   cfg,
		log:   cfg.Logger,
		xsks:  xsks,
		sink:  sink,
		work:  make(chan *batch, nb),
		free:  make(chan *batch, nb),
		drops: make(map[writer.Key]int),
		reasm: reasm.New(cfg.Reassembly),
	}
	for range nb {
		c.free <- &batch{buf: make([]byte, 0, batchBytes)}
	}
	for _, q := range queues {
		s, err := afxdp.Open(afxdp.Config{Ifindex: ifc.Index, Queue: q, NumFrames: cfg.FramesPerQueue,
			RxSize: cfg.FramesPerQueue, FillSize: cfg.FramesPerQueue, ZeroCopy: cfg.ZeroCopy})
		if err != nil {
			c.closeSockets()
			return nil, fmt.Errorf("AF_XDP socket on %s queue %d: %w", cfg.Ifname, q, err)
		}
		c.queues = append(c.queues, &queue{id: q, sock: s, mode: s.Mode()})
		if err := xsks.SetXSK(q, s.FD()); err != nil {
			c.closeSockets()
			return nil, fmt.Errorf("register AF_XDP socket of queue %d: %w", q, err)
		}
		c.log.Info("AF_XDP socket ready", "iface", cfg.Ifname, "queue", q, "mode", s.Mode())
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	for _, q := range c.queues {
		c.ringsWG.Add(1)
		go c.ringLoop(ctx, q)
	}
	c.decodeWG.Add(1)
	go c.decodeLoop()
	return c, nil
}

// Stop takes the sockets out of the XSKMAP (the program falls back to
// XDP_PASS from then on), drains what their rings still hold, lets the
// decode loop finish every queued frame, and closes the sockets. The sink
// is the caller's to close afterwards.
func (c *Capture) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		for _, q := range c.queues {
			if err := c.xsks.DeleteXSK(q.id); err != nil {
				errs = append(errs, fmt.Errorf("unregister queue %d: %w", q.id, err))
			}
		}
		c.cancel()
		c.ringsWG.Wait()
		close(c.work)
		c.decodeWG.Wait()
		errs = append(errs, c.closeSockets())
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

func (c *Capture) closeSockets() error {
	var errs []error
	for _, q := range c.queues {
		errs = append(errs, q.sock.Close())
	}
	return errors.Join(errs...)
}

// ringLoop empties one socket. After a stop it drains the ring once more:
// the socket is out of the XSKMAP by then, so nothing new arrives.
func (c *Capture) ringLoop(ctx context.Context, q *queue) {
	defer c.ringsWG.Done()
	// The ring loop is the one part that must keep up with the wire: the
	// UMEM only holds frames_per_queue frames until it runs. Its own OS
	// thread, scheduled ahead of the decode loop and the writers (best
	// effort: raising priority needs CAP_SYS_NICE), so that a busy CPU
	// delays the disk, which has the queue to absorb it, and not the rings.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), ringLoopNice); err != nil {
		c.log.Debug("ring loop keeps the default priority", "queue", q.id, "err", err)
	}
	var cur *batch
	var started time.Time // when cur got its first frame
	// drops collects this round's dropped frames by stream, handed over
	// once per round: the ring loop takes no lock per frame.
	drops := make(map[writer.Key]int)
	handOver := func() {
		if cur != nil && len(cur.frames) > 0 {
			c.work <- cur
			cur = nil
		}
	}
	for {
		stopping := ctx.Err() != nil
		if !stopping {
			timeout := pollTimeout
			if cur != nil && len(cur.frames) > 0 {
				timeout = max(batchLinger-time.Since(started), 0)
			}
			ready, err := q.sock.Poll(timeout)
			if err != nil {
				c.log.Error("AF_XDP poll failed: stopping this queue", "queue", q.id, "err", err)
				return
			}
			if !ready {
				handOver() // idle: nothing more is coming soon
			}
		}
		// Counted per round, not per frame: one atomic add each.
		var frames, bytes, dropped uint64
		q.sock.ReceiveCopyMeta(metaLen, func(meta, data []byte) {
			frames++
			bytes += uint64(len(data))
			if cur != nil && len(cur.buf)+len(data) > cap(cur.buf) {
				handOver()
			}
			if cur == nil {
				select {
				case cur = <-c.free:
				default:
					dropped++
					drops[dropKey(data)]++
					return
				}
			}
			if len(cur.frames) == 0 {
				started = time.Now()
			}
			ref := frameRef{off: len(cur.buf), len: len(data)}
			if len(meta) == metaLen && binary.NativeEndian.Uint32(meta[8:12]) == metaMagic {
				ref.mono = int64(binary.NativeEndian.Uint64(meta[0:8]))
			}
			cur.buf = append(cur.buf, data...)
			cur.frames = append(cur.frames, ref)
		})
		q.frames.Add(frames)
		q.bytes.Add(bytes)
		if dropped > 0 {
			q.dropped.Add(dropped)
			c.addDrops(drops)
			clear(drops)
		}
		// A batch fills across rounds, so that a trickle of frames does
		// not use up the pool one frame a batch; batchLinger bounds how
		// long its first frame waits.
		if cur != nil && len(cur.frames) > 0 && time.Since(started) >= batchLinger {
			handOver()
		}
		q.refreshStats(stopping)
		if stopping {
			handOver()
			if cur != nil {
				c.free <- cur
			}
			return
		}
	}
}

// dropKey attributes a frame the ring loop could not queue to its stream
// when it can tell (a later fragment cannot say: the zero key).
func dropKey(frame []byte) writer.Key {
	h, class := jmirror.Decode(frame, anyPort)
	if class == jmirror.ClassJmirror && !h.LaterFragment {
		return writer.Key{MID: h.MID, SID: h.SID}
	}
	return writer.Key{}
}

// addDrops hands a round's drops to the decode loop, which reports them to
// the sink.
func (c *Capture) addDrops(drops map[writer.Key]int) {
	c.dropMu.Lock()
	for k, n := range drops {
		c.drops[k] += n
	}
	c.dropMu.Unlock()
}

// anyPort accepts every port: the program already decided these frames
// are Jmirror, with the port set it had at the time.
func anyPort(uint16) bool { return true }

func (c *Capture) decodeLoop() {
	defer c.decodeWG.Done()
	clk := newClock()
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	for {
		select {
		case b, ok := <-c.work:
			if !ok {
				c.housekeeping(clk)
				return
			}
			c.decodeBatch(b, clk)
			b.reset()
			c.free <- b
		case <-tick.C:
			c.housekeeping(clk)
		}
	}
}

func (c *Capture) housekeeping(clk *clock) {
	clk.refresh()
	c.dropMu.Lock()
	drops := c.drops
	if len(drops) > 0 {
		c.drops = make(map[writer.Key]int)
	}
	c.dropMu.Unlock()
	for k, n := range drops {
		c.sink.Drop(k, writer.DropQueue, n)
	}
	c.reasmMu.Lock()
	c.reasm.Expire(time.Now())
	c.reasmMu.Unlock()
	c.sink.Tick()
}

func (c *Capture) decodeBatch(b *batch, clk *clock) {
	for _, f := range b.frames {
		data := b.buf[f.off : f.off+f.len]
		ts := clk.wall(f.mono)
		if f.mono == 0 {
			c.noTS.Add(1)
		}
		c.frame(ts, data)
	}
}

func (c *Capture) frame(ts time.Time, data []byte) {
	h, class := jmirror.Decode(data, anyPort)
	if h.FirstFragment || h.LaterFragment {
		c.fragment(ts, data, h)
		return
	}
	if class != jmirror.ClassJmirror {
		c.unexpected.Add(1)
		return
	}
	c.write(ts, data, h)
}

// fragment feeds an outer IPv4 fragment to the reassembler and writes the
// datagram it completes, stamped with its last fragment's time (as the
// kernel's defragmenter and tshark do).
func (c *Capture) fragment(ts time.Time, data []byte, h jmirror.Header) {
	c.fragments.Add(1)
	c.reasmMu.Lock()
	dgram, complete, err := c.reasm.Add(time.Now(), data[h.IPOffset:])
	c.reasmMu.Unlock()
	if err != nil || !complete {
		return // counted by the reassembler
	}
	frame := make([]byte, h.IPOffset+len(dgram))
	copy(frame, data[:h.IPOffset])
	copy(frame[h.IPOffset:], dgram)
	rh, class := jmirror.Decode(frame, anyPort)
	if class != jmirror.ClassJmirror {
		c.unexpected.Add(1)
		return
	}
	c.write(ts, frame, rh)
}

func (c *Capture) write(ts time.Time, frame []byte, h jmirror.Header) {
	inner := frame[h.InnerOffset() : h.InnerOffset()+h.InnerLen]
	if c.sink.Write(writer.Key{MID: h.MID, SID: h.SID}, ts, h.Router, pcapng.KindOf(h.Inner), inner) {
		c.written.Add(1)
	} else {
		c.refused.Add(1)
	}
}

// Stats reads the pipeline's counters and each socket's XDP_STATISTICS.
// Safe to call while the capture runs.
func (c *Capture) Stats() Stats {
	var s Stats
	for _, q := range c.queues {
		qs := QueueStats{Queue: q.id, Mode: q.mode, Frames: q.frames.Load(), Bytes: q.bytes.Load(), Dropped: q.dropped.Load()}
		if ks := q.kstats.Load(); ks != nil {
			qs.Kernel, qs.KernelOK = *ks, true
		}
		s.QueueDrops += qs.Dropped
		s.Queues = append(s.Queues, qs)
	}
	s.Written, s.Refused = c.written.Load(), c.refused.Load()
	s.Unexpected, s.NoTimestamp, s.Fragments = c.unexpected.Load(), c.noTS.Load(), c.fragments.Load()
	c.reasmMu.Lock()
	s.Reassembly = c.reasm.Stats()
	c.reasmMu.Unlock()
	return s
}

var _ XSKMap = (*maps.Maps)(nil)
