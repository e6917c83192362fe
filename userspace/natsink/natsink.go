// Package natsink is the NATS JetStream sink of `jmxdp run --sink nats://`:
// it batches each stream's packets into self-contained pcapng sections,
// publishes them asynchronously to the JMXDP stream on subjects
// jmxdp.<mid>.<sid>, and keeps what the cluster does not take in a bounded
// on-disk spool that it re-sends, in order, once the cluster is back.
package natsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// Headers every message carries besides Nats-Msg-Id.
const (
	// HeaderRouters lists the routers (comma-separated addresses) whose
	// packets the batch holds; the pcapng interfaces name them too.
	HeaderRouters = "Jmxdp-Routers"
	// HeaderPackets is the number of packets in the batch.
	HeaderPackets = "Jmxdp-Packets"
)

// Defaults of Config.
const (
	DefaultStream       = "JMXDP"
	DefaultReplicas     = 1
	DefaultMaxBytes     = 8 << 30
	DefaultMaxAge       = 7 * 24 * time.Hour
	DefaultDuplicates   = 2 * time.Minute
	DefaultBatchPackets = 256
	DefaultBatchBytes   = 64 << 10
	// DefaultLinger is the file sink's flush interval: a packet waits in
	// memory as long as it would in a file's write buffer. Messages are
	// the sink's unit of cost, for jmxdp and for the servers: at 3000
	// streams and 200 kpps, 50 ms made 4 packets a message and more
	// messages than a shared 1-node cluster stores (docs/bench.md).
	DefaultLinger      = time.Second
	DefaultMaxInFlight = 256
	DefaultAckTimeout  = 5 * time.Second
	DefaultSpoolMax    = 1 << 30
	DefaultStopTimeout = 10 * time.Second
	// queueBytes bounds the batches waiting between the capture
	// goroutines and the publisher, in payload bytes: a linger closes
	// every stream's batch within one tick (3000 batches at once at 3000
	// streams), which a count of batches would bound too tightly for
	// small batches and too loosely for large ones. queueLen only sizes
	// the channel: queueBytes / 4 KiB batches.
	queueBytes = 64 << 20
	queueLen   = queueBytes / (4 << 10)
	// pendingMax bounds the batches the publisher holds in memory while
	// the in-flight window is full, in payload bytes.
	pendingMax = 64 << 20
)

// Subject is the subject of stream (mid, sid)'s batches.
func Subject(mid, sid uint32) string { return fmt.Sprintf("jmxdp.%d.%d", mid, sid) }

// ParseSubject is Subject's inverse.
func ParseSubject(s string) (mid, sid uint32, err error) {
	f := strings.Split(s, ".")
	if len(f) != 3 || f[0] != "jmxdp" {
		return 0, 0, fmt.Errorf("subject %q is not jmxdp.<mid>.<sid>", s)
	}
	m, err1 := strconv.ParseUint(f[1], 10, 32)
	n, err2 := strconv.ParseUint(f[2], 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("subject %q is not jmxdp.<mid>.<sid>", s)
	}
	return uint32(m), uint32(n), nil
}

// Auth is how the client proves who it is; every field is optional.
type Auth struct {
	// CredsFile is a user JWT and NKey seed file (nats.UserCredentials).
	CredsFile string
	// NKeyFile is an NKey seed file (nats.NkeyOptionFromSeed).
	NKeyFile string
	// User and PasswordFile: user/password authentication; the password
	// is read from a file so that it is in no config or command line.
	User, PasswordFile string
	// CAFile verifies the servers (TLS); CertFile and KeyFile are the
	// client's certificate for mutual TLS.
	CAFile, CertFile, KeyFile string
}

// Options are the nats.go options for a.
func (a Auth) Options() ([]nats.Option, error) {
	var o []nats.Option
	if a.CredsFile != "" {
		o = append(o, nats.UserCredentials(a.CredsFile))
	}
	if a.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(a.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nkey file: %w", err)
		}
		o = append(o, opt)
	}
	if a.User != "" {
		pw := ""
		if a.PasswordFile != "" {
			b, err := os.ReadFile(a.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("password file: %w", err)
			}
			pw = strings.TrimRight(string(b), "\r\n")
		}
		o = append(o, nats.UserInfo(a.User, pw))
	}
	if a.CAFile != "" {
		o = append(o, nats.RootCAs(a.CAFile))
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		return nil, errors.New("tls: a client certificate needs both cert_file and key_file")
	}
	if a.CertFile != "" {
		o = append(o, nats.ClientCert(a.CertFile, a.KeyFile))
	}
	return o, nil
}

