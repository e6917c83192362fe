package pcapng

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/testenv"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

func ipv4UDP(t *testing.T, src string, payload int) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: []byte{192, 0, 2, 99}}
	udp := &layers.UDP{SrcPort: 1234, DstPort: 5001}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, ip, udp, gopacket.Payload(bytes.Repeat([]byte{0xab}, payload)))
}

func ipv6ICMP(t *testing.T, src string) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr("2001:db8::99").AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, ip, icmp, gopacket.Payload([]byte{0, 1, 0, 1, 'h', 'i'}))
}

// lcpEcho is a PPP LCP Echo-Request in HDLC-like framing, as in
// jmirror_l2tp.pcap.
var lcpEcho = []byte{0xff, 0x03, 0xc0, 0x21, 0x09, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00}

type pkt struct {
	ts     time.Time
	router netip.Addr
	kind   LinkKind
	data   []byte
}

func testPackets(t *testing.T) []pkt {
	r1 := netip.MustParseAddr("198.51.100.1")
	r2 := netip.MustParseAddr("2001:db8:ffff::2")
	t0 := time.Date(2025, 6, 7, 8, 9, 10, 123456789, time.UTC)
	pppIPv4 := append([]byte{0xff, 0x03, 0x00, 0x21}, ipv4UDP(t, "10.9.9.9", 5)...)
	return []pkt{
		{t0, r1, LinkRawIP, ipv4UDP(t, "10.0.0.1", 100)},
		{t0.Add(1), r1, LinkRawIP, ipv6ICMP(t, "2001:db8::1")},
		{t0.Add(2), r2, LinkRawIP, ipv4UDP(t, "10.0.0.2", 0)},
		{t0.Add(time.Second + 3), r1, LinkPPPHDLC, lcpEcho},
		{t0.Add(time.Hour + 4), r2, LinkPPPHDLC, pppIPv4},
		{t0.Add(time.Hour + 5), r1, LinkRawIP, ipv4UDP(t, "10.0.0.3", 1400)},
		// The IPv4-mapped form of r1 is not r1: an interface of its own.
		{t0.Add(time.Hour + 6), netip.AddrFrom16(r1.As16()), LinkPPPHDLC, lcpEcho},
		// Neither IP nor PPP, and an empty payload: kept as they are.
		{t0.Add(time.Hour + 7), r2, LinkUnknown, []byte{0x12, 0x34, 0x56}},
		{t0.Add(time.Hour + 8), r2, LinkUnknown, []byte{}},
	}
}

