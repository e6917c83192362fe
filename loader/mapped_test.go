package loader_test

import (
	"net/netip"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Issue 19 item 2: an outer IPv6 source ::ffff:203.0.113.1 was taken for
// router 203.0.113.1 (the kernel keys IPv4 as IPv4-mapped), so forged
// datagrams joined the real router's stream. Now they are dropped and
// counted under their own reason, with or without an allowlist naming the
// IPv4 router, and leave no trace under the IPv4 router's address.
func TestMappedSourceIsNeverTheIPv4Router(t *testing.T) {
	const forged = 500
	realRouter := mappedRouter.Unmap()
	for _, tc := range []struct {
		name      string
		allowlist []netip.Prefix
	}{
		{"no allowlist", nil},
		{"allowlist names the IPv4 router", []netip.Prefix{netip.PrefixFrom(realRouter, 32)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := loadProgram(t, loader.Config{DefaultAction: vocab.ActionCount, Allowlist: tc.allowlist})
			fake := gen.Mirror{Router: mappedRouter, Collector: coll6, MID: 9, SID: 9, Inner: ipv4Echo()}
			f := frame(t, fake)
			for i := range forged {
				v, err := p.Run(f)
				if err != nil {
					t.Fatal(err)
				}
				if v != vocab.VerdictDrop {
					t.Fatalf("forged frame %d: verdict %v, want drop", i, v)
				}
			}
			c, err := p.Maps.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c[vocab.StatUntrustedMapped] != forged || c[vocab.StatUntrusted] != forged || c[vocab.StatJmirror] != 0 {
				t.Errorf("counters %v, want untrusted_mapped and untrusted %d, jmirror 0", named(c), forged)
			}
			if _, ok, err := p.Maps.Stream(vocab.StreamKey{Router: realRouter, MID: 9, SID: 9}); err != nil || ok {
				t.Errorf("stream table has the IPv4 router's stream (%v, %v) after forged frames only", ok, err)
			}
			// Not in the per-source table either: its key would read back
			// as the IPv4 router.
			if u, err := p.Maps.Untrusted(); err != nil || len(u) != 0 {
				t.Errorf("untrusted sources %v (%v), want none", u, err)
			}

			// The real router still gets its stream, and only its frames.
			realMirror := gen.Mirror{Router: realRouter, Collector: collector, MID: 9, SID: 9, Inner: ipv4Echo()}
			rf := frame(t, realMirror)
			for range 3 {
				if v, err := p.Run(rf); err != nil || v != vocab.VerdictDrop {
					t.Fatalf("real frame: %v %v, want drop (policy count)", v, err)
				}
			}
			st, ok, err := p.Maps.Stream(vocab.StreamKey{Router: realRouter, MID: 9, SID: 9})
			if err != nil || !ok || st.Packets != 3 {
				t.Errorf("real router's stream %+v (%v, %v), want 3 packets", st, ok, err)
			}
			streams, err := p.Maps.Streams()
			if err != nil || len(streams) != 1 {
				t.Errorf("streams %v (%v), want only the real router's", streams, err)
			}
		})
	}
}

// The maps refuse an allowlist prefix that names an IPv4 router in IPv6 or
// would admit every IPv4 router, whoever writes it (config, CLI or code).
func TestAllowlistRefusesIPv4InIPv6(t *testing.T) {
	p := loadProgram(t, loader.Config{})
	for _, s := range []string{"::ffff:203.0.113.1/128", "::ffff:0:0/96", "::203.0.113.1/128", "::1/128", "::/128", "::/0", "::/64"} {
		if err := p.Maps.AddAllow(netip.MustParsePrefix(s)); err == nil {
			t.Errorf("AddAllow(%s) accepted", s)
		}
		if err := p.Configure(loader.Config{Allowlist: []netip.Prefix{netip.MustParsePrefix(s)}}); err == nil {
			t.Errorf("Configure with allowlist %s accepted", s)
		}
	}
	if got, err := p.Maps.Allowlist(); err != nil || len(got) != 0 {
		t.Errorf("allowlist after refusals: %v (%v)", got, err)
	}
	for _, s := range []string{"203.0.113.1/32", "0.0.0.0/0", "2001:db8::/32", "2000::/3", "::2:0:0/96"} {
		if err := p.Maps.AddAllow(netip.MustParsePrefix(s)); err != nil {
			t.Errorf("AddAllow(%s): %v", s, err)
		}
	}
}
