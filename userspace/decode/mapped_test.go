package decode_test

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
)

// A capture where a forger sends over IPv6 from ::ffff:203.0.113.1 next to
// the real router 203.0.113.1, same (mid, sid): both engines count the
// forged datagrams as untrusted_mapped, the stream has only the real
// router, and --out writes only the real router's packets, tagged with it.
func TestMappedSourceNotTheIPv4Router(t *testing.T) {
	real := netip.MustParseAddr("203.0.113.1")
	inner := gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, 20)
	mk := func(m gen.Mirror) []byte {
		f, err := m.Frame()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	realF := mk(gen.Mirror{Router: real, Collector: netip.MustParseAddr("198.51.100.1"), MID: 4, SID: 4, Inner: inner})
	fakeF := mk(gen.Mirror{Router: netip.AddrFrom16(real.As16()), Collector: netip.MustParseAddr("2001:db8::100"), MID: 4, SID: 4, Inner: inner})
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var pkts []gen.Packet
	for i := range 12 {
		f := fakeF
		if i%4 == 0 {
			f = realF
		}
		pkts = append(pkts, gen.Packet{Time: t0.Add(time.Duration(i) * time.Millisecond), Data: f})
	}
	var buf bytes.Buffer
	if err := gen.WritePcap(&buf, pkts); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "forged.pcap")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, eng := range engines(t) {
		t.Run(string(eng), func(t *testing.T) {
			out := filepath.Join(dir, "out-"+string(eng))
			rep, err := decode.Files([]string{file}, decode.Options{Ports: []uint16{gen.DefaultPort}, Engine: eng, OutDir: out, MaxStreams: 1024})
			if err != nil {
				t.Fatal(err)
			}
			if tot := rep.Totals; tot.UntrustedMapped != 9 || tot.Untrusted != 9 || tot.Jmirror != 3 || tot.Written != 3 {
				t.Errorf("totals %+v, want 9 untrusted (all mapped), 3 jmirror, 3 written", tot)
			}
			if len(rep.Streams) != 1 || len(rep.Streams[0].Routers) != 1 || rep.Streams[0].Routers[0].Addr != real.String() || rep.Streams[0].Packets != 3 {
				t.Errorf("streams %+v, want one with router %v only, 3 packets", rep.Streams, real)
			}
			pk, comments := tsharkFrames(t, rep.Streams[0].File)
			if len(pk) != 3 {
				t.Errorf("stream file has %d packets, want the real router's 3", len(pk))
			}
			for _, c := range comments {
				if c != "router="+real.String() {
					t.Errorf("packet comment %q", c)
				}
			}
			var table bytes.Buffer
			if err := rep.WriteTable(&table); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(table.String(), "warning: 9 Jmirror datagrams from IPv6 sources that embed an IPv4 address") {
				t.Errorf("table lacks the warning:\n%s", table.String())
			}
		})
	}
}