func permOf(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func writeTestFile(t *testing.T, path string, pkts []pkt) *Writer {
	t.Helper()
	w, err := Create(path, 0x8000, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacket(p.ts, p.router, p.kind, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	return w
}

// readBack reads a file this package wrote with pcapgo, checking what every
// packet's interface says, and returns the packets and the interface count.
func readBack(t *testing.T, path, wantComment string) ([]pkt, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	if si := r.SectionInfo(); si.Application != "jmxdp" || si.Comment != wantComment {
		t.Errorf("section info %+v", si)
	}
	var got []pkt
	for {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		intf, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			t.Fatal(err)
		}
		p := pkt{ts: ci.Timestamp, data: data}
		switch intf.LinkType {
		case layers.LinkTypeRaw:
			p.kind = LinkRawIP
		case layers.LinkTypePPP_HDLC:
			p.kind = LinkPPPHDLC
		case 147: // LINKTYPE_USER0
			p.kind = LinkUnknown
		default:
			t.Fatalf("interface %d: link type %v", ci.InterfaceIndex, intf.LinkType)
		}
		name := strings.Split(intf.Name, "-")
		if len(name) != 3 || name[0] != "jmirror" || name[2] != p.kind.String() {
			t.Fatalf("interface name %q", intf.Name)
		}
		p.router = netip.MustParseAddr(name[1])
		if !strings.Contains(intf.Description, name[1]) {
			t.Errorf("description %q does not name router %s", intf.Description, name[1])
		}
		if want := []string{"router=" + name[1]}; fmt.Sprint(opts.Comments) != fmt.Sprint(want) {
			t.Errorf("packet comments %q, want %q", opts.Comments, want)
		}
		if intf.TimestampResolution != 9 {
			t.Errorf("if_tsresol %d, want 9", intf.TimestampResolution)
		}
		got = append(got, p)
	}
	return got, r.NInterfaces()
}

func TestWriteReadBack(t *testing.T) {
	// A umask that strips the owner's write bit must not leak into the
	// modes Create sets.
	old := syscall.Umask(0o222)
	defer syscall.Umask(old)

	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(base, "a", "b", "stream.pcapng")
	pkts := testPackets(t)
	w := writeTestFile(t, path, pkts)

	if m := permOf(t, path); m != 0o600 {
		t.Errorf("file mode %o, want 600", m)
	}
	for _, d := range []string{filepath.Join(base, "a"), filepath.Join(base, "a", "b")} {
		if m := permOf(t, d); m != 0o700 {
			t.Errorf("%s: mode %o, want 700", d, m)
		}
	}
	if m := permOf(t, base); m != 0o755 {
		t.Errorf("pre-existing dir mode changed to %o", m)
	}

	var wantBytes uint64
	for _, p := range pkts {
		wantBytes += uint64(len(p.data))
	}
	if w.Packets() != uint64(len(pkts)) || w.Bytes() != wantBytes {
		t.Errorf("Packets, Bytes = %d, %d; want %d, %d", w.Packets(), w.Bytes(), len(pkts), wantBytes)
	}

	got, nifs := readBack(t, path, "Jmirror mid=32768 sid=1")
	if nifs != 6 {
		t.Errorf("%d interfaces, want one per (router, kind) = 6", nifs)
	}
	if len(got) != len(pkts) {
		t.Fatalf("read %d packets, want %d", len(got), len(pkts))
	}
	for i, p := range pkts {
		g := got[i]
		if !g.ts.Equal(p.ts) || g.router != p.router || g.kind != p.kind || !bytes.Equal(g.data, p.data) {
			t.Errorf("packet %d: got %v %v %v %x\nwant %v %v %v %x", i+1, g.ts, g.router, g.kind, g.data, p.ts, p.router, p.kind, p.data)
		}
	}
}

func TestTshark(t *testing.T) {
	tshark := testenv.Tool(t, "tshark")
	path := filepath.Join(t.TempDir(), "s.pcapng")
	pkts := testPackets(t)
	writeTestFile(t, path, pkts)
	checkTshark(t, path, pkts)

	// A stream file closed before its first packet must open cleanly too.
	empty := filepath.Join(t.TempDir(), "empty.pcapng")
	writeTestFile(t, empty, nil)
	if out, err := exec.Command(tshark, "-n", "-r", empty).CombinedOutput(); err != nil {
		t.Errorf("tshark on a file without packets: %v\n%s", err, out)
	}
}

// checkTshark has tshark read path and compares every packet with pkts
// (which must be testPackets, in any repetition): interface name, length,
// addresses, PPP protocol, router comment and nanosecond time.
func checkTshark(t *testing.T, path string, pkts []pkt) {
	t.Helper()
	tshark := testenv.Tool(t, "tshark")
	out, err := exec.Command(tshark, "-n", "-r", path, "-T", "fields", "-E", "separator=|",
		"-e", "frame.interface_name", "-e", "frame.len", "-e", "ip.src", "-e", "ipv6.src",
		"-e", "ppp.protocol", "-e", "frame.comment", "-e", "frame.time_epoch").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("tshark: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := map[string]string{
		"10.0.0.1":                 "jmirror-198.51.100.1-ip|%d|10.0.0.1||||",
		"2001:db8::1":              "jmirror-198.51.100.1-ip|%d||2001:db8::1|||",
		"10.0.0.2":                 "jmirror-2001:db8:ffff::2-ip|%d|10.0.0.2||||",
		"lcp/198.51.100.1":         "jmirror-198.51.100.1-ppp|%d|||0xc021||",
		"lcp/::ffff:198.51.100.1":  "jmirror-::ffff:198.51.100.1-ppp|%d|||0xc021||",
		"10.9.9.9":                 "jmirror-2001:db8:ffff::2-ppp|%d|10.9.9.9||0x0021||",
		"10.0.0.3":                 "jmirror-198.51.100.1-ip|%d|10.0.0.3||||",
		"unknown/2001:db8:ffff::2": "jmirror-2001:db8:ffff::2-unknown|%d|||||",
	}
	if len(lines) != len(pkts) {
		t.Fatalf("tshark printed %d lines, want %d:\n%s", len(lines), len(pkts), out)
	}
	for i, line := range lines {
		f := strings.Split(line, "|")
		if len(f) != 7 {
			t.Fatalf("line %d: %q", i+1, line)
		}
		p := pkts[i]
		var key string
		switch p.kind {
		case LinkPPPHDLC:
			key = "lcp/" + p.router.String()
			if len(p.data) > len(lcpEcho) {
				key = "10.9.9.9"
			}
		case LinkUnknown:
			key = "unknown/" + p.router.String()
		default:
			if p.data[0]>>4 == 6 {
				key = "2001:db8::1"
			} else {
				key = netip.AddrFrom4([4]byte(p.data[12:16])).String()
			}
		}
		// Compare all but the comment and the time, checked below.
		if got, w := strings.Join(f[:5], "|")+"||", fmt.Sprintf(want[key], len(p.data)); got != w {
			t.Errorf("line %d: %q, want %q", i+1, got, w)
		}
		if wantC := "router=" + p.router.String(); f[5] != wantC {
			t.Errorf("line %d: comment %q, want %q", i+1, f[5], wantC)
		}
		if wantT := fmt.Sprintf("%d.%09d", p.ts.Unix(), p.ts.Nanosecond()); f[6] != wantT {
			t.Errorf("line %d: time %s, want %s", i+1, f[6], wantT)
		}
	}
}

func TestEmptyFileIsValid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.pcapng")
	writeTestFile(t, path, nil)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ReadPacketData(); err != io.EOF {
		t.Fatalf("ReadPacketData = %v, want io.EOF", err)
	}
	if r.NInterfaces() != 0 {
		t.Fatalf("%d interfaces in a file without packets", r.NInterfaces())
	}
}

func TestTruncatesAndFixesMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.pcapng")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, path, testPackets(t)[:1])
	if m := permOf(t, path); m != 0o600 {
		t.Errorf("mode %o, want 600", m)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("xxxx")) {
		t.Error("old contents survived")
	}
}

