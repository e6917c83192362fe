package natsink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The sink publishes to JetStream itself: a core NATS publish whose reply
// subject is one subscription's prefix plus the batch's number, so that a
// single subscription takes every ack. jetstream's PublishMsgAsync costs
// a message a reply inbox, a map entry, two channels and a JSON decode of
// its ack, and wakes the publisher once per ack; with many streams the
// messages are small and those costs led the sink's profile
// (docs/bench.md). Here the acks are taken in batches, and only an ack
// that reports an error is decoded. The stream's management and the
// exporter stay on jetstream.

// Headers JetStream reads on a publish.
const (
	headerMsgID          = "Nats-Msg-Id"
	headerExpectedStream = "Nats-Expected-Stream"
	// A reply with this status and no data: no server took the publish
	// (no stream on the subject, or no leader).
	headerStatus       = "Status"
	statusNoResponders = "503"
)

// ErrAckTimeout: a publish was not acked within Config.AckTimeout.
var ErrAckTimeout = errors.New("nats sink: no ack within the ack timeout")

type ackResult struct {
	n   uint64
	err error
}

// acker is the ack subscription. Its callback runs on the client's
// goroutine; the publisher takes what it gathered.
type acker struct {
	prefix string // reply subjects: prefix + the batch's number
	sub    *nats.Subscription
	mu     sync.Mutex
	got    []ackResult
	ready  chan struct{} // 1-buffered: acks wait in got
}

func newAcker(nc *nats.Conn) (*acker, error) {
	a := &acker{prefix: nats.NewInbox() + ".", ready: make(chan struct{}, 1)}
	sub, err := nc.Subscribe(a.prefix+"*", a.onMsg)
	if err != nil {
		return nil, fmt.Errorf("ack subscription: %w", err)
	}
	// Acks are small and must not be dropped as a slow consumer's:
	// unlimited here, bounded by the in-flight window.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("ack subscription: %w", err)
	}
	a.sub = sub
	return a, nil
}

func (a *acker) reply(n uint64) string {
	return a.prefix + strconv.FormatUint(n, 10)
}

func (a *acker) onMsg(m *nats.Msg) {
	n, err := strconv.ParseUint(m.Subject[min(len(a.prefix), len(m.Subject)):], 10, 64)
	if err != nil {
		return // not one of ours
	}
	res := ackResult{n: n, err: ackError(m)}
	a.mu.Lock()
	a.got = append(a.got, res)
	a.mu.Unlock()
	select {
	case a.ready <- struct{}{}:
	default:
	}
}

// take hands over the acks gathered since the last call, reusing buf.
func (a *acker) take(buf []ackResult) []ackResult {
	a.mu.Lock()
	out := a.got
	a.got = buf[:0]
	a.mu.Unlock()
	return out
}

var (
	ackErrorField = []byte(`"error"`)
	ackSeqField   = []byte(`"seq"`)
)

// ackError is nil for a stored (or deduplicated) publish, else why not.
func ackError(m *nats.Msg) error {
	if len(m.Data) == 0 {
		if m.Header.Get(headerStatus) == statusNoResponders {
			return jetstream.ErrNoStreamResponse
		}
		return fmt.Errorf("nats sink: empty ack (status %q)", m.Header.Get(headerStatus))
	}
	if bytes.Contains(m.Data, ackErrorField) {
		var r struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &r); err == nil && r.Error != nil {
			return r.Error
		}
		return fmt.Errorf("nats sink: ack %q", m.Data)
	}
	if !bytes.Contains(m.Data, ackSeqField) {
		return fmt.Errorf("nats sink: ack %q", m.Data)
	}
	return nil
}
