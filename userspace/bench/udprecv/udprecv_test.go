package udprecv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// jmirrorPayload is a Jmirror UDP payload: version bits, mid, sid, inner.
func jmirrorPayload(version uint8, mid, sid uint32, inner []byte) []byte {
	p := make([]byte, 8, 8+len(inner))
	binary.BigEndian.PutUint32(p, uint32(version)<<30|mid)
	binary.BigEndian.PutUint32(p[4:], sid)
	return append(p, inner...)
}

type sent struct {
	mid, sid uint32
	inner    []byte
	link     layers.LinkType
}

func listen(t *testing.T, addr string) (*Receiver, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "streams")
	r, err := Listen(Config{Addr: netip.MustParseAddrPort(addr), Writer: writer.Config{Dir: dir, PacketComments: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, dir
}

func dial(t *testing.T, r *Receiver) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Crafted datagrams of three streams (IPv4, IPv6 and PPP inner packets, and
// an empty one) land in one file per stream, exactly and in order; short
// datagrams are counted as malformed; Close completes every file.
func TestWritesEachStream(t *testing.T) {
	r, dir := listen(t, "127.0.0.1:0")
	c := dial(t, r)
	a4 := netip.MustParseAddr("10.0.0.1")
	b4 := netip.MustParseAddr("10.0.0.2")
	a6 := netip.MustParseAddr("2001:db8::1")
	b6 := netip.MustParseAddr("2001:db8::2")
	var want []sent
	for i := range 30 {
		var s sent
		switch i % 3 {
		case 0:
			s = sent{mid: 7, sid: 1, inner: gen.InnerIPv4ICMPEcho(a4, b4, 1, uint16(i), 20+i), link: layers.LinkTypeRaw}
		case 1:
			s = sent{mid: 0x3fffffff, sid: 0xffffffff, inner: gen.InnerIPv6UDP(a6, b6, 1000, 2000, bytes.Repeat([]byte{byte(i)}, i)), link: layers.LinkTypeRaw}
		case 2:
			s = sent{mid: 9, sid: 3, inner: gen.InnerPPP(gen.PPPIPv4, gen.InnerIPv4UDP(a4, b4, 1, 2, []byte{byte(i)})), link: layers.LinkTypePPP_HDLC}
		}
		want = append(want, s)
		// Version bits set on some: ignored, as by jmxdp.
		if _, err := c.Write(jmirrorPayload(uint8(i%4), s.mid, s.sid, s.inner)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range [][]byte{{}, {1, 2, 3}, make([]byte, 7)} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	// Loopback delivers at once: Close finds every datagram queued on the
	// socket and must write them all before it returns.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.Datagrams != 33 || st.Written != 30 || st.Malformed != 3 || st.KernelDrops != 0 || st.Truncated != 0 || st.Refused != 0 {
		t.Errorf("stats %+v: want 33 datagrams, 30 written, 3 malformed, no drops", st)
	}
	if st.RcvBuf < DefaultRcvBuf && os.Geteuid() == 0 {
		t.Errorf("receive buffer %d, asked for %d", st.RcvBuf, DefaultRcvBuf)
	}
	if ws := r.Writer().Stats(); ws.Packets != 30 || ws.FilesCompleted != 3 || ws.OpenFiles != 0 {
		t.Errorf("writer stats %+v: want 30 packets in 3 completed files", ws)
	}
	got := readStreams(t, dir)
	if len(got) != 3 {
		t.Errorf("%d streams written, want 3: %v", len(got), keys(got))
	}
	for key, pkts := range got {
		var exp []sent
		for _, s := range want {
			if fmt.Sprintf("mid-%d/sid-%d", s.mid, s.sid) == key {
				exp = append(exp, s)
			}
		}
		if len(pkts) != len(exp) {
			t.Errorf("%s: %d packets, want %d", key, len(pkts), len(exp))
			continue
		}
		for i := range exp {
			if !bytes.Equal(pkts[i].Data, exp[i].inner) || pkts[i].Link != exp[i].link {
				t.Errorf("%s packet %d: got %x (%v), want %x (%v)", key, i, pkts[i].Data, pkts[i].Link, exp[i].inner, exp[i].link)
			}
			if pkts[i].Comment != "router=127.0.0.1" {
				t.Errorf("%s packet %d: comment %q", key, i, pkts[i].Comment)
			}
		}
	}
	// Writes after Close are refused, not panics.
	if err := r.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// An empty mirrored packet is a valid datagram: written as a zero-length
// packet, as jmxdp does.
func TestEmptyInner(t *testing.T) {
	r, dir := listen(t, "[::1]:0")
	c := dial(t, r)
	if _, err := c.Write(jmirrorPayload(0, 5, 6, nil)); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	got := readStreams(t, dir)
	if p := got["mid-5/sid-6"]; len(p) != 1 || len(p[0].Data) != 0 || p[0].Comment != "router=::1" {
		t.Errorf("streams %v", got)
	}
}

// Receive times come from the kernel, within the time of sending.
func TestTimestamps(t *testing.T) {
	r, dir := listen(t, "127.0.0.1:0")
	c := dial(t, r)
	before := time.Now()
	for i := range 5 {
		if _, err := c.Write(jmirrorPayload(0, 1, 1, []byte{0x45, byte(i)})); err != nil {
			t.Fatal(err)
		}
	}
	after := time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range readStreams(t, dir)["mid-1/sid-1"] {
		if p.Time.Before(before.Add(-time.Millisecond)) || p.Time.After(after.Add(time.Millisecond)) {
			t.Errorf("timestamp %v outside [%v, %v]", p.Time, before, after)
		}
	}
}

// Many datagrams in a row, more than one batch and with the writer busy,
// all arrive.
func TestManyDatagrams(t *testing.T) {
	r, _ := listen(t, "127.0.0.1:0")
	c := dial(t, r)
	const n = 5000
	inner := gen.InnerIPv4UDP(netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("10.1.1.2"), 1, 2, make([]byte, 100))
	for i := range n {
		if _, err := c.Write(jmirrorPayload(0, uint32(i%50), 1, inner)); err != nil {
			t.Fatal(err)
		}
		if i%500 == 499 {
			time.Sleep(time.Millisecond) // stay within the buffer when not root
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.Written+st.KernelDrops != n || st.Written != r.Writer().Stats().Packets {
		t.Errorf("stats %+v, writer %d packets: want %d written or dropped", st, r.Writer().Stats().Packets, n)
	}
	if st.KernelDrops != 0 {
		t.Logf("kernel dropped %d (loaded machine)", st.KernelDrops)
	}
}

func TestListenErrors(t *testing.T) {
	if _, err := Listen(Config{Writer: writer.Config{Dir: t.TempDir()}}); err == nil {
		t.Error("no address accepted")
	}
	if _, err := Listen(Config{Addr: netip.MustParseAddrPort("127.0.0.1:0")}); err == nil {
		t.Error("no output directory accepted")
	}
	// The port is taken: refused with the address in the message.
	r, _ := listen(t, "127.0.0.1:0")
	_, err := Listen(Config{Addr: r.Addr(), Writer: writer.Config{Dir: t.TempDir()}})
	if err == nil || !strings.Contains(err.Error(), r.Addr().String()) {
		t.Errorf("second listener on %v: %v", r.Addr(), err)
	}
}

// readStreams reads every completed file under dir, by "mid-M/sid-S".
func readStreams(t *testing.T, dir string) map[string][]testenv.Packet {
	t.Helper()
	out := map[string][]testenv.Packet{}
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() || strings.HasPrefix(de.Name(), ".") {
			return err
		}
		if !strings.HasSuffix(p, ".pcapng") {
			t.Errorf("unfinished or stray file %s", p)
			return nil
		}
		if fi, err := de.Info(); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode())
		}
		rel, _ := filepath.Rel(dir, filepath.Dir(p))
		pkts, err := testenv.ReadPcapng(p, testenv.Single)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		out[filepath.ToSlash(rel)] = append(out[filepath.ToSlash(rel)], pkts...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
