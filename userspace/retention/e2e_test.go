package retention_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/handoff"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/retention"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// TestThroughTheWriter: the writer rotates by size, each completed file
// goes to a real hand-off script (which checks the file is there) and to
// retention, which keeps the completed files within max_bytes, oldest
// first, never touching a .part, and deletes nothing before its hand-off.
func TestThroughTheWriter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "streams")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A file of an earlier run: the oldest, so the first to go.
	old := filepath.Join(dir, "mid-9", "sid-9", "20200101T000000.000000000Z.pcapng")
	os.MkdirAll(filepath.Dir(old), 0o700)
	os.WriteFile(old, make([]byte, 3000), 0o600)
	os.Chtimes(old, time.Unix(1577836800, 0), time.Unix(1577836800, 0))

	log := filepath.Join(t.TempDir(), "handed-off")
	hook := filepath.Join(t.TempDir(), "handoff.sh")
	os.WriteFile(hook, []byte("#!/bin/sh\nsleep 0.02\nif [ -f \"$1\" ]; then echo \"$1\" >> "+log+"; else echo \"MISSING $1\" >> "+log+"; fi\n"), 0o700)

	const budget = 20000
	var keeper *retention.Keeper
	runner, err := handoff.New(handoff.Config{Argv: []string{hook}, Workers: 2,
		Done: func(p string) { keeper.Check(p) }})
	if err != nil {
		t.Fatal(err)
	}
	keeper, err = retention.New(retention.Config{Dir: dir, MaxBytes: budget, Hold: runner.Pending,
		Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer keeper.Close()
	var mu sync.Mutex
	done := map[string]time.Time{}
	w, err := writer.New(writer.Config{Dir: dir, RotateSize: 4000, OnComplete: func(c writer.Completed) {
		mu.Lock()
		done[c.Path] = c.Time
		mu.Unlock()
		runner.Submit(c.Path)
		keeper.Add(c.Path, c.Size, c.Time)
	}})
	if err != nil {
		t.Fatal(err)
	}
	keeper.Start()
	router := netip.MustParseAddr("192.0.2.1")
	keys := []writer.Key{{MID: 1, SID: 1}, {MID: 1, SID: 2}, {MID: 3, SID: 1}}
	data := make([]byte, 200)
	data[0] = 0x45
	for i := range 300 {
		for _, k := range keys {
			if !w.Write(k, time.Now(), router, pcapng.LinkRawIP, data) {
				t.Fatal("write dropped")
			}
		}
		if i%50 == 0 {
			time.Sleep(30 * time.Millisecond) // let retention run meanwhile
		}
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "mid-*", "sid-*", "*.part"))
	if len(parts) != len(keys) {
		t.Fatalf("want a .part per stream while writing, got %v", parts)
	}
	time.Sleep(100 * time.Millisecond)
	for _, p := range parts {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("a .part went while being written: %v", err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := runner.Close(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	completed := w.Stats().FilesCompleted
	var onDisk []string
	var size int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		onDisk, size = nil, 0
		files, _ := filepath.Glob(filepath.Join(dir, "mid-*", "sid-*", "*.pcapng"))
		for _, f := range files {
			fi, _ := os.Stat(f)
			size += fi.Size()
			onDisk = append(onDisk, f)
		}
		st := keeper.Stats()
		settled := st.DeletedFiles[retention.MaxBytes]+uint64(len(onDisk)) == w.Stats().FilesCompleted+1
		if (size <= budget && settled) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if size > budget {
		t.Fatalf("%d bytes of completed files left, budget %d", size, budget)
	}
	st := keeper.Stats()
	if completed < 30 || st.DeletedFiles[retention.MaxBytes] != completed+1-uint64(len(onDisk)) {
		t.Errorf("%d completed (+1 old), %d left, %d deleted", completed, len(onDisk), st.DeletedFiles[retention.MaxBytes])
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("the earlier run's file, the oldest, is still there")
	}
	kept := map[string]bool{}
	for _, f := range onDisk {
		kept[f] = true
	}
	// The files kept are the newest: none deleted completed after one kept.
	mu.Lock()
	var lastDeleted, firstKept time.Time
	for p, at := range done {
		if kept[p] {
			if firstKept.IsZero() || at.Before(firstKept) {
				firstKept = at
			}
		} else if at.After(lastDeleted) {
			lastDeleted = at
		}
	}
	mu.Unlock()
	if lastDeleted.After(firstKept) {
		t.Errorf("a file completed at %v was deleted, one of %v kept", lastDeleted, firstKept)
	}

	// Every completed file was handed off, while it was still there.
	lines := strings.Fields(strings.ReplaceAll(string(must(os.ReadFile(log))), "MISSING ", "MISSING:"))
	if hs := runner.Stats(); hs.Succeeded != completed || len(lines) != int(completed) {
		t.Errorf("%d completed, %d hand-offs succeeded, %d recorded", completed, hs.Succeeded, len(lines))
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "MISSING:") {
			t.Errorf("handed off after retention deleted it: %s", l)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
