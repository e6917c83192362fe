// Package natexport is `jmxdp export`: a durable JetStream consumer of the
// JMXDP stream that writes the per-stream pcapng files `jmxdp run` would
// write, through the same writer, acking a message only once its packets
// are in the file, and writing each packet exactly once across restarts
// (a per-stream state file, state.go).
package natexport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jmxdp/jmxdp/userspace/natsink"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// DefaultDurable is the consumer's default name.
const DefaultDurable = "jmxdp-export"

// Config configures an export.
type Config struct {
	URLs    string
	Auth    natsink.Auth
	Stream  string // default JMXDP
	Durable string // default jmxdp-export
	// Filters are subjects (jmxdp.<mid>.> or jmxdp.<mid>.<sid>); none:
	// every stream. A durable keeps the filters it was made with unless
	// they are given again.
	Filters []string
	// Writer writes the files (Dir, rotation, modes, as `run`).
	Writer writer.Config
	// StateDir holds the per-stream state (default Dir/.jmxdp-export).
	StateDir string
	// IdleExit: return once nothing has arrived for this long; 0: run
	// until ctx ends.
	IdleExit time.Duration
	// AckWait: a message not acked by then is delivered again (default
	// 30s).
	AckWait time.Duration
	Logger  *slog.Logger
}

// Stats are the export's counters.
type Stats struct {
	// Messages written and acked; Skipped: redelivered messages already
	// in the files (acked again); Packets written.
	Messages, Skipped, Packets uint64
	// Pending is the consumer's num_pending at the last fetch: messages
	// in the stream not yet delivered (the lag).
	Pending uint64
}

// Exporter is a running export.
type Exporter struct {
	cfg    Config
	log    *slog.Logger
	w      *writer.Manager
	states map[writer.Key]state
	msgs   atomic.Uint64
	skip   atomic.Uint64
	pkts   atomic.Uint64
	lag    atomic.Uint64
	// batch and items: the Run loop's, reused from batch to batch.
	batch []jetstream.Msg
	items []item
}

// Stats reads the counters; safe for concurrent use.
func (e *Exporter) Stats() Stats {
	return Stats{Messages: e.msgs.Load(), Skipped: e.skip.Load(), Packets: e.pkts.Load(), Pending: e.lag.Load()}
}

// FilterSubject turns --filter's MID or MID.SID (or a subject) into a
// subject.
func FilterSubject(f string) (string, error) {
	if strings.HasPrefix(f, "jmxdp.") {
		return f, nil
	}
	parts := strings.Split(f, ".")
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return "", fmt.Errorf("filter %q: want MID, MID.SID or a jmxdp.* subject", f)
		}
	}
	switch len(parts) {
	case 1:
		return "jmxdp." + parts[0] + ".>", nil
	case 2:
		return "jmxdp." + f, nil
	}
	return "", fmt.Errorf("filter %q: want MID, MID.SID or a jmxdp.* subject", f)
}

// New prepares an export: it undoes what a killed exporter left half
// written and opens the writer (which completes the .part files).
func New(cfg Config) (*Exporter, error) {
	if cfg.Stream == "" {
		cfg.Stream = natsink.DefaultStream
	}
	if cfg.Durable == "" {
		cfg.Durable = DefaultDurable
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(cfg.Writer.Dir, ".jmxdp-export")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("export state: %w", err)
	}
	e := &Exporter{cfg: cfg, log: cfg.Logger, states: map[writer.Key]state{}}
	if err := e.recover(); err != nil {
		return nil, err
	}
	cfg.Writer.Logger = cfg.Logger
	w, err := writer.New(cfg.Writer)
	if err != nil {
		return nil, err
	}
	e.w = w
	return e, nil
}

