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
	"github.com/jmxdp/jmxdp/userspace/forward"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/reasm"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// Sink takes decapsulated mirrored packets; writer.Manager is one. Each
// sink is called from a single goroutine: its shard's.
type Sink interface {
	// SetClock gives the time of the batch about to be written.
	SetClock(now time.Time)
	// WriteAt writes a packet received at ns (nanoseconds since 1970).
	WriteAt(k writer.Key, ns uint64, router netip.Addr, kind pcapng.LinkKind, data []byte) bool
	Drop(k writer.Key, reason writer.DropReason, n int)
	Tick()
}

// XSKMap registers sockets with the XDP program; *maps.Maps is one.
type XSKMap interface {
	SetXSK(queue uint32, fd int) error
	DeleteXSK(queue uint32) error
}

// Forwarder sends the frames of forwarded streams that the program handed
// to userspace (JM_META_FORWARD); *forward.Sender is one. They never go to
// a sink.
type Forwarder interface {
	// Send sends the whole datagram h describes.
	Send(frame []byte, h forward.Handed) error
	// Fragment takes a fragment whose outer IP header is at l3Off, handed
	// over for reason, and sends its datagram once whole.
	Fragment(frame []byte, l3Off int, reason vocab.FwdReason) error
}

// Config describes a capture.
type Config struct {
	Ifname string
	// Forward sends forwarded streams' frames the program could not send
	// (docs/forward.md); nil: they are counted as unexpected, never
	// written.
	Forward Forwarder
	// Queues are the RX queues to serve; nil means all of them. A queue
	// without a socket falls back to XDP_PASS (counted as capture_failed).
	Queues []uint32
	// ZeroCopy asks for zero-copy where the driver offers it.
	ZeroCopy bool
	// FramesPerQueue is each socket's UMEM size in frames, and the size of
	// its RX and fill rings (default DefaultFramesPerQueue).
	FramesPerQueue int
	// FrameSize is each UMEM frame's size (default afxdp.DefaultFrameSize);
	// a frame larger than FrameSize-256 bytes takes several.
	FrameSize int
	// QueueMemory bounds the frame bytes waiting for the sinks (default
	// 64 MiB).
	QueueMemory int64
	Reassembly  reasm.Config
	Logger      *slog.Logger
}

const (
	// The metadata in front of a frame (struct jm_xsk_meta): its size and
	// flags as bpf2go generated them (maps.XskMeta).
	metaLen      = maps.XskMetaLen
	metaOuterV6  = maps.MetaOuterV6
	metaFirstFrg = maps.MetaFirstFrg
	metaLaterFrg = maps.MetaLaterFrg
	// metaHeld: a later fragment ahead of its first, for userspace to
	// hold; mid and sid are 0.
	metaHeld = maps.MetaHeld
	// metaForward: a forwarded stream's frame the program could not send;
	// userspace sends it, never writes it.
	metaForward = maps.MetaForward
	// batchBytes is the size of one batch slab: large enough that a
	// writer wakes up a few hundred times a second at 100 MB/s, small
	// enough to stay in cache between the ring loop's copy and the
	// writer's (the pool hands out the batch it got back last).
	batchBytes = 256 << 10
	// batchLinger bounds how long a frame waits in a batch that is not
	// full before the batch goes to its writer (then to its stream's
	// buffer, which flush_interval bounds).
	batchLinger = 10 * time.Millisecond
	// maxCoalesce is the longest a ring loop sleeps after a round that
	// found a few frames, to let more arrive instead of waking for every
	// few: the kernel wakes a poller for each NAPI batch (tens of frames),
	// and those wake-ups were the biggest cost of a ring loop.
	maxCoalesce = time.Millisecond
	// yieldEvery is how often a ring loop goes through the Go scheduler:
	// under sysmon's 10 ms preemption period.
	yieldEvery = 5 * time.Millisecond
	// pollTimeout bounds how long a ring loop takes to notice a stop, and
	// how long it blocks in poll(2): under 10 ms, after which the Go
	// runtime's sysmon takes the thread's P back and then wakes every 20
	// us for a while (it was a tenth of the capture's CPU time).
	pollTimeout = 5 * time.Millisecond
	// tickEvery paces the sinks' housekeeping and fragment expiry.
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

// pool is the free batches, last in first out: the batch a writer just
// gave back is still in cache when a ring loop fills it again. One lock a
// batch, not a packet.
type pool struct {
	mu    sync.Mutex
	stack []*batch
}

func (p *pool) get() *batch {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.stack)
	if n == 0 {
		return nil
	}
	b := p.stack[n-1]
	p.stack = p.stack[:n-1]
	return b
}

