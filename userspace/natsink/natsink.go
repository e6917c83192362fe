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
	DefaultLinger       = 50 * time.Millisecond
	DefaultMaxInFlight  = 256
	DefaultAckTimeout   = 5 * time.Second
	DefaultSpoolMax     = 1 << 30
	DefaultStopTimeout  = 10 * time.Second
	// queueLen is how many batches wait between the capture goroutines
	// and the publisher: at DefaultBatchBytes, 64 MiB at most.
	queueLen = 1024
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
}

// Batch drop reasons (Stats.Dropped).
const (
	// DropQueue: the publisher's queue was full (it is blocked on a
	// replay or the spool's disk).
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
	Dropped                           [NumDrops]uint64
	// PacketsAccepted: packets WriteAt took; PacketsAcked: those stored
	// (acked or re-sent); PacketsDropped: those of dropped batches.
	PacketsAccepted, PacketsAcked, PacketsDropped uint64
	// PacketDrops are the packets dropped before any batch (by the
	// capture, or refused by WriteAt), by writer reason.
	PacketDrops [writer.NumDropReasons]uint64
	// InFlight: published, not yet acked; SpoolBytes and SpoolBatches:
	// what the spool holds now.
	InFlight, SpoolBatches int
	SpoolBytes             int64
	Connected              bool
}

type msg struct {
	subject, id, routers string
	packets              int
	data                 []byte
}

type inflight struct {
	m      *msg
	f      jetstream.PubAckFuture
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

	// The publisher goroutine's.
	spool    *spool
	fl       []inflight
	streamOK bool
	warned   time.Time

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
	s.js, err = jetstream.New(s.nc,
		jetstream.WithPublishAsyncMaxPending(2*cfg.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		s.nc.Close()
		return nil, fmt.Errorf("nats sink: %w", err)
	}
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
	s.st.SpoolBatches = s.spool.records
	s.st.SpoolBytes = s.spool.size
	s.mu.Unlock()
}

func (s *Sink) natsMsg(m *msg) *nats.Msg {
	nm := nats.NewMsg(m.subject)
	nm.Data = m.data
	nm.Header.Set(HeaderRouters, m.routers)
	nm.Header.Set(HeaderPackets, strconv.Itoa(m.packets))
	return nm
}

func (s *Sink) publish(m *msg) (jetstream.PubAckFuture, error) {
	f, err := s.js.PublishMsgAsync(s.natsMsg(m), jetstream.WithMsgID(m.id), jetstream.WithExpectStream(s.cfg.Stream))
	if err == nil {
		s.count(func(st *Stats) { st.Published++ })
	}
	return f, err
}

// run is the publisher: it sends what the shards hand it, follows the
// acks in order, spools what fails and re-sends the spool.
func (s *Sink) run() {
	defer close(s.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var okc <-chan *jetstream.PubAck
		var errc <-chan error
		if len(s.fl) > 0 {
			okc, errc = s.fl[0].f.Ok(), s.fl[0].f.Err()
		}
		in := s.in
		if len(s.fl) >= s.cfg.MaxInFlight {
			in = nil
		}
		select {
		case m, open := <-in:
			if !open {
				s.finish()
				return
			}
			s.send(m)
		case <-okc:
			s.acked(s.fl[0])
			s.fl = s.fl[1:]
		case err := <-errc:
			s.failed(s.fl[0], err)
			s.fl = s.fl[1:]
		case <-tick.C:
			s.replay(time.Now().Add(200 * time.Millisecond))
		}
	}
}

// send publishes m, or spools it behind what the spool holds already:
// batches reach the stream in the order they came.
func (s *Sink) send(m *msg) {
	if !s.spool.empty() || !s.ready() {
		s.toSpool(m)
		return
	}
	f, err := s.publish(m)
	if err != nil {
		s.warn("nats sink: publish failed: spooling", err)
		s.toSpool(m)
		return
	}
	s.fl = append(s.fl, inflight{m: m, f: f})
	s.count(func(*Stats) {})
}

func (s *Sink) acked(fl inflight) {
	s.count(func(st *Stats) {
		st.Acked++
		st.PacketsAcked += uint64(fl.m.packets)
	})
}

func (s *Sink) failed(fl inflight, err error) {
	s.warn("nats sink: the stream did not ack a batch: spooling it", err)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		s.streamOK = false // look again: deleted, or no leader
	}
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
}