// Config configures a Sink.
type Config struct {
	// URLs are the servers, comma-separated (nats://host:port,...).
	URLs string
	Auth Auth
	// Stream is the JetStream stream (default JMXDP). If it is missing
	// it is created with subjects jmxdp.>, file storage, Replicas,
	// MaxBytes, MaxAge and Duplicates, discarding new messages when full
	// (the publisher then spools them: nothing goes silently).
	Stream     string
	Replicas   int
	MaxBytes   int64
	MaxAge     time.Duration
	Duplicates time.Duration
	// A batch is published at BatchPackets packets, BatchBytes bytes of
	// pcapng or Linger after its first packet, whichever comes first.
	BatchPackets int
	BatchBytes   int
	Linger       time.Duration
	// MaxInFlight bounds the batches published and not yet acked.
	MaxInFlight int
	// AckTimeout: a publish not acked by then is spooled and re-sent.
	AckTimeout time.Duration
	// SpoolDir holds what the cluster did not take; SpoolMax bounds it
	// (bytes): beyond it batches are dropped, counted (spool_full).
	SpoolDir string
	SpoolMax int64
	// StopTimeout bounds how long Close waits for acks before spooling
	// what is still in flight.
	StopTimeout time.Duration
	// Instance makes the Nats-Msg-Ids unique to this collector; default:
	// the host name and a random id, new at each start.
	Instance string
	// PacketComments adds a "router=" comment to every packet.
	PacketComments bool
	Logger         *slog.Logger
	// pendingMax: pendingMax's, unless a test sets it.
	pendingMax int
}

