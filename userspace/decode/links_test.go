package decode_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
)

// decode --out never writes through a link planted in the output
// directory, a stream's file or its mid's directory, and refuses an output
// directory other users can change (issue 19 item 5: as root it overwrote
// the links' targets).
func TestOutDoesNotFollowPlantedLinks(t *testing.T) {
	pkts, _, err := gen.Demo(gen.DefaultDemo())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "demo.pcap")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := gen.WritePcap(f, pkts); err != nil {
		t.Fatal(err)
	}
	f.Close()
	opts := func(dir string) decode.Options {
		return decode.Options{Ports: []uint16{gen.DefaultPort}, Engine: decode.EngineGo, OutDir: dir}
	}
	rep, err := decode.Files([]string{file}, opts(filepath.Join(t.TempDir(), "first")))
	if err != nil || len(rep.Streams) < 2 {
		t.Fatalf("a plain decode --out: %v, %d streams", err, len(rep.Streams))
	}
	a, b := rep.Streams[0], rep.Streams[1]
	if a.MID == b.MID {
		for _, s := range rep.Streams {
			if s.MID != a.MID {
				b = s
				break
			}
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	os.Mkdir(out, 0o700)
	// a's file is a link to a victim file; b's mid directory a link to a
	// victim directory.
	victimFile := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(victimFile, []byte("keep me\n"), 0o600)
	pa := decode.StreamPath(out, a.MID, a.SID)
	os.MkdirAll(filepath.Dir(pa), 0o700)
	if err := os.Symlink(victimFile, pa); err != nil {
		t.Fatal(err)
	}
	victimDir := t.TempDir()
	pb := decode.StreamPath(out, b.MID, b.SID)
	midB := filepath.Dir(pb) // out/mid-M/sid-S.pcapng
	if err := os.Symlink(victimDir, midB); err != nil {
		t.Fatal(err)
	}
	decode.Files([]string{file}, opts(out)) // may report the refused streams
	if data, _ := os.ReadFile(victimFile); string(data) != "keep me\n" {
		t.Errorf("the planted file link's target was overwritten: %q", data)
	}
	if entries, _ := os.ReadDir(victimDir); len(entries) != 0 {
		t.Errorf("the planted directory link's target got %v", entries)
	}

	// An output directory others can write: refused.
	shared := filepath.Join(t.TempDir(), "shared")
	os.Mkdir(shared, 0o700)
	os.Chmod(shared, 0o777)
	if _, err := decode.Files([]string{file}, opts(shared)); !errors.Is(err, pcapng.ErrUntrustedDir) {
		t.Errorf("decode --out into a 0777 directory: %v", err)
	}
	o := opts(shared)
	o.AllowUntrustedOut = true
	if _, err := decode.Files([]string{file}, o); err != nil {
		t.Errorf("with AllowUntrustedOut: %v", err)
	}
}
