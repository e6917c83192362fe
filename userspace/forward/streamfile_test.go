package forward

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// TestStreamsFile: the per-stream counts the daemon publishes read back
// as written, by reason, from a 0600 file; no file reads as none; a
// damaged one is an error.
func TestStreamsFile(t *testing.T) {
	dir := t.TempDir()
	path := StreamsPath(dir, "eth1")
	if got, err := ReadStreams(path); err != nil || got != nil {
		t.Fatalf("no file: %v %v, want nil, nil", got, err)
	}
	k4 := vocab.StreamKey{Router: netip.MustParseAddr("192.0.2.1"), MID: 7, SID: 1}
	k6 := vocab.StreamKey{Router: netip.MustParseAddr("2001:db8::1"), MID: 8, SID: 2}
	var c4, c6 StreamCounts
	c4.Sent[vocab.FwdNeighMiss], c4.Bytes[vocab.FwdNeighMiss], c4.Failed[vocab.FwdTooBig] = 3, 300, 1
	c6.Sent[vocab.FwdFragEarly], c6.Bytes[vocab.FwdFragEarly] = 1, 3016
	if err := WriteStreams(path, map[vocab.StreamKey]StreamCounts{k4: c4, k6: c6}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v (%v), want 0600", st.Mode(), err)
	}
	got, err := ReadStreams(path)
	if err != nil {
		t.Fatal(err)
	}
	if f := got[k4]; len(got) != 2 || f.Sent["neigh_miss"] != 3 || f.Bytes["neigh_miss"] != 300 || f.Failed["too_big"] != 1 ||
		len(f.Sent) != 1 || len(f.Failed) != 1 {
		t.Errorf("read back %+v", got)
	}
	if f := got[k6]; f.Sent["frag_early"] != 1 || f.Bytes["frag_early"] != 3016 || len(f.Failed) != 0 {
		t.Errorf("read back %+v", got[k6])
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".forward-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStreams(path); err == nil {
		t.Error("a damaged file read without an error")
	}
}

// TestPublish: a sender's counts are published when its context ends,
// and an unknown reason counts as unsupported, as the program counts it.
func TestPublish(t *testing.T) {
	s := NewSender(nil)
	k := vocab.StreamKey{Router: netip.MustParseAddr("192.0.2.1"), MID: 7, SID: 1}
	s.count(k, vocab.FwdNeighMiss, 100, nil)
	s.count(k, vocab.FwdReason(99), 0, os.ErrInvalid)
	path := StreamsPath(t.TempDir(), "eth1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Publish(ctx, path, time.Hour, nil) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish did not return after its context ended")
	}
	got, err := ReadStreams(path)
	if err != nil {
		t.Fatal(err)
	}
	if f := got[k]; f.Sent["neigh_miss"] != 1 || f.Bytes["neigh_miss"] != 100 || f.Failed["unsupported"] != 1 {
		t.Errorf("published %+v", got)
	}
}