func (c *Config) defaults() {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Duplicates == 0 {
		c.Duplicates = DefaultDuplicates
	}
	if c.BatchPackets == 0 {
		c.BatchPackets = DefaultBatchPackets
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.SpoolMax == 0 {
		c.SpoolMax = DefaultSpoolMax
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = host + "-" + nuid.Next()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.pendingMax == 0 {
		c.pendingMax = pendingMax
	}
}

// Batch drop reasons (Stats.Dropped).
const (
	// DropQueue: the publisher's queue was full (it is busy re-sending
	// the spool, or blocked on the spool's disk).
	DropQueue = iota
	// DropSpoolFull: the cluster did not take the batch and the spool
	// was at SpoolMax.
	DropSpoolFull
	// DropSpoolError: writing the spool failed.
	DropSpoolError
	// NumDrops is the number of reasons.
	NumDrops
)

// DropNames are the reasons' metric labels.
var DropNames = [NumDrops]string{"queue", "spool_full", "spool_error"}

// Stats are the sink's counters, in batches (messages) but for the
// Packets fields. Published counts publishes handed to the client (first
// sends and re-sends), Acked the first sends the stream stored, Resent the
// spooled batches the stream stored later.
type Stats struct {
	Published, Acked, Spooled, Resent uint64
	// Overflows counts the times the cluster fell so far behind (the
	// in-flight window full and pendingMax bytes waiting) that batches
	// went to the spool.
	Overflows uint64
	Dropped   [NumDrops]uint64
	// PacketsAccepted: packets WriteAt took; PacketsAcked: those stored
	// (acked or re-sent); PacketsDropped: those of dropped batches.
	PacketsAccepted, PacketsAcked, PacketsDropped uint64
	// PacketDrops are the packets dropped before any batch (by the
	// capture, or refused by WriteAt), by writer reason.
	PacketDrops [writer.NumDropReasons]uint64
	// InFlight: published, not yet acked; SpoolBytes and SpoolBatches:
	// what the spool holds now.
	// Pending: waiting in memory for the in-flight window.
	InFlight, Pending, SpoolBatches int
	SpoolBytes                      int64
	Connected                       bool
}

type msg struct {
	subject, id, routers string
	packets              int
	data                 []byte
}

type inflight struct {
	m *msg
	// n is the publish's number (its reply subject), sent its time.
	n    uint64
	sent time.Time
	// resend: a record of the spool's oldest segment (it stays in the
	// spool until the whole segment is acked), not a first send.
	resend bool
}

// Sink publishes to JetStream. Its Shards are the capture's sinks, one
// per capture goroutine; one publisher goroutine owns the connection's
// acks and the spool.
type Sink struct {
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	in     chan *msg
	done   chan struct{}
	seq    atomic.Uint64
	shards []*Shard
	// queued is the payload bytes in `in` (at most queueBytes).
	queued atomic.Int64

	// The publisher goroutine's. fl is in publish order; early holds
	// the acks that came before an older publish's.
	acks     *acker
	ackBuf   []ackResult
	pubN     uint64
	early    map[uint64]error
	expected []string // Nats-Expected-Stream, shared by every message
	spool    *spool
	fl       []inflight
	streamOK bool
	warned   time.Time
	// rp is the spool's oldest segment being re-sent: rpNext records are
	// published, rpAcked of them acked. rpHold stops the re-sending until
	// the next tick after a failure; rpProbe sends one record alone
	// until an ack says the cluster takes messages again.
	rp              []*msg
	rpNext, rpAcked int
	rpPackets       int
	rpHold, rpProbe bool
	// pending: batches waiting for the in-flight window, oldest first,
	// pendingBytes of payload.
	pending      []*msg
	pendingBytes int

	mu sync.Mutex
	st Stats
}

// New connects (retrying in the background if no server answers: until
// then batches are spooled) and starts the publisher, with n shards.
func New(cfg Config, n int) (*Sink, error) {
	cfg.defaults()
	if cfg.URLs == "" {
		return nil, errors.New("nats sink: no server URL")
	}
	if cfg.SpoolDir == "" {
		return nil, errors.New("nats sink: no spool directory")
	}
	sp, err := openSpool(cfg.SpoolDir, cfg.SpoolMax)
	if err != nil {
		return nil, fmt.Errorf("nats sink: %w", err)
	}
	s := &Sink{cfg: cfg, log: cfg.Logger, spool: sp, in: make(chan *msg, queueLen), done: make(chan struct{})}
	opts, err := cfg.Auth.Options()
	if err != nil {
		return nil, fmt.Errorf("nats sink: %w", err)
	}
	opts = append(opts,
		nats.Name("jmxdp "+cfg.Instance),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		// While disconnected a publish fails at once and the batch goes
		// to the spool, which is bounded and outlives the process,
		// rather than to the client's reconnect buffer.
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(2*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.log.Warn("nats sink: disconnected: spooling until a server answers", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.log.Info("nats sink: connected", "server", nc.ConnectedUrlRedacted())
		}),
	)
	s.nc, err = nats.Connect(cfg.URLs, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats sink: connect %s: %w", cfg.URLs, err)
	}
	s.js, err = jetstream.New(s.nc)
	if err != nil {
		s.nc.Close()
		return nil, fmt.Errorf("nats sink: %w", err)
	}
	if s.acks, err = newAcker(s.nc); err != nil {
		s.nc.Close()
		return nil, fmt.Errorf("nats sink: %w", err)
	}
	s.early = map[uint64]error{}
	s.expected = []string{cfg.Stream}
	if s.nc.IsConnected() {
		if err := s.ensureStream(); err != nil {
			s.log.Warn("nats sink: the stream is not ready: spooling until it is", "err", err)
		}
	}
	if !sp.empty() {
		s.log.Info("nats sink: the spool holds batches of an earlier run: re-sending them first", "batches", sp.records, "bytes", sp.size)
	}
	for range max(n, 1) {
		s.shards = append(s.shards, &Shard{s: s, batches: map[writer.Key]*batch{}})
	}
	go s.run()
	return s, nil
}

// Shards are the capture's sinks.
func (s *Sink) Shards() []*Shard { return s.shards }

// Instance is the prefix of this run's Nats-Msg-Ids.
func (s *Sink) Instance() string { return s.cfg.Instance }

// Stats are the counters; safe for concurrent use.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	st.Connected = s.nc.IsConnected()
	for _, sh := range s.shards {
		st.PacketsAccepted += sh.accepted.Load()
		for r := range st.PacketDrops {
			st.PacketDrops[r] += sh.drops[r].Load()
		}
	}
	return st
}

// ensureStream finds the stream or creates it.
func (s *Sink) ensureStream() error {
	if s.streamOK {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := s.cfg
	st, err := s.js.Stream(ctx, c.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        c.Stream,
			Description: "jmxdp: Jmirror streams, one pcapng section a message",
			Subjects:    []string{"jmxdp.>"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardNew,
			Replicas:    c.Replicas,
			MaxBytes:    c.MaxBytes,
			MaxAge:      c.MaxAge,
			Duplicates:  c.Duplicates,
		})
		if err == nil {
			s.log.Info("nats sink: created the stream", "stream", c.Stream, "subjects", "jmxdp.>", "replicas", c.Replicas,
				"max_bytes", c.MaxBytes, "max_age", c.MaxAge, "duplicate_window", c.Duplicates, "discard", "new")
		}
	} else if err == nil {
		sc := st.CachedInfo().Config
		s.log.Info("nats sink: using the stream", "stream", c.Stream, "replicas", sc.Replicas,
			"max_bytes", sc.MaxBytes, "max_age", sc.MaxAge, "duplicate_window", sc.Duplicates)
		if sc.Replicas != c.Replicas {
			s.log.Warn("nats sink: the stream exists with another replica count: kept", "stream_replicas", sc.Replicas, "configured", c.Replicas)
		}
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", c.Stream, err)
	}
	s.streamOK = true
	return nil
}

func (s *Sink) ready() bool {
	if !s.nc.IsConnected() {
		return false
	}
	if err := s.ensureStream(); err != nil {
		s.warn("nats sink: the stream is not ready", err)
		return false
	}
	return true
}

// warn logs at most a line every 10 s.
func (s *Sink) warn(what string, err error) {
	if now := time.Now(); now.Sub(s.warned) >= 10*time.Second {
		s.warned = now
		s.log.Warn(what, "err", err, "spooled_batches", s.spool.records, "spool_bytes", s.spool.size)
	}
}

func (s *Sink) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.st)
	s.st.InFlight = len(s.fl)
	s.st.Pending = len(s.pending)
	s.st.SpoolBatches = s.spool.records
	s.st.SpoolBytes = s.spool.size
	s.mu.Unlock()
}

