package gen_test

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/tools/gen"
)

// demoHash digests everything Demo returns: each packet's time and bytes,
// and the summary with its streams in a fixed order.
func demoHash(t testing.TB, cfg gen.DemoConfig) string {
	t.Helper()
	pkts, sum, err := gen.Demo(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	var n [8]byte
	for _, p := range pkts {
		binary.BigEndian.PutUint64(n[:], uint64(p.Time.UnixNano()))
		h.Write(n[:])
		binary.BigEndian.PutUint64(n[:], uint64(len(p.Data)))
		h.Write(n[:])
		h.Write(p.Data)
	}
	ids := slices.SortedFunc(maps.Keys(sum.Streams), func(a, b gen.StreamID) int {
		return cmp.Or(cmp.Compare(a.MID, b.MID), cmp.Compare(a.SID, b.SID))
	})
	fmt.Fprintf(h, "%d %d %d %d %d %d\n", sum.Frames, sum.JmirrorDatagrams, sum.Fragmented, sum.Fragments, sum.Malformed, sum.NotJmirror)
	for _, id := range ids {
		c := sum.Streams[id]
		routers := slices.SortedFunc(maps.Keys(c.ByRouter), func(a, b netip.Addr) int { return a.Compare(b) })
		fmt.Fprintf(h, "%v %d %d %v", id, c.Packets, c.Bytes, c.Inner)
		for _, r := range routers {
			fmt.Fprintf(h, " %v=%v", r, c.ByRouter[r])
		}
		fmt.Fprintln(h)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestDemoGolden pins Demo's output: the hashes were computed with the
// linear stream scan, so the tree that replaced it must choose the very same
// streams.
func TestDemoGolden(t *testing.T) {
	many := gen.DefaultDemo()
	many.Intercepts, many.SessionsPer, many.PacketsPer = 20, 50, 3
	skewed := gen.DefaultDemo()
	skewed.Seed, skewed.Intercepts, skewed.SessionsPer, skewed.PacketsPer = 7, 7, 300, 5
	for _, c := range []struct {
		name string
		cfg  gen.DemoConfig
		want string
	}{
		{"default", gen.DefaultDemo(), "776d975fc87f7aab7179ea49284d225abf36531d475e5c331a0501a9ee94fb60"},
		{"many", many, "fa348e56c40f27626a83b2703d02e24c0fb99a72fd445ddebec7fa3df68c3cef"},
		{"skewed", skewed, "b55fc5ea6c9c4af7c85364ad2bf64b47cfdabcbc264b2ebc939ca6b19a3a3e64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := demoHash(t, c.cfg); got != c.want {
				t.Errorf("hash %s, want %s", got, c.want)
			}
		})
	}
}

// BenchmarkDemo builds the default demo for 3k and 30k streams (and 300k of
// one datagram each); ns/stream and B/stream should not grow with the count.
func BenchmarkDemo(b *testing.B) {
	for _, c := range []struct{ intercepts, sessions, packets int }{
		{30, 100, 40}, {300, 100, 40}, {1000, 300, 1},
	} {
		cfg := gen.DefaultDemo()
		cfg.Intercepts, cfg.SessionsPer, cfg.PacketsPer = c.intercepts, c.sessions, c.packets
		streams := c.intercepts * c.sessions
		b.Run(fmt.Sprintf("%dx%dx%d", c.intercepts, c.sessions, c.packets), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := gen.Demo(cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*streams), "ns/stream")
		})
	}
}
