package udprecv

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
)

// Linux delivers an IPv6 datagram from ::ffff:203.0.113.1 to a socket; the
// receiver must keep it apart from the IPv4 router 203.0.113.1 and tag it
// with its IPv6 form. Sent as a raw frame on loopback, the only way to
// forge the source.
func TestMappedSourceKeepsItsIPv6Form(t *testing.T) {
	testenv.RequireRoot(t)
	r, dir := listen(t, "[::1]:0")
	mapped := netip.AddrFrom16(netip.MustParseAddr("203.0.113.1").As16())
	// Loopback's address is all zeros: a frame to another MAC is not for the host.
	zero := make(net.HardwareAddr, 6)
	m := gen.Mirror{SrcMAC: zero, DstMAC: zero, Router: mapped, Collector: netip.IPv6Loopback(), MID: 5, SID: 6, Port: r.Addr().Port(),
		UDPChecksum: true, Inner: []byte{0x45, 0}}
	frame, err := m.Frame()
	if err != nil {
		t.Fatal(err)
	}
	lo, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lo)
	if err := unix.Sendto(lo, frame, 0, &unix.SockaddrLinklayer{Ifindex: 1}); err != nil {
		t.Fatalf("send on lo: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	got := readStreams(t, dir)
	if p := got["mid-5/sid-6"]; len(p) != 1 || p[0].Comment != "router=::ffff:203.0.113.1" {
		t.Errorf("streams %v, want one packet tagged router=::ffff:203.0.113.1", got)
	}
}