// publish sends m to the stream; its ack comes to the ack subscription.
func (s *Sink) publish(m *msg, resend bool) error {
	s.pubN++
	nm := &nats.Msg{Subject: m.subject, Reply: s.acks.reply(s.pubN), Data: m.data, Header: nats.Header{
		headerMsgID:          {m.id},
		headerExpectedStream: s.expected,
		HeaderRouters:        {m.routers},
		HeaderPackets:        {strconv.Itoa(m.packets)},
	}}
	if err := s.nc.PublishMsg(nm); err != nil {
		return err
	}
	s.fl = append(s.fl, inflight{m: m, n: s.pubN, sent: time.Now(), resend: resend})
	s.count(func(st *Stats) { st.Published++ })
	return nil
}

// settle takes the acks that came in and settles the publishes at the
// head of fl: acked, failed, or older than AckTimeout.
func (s *Sink) settle(now time.Time) {
	s.ackBuf = s.acks.take(s.ackBuf)
	for _, r := range s.ackBuf {
		if len(s.fl) > 0 && r.n >= s.fl[0].n {
			s.early[r.n] = r.err
		}
	}
	for len(s.fl) > 0 {
		fl := s.fl[0]
		err, ok := s.early[fl.n]
		if ok {
			delete(s.early, fl.n)
		} else if now.Sub(fl.sent) >= s.cfg.AckTimeout {
			err = ErrAckTimeout
		} else {
			break
		}
		s.fl[0] = inflight{}
		s.fl = s.fl[1:]
		if err == nil {
			s.acked(fl)
		} else {
			s.failed(fl, err)
		}
	}
	if len(s.fl) == 0 {
		s.fl = s.fl[:0:0] // let the drained array go
		clear(s.early)
	}
}