func (p *pool) put(b *batch) {
	p.mu.Lock()
	p.stack = append(p.stack, b)
	p.mu.Unlock()
}

// frameRef is one packet in a batch slab: the mirrored packet alone, with
// what the XDP program's metadata said of it; or, for fragments and frames
// without metadata (slow), the whole frame, which the writer decodes.
type frameRef struct {
	off, len int
	mono     int64 // CLOCK_MONOTONIC ns from the kernel; 0 if it gave none
	key      writer.Key
	router   netip.Addr
	kind     pcapng.LinkKind
	slow     bool
}

type batch struct {
	buf    []byte
	frames []frameRef
}

func (b *batch) reset() { b.buf = b.buf[:0]; b.frames = b.frames[:0] }

// meta is struct jm_xsk_meta, read from the bytes in front of a frame
// (maps.ReadXskMeta: the generated struct, one copy out of the ring).
type meta struct{ maps.XskMeta }

func readMeta(b []byte) (meta, bool) {
	x, ok := maps.ReadXskMeta(b)
	return meta{x}, ok
}

// router reads the outer source address where the metadata says the IP
// header starts. An IPv6 source stays 16 bytes, and one that embeds an
// IPv4 address is refused (the program drops those, so a frame with one is
// not the program's: decoding it counts it as unexpected).
func (m *meta) router(frame []byte) (netip.Addr, bool) {
	off := int(m.L3Off)
	if m.Flags&metaOuterV6 != 0 {
		if off+24 > len(frame) {
			return netip.Addr{}, false
		}
		a := netip.AddrFrom16([16]byte(frame[off+8 : off+24]))
		return a, !vocab.IPv4Embedded(a)
	}
	if off+16 > len(frame) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(frame[off+12 : off+16])), true
}

func kindOf(k uint8) pcapng.LinkKind {
	if k > uint8(vocab.InnerEmpty) {
		return pcapng.LinkUnknown
	}
	return pcapng.KindOf(vocab.Inner(k))
}

// QueueStats describe one RX queue's socket.
type QueueStats struct {
	Queue    uint32
	Mode     string // zerocopy or copy
	Frames   uint64 // frames taken off the RX ring
	Bytes    uint64
	Dropped  uint64 // frames dropped because the batch pool was empty (writers too slow)
	Kernel   afxdp.Stats
	KernelOK bool // false if XDP_STATISTICS could not be read
	// SG: the socket takes multi-buffer frames (XDP_USE_SG); Chains counts
	// them: joined, or dropped for exceeding afxdp.DefaultMaxChain buffers.
	SG     bool
	Chains afxdp.ChainStats
}

// Stats describe the pipeline.
type Stats struct {
	Queues []QueueStats
	// Writers is the number of writer shards.
	Writers int
	// Written/Refused: packets the sinks accepted, or dropped themselves.
	Written, Refused uint64
	// QueueDrops: frames dropped for want of a free batch (all queues).
	QueueDrops uint64
	// RingDrops: frames the kernel could not put on an RX ring (its
	// XDP_STATISTICS rx_dropped and rx_ring_full, all queues).
	RingDrops uint64
	// Unexpected: frames that reached the sockets but are not Jmirror by
	// the userspace decoder (should stay 0: the program only redirects
	// Jmirror).
	Unexpected uint64
	// NoMetadata: frames without the program's metadata (the driver has
	// no XDP metadata), decoded in userspace and stamped with the time
	// userspace saw them.
	NoMetadata uint64
	// Fragments: outer IPv4 fragments received; Reassembly their outcome.
	Fragments  uint64
	Reassembly reasm.Stats
	// Held: later fragments the program sent ahead of their first
	// fragment, kept until it comes (then reassembled with it) or counted
	// as expired or evicted.
	Held reasm.HoldStats
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
	// chains is the socket's multi-buffer counters, read with kstats.
	chains atomic.Pointer[afxdp.ChainStats]
}