func TestWritePacketErrors(t *testing.T) {
	w, err := Create(filepath.Join(t.TempDir(), "e.pcapng"), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	r := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	for name, fn := range map[string]func() error{
		"bad kind":    func() error { return w.WritePacket(now, r, LinkKind(9), lcpEcho) },
		"zero router": func() error { return w.WritePacket(now, netip.Addr{}, LinkRawIP, lcpEcho) },
		"zero time":   func() error { return w.WritePacket(time.Time{}, r, LinkRawIP, lcpEcho) },
	} {
		if err := fn(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if w.Packets() != 0 || w.Bytes() != 0 {
		t.Errorf("rejected packets counted: %d, %d", w.Packets(), w.Bytes())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(now, r, LinkRawIP, lcpEcho); err == nil {
		t.Error("write after Close succeeded")
	}
}

func TestCreateUnderFile(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(filepath.Join(file, "sub", "x.pcapng"), 1, 2); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Create under a file = %v, want not a directory", err)
	}
}

func BenchmarkWritePacket(b *testing.B) {
	w, err := Create(filepath.Join(b.TempDir(), "b.pcapng"), 1, 2)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	r := netip.MustParseAddr("192.0.2.1")
	data := make([]byte, 1400)
	data[0] = 0x45
	ts := time.Now()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := w.WritePacket(ts, r, LinkRawIP, data); err != nil {
			b.Fatal(err)
		}
	}
}