// run is the publisher: it sends what the shards hand it, follows the
// acks in order, spools what fails and re-sends the spool, pipelined
// with the acks.
func (s *Sink) run() {
	defer close(s.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	s.rpProbe = true
	for {
		select {
		case m, open := <-s.in:
			if !open {
				s.finish()
				return
			}
			s.queued.Add(-int64(len(m.data)))
			s.send(m)
		case <-s.acks.ready:
			s.settle(time.Now())
		case now := <-tick.C:
			s.rpHold = false
			s.settle(now)
		}
		s.pump()
		if len(s.in) == 0 {
			s.flushSpool()
		}
	}
}

// send publishes m, or spools it behind what the spool holds already:
// batches reach the stream in the order they came. While MaxInFlight
// acks are outstanding, batches wait in memory (pendingMax bytes: the
// bursts a linger makes, a tick's worth of streams at once); a cluster
// that stays behind past that is treated as one that is away: the
// batches go to the spool, re-sent as the acks catch up, rather than
// piling up in the queue until the queue drops them.
func (s *Sink) send(m *msg) {
	if !s.spool.empty() || !s.ready() {
		s.spillPending()
		s.toSpool(m)
		return
	}
	if len(s.fl) >= s.cfg.MaxInFlight || len(s.pending) > 0 {
		if s.pendingBytes+len(m.data) <= s.cfg.pendingMax {
			s.pending = append(s.pending, m)
			s.pendingBytes += len(m.data)
			return
		}
		s.count(func(st *Stats) { st.Overflows++ })
		s.spillPending()
		s.toSpool(m)
		return
	}
	s.first(m)
}

// first publishes m for the first time, or spools it if the client
// refuses it.
func (s *Sink) first(m *msg) {
	if err := s.publish(m, false); err != nil {
		s.warn("nats sink: publish failed: spooling", err)
		s.toSpool(m)
	}
}

// spillPending moves the batches waiting in memory to the spool, in
// order, ahead of anything spooled after them.
func (s *Sink) spillPending() {
	for _, m := range s.pending {
		s.toSpool(m)
	}
	clear(s.pending)
	s.pending, s.pendingBytes = s.pending[:0], 0
}

func (s *Sink) acked(fl inflight) {
	s.rpProbe = false
	if !fl.resend {
		s.count(func(st *Stats) {
			st.Acked++
			st.PacketsAcked += uint64(fl.m.packets)
		})
		return
	}
	if s.rp == nil {
		return // of a segment whose re-sending failed: it goes again
	}
	s.rpAcked++
	if s.rpAcked < len(s.rp) {
		return
	}
	// The whole segment is in the stream.
	n, packets := len(s.rp), s.rpPackets
	s.rp = nil
	if err := s.spool.dropOldest(n); err != nil {
		s.log.Warn("nats sink: cannot remove a re-sent spool segment", "err", err)
	}
	s.count(func(st *Stats) {
		st.Resent += uint64(n)
		st.PacketsAcked += uint64(packets)
	})
}

func (s *Sink) failed(fl inflight, err error) {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		s.streamOK = false // look again: deleted, or no leader
	}
	s.rpProbe, s.rpHold = true, true
	if fl.resend {
		// The segment stays in the spool and goes again from its first
		// record; those stored already are deduplicated by their ids.
		if s.rp != nil {
			s.warn("nats sink: re-sending the spool failed: retrying", err)
		}
		s.rp = nil
		return
	}
	s.warn("nats sink: the stream did not ack a batch: spooling it", err)
	s.toSpool(fl.m)
}

func (s *Sink) toSpool(m *msg) {
	err := s.spool.add(m)
	switch {
	case err == nil:
		s.count(func(st *Stats) { st.Spooled++ })
	case errors.Is(err, ErrSpoolFull):
		s.warn("nats sink: spool full: dropping batches", err)
		s.count(func(st *Stats) { st.Dropped[DropSpoolFull]++; st.PacketsDropped += uint64(m.packets) })
	default:
		s.warn("nats sink: spool write failed: dropping batches", err)
		s.count(func(st *Stats) { st.Dropped[DropSpoolError]++; st.PacketsDropped += uint64(m.packets) })
	}
	s.spoolLoss()
}

// flushSpool writes what the spool buffers (the publisher's queue is
// empty: nothing more is coming at once).
func (s *Sink) flushSpool() {
	s.spool.flush()
	s.spoolLoss()
}

