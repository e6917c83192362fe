package logid

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// Every value a package logs, a path, an error or a group member, reaches
// the log without the ids when they are hidden.
func TestHandlerRedactsEveryValue(t *testing.T) {
	n, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	log := slog.New(Handler(n, slog.NewTextHandler(&b, nil))).With("dir", "/out/mid-4242/sid-77")
	path := "/var/lib/jmxdp/streams/mid-4242/sid-9191/20250607T080910Z.pcapng"
	log.Warn("cannot delete "+path, "file", path, "error", fmt.Errorf("unlinkat %s: %w", path, errors.New("busy")),
		slog.Group("g", "p", path), "n", 4242)
	out := b.String()
	for _, id := range []string{"mid-4242", "sid-9191", "sid-77"} {
		if strings.Contains(out, id) {
			t.Errorf("%s in %q", id, out)
		}
	}
	if !strings.Contains(out, n.StreamName(4242, 9191)) || !strings.Contains(out, "n=4242") {
		t.Errorf("no stream name or number in %q", out)
	}
	// Ids shown: the handler is the one given.
	h := slog.NewTextHandler(&b, nil)
	if Handler(nil, h) != slog.Handler(h) {
		t.Error("a nil Namer wraps the handler")
	}
}