// replay re-sends the spool, a segment at a time, until it is empty, the
// cluster fails or deadline passes. The batches in flight go first (they
// are older than anything spooled after them); a segment goes once all of
// its records are acked. A record stored before its ack was lost is
// stored again only past the stream's duplicate window.
func (s *Sink) replay(deadline time.Time) {
	for !s.spool.empty() && len(s.fl) == 0 && time.Now().Before(deadline) && s.ready() {
		recs, err := s.spool.oldest()
		if err != nil {
			s.log.Error("nats sink: a spool segment is unreadable: dropped", "err", err)
			s.spool.dropOldest(0)
			s.count(func(*Stats) {})
			continue
		}
		// The first record goes alone: a cluster that is not ready yet
		// (no leader) fails it before the rest are stored out of order.
		futs := make([]jetstream.PubAckFuture, 0, len(recs))
		var probe error
		for i, m := range recs {
			f, err := s.publish(m)
			if err != nil {
				break
			}
			futs = append(futs, f)
			if i == 0 {
				if probe = waitAck(f); probe != nil {
					break
				}
			}
		}
		ok := len(futs) == len(recs)
		packets := 0
		for i, f := range futs {
			err := probe
			if i > 0 {
				err = waitAck(f)
			}
			if err != nil {
				ok = false
				s.warn("nats sink: re-sending the spool failed: retrying", err)
				continue
			}
			packets += recs[i].packets
		}
		if !ok {
			// Those stored are deduplicated when the segment goes again.
			s.streamOK = false
			return
		}
		if err := s.spool.dropOldest(len(recs)); err != nil {
			s.log.Warn("nats sink: cannot remove a re-sent spool segment", "err", err)
		}
		s.count(func(st *Stats) {
			st.Resent += uint64(len(recs))
			st.PacketsAcked += uint64(packets)
		})
	}
}

// waitAck waits for a publish's outcome (the client times it out).
func waitAck(f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	}
}

// finish is the publisher's end: the batches in flight get until the
// stop deadline to be acked, the spool to be re-sent; what is still in
// flight then is spooled, for the next start.
func (s *Sink) finish() {
	deadline := time.Now().Add(s.cfg.StopTimeout)
	timer := time.NewTimer(s.cfg.StopTimeout)
	defer timer.Stop()
wait:
	for len(s.fl) > 0 {
		select {
		case <-s.fl[0].f.Ok():
			s.acked(s.fl[0])
		case err := <-s.fl[0].f.Err():
			s.failed(s.fl[0], err)
		case <-timer.C:
			break wait
		}
		s.fl = s.fl[1:]
	}
	left := len(s.fl)
	for _, fl := range s.fl {
		s.toSpool(fl.m)
	}
	s.fl = nil
	for !s.spool.empty() && time.Now().Before(deadline) && s.nc.IsConnected() {
		before := s.spool.records
		s.replay(deadline)
		if s.spool.records == before {
			time.Sleep(100 * time.Millisecond)
		}
	}
	s.spool.close()
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
	sec     *pcapng.Section
	since   time.Time // first packet (shard clock)
	routers []netip.Addr
	seen    time.Time
}

// Shard is one capture goroutine's capture.Sink.
type Shard struct {
	s        *Sink
	batches  map[writer.Key]*batch
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
		b = &batch{sec: pcapng.NewSection(k.MID, k.SID, sh.s.cfg.PacketComments)}
		sh.batches[k] = b
	}
	if err := b.sec.Add(ns, router, kind, data); err != nil {
		sh.drops[writer.DropInvalid].Add(1)
		return false
	}
	now := sh.now()
	if b.sec.Packets() == 1 {
		b.since = now
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
	for k, b := range sh.batches {
		if b.sec.Packets() > 0 && now.Sub(b.since) >= sh.s.cfg.Linger {
			sh.flush(k, b, false)
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
	var rs strings.Builder
	for i, r := range b.routers {
		if i > 0 {
			rs.WriteByte(',')
		}
		rs.WriteString(r.String())
	}
	m := &msg{
		subject: Subject(k.MID, k.SID),
		id:      s.cfg.Instance + "-" + strconv.FormatUint(s.seq.Add(1), 10),
		routers: rs.String(),
		packets: b.sec.Packets(),
		data:    append([]byte(nil), b.sec.Bytes()...),
	}
	b.sec.Reset()
	b.routers = b.routers[:0]
	if wait {
		s.in <- m
		return
	}
	select {
	case s.in <- m:
	default:
		s.count(func(st *Stats) { st.Dropped[DropQueue]++; st.PacketsDropped += uint64(m.packets) })
	}
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