// spoolLoss counts the batches that a failed spool write lost (spooled
// and counted as such, then cut off the segment).
func (s *Sink) spoolLoss() {
	if recs, packets, err := s.spool.takeLoss(); recs > 0 {
		s.warn("nats sink: spool write failed: dropping batches", err)
		s.count(func(st *Stats) {
			st.Spooled -= uint64(recs)
			st.Dropped[DropSpoolError] += uint64(recs)
			st.PacketsDropped += uint64(packets)
		})
	}
}

// pump re-sends the spool's oldest segment, record by record as the
// in-flight window allows; the segment leaves the spool once all its
// records are acked, and the next one starts. The first sends still in
// flight are older than anything spooled after them, so re-sending waits
// for them. After a failure it waits for the next tick, then sends one
// record alone until an ack comes: a cluster without a leader fails that
// one before the rest are stored out of order. A record stored before
// its ack was lost is stored again only past the stream's duplicate
// window.
func (s *Sink) pump() {
	for len(s.pending) > 0 && len(s.fl) < s.cfg.MaxInFlight {
		if !s.spool.empty() || !s.ready() {
			s.spillPending()
			break
		}
		m := s.pending[0]
		s.pending[0] = nil
		s.pending = s.pending[1:]
		s.pendingBytes -= len(m.data)
		s.first(m)
	}
	if len(s.pending) == 0 {
		s.pending = s.pending[:0:0] // let the drained array go
	}
	if s.rpHold || s.spool.empty() || len(s.pending) > 0 {
		return
	}
	if s.rp == nil {
		for _, fl := range s.fl {
			if !fl.resend {
				return
			}
		}
		if len(s.fl) > 0 || !s.ready() {
			return // the failed segment's last acks first
		}
		recs, err := s.spool.oldest()
		if err != nil {
			s.log.Error("nats sink: a spool segment is unreadable: dropped", "err", err)
			s.spool.dropOldest(0)
			s.count(func(*Stats) {})
			return
		}
		if len(recs) == 0 {
			s.spool.dropOldest(0)
			return
		}
		s.rp, s.rpNext, s.rpAcked, s.rpPackets = recs, 0, 0, 0
		for _, m := range recs {
			s.rpPackets += m.packets
		}
	}
	for s.rpNext < len(s.rp) && len(s.fl) < s.cfg.MaxInFlight {
		if s.rpProbe && len(s.fl) > 0 {
			return
		}
		if err := s.publish(s.rp[s.rpNext], true); err != nil {
			s.warn("nats sink: re-sending the spool failed: retrying", err)
			s.rp, s.rpHold, s.rpProbe = nil, true, true
			return
		}
		s.rpNext++
	}
}

// finish is the publisher's end: the batches in flight get until the
// stop deadline to be acked, the spool to be re-sent; what is still in
// flight then is spooled, for the next start.
func (s *Sink) finish() {
	timer := time.NewTimer(s.cfg.StopTimeout)
	defer timer.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	s.pump()
wait:
	for len(s.fl) > 0 || len(s.pending) > 0 || (!s.spool.empty() && s.nc.IsConnected()) {
		select {
		case <-s.acks.ready:
			s.settle(time.Now())
		case now := <-tick.C:
			s.rpHold = false
			s.settle(now)
		case <-timer.C:
			break wait
		}
		s.pump()
	}
	left := len(s.pending)
	for _, fl := range s.fl {
		if !fl.resend { // a re-sent record is still in the spool
			s.toSpool(fl.m)
			left++
		}
	}
	s.spillPending()
	s.fl, s.rp = nil, nil
	s.spool.close()
	s.spoolLoss()
	s.count(func(*Stats) {})
	st := s.Stats()
	args := []any{"acked", st.Acked, "resent", st.Resent, "spooled", st.Spooled, "unacked_at_deadline", left,
		"left_in_spool_batches", s.spool.records, "left_in_spool_bytes", s.spool.size}
	for r, n := range st.Dropped {
		args = append(args, "dropped_"+DropNames[r], n)
	}
	if s.spool.empty() {
		s.log.Info("nats sink stopped: every batch is in the stream", args...)
	} else {
		s.log.Warn("nats sink stopped with batches in the spool: the next start re-sends them", append(args, "spool", s.cfg.SpoolDir)...)
	}
}