// recover undoes every pending message of the state files.
func (e *Exporter) recover() error {
	ents, err := os.ReadDir(e.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("export state: %w", err)
	}
	for _, ent := range ents {
		var k writer.Key
		if _, err := fmt.Sscanf(ent.Name(), "mid-%d-sid-%d.json", &k.MID, &k.SID); err != nil || !strings.HasSuffix(ent.Name(), ".json") {
			continue
		}
		st, err := loadState(e.cfg.StateDir, k)
		if err != nil {
			return err
		}
		if st.Pending {
			dir := streamDir(e.cfg.Writer.Dir, k)
			if err := undo(dir, st); err != nil {
				return fmt.Errorf("export: undo the half-written message %d of mid %d sid %d: %w", st.PendingSeq, k.MID, k.SID, err)
			}
			e.log.Info("export: undid a message a stopped exporter had not finished; it is written again when redelivered",
				"mid", k.MID, "sid", k.SID, "seq", st.PendingSeq)
			st = state{Seq: st.Seq, gen: st.gen}
			if st.gen, err = saveState(e.cfg.StateDir, k, st); err != nil {
				return err
			}
		}
		e.states[k] = st
	}
	return nil
}

func streamDir(out string, k writer.Key) string {
	return filepath.Join(out, fmt.Sprintf("mid-%d", k.MID), fmt.Sprintf("sid-%d", k.SID))
}

