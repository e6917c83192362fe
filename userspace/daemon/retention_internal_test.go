package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestFileAttrHidesIDs: with hide_ids, a file is logged by a hash of its
// stream and its name, with no id; the same stream gets the same hash.
func TestFileAttrHidesIDs(t *testing.T) {
	line := func(hide bool, path string) string {
		var b bytes.Buffer
		slog.New(slog.NewTextHandler(&b, nil)).Info("x", fileAttr(hide)(path))
		_, after, _ := strings.Cut(b.String(), "msg=x ")
		return after
	}
	a := line(true, "/var/lib/jmxdp/streams/mid-4242/sid-9191/20250607T080910.123456789Z.pcapng")
	b := line(true, "/var/lib/jmxdp/streams/mid-4242/sid-9191/20250607T090910.123456789Z.pcapng")
	c := line(true, "/var/lib/jmxdp/streams/mid-4242/sid-9192/20250607T080910.123456789Z.pcapng")
	for _, l := range []string{a, b, c} {
		if strings.Contains(l, "4242") || strings.Contains(l, "919") || strings.Contains(l, "mid-") || !strings.Contains(l, "file.name=2025") {
			t.Errorf("hide_ids line %q", l)
		}
	}
	stream := func(l string) string { return strings.Fields(l[strings.Index(l, "file.stream="):])[0] }
	if stream(a) != stream(b) || stream(a) == stream(c) {
		t.Errorf("stream hashes %s %s %s", stream(a), stream(b), stream(c))
	}
	if l := line(false, "/d/mid-1/sid-2/x.pcapng"); !strings.Contains(l, "file=/d/mid-1/sid-2/x.pcapng") {
		t.Errorf("line %q", l)
	}
}