// Close publishes the shards' last batches and waits (StopTimeout) for
// them to be acked or spooled. Call it once the shards' goroutines are
// done with them.
func (s *Sink) Close() error {
	for _, sh := range s.shards {
		sh.closed = true
		for k, b := range sh.batches {
			if b.sec.Packets() > 0 {
				sh.flush(k, b, true)
			}
		}
	}
	close(s.in)
	<-s.done
	s.nc.Close()
	return nil
}

// batch is one stream's packets waiting to be published.
type batch struct {
	sec   *pcapng.Section
	since time.Time // first packet (shard clock)
	// linger is this stream's: between Linger/2 and Linger, by a hash
	// of its key, so that streams that started together (every stream,
	// at start) do not all publish in the same tick, a burst that would
	// overrun the in-flight window every linger.
	linger  time.Duration
	routers []netip.Addr
	seen    time.Time
	// subject, and the Jmxdp-Routers value of the last batch when it had
	// one router (the common case), made once rather than per message.
	subject    string
	lastRouter netip.Addr
	routerStr  string
}

// due is when a stream's batch lingers out; Shard.due orders them.
type due struct {
	at time.Time
	k  writer.Key
}

// dueHeap is a min-heap of due times: Tick finds the batches to publish
// without visiting every stream (100k streams: 100k map entries every
// 100 ms was a fifth of the sink's CPU).
type dueHeap []due

func (h *dueHeap) push(d due) {
	*h = append(*h, d)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q[i].at.Before(q[p].at) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *dueHeap) pop() due {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	for i := 0; ; {
		l, small := 2*i+1, i
		if l < len(q) && q[l].at.Before(q[small].at) {
			small = l
		}
		if r := l + 1; r < len(q) && q[r].at.Before(q[small].at) {
			small = r
		}
		if small == i {
			break
		}
		q[i], q[small] = q[small], q[i]
		i = small
	}
	*h = q
	return top
}

// Shard is one capture goroutine's capture.Sink.
type Shard struct {
	s        *Sink
	batches  map[writer.Key]*batch
	due      dueHeap
	clock    time.Time
	sweep    time.Time
	closed   bool
	accepted atomic.Uint64
	drops    [writer.NumDropReasons]atomic.Uint64
}

func (sh *Shard) now() time.Time {
	if sh.clock.IsZero() {
		return time.Now()
	}
	return sh.clock
}

// SetClock sets the time of the packets until the next call.
func (sh *Shard) SetClock(now time.Time) { sh.clock = now }

// WriteAt adds a packet to its stream's batch, publishing the batch when
// full.
func (sh *Shard) WriteAt(k writer.Key, ns uint64, router netip.Addr, kind pcapng.LinkKind, data []byte) bool {
	if sh.closed {
		sh.drops[writer.DropClosed].Add(1)
		return false
	}
	b := sh.batches[k]
	if b == nil {
		b = &batch{sec: pcapng.NewSection(k.MID, k.SID, sh.s.cfg.PacketComments), linger: spreadLinger(sh.s.cfg.Linger, k),
			subject: Subject(k.MID, k.SID)}
		sh.batches[k] = b
	}
	if err := b.sec.Add(ns, router, kind, data); err != nil {
		sh.drops[writer.DropInvalid].Add(1)
		return false
	}
	now := sh.now()
	if b.sec.Packets() == 1 {
		b.since = now
		sh.due.push(due{at: now.Add(b.linger), k: k})
	}
	b.seen = now
	if !containsAddr(b.routers, router) {
		b.routers = append(b.routers, router)
	}
	sh.accepted.Add(1)
	if b.sec.Packets() >= sh.s.cfg.BatchPackets || len(b.sec.Bytes()) >= sh.s.cfg.BatchBytes {
		sh.flush(k, b, false)
	}
	return true
}

func containsAddr(l []netip.Addr, a netip.Addr) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

// spreadLinger is stream k's linger, in [l/2, l]: a multiplicative hash
// of the key picks the point.
func spreadLinger(l time.Duration, k writer.Key) time.Duration {
	const spreadSteps = 1 << 10
	h := (uint64(k.MID)<<32 | uint64(k.SID)) * 0x9e3779b97f4a7c15
	step := h >> (64 - 10) // top bits: the best mixed
	return l - l/2*time.Duration(step)/spreadSteps
}