// Run consumes until ctx ends or IdleExit passes with nothing new, then
// completes the files.
func (e *Exporter) Run(ctx context.Context) (err error) {
	defer func() {
		if cerr := e.w.Close(); err == nil {
			err = cerr
		}
		st := e.Stats()
		e.log.Info("export stopped", "messages", st.Messages, "packets", st.Packets, "skipped_redelivered", st.Skipped, "num_pending", st.Pending)
	}()
	opts, err := e.cfg.Auth.Options()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(e.cfg.URLs, append(opts, nats.Name("jmxdp export "+e.cfg.Durable), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(true))...)
	if err != nil {
		return fmt.Errorf("export: connect %s: %w", e.cfg.URLs, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var cons jetstream.Consumer
	for {
		cons, err = e.consumer(ctx, js)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		e.log.Warn("export: the consumer is not ready: retrying", "stream", e.cfg.Stream, "durable", e.cfg.Durable, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	e.log.Info("exporting", "stream", e.cfg.Stream, "durable", e.cfg.Durable, "filters", e.cfg.Filters, "out", e.cfg.Writer.Dir)
	it, err := cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer it.Stop()
	last := time.Now()
	for ctx.Err() == nil {
		if e.cfg.IdleExit > 0 && time.Since(last) >= e.cfg.IdleExit {
			e.log.Info("export: nothing new: exiting", "idle", e.cfg.IdleExit)
			return nil
		}
		m, err := it.Next(jetstream.NextMaxWait(250 * time.Millisecond))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				e.log.Warn("export: receive failed: retrying", "err", err)
				time.Sleep(250 * time.Millisecond)
			}
			e.w.Tick()
			continue
		}
		last = time.Now()
		// Whatever else the iterator holds already joins this batch:
		// one flush and one pair of state writes per stream for all.
		batch := append(e.batch[:0], m)
		for len(batch) < exportBatch {
			m, err := it.Next(jetstream.NextMaxWait(time.Millisecond))
			if err != nil {
				break
			}
			batch = append(batch, m)
		}
		e.batch = batch
		if err := e.handle(batch); err != nil {
			for _, m := range batch {
				m.Nak() // those acked already are not redelivered
			}
			return err
		}
		clear(batch)
		e.w.Tick()
	}
	return nil
}

// consumer makes or binds the durable consumer. A stream's messages must
// reach handle in stream order, for "seq <= the stream's last" to mean
// "in the files": a consumer would deliver new messages before the ones a
// killed exporter left unacked (those wait for AckWait), so a durable with
// unacked messages is made again from its ack floor, from where it
// delivers in order (what is in the files already is skipped).
func (e *Exporter) consumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cc := jetstream.ConsumerConfig{
		Durable:        e.cfg.Durable,
		FilterSubjects: e.cfg.Filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        e.cfg.AckWait,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxAckPending:  1024,
	}
	old, err := js.Consumer(ctx, e.cfg.Stream, e.cfg.Durable)
	switch {
	case err == nil:
		info := old.CachedInfo()
		cc.DeliverPolicy, cc.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
		if info.NumAckPending > 0 {
			if err := js.DeleteConsumer(ctx, e.cfg.Stream, e.cfg.Durable); err != nil {
				return nil, err
			}
			cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, info.AckFloor.Stream+1
			e.log.Info("export: the durable had unacked messages: made again from its ack floor, to deliver in order",
				"durable", e.cfg.Durable, "unacked", info.NumAckPending, "from_seq", cc.OptStartSeq)
		}
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, err
	}
	return js.CreateOrUpdateConsumer(ctx, e.cfg.Stream, cc)
}

// exportBatch bounds the messages written together (the iterator's
// prefetch, PullMaxMessages).
const exportBatch = 64

// item is one message of a batch to write: its stream, sequence and
// packets.
type item struct {
	m    jetstream.Msg
	k    writer.Key
	seq  uint64
	pkts []pcapng.SectionPacket
}

// handle writes a batch of messages' packets, those not in the files
// already, then acks them. For each stream it touches, an intent (the
// stream's files as they were, and the batch's last sequence) is saved
// before the first packet is written, and the new sequence after the
// one flush: a restart after a kill undoes the stream's part of the
// batch, whose messages are then redelivered, unacked, and written
// again.
func (e *Exporter) handle(batch []jetstream.Msg) error {
	items := e.items[:0]
	var acks []jetstream.Msg
	last := map[writer.Key]uint64{}
	var order []writer.Key
	for _, m := range batch {
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("export: message metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		e.lag.Store(meta.NumPending)
		mid, sid, err := natsink.ParseSubject(m.Subject())
		if err != nil {
			e.log.Warn("export: a message on a foreign subject: terminated", "subject", m.Subject(), "seq", seq)
			m.Term()
			continue
		}
		k := writer.Key{MID: mid, SID: sid}
		st, ok := e.states[k]
		if !ok {
			if st, err = loadState(e.cfg.StateDir, k); err != nil {
				return err
			}
			e.states[k] = st
		}
		if seq <= st.Seq || seq <= last[k] {
			e.skip.Add(1)
			acks = append(acks, m)
			continue
		}
		it := item{m: m, k: k, seq: seq}
		if _, _, err := pcapng.DecodeSection(m.Data(), func(p pcapng.SectionPacket) error {
			it.pkts = append(it.pkts, p)
			return nil
		}); err != nil {
			e.log.Warn("export: a message is not a jmxdp pcapng section: terminated", "seq", seq, "err", err)
			m.Term()
			continue
		}
		if _, seen := last[k]; !seen {
			order = append(order, k)
		}
		last[k] = seq
		items = append(items, it)
	}
	for _, k := range order {
		st := e.states[k]
		intent := state{Seq: st.Seq, Pending: true, PendingSeq: last[k], gen: st.gen}
		if cur := e.w.CurrentFile(k); cur != "" {
			intent.Part = cur
			if fi, err := os.Stat(cur); err == nil {
				intent.Size = fi.Size()
			}
			intent.Newest = fileBase(filepath.Base(cur))
		}
		var err error
		if intent.Part == "" {
			if intent.Newest, err = newestFile(streamDir(e.cfg.Writer.Dir, k)); err != nil {
				return fmt.Errorf("export: %w", err)
			}
		}
		if intent.gen, err = saveState(e.cfg.StateDir, k, intent); err != nil {
			return err
		}
		st.gen = intent.gen
		e.states[k] = st
	}
	packets := 0
	for _, it := range items {
		for _, p := range it.pkts {
			if !e.w.Write(it.k, time.Unix(0, int64(p.NS)), p.Router, p.Kind, p.Data) {
				return fmt.Errorf("export: message %d of mid %d sid %d: a packet was refused by the writer", it.seq, it.k.MID, it.k.SID)
			}
		}
		packets += len(it.pkts)
	}
	if len(items) > 0 {
		if err := e.w.Flush(); err != nil {
			return fmt.Errorf("export: messages up to %d: %w", items[len(items)-1].seq, err)
		}
	}
	for _, k := range order {
		st := state{Seq: last[k], gen: e.states[k].gen}
		var err error
		if st.gen, err = saveState(e.cfg.StateDir, k, st); err != nil {
			return err
		}
		e.states[k] = st
	}
	e.msgs.Add(uint64(len(items)))
	e.pkts.Add(uint64(packets))
	for _, it := range items {
		acks = append(acks, it.m)
	}
	for _, m := range acks {
		e.ack(m)
	}
	clear(items)
	e.items = items[:0]
	return nil
}

func (e *Exporter) ack(m jetstream.Msg) error {
	if err := m.Ack(); err != nil {
		e.log.Warn("export: ack failed: the message comes again and is skipped", "err", err)
	}
	return nil
}