func (q *queue) refreshStats(force bool) {
	if !force && time.Since(q.kstatsAt) < time.Second {
		return
	}
	q.kstatsAt = time.Now()
	if ks, err := q.sock.Stats(); err == nil {
		q.kstats.Store(&ks)
	}
	cs := q.sock.Chains()
	q.chains.Store(&cs)
}

// shard is one writer goroutine with its sink: it owns the streams whose
// key hashes to it, so no lock is shared across shards per packet, and a
// stream's packets keep their order of arrival on each queue.
type shard struct {
	sink Sink
	work chan *batch

	// dropMu guards drops: frames the ring loops dropped, per stream,
	// handed to the sink by the shard's goroutine.
	dropMu sync.Mutex
	drops  map[writer.Key]int

	reasm lockedReasm
}

// lockedReasm is a shard's reassembler, locked because Stats reads it.
type lockedReasm struct {
	mu sync.Mutex
	r  *reasm.Reassembler
}

func (l *lockedReasm) Add(now time.Time, pkt []byte) ([]byte, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Add(now, pkt)
}

// Capture is a running capture.
type Capture struct {
	cfg    Config
	log    *slog.Logger
	xsks   XSKMap
	shards []*shard
	queues []*queue

	free pool

	written, refused, unexpected, noMeta, fragments atomic.Uint64

	// held keeps the later fragments that came before their first: only
	// the first fragment names the stream, and so the shard whose
	// reassembler takes them. Shared by the ring loops (a datagram's
	// fragments may come on several queues), locked only on this path;
	// heldN, the fragments held, lets a first fragment skip the lock when
	// nothing is held.
	holdMu sync.Mutex
	held   *reasm.Holder
	heldN  atomic.Int64

	cancel   context.CancelFunc
	ringsWG  sync.WaitGroup
	shardsWG sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// Start opens one AF_XDP socket per queue, registers each in xsks and
// starts the loops: one ring loop per queue, one writer goroutine per sink
// (the streams are spread over the sinks by key). Stop ends them.
func Start(cfg Config, xsks XSKMap, sinks ...Sink) (*Capture, error) {
	if len(sinks) == 0 {
		return nil, errors.New("capture: no sink")
	}
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
	queues, err := Queues(cfg.Ifname, cfg.Queues)
	if err != nil {
		return nil, err
	}
	// Each ring loop holds a batch per shard while it fills them.
	nb := max(int(cfg.QueueMemory/batchBytes), 2*len(queues)*len(sinks))
	c := &Capture{
		cfg:  cfg,
		log:  cfg.Logger,
		xsks: xsks,
		free: pool{stack: make([]*batch, 0, nb)},
		held: reasm.NewHolder(cfg.Reassembly),
	}
	for _, sk := range sinks {
		c.shards = append(c.shards, &shard{
			sink:  sk,
			work:  make(chan *batch, nb),
			drops: make(map[writer.Key]int),
			reasm: lockedReasm{r: reasm.New(cfg.Reassembly)},
		})
	}
	for range nb {
		c.free.put(&batch{buf: make([]byte, 0, batchBytes)})
	}
	for _, q := range queues {
		s, err := afxdp.Open(afxdp.Config{Ifindex: ifc.Index, Queue: q, NumFrames: cfg.FramesPerQueue, FrameSize: cfg.FrameSize,
			RxSize: cfg.FramesPerQueue, FillSize: cfg.FramesPerQueue, ZeroCopy: cfg.ZeroCopy,
			// Multi-buffer: jumbo frames arrive as descriptor chains.
			SG: true})
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
	// A ring loop blocked in poll(2) or asleep holds its P. Unless a P is
	// idle, the runtime's sysmon takes back any P in a syscall for more
	// than 20 us, and then polls every 20 us: tens of thousands of wake-ups
	// a second, a sixth of the capture's CPU time when its process is
	// pinned to one CPU (GOMAXPROCS 1). One P for each ring loop and each
	// writer, and one spare.
	if want := len(c.queues) + len(c.shards) + 1; runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	for _, q := range c.queues {
		c.ringsWG.Add(1)
		go c.ringLoop(ctx, q)
	}
	for _, sh := range c.shards {
		c.shardsWG.Add(1)
		go c.shardLoop(sh)
	}
	return c, nil
}

// Queues are the RX queues a capture with Config.Queues set to queues
// serves on ifname: those, or all of the interface's when nil.
func Queues(ifname string, queues []uint32) ([]uint32, error) {
	if queues != nil {
		return queues, nil
	}
	n, err := afxdp.RxQueues(ifname)
	if err != nil {
		return nil, err
	}
	for q := range n {
		queues = append(queues, uint32(q))
	}
	return queues, nil
}

// Stop takes the sockets out of the XSKMAP (the program falls back to
// XDP_PASS from then on), drains what their rings still hold, lets the
// writers finish every queued frame, and closes the sockets. The sinks
// are the caller's to close afterwards.
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
		// Nothing arrives now: what is still held never gets its first
		// fragment, and is counted as expired.
		c.holdMu.Lock()
		c.held.Expire(time.Now().Add(time.Hour))
		c.heldN.Store(0)
		c.holdMu.Unlock()
		for _, sh := range c.shards {
			close(sh.work)
		}
		c.shardsWG.Wait()
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

// shardOf spreads the streams over the shards.
func (c *Capture) shardOf(k writer.Key) int {
	if len(c.shards) == 1 {
		return 0
	}
	h := (uint64(k.MID)<<32 | uint64(k.SID)) * 0x9e3779b97f4a7c15
	return int((h >> 32) % uint64(len(c.shards)))
}

// ring is a ring loop's state: the batch it fills for each shard.
type ring struct {
	c       *Capture
	q       *queue
	cur     []*batch
	started []time.Time // when cur[i] got its first frame
	// drops collects this round's dropped frames by stream, handed over
	// once per round: the ring loop takes no lock per frame.
	drops           []map[writer.Key]int
	frames, bytes   uint64
	dropped, noMeta uint64
	pending         int // batches with frames
	// ringSize is the RX ring's size; lastRound when the previous round
	// ended (coalesce).
	ringSize  int
	lastRound time.Time
}

// handOver sends shard i's batch to its writer.
func (r *ring) handOver(i int) {
	if b := r.cur[i]; b != nil && len(b.frames) > 0 {
		r.c.shards[i].work <- b
		r.cur[i] = nil
		r.pending--
	}
}

func (r *ring) handOverAll() {
	for i := range r.cur {
		r.handOver(i)
	}
}

// lingerDue hands over the batches whose first frame waited batchLinger.
func (r *ring) lingerDue(now time.Time) {
	if r.pending == 0 {
		return
	}
	for i, b := range r.cur {
		if b != nil && len(b.frames) > 0 && now.Sub(r.started[i]) >= batchLinger {
			r.handOver(i)
		}
	}
}

// add copies one packet (n bytes of data at from) into shard i's batch;
// false if no batch was free.
func (r *ring) add(i int, data []byte, ref frameRef) bool {
	b := r.cur[i]
	if b != nil && len(b.buf)+len(data) > cap(b.buf) {
		r.handOver(i)
		b = nil
	}
	if b == nil {
		if b = r.c.free.get(); b == nil {
			return false
		}
		r.cur[i] = b
		r.pending++
	}
	if len(b.frames) == 0 {
		r.started[i] = time.Now()
	}
	ref.off, ref.len = len(b.buf), len(data)
	b.buf = append(b.buf, data...)
	b.frames = append(b.frames, ref)
	return true
}

// frame takes one frame off the ring: with the program's metadata, only
// the mirrored packet is copied, with its stream, router, kind and time.
func (r *ring) frame(mb, data []byte) {
	r.frames++
	r.bytes += uint64(len(data))
	m, ok := readMeta(mb)
	var ref frameRef
	pkt := data
	switch {
	case !ok:
		r.noMeta++
		ref.slow, ref.key = true, slowKey(data)
	case m.Flags&metaForward != 0:
		r.c.forward(data, &m)
		return
	case m.Flags&metaHeld != 0:
		r.c.hold(data, &m)
		return
	case m.Flags&(metaFirstFrg|metaLaterFrg) != 0:
		ref.slow, ref.mono = true, int64(m.RxNs)
		ref.key = writer.Key{MID: m.Mid, SID: m.Sid}
		if m.Flags&metaFirstFrg != 0 && r.c.heldN.Load() > 0 {
			// Ahead of the first, so that the first, which came last,
			// completes the datagram and stamps it.
			r.release(data, &m, ref)
		}
	default:
		end := int(m.InnerOff) + int(m.InnerLen)
		router, rok := m.router(data)
		if !rok || end > len(data) {
			// Cannot happen with this program: decode it.
			ref.slow, ref.key = true, slowKey(data)
			break
		}
		ref.mono = int64(m.RxNs)
		ref.key = writer.Key{MID: m.Mid, SID: m.Sid}
		ref.router, ref.kind = router, kindOf(m.InnerKind)
		pkt = data[m.InnerOff:end]
	}
	i := r.c.shardOf(ref.key)
	if !r.add(i, pkt, ref) {
		r.dropped++
		r.drops[i][ref.key]++
	}
}

// fragKey is the datagram key of the IPv4 or IPv6 fragment at the
// metadata's l3Off.
func fragKey(frame []byte, m *meta) (reasm.Key, bool) {
	off := int(m.L3Off)
	if off > len(frame) {
		return reasm.Key{}, false
	}
	return reasm.KeyOf(frame[off:])
}

// forward hands a forwarded stream's frame to the Forwarder: whole
// datagrams are sent, fragments reassembled and then sent. A socket send
// per frame on the ring's goroutine: these are the exceptions the program
// could not send itself (no neighbour yet, too big, a family change).
func (c *Capture) forward(frame []byte, m *meta) {
	if c.cfg.Forward == nil {
		c.unexpected.Add(1)
		return
	}
	if m.Flags&(metaFirstFrg|metaLaterFrg) != 0 {
		// Later fragments that came before their first wait in the
		// holder (JM_META_HELD): a forwarded datagram's are the
		// Forwarder's (forward_frag_early, docs/forward.md).
		if c.heldN.Load() > 0 {
			c.forwardHeld(frame, m)
		}
		if err := c.cfg.Forward.Fragment(frame, int(m.L3Off), vocab.FwdReason(m.Reserved)); err != nil {
			c.log.Debug("forward from userspace failed", "err", err)
		}
		return
	}
	h := forward.Handed{L3Off: int(m.L3Off), JMOff: int(m.InnerOff) - jmirror.HeaderLen, InnerLen: int(m.InnerLen),
		MID: m.Mid, SID: m.Sid, Reason: vocab.FwdReason(m.Reserved)}
	if err := c.cfg.Forward.Send(frame, h); err != nil {
		c.log.Debug("forward from userspace failed", "err", err)
	}
}

// forwardHeld hands the fragments held for the datagram of a forwarded
// fragment to the Forwarder, which reassembles them with it.
func (c *Capture) forwardHeld(frame []byte, m *meta) {
	k, ok := fragKey(frame, m)
	if !ok {
		return
	}
	c.holdMu.Lock()
	held := c.held.Take(k)
	c.heldN.Store(int64(c.held.Len()))
	c.holdMu.Unlock()
	for _, h := range held {
		off, ok := l3Offset(h.Frame)
		if !ok {
			c.unexpected.Add(1) // the program held it as IP: cannot happen
			continue
		}
		if err := c.cfg.Forward.Fragment(h.Frame, off, vocab.FwdFragEarly); err != nil {
			c.log.Debug("forward from userspace failed", "err", err)
		}
	}
}

// l3Offset is where the IP header of an Ethernet frame starts, after up
// to two VLAN tags (the shapes the program parses); false if the frame is
// neither IPv4 nor IPv6.
func l3Offset(frame []byte) (int, bool) {
	const ethLen, tagLen, maxTags = 14, 4, 2
	if len(frame) < ethLen {
		return 0, false
	}
	off, et := ethLen, binary.BigEndian.Uint16(frame[12:])
	for range maxTags {
		if et != unix.ETH_P_8021Q && et != unix.ETH_P_8021AD {
			break
		}
		if off+tagLen > len(frame) {
			return 0, false
		}
		et, off = binary.BigEndian.Uint16(frame[off+2:]), off+tagLen
	}
	return off, et == unix.ETH_P_IP || et == unix.ETH_P_IPV6
}

// hold keeps a later fragment that came before its first (a copy: the
// frame goes back to the fill ring).
func (c *Capture) hold(frame []byte, m *meta) {
	k, ok := fragKey(frame, m)
	if !ok {
		c.unexpected.Add(1) // cannot happen with this program
		return
	}
	c.holdMu.Lock()
	c.held.Hold(time.Now(), k, frame, int64(m.RxNs))
	c.heldN.Store(int64(c.held.Len()))
	c.holdMu.Unlock()
}

// release adds the fragments held for the datagram of a first fragment to
// the batch of its stream's shard, ahead of it.
func (r *ring) release(frame []byte, m *meta, ref frameRef) {
	k, ok := fragKey(frame, m)
	if !ok {
		return
	}
	c := r.c
	c.holdMu.Lock()
	held := c.held.Take(k)
	c.heldN.Store(int64(c.held.Len()))
	c.holdMu.Unlock()
	i := c.shardOf(ref.key)
	for _, h := range held {
		hr := ref
		hr.mono = h.Stamp
		if !r.add(i, h.Frame, hr) {
			r.dropped++
			r.drops[i][ref.key]++
		}
	}
}

func (c *Capture) expireHeld(now time.Time) {
	if c.heldN.Load() == 0 {
		return
	}
	c.holdMu.Lock()
	c.held.Expire(now)
	c.heldN.Store(int64(c.held.Len()))
	c.holdMu.Unlock()
}

// ringLoop empties one socket. After a stop it drains the ring once more:
// the socket is out of the XSKMAP by then, so nothing new arrives.
func (c *Capture) ringLoop(ctx context.Context, q *queue) {
	defer c.ringsWG.Done()
	// The ring loop is the one part that must keep up with the wire: the
	// UMEM only holds frames_per_queue frames until it runs. Its own OS
	// thread, scheduled ahead of the writers (best effort: raising
	// priority needs CAP_SYS_NICE), so that a busy CPU delays the disk,
	// which has the queue to absorb it, and not the rings.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), ringLoopNice); err != nil {
		c.log.Debug("ring loop keeps the default priority", "queue", q.id, "err", err)
	}
	r := &ring{c: c, q: q, cur: make([]*batch, len(c.shards)), started: make([]time.Time, len(c.shards)),
		ringSize: c.cfg.FramesPerQueue}
	for range c.shards {
		r.drops = append(r.drops, make(map[writer.Key]int))
	}
	frame := r.frame
	var lastYield time.Time
	for {
		stopping := ctx.Err() != nil
		if !stopping {
			timeout := pollTimeout
			if r.pending > 0 {
				timeout = min(batchLinger, pollTimeout)
			}
			ready, err := q.sock.Poll(timeout)
			if err != nil {
				c.log.Error("AF_XDP poll failed: stopping this queue", "queue", q.id, "err", err)
				return
			}
			if !ready {
				r.handOverAll() // idle: nothing more is coming soon
			}
		}
		r.frames, r.bytes, r.dropped, r.noMeta = 0, 0, 0, 0
		n := q.sock.ReceiveCopyMeta(metaLen, frame)
		// Counted per round, not per frame: one atomic add each.
		q.frames.Add(r.frames)
		q.bytes.Add(r.bytes)
		if r.noMeta > 0 {
			c.noMeta.Add(r.noMeta)
		}
		if r.dropped > 0 {
			q.dropped.Add(r.dropped)
			for i, d := range r.drops {
				if len(d) > 0 {
					c.shards[i].addDrops(d)
					clear(d)
				}
			}
		}
		// A batch fills across rounds, so that a trickle of frames does
		// not use up the pool one frame a batch; batchLinger bounds how
		// long its first frame waits.
		now := time.Now()
		r.lingerDue(now)
		q.refreshStats(stopping)
		if stopping {
			r.handOverAll()
			return
		}
		r.coalesce(n, now)
		// A ring loop never blocks in the scheduler (only in poll(2) and
		// nanosleep(2)), so the runtime's sysmon would find its P on the
		// same scheduling tick every 10 ms, preempt it and then poll every
		// 20 us. Yielding once in a while keeps it asleep.
		if now.Sub(lastYield) >= yieldEvery {
			runtime.Gosched()
			lastYield = now
		}
	}
}

// coalesce sleeps after a round that found n frames, if they were few,
// for as long as a quarter of the ring takes to fill at the rate they came
// (at most maxCoalesce): fewer wake-ups, and never a ring that overflows
// for it.
func (r *ring) coalesce(n int, now time.Time) {
	last := r.lastRound
	r.lastRound = now
	quarter := r.ringSize / 4
	if n == 0 || n >= quarter || last.IsZero() {
		return
	}
	d := maxCoalesce
	if el := now.Sub(last); el > 0 {
		// n frames came in el: a quarter ring takes el*quarter/n.
		d = min(d, time.Duration(int64(el)*int64(quarter)/int64(n)))
	}
	ts := unix.NsecToTimespec(int64(d))
	unix.Nanosleep(&ts, nil)
	r.lastRound = time.Now()
}

// slowKey is the stream of a frame the program gave no usable metadata
// for, by decoding it; the zero key for a fragment, so that all fragments
// without metadata go to one shard, which reassembles them (a later
// fragment cannot say its stream).
func slowKey(frame []byte) writer.Key {
	h, class := jmirror.Decode(frame, anyPort)
	if class == jmirror.ClassJmirror && !h.FirstFragment && !h.LaterFragment {
		return writer.Key{MID: h.MID, SID: h.SID}
	}
	return writer.Key{}
}

// addDrops hands a round's drops to the shard's goroutine, which reports
// them to the sink.
func (sh *shard) addDrops(drops map[writer.Key]int) {
	sh.dropMu.Lock()
	for k, n := range drops {
		sh.drops[k] += n
	}
	sh.dropMu.Unlock()
}

// anyPort accepts every port: the program already decided these frames
// are Jmirror, with the port set it had at the time.
func anyPort(uint16) bool { return true }

func (c *Capture) shardLoop(sh *shard) {
	defer c.shardsWG.Done()
	clk := newClock()
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	for {
		select {
		case b, ok := <-sh.work:
			if !ok {
				// Stopped: no fragment comes any more. What is pending
				// never completes, and is counted (timeouts, or
				// duplicates for copies of completed datagrams).
				sh.reasm.mu.Lock()
				sh.reasm.r.Expire(time.Now().Add(time.Hour))
				sh.reasm.mu.Unlock()
				c.housekeeping(sh, clk)
				return
			}
			c.writeBatch(sh, b, clk)
			b.reset()
			c.free.put(b)
		case <-tick.C:
			c.housekeeping(sh, clk)
		}
	}
}

func (c *Capture) housekeeping(sh *shard, clk *clock) {
	clk.refresh()
	sh.dropMu.Lock()
	drops := sh.drops
	if len(drops) > 0 {
		sh.drops = make(map[writer.Key]int)
	}
	sh.dropMu.Unlock()
	for k, n := range drops {
		sh.sink.Drop(k, writer.DropQueue, n)
	}
	sh.reasm.mu.Lock()
	sh.reasm.r.Expire(time.Now())
	sh.reasm.mu.Unlock()
	c.expireHeld(time.Now())
	sh.sink.Tick()
}

// writeBatch hands a batch's packets to the sink: the clock is read and
// converted once for the batch, and a packet with metadata goes to the
// sink as it is, without being parsed again.
func (c *Capture) writeBatch(sh *shard, b *batch, clk *clock) {
	now := time.Now()
	sh.sink.SetClock(now)
	nowNs := uint64(now.UnixNano())
	var written, refused uint64
	for i := range b.frames {
		f := &b.frames[i]
		data := b.buf[f.off : f.off+f.len]
		ns := nowNs
		if f.mono != 0 {
			ns = uint64(f.mono + clk.offset)
		}
		if f.slow {
			c.frameSlow(sh, now, ns, data)
			continue
		}
		if sh.sink.WriteAt(f.key, ns, f.router, f.kind, data) {
			written++
		} else {
			refused++
		}
	}
	c.written.Add(written)
	c.refused.Add(refused)
}

// frameSlow decodes a frame the program gave no usable metadata for, or a
// fragment, which is reassembled (at now, the batch's time) and written,
// once complete, stamped with its last fragment's time (as the kernel's
// defragmenter and tshark do).
func (c *Capture) frameSlow(sh *shard, now time.Time, ns uint64, data []byte) {
	u := jmirror.Unwrap(data, anyPort, &sh.reasm, now)
	if u.Fragment {
		c.fragments.Add(1)
	}
	if !u.OK {
		if !u.Fragment || u.Complete {
			c.unexpected.Add(1)
		}
		return // else counted by the reassembler
	}
	h := &u.Packet
	if sh.sink.WriteAt(writer.Key{MID: h.MID, SID: h.SID}, ns, h.Router, pcapng.KindOf(h.Inner), u.Payload()) {
		c.written.Add(1)
	} else {
		c.refused.Add(1)
	}
}

// Stats reads the pipeline's counters and each socket's XDP_STATISTICS.
// Safe to call while the capture runs.
func (c *Capture) Stats() Stats {
	s := Stats{Writers: len(c.shards)}
	for _, q := range c.queues {
		qs := QueueStats{Queue: q.id, Mode: q.mode, Frames: q.frames.Load(), Bytes: q.bytes.Load(), Dropped: q.dropped.Load()}
		if ks := q.kstats.Load(); ks != nil {
			qs.Kernel, qs.KernelOK = *ks, true
			s.RingDrops += ks.RxDropped + ks.RxRingFull
		}
		qs.SG = q.sock.SG()
		if cs := q.chains.Load(); cs != nil {
			qs.Chains = *cs
		}
		s.QueueDrops += qs.Dropped
		s.Queues = append(s.Queues, qs)
	}
	s.Written, s.Refused = c.written.Load(), c.refused.Load()
	s.Unexpected, s.NoMetadata, s.Fragments = c.unexpected.Load(), c.noMeta.Load(), c.fragments.Load()
	for _, sh := range c.shards {
		sh.reasm.mu.Lock()
		s.Reassembly.Add(sh.reasm.r.Stats())
		sh.reasm.mu.Unlock()
	}
	c.holdMu.Lock()
	s.Held = c.held.Stats()
	c.holdMu.Unlock()
	return s
}

var _ XSKMap = (*maps.Maps)(nil)