// Drop counts packets dropped upstream.
func (sh *Shard) Drop(_ writer.Key, reason writer.DropReason, n int) {
	if n <= 0 {
		return
	}
	if reason < 0 || reason >= writer.NumDropReasons {
		reason = writer.DropOther
	}
	sh.drops[reason].Add(uint64(n))
}

// Tick publishes the batches older than Linger and forgets idle streams.
func (sh *Shard) Tick() {
	now := time.Now()
	for len(sh.due) > 0 && !sh.due[0].at.After(now) {
		d := sh.due.pop()
		// A batch published early (full) and begun again has a later
		// due time of its own: this entry is stale.
		if b := sh.batches[d.k]; b != nil && b.sec.Packets() > 0 && b.since.Add(b.linger).Equal(d.at) {
			sh.flush(d.k, b, false)
		}
	}
	if now.Sub(sh.sweep) >= time.Minute {
		sh.sweep = now
		for k, b := range sh.batches {
			if b.sec.Packets() == 0 && now.Sub(b.seen) >= time.Minute {
				delete(sh.batches, k)
			}
		}
	}
}

// flush hands the batch to the publisher; a full queue drops it, counted,
// unless wait (Close: the capture is stopped, nothing is behind it).
func (sh *Shard) flush(k writer.Key, b *batch, wait bool) {
	s := sh.s
	if len(b.routers) != 1 || b.routers[0] != b.lastRouter || b.routerStr == "" {
		var rs strings.Builder
		for i, r := range b.routers {
			if i > 0 {
				rs.WriteByte(',')
			}
			rs.WriteString(r.String())
		}
		b.routerStr, b.lastRouter = rs.String(), netip.Addr{}
		if len(b.routers) == 1 {
			b.lastRouter = b.routers[0]
		}
	}
	m := &msg{
		subject: b.subject,
		id:      s.cfg.Instance + "-" + strconv.FormatUint(s.seq.Add(1), 10),
		routers: b.routerStr,
		packets: b.sec.Packets(),
		data:    append([]byte(nil), b.sec.Bytes()...),
	}
	b.sec.Reset()
	b.routers = b.routers[:0]
	if wait {
		s.queued.Add(int64(len(m.data)))
		s.in <- m
		return
	}
	if s.queued.Add(int64(len(m.data))) <= queueBytes {
		select {
		case s.in <- m:
			return
		default:
		}
	}
	s.queued.Add(-int64(len(m.data)))
	s.count(func(st *Stats) { st.Dropped[DropQueue]++; st.PacketsDropped += uint64(m.packets) })
}

// FromConfig is the Sink configuration of the config file's sink section.
func FromConfig(c config.Sink, packetComments bool, log *slog.Logger) Config {
	return Config{
		URLs: c.URL,
		Auth: Auth{CredsFile: c.CredsFile, NKeyFile: c.NKeyFile, User: c.User, PasswordFile: c.PasswordFile,
			CAFile: c.TLSCA, CertFile: c.TLSCert, KeyFile: c.TLSKey},
		Stream: c.Stream, Replicas: c.Replicas, MaxBytes: c.MaxBytes, MaxAge: c.MaxAge, Duplicates: c.DuplicateWindow,
		BatchPackets: c.BatchPackets, BatchBytes: int(c.BatchBytes), Linger: c.Linger,
		MaxInFlight: c.MaxInFlight, AckTimeout: c.AckTimeout,
		SpoolDir: c.SpoolDir, SpoolMax: c.SpoolMax, StopTimeout: c.StopTimeout,
		PacketComments: packetComments, Logger: log,
	}
}

// WriterStats are the sink's packet totals in the writer's terms, for the
// daemon's account: Packets stored in the stream, Drops by reason (the
// packets of lost batches under DropOther), Buffered those accepted and
// neither stored nor lost yet (batching, in flight, spooled).
func (s *Sink) WriterStats() writer.Stats {
	st := s.Stats()
	ws := writer.Stats{Packets: st.PacketsAcked, Drops: st.PacketDrops}
	ws.Drops[writer.DropOther] += st.PacketsDropped
	if n := st.PacketsAccepted; n > st.PacketsAcked+st.PacketsDropped {
		ws.Buffered = n - st.PacketsAcked - st.PacketsDropped
	}
	return ws
}
