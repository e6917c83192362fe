package logid_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/logid"
)

var hashName = regexp.MustCompile(`^stream-[0-9a-f]{12}$`)

// TestOpen: the key is made once (0600), read back by Load and by a
// second Open, and gives the same names; another directory's key gives
// others.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	if _, err := logid.Load(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load without a key: %v", err)
	}
	n, err := logid.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, logid.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	name := n.StreamName(12345, 100000)
	if !hashName.MatchString(name) || strings.Contains(name, "12345") {
		t.Fatalf("stream name %q", name)
	}
	for _, open := range []func(string) (*logid.Namer, error){logid.Open, logid.Load} {
		m, err := open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if m.StreamName(12345, 100000) != name {
			t.Errorf("same key, another name: %s vs %s", m.StreamName(12345, 100000), name)
		}
	}
	other, err := logid.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if other.StreamName(12345, 100000) == name {
		t.Error("two keys give the same name: the hash is not keyed")
	}
	if n.StreamName(12345, 100001) == name || n.StreamName(12346, 100000) == name {
		t.Error("two streams share a name")
	}
	if got := n.InterceptName(12345); !strings.HasPrefix(got, "intercept-") || strings.Contains(got, "12345") {
		t.Errorf("intercept name %q", got)
	}

	os.WriteFile(filepath.Join(dir, logid.KeyFile), []byte("not hex\n"), 0o600)
	if _, err := logid.Load(dir); err == nil || !strings.Contains(err.Error(), "not 32 hex-encoded bytes") {
		t.Errorf("a bad key: %v", err)
	}
}

// TestShown: a nil Namer logs ids and paths as they are.
func TestShown(t *testing.T) {
	var n *logid.Namer
	if n.Hidden() || n.StreamName(1, 2) != "mid-1/sid-2" || n.InterceptName(1) != "mid-1" {
		t.Fatalf("nil Namer: %v %q %q", n.Hidden(), n.StreamName(1, 2), n.InterceptName(1))
	}
	p := "/out/mid-1/sid-2/x.pcapng.part"
	if n.Redact(p) != p || n.Path("file", p).Value.String() != p {
		t.Error("a nil Namer changed a path")
	}
	err := errors.New("open " + p + ": no space left on device")
	if n.Error(err) != err {
		t.Error("a nil Namer wrapped an error")
	}
}

// TestRedact: every mid-M/sid-S and mid-M in a text becomes its name;
// errors keep their chain.
func TestRedact(t *testing.T) {
	n, err := logid.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, i := n.StreamName(12345, 100000), n.InterceptName(12345)
	for in, want := range map[string]string{
		"open /var/lib/jmxdp/streams/mid-12345/sid-100000/20240101T000000.000000000Z.pcapng.part: no space left on device": "open /var/lib/jmxdp/streams/" + s + "/20240101T000000.000000000Z.pcapng.part: no space left on device",
		"/out/mid-12345/sid-100000.pcapng": "/out/" + s + ".pcapng",
		"/out/mid-12345":                   "/out/" + i,
		"rename /o/mid-12345/sid-100000/a /o/mid-12345/sid-100000/b": "rename /o/" + s + "/a /o/" + s + "/b",
		"no ids here":   "no ids here",
		"/o/summid-7/x": "/o/summid-7/x",
	} {
		if got := n.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	base := &fs.PathError{Op: "open", Path: "/o/mid-12345/sid-100000/f", Err: fs.ErrNotExist}
	err = n.Error(base)
	if strings.Contains(err.Error(), "12345") || !strings.Contains(err.Error(), s) {
		t.Errorf("Error: %q", err)
	}
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) {
		t.Error("Error lost the chain")
	}
	if a := n.Err(base); strings.Contains(a.Value.String(), "12345") || a.Key != "error" {
		t.Errorf("Err: %v", a)
	}
}

// TestFind maps a name from a log back to the stream directories it can
// be, with or without its prefix.
func TestFind(t *testing.T) {
	dir := t.TempDir()
	n, err := logid.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"mid-1/sid-2", "mid-1/sid-3", "mid-4/sid-2", "other/sid-2"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string][]string{
		n.StreamName(1, 3): {"mid-1/sid-3"},
		strings.TrimPrefix(n.StreamName(4, 2), "stream-"):    {"mid-4/sid-2"},
		strings.ToUpper(n.StreamName(1, 2)[len("stream-"):]): {"mid-1/sid-2"},
		n.InterceptName(4): {"mid-4"},
		n.StreamName(9, 9): nil,
	} {
		got, err := n.Find(dir, name)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Find(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := n.Find(dir, "stream-xyz"); err == nil || !strings.Contains(err.Error(), "is not a stream hash") {
		t.Errorf("a bad hash: %v", err)
	}
}
