package forward

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The sender's per-stream counts live in the daemon, but `jmxdp stats` is
// another process: the daemon publishes them to a file in the run-state
// directory (next to the lock and state files, docs/forward.md), written
// whole to a temporary file and renamed over the last, 0600.

// PublishEvery is how often Publish writes the counts when they changed.
const PublishEvery = 2 * time.Second

// StreamsPath is the per-stream counts file of the instance on iface.
func StreamsPath(runDir, iface string) string {
	return filepath.Join(runDir, iface+".forward.json")
}

// StreamFile is one stream's line in the file.
type StreamFile struct {
	Router string `json:"router"`
	MID    uint32 `json:"mid"`
	SID    uint32 `json:"sid"`
	// By reason name (vocab.FwdReason): datagrams sent, their bytes, and
	// datagrams that could not be sent.
	Sent   map[string]uint64 `json:"sent"`
	Bytes  map[string]uint64 `json:"bytes"`
	Failed map[string]uint64 `json:"failed"`
}

// Publish writes s's per-stream counts to path every `every` while they
// change, and once more when ctx ends. A failed write is logged, and
// tried again at the next tick.
func (s *Sender) Publish(ctx context.Context, path string, every time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var last map[vocab.StreamKey]StreamCounts
	write := func() {
		cur := s.Streams()
		if last != nil && maps.Equal(cur, last) {
			return
		}
		if err := WriteStreams(path, cur); err != nil {
			log.Warn("cannot publish the forward sender's per-stream counts", "path", path, "err", err)
			return
		}
		last = cur
	}
	for {
		select {
		case <-ctx.Done():
			write()
			return
		case <-t.C:
			write()
		}
	}
}

// WriteStreams writes counts to path (0600), replacing it whole.
func WriteStreams(path string, counts map[vocab.StreamKey]StreamCounts) error {
	out := make([]StreamFile, 0, len(counts))
	for k, c := range counts {
		out = append(out, StreamFile{Router: k.Router.String(), MID: k.MID, SID: k.SID,
			Sent: byReason(c.Sent), Bytes: byReason(c.Bytes), Failed: byReason(c.Failed)})
	}
	slices.SortFunc(out, func(a, b StreamFile) int {
		return cmp.Or(cmp.Compare(a.MID, b.MID), cmp.Compare(a.SID, b.SID), cmp.Compare(a.Router, b.Router))
	})
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".forward-*.tmp") // 0600
	if err != nil {
		return fmt.Errorf("forward counts: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("forward counts %s: %w", path, err)
	}
	return nil
}

// ReadStreams reads what WriteStreams wrote, keyed by stream; nil and no
// error when there is no file (no instance published one).
func ReadStreams(path string) (map[vocab.StreamKey]StreamFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("forward counts: %w", err)
	}
	var in []StreamFile
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("forward counts %s: %w", path, err)
	}
	out := make(map[vocab.StreamKey]StreamFile, len(in))
	for _, f := range in {
		a, err := netip.ParseAddr(f.Router)
		if err != nil {
			return nil, fmt.Errorf("forward counts %s: router %q: %w", path, f.Router, err)
		}
		out[vocab.StreamKey{Router: a, MID: f.MID, SID: f.SID}] = f
	}
	return out, nil
}

func byReason(n [vocab.NumFwdReasons]uint64) map[string]uint64 {
	m := map[string]uint64{}
	for r, v := range n {
		if v > 0 {
			m[vocab.FwdReason(r).String()] = v
		}
	}
	return m
}
