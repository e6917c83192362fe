package daemon_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Issue 19 item 2, live: 500 Jmirror datagrams over IPv6 from the IPv4
// router's mapped form (::ffff:a.b.c.d), interleaved with the real router's
// own on the same (mid, sid), with and without an allowlist naming the
// router. None may reach the real stream's file or be tagged with the real
// router; the kernel counts them as untrusted_mapped.
func TestMappedSourceNeverReachesTheRoutersFile(t *testing.T) {
	const forged, real = 500, 20
	for _, allow := range []bool{true, false} {
		name := "no allowlist"
		if allow {
			name = "allowlist names the router"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			router := e.lab.RouterAddr.Addr()
			cfg := e.config()
			if allow {
				cfg.Allowlist, cfg.AllowlistSet = []netip.Prefix{e.lab.RouterAddr.Masked()}, true
			}
			d := e.start(t, cfg)
			var frames [][]byte
			for i := range forged {
				if i%(forged/real) == 0 {
					frames = append(frames, e.mirror(t, router, 40, 4, gen.DefaultPort, i))
				}
				m := gen.Mirror{
					SrcMAC: e.lab.RouterMAC, DstMAC: e.lab.HostMAC,
					Router: netip.AddrFrom16(router.As16()), Collector: netip.MustParseAddr("2001:db8::100"),
					MID: 40, SID: 4, Port: gen.DefaultPort,
					Inner: gen.InnerIPv4ICMPEcho(netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2"), 9, uint16(i), 40),
				}
				f, err := m.Frame()
				if err != nil {
					t.Fatal(err)
				}
				frames = append(frames, f)
			}
			e.send(t, frames)
			settle(t, d, len(frames))
			c, err := d.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c[vocab.StatUntrustedMapped] != forged || c[vocab.StatUntrusted] != forged || c[vocab.StatJmirror] != real {
				t.Errorf("untrusted_mapped %d, untrusted %d, jmirror %d; want %d, %d, %d",
					c[vocab.StatUntrustedMapped], c[vocab.StatUntrusted], c[vocab.StatJmirror], forged, forged, real)
			}
			live := kernelStreams(t, d)
			if err := d.Stop(); err != nil {
				t.Fatal(err)
			}
			if len(live) != 1 {
				t.Errorf("kernel streams %v, want only the real router's", live)
			}
			files := streamFiles(t, e.out)
			if len(files) != 1 || len(files["mid-40/sid-4"]) == 0 {
				t.Fatalf("files %v, want only mid-40/sid-4", files)
			}
			var n int
			for _, path := range files["mid-40/sid-4"] {
				for _, p := range tsharkPackets(t, path) {
					n++
					if !strings.HasPrefix(p.Iface, "jmirror-"+router.String()+"-") {
						t.Errorf("%s: packet on interface %q, want the router %v's", path, p.Iface, router)
					}
				}
				// The forged packets carry ICMP id 9, the real ones 7.
				for _, pk := range filePackets(t, path) {
					if len(pk) >= 26 && pk[24] == 0 && pk[25] == 9 {
						t.Errorf("%s: a forged packet is in the router's file", path)
					}
				}
			}
			if n != real {
				t.Errorf("the router's file has %d packets, want its %d", n, real)
			}
		})
	}
}
