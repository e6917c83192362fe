// Package nexthop asks the kernel, over rtnetlink, how it would send to an
// address (RTM_GETROUTE: the egress interface, the source address it would
// pick, the gateway) and has it resolve and keep fresh the neighbour entry
// of that next hop (RTM_NEWNEIGH with NTF_USE). The forward action needs
// both before its first frame: the XDP program reads MAC addresses from
// the neighbour table through bpf_fib_lookup and cannot resolve one itself.
package nexthop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Route is how the kernel sends to an address.
type Route struct {
	Ifindex uint32
	Src     netip.Addr // the source address the kernel would pick
	Gateway netip.Addr // invalid when the destination is on link
}

// NextHop is the neighbour frames to the destination go to.
func (r Route) NextHop(dst netip.Addr) netip.Addr {
	if r.Gateway.IsValid() {
		return r.Gateway
	}
	return dst
}

// ErrNoRoute is returned when the kernel has no usable route.
var ErrNoRoute = errors.New("no route")

var seq atomic.Uint32

// Lookup asks the kernel for its route to dst in the caller's network
// namespace.
func Lookup(dst netip.Addr) (Route, error) {
	dst = dst.Unmap()
	family, alen := familyOf(dst)
	var msg []byte
	msg = append(msg, byte(family), byte(alen*8), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) // struct rtmsg
	msg = appendAttr(msg, unix.RTA_DST, dst.AsSlice())
	reply, err := request(unix.RTM_GETROUTE, unix.NLM_F_REQUEST, msg)
	if err != nil {
		if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) || errors.Is(err, unix.ESRCH) {
			return Route{}, fmt.Errorf("%w to %s: %v", ErrNoRoute, dst, err)
		}
		return Route{}, fmt.Errorf("route lookup for %s: %w", dst, err)
	}
	if len(reply) < unix.SizeofRtMsg {
		return Route{}, fmt.Errorf("route lookup for %s: short reply", dst)
	}
	if typ := reply[7]; typ != unix.RTN_UNICAST {
		return Route{}, fmt.Errorf("%w to %s: route type %d is not unicast", ErrNoRoute, dst, typ)
	}
	var r Route
	for attrs := reply[unix.SizeofRtMsg:]; len(attrs) >= unix.SizeofRtAttr; {
		l := int(binary.NativeEndian.Uint16(attrs))
		t := binary.NativeEndian.Uint16(attrs[2:])
		if l < unix.SizeofRtAttr || l > len(attrs) {
			break
		}
		v := attrs[unix.SizeofRtAttr:l]
		switch t {
		case unix.RTA_OIF:
			if len(v) >= 4 {
				r.Ifindex = binary.NativeEndian.Uint32(v)
			}
		case unix.RTA_PREFSRC:
			r.Src, _ = netip.AddrFromSlice(v)
		case unix.RTA_GATEWAY:
			r.Gateway, _ = netip.AddrFromSlice(v)
		}
		attrs = attrs[min(nlaAlign(l), len(attrs)):]
	}
	if r.Ifindex == 0 {
		return Route{}, fmt.Errorf("%w to %s: no output interface", ErrNoRoute, dst)
	}
	if !r.Src.IsValid() {
		return Route{}, fmt.Errorf("route to %s via interface %d: no source address", dst, r.Ifindex)
	}
	r.Src = r.Src.Unmap()
	r.Gateway = r.Gateway.Unmap()
	return r, nil
}

// nudValid are the neighbour states with a usable link-layer address
// (NUD_VALID in the kernel): bpf_fib_lookup succeeds on them.
const nudValid = unix.NUD_PERMANENT | unix.NUD_NOARP | unix.NUD_REACHABLE | unix.NUD_PROBE | unix.NUD_STALE | unix.NUD_DELAY

// Probe has the kernel resolve addr's neighbour entry on ifindex now
// (NTF_USE, as sending a packet would), creating the entry, when it has
// none with a usable address; an entry that has one is left as it is (a
// probe would reset a permanent entry). It does not wait for the answer:
// call it again to keep the entry fresh. It reports whether it probed.
func Probe(ifindex uint32, addr netip.Addr) (bool, error) {
	addr = addr.Unmap()
	state, err := neighState(ifindex, addr)
	if err != nil {
		return false, err
	}
	if state&nudValid != 0 {
		return false, nil
	}
	msg := ndmsg(ifindex, addr, unix.NUD_NONE, unix.NTF_USE)
	if _, err := request(unix.RTM_NEWNEIGH, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE, msg); err != nil {
		return false, fmt.Errorf("resolve neighbour %s on interface %d: %w", addr, ifindex, err)
	}
	return true, nil
}

// neighState is the state of addr's neighbour entry on ifindex, 0 if none.
func neighState(ifindex uint32, addr netip.Addr) (uint16, error) {
	reply, err := request(unix.RTM_GETNEIGH, unix.NLM_F_REQUEST, ndmsg(ifindex, addr, 0, 0))
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read neighbour %s on interface %d: %w", addr, ifindex, err)
	}
	if len(reply) < unix.SizeofNdMsg {
		return 0, fmt.Errorf("read neighbour %s: short reply", addr)
	}
	return binary.NativeEndian.Uint16(reply[8:]), nil
}

// ndmsg is a struct ndmsg with an NDA_DST attribute.
func ndmsg(ifindex uint32, addr netip.Addr, state uint16, flags uint8) []byte {
	family, _ := familyOf(addr)
	msg := make([]byte, unix.SizeofNdMsg)
	msg[0] = byte(family)
	binary.NativeEndian.PutUint32(msg[4:], ifindex)
	binary.NativeEndian.PutUint16(msg[8:], state)
	msg[10] = flags
	return appendAttr(msg, unix.NDA_DST, addr.AsSlice())
}

func familyOf(a netip.Addr) (family, alen int) {
	if a.Is4() {
		return unix.AF_INET, 4
	}
	return unix.AF_INET6, 16
}

func nlaAlign(n int) int { return (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }

func appendAttr(b []byte, typ uint16, v []byte) []byte {
	l := unix.SizeofRtAttr + len(v)
	var h [unix.SizeofRtAttr]byte
	binary.NativeEndian.PutUint16(h[:], uint16(l))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b = append(b, h[:]...)
	b = append(b, v...)
	for len(b)%unix.NLA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// request sends one rtnetlink request and returns the payload of its
// answer (nil for a bare acknowledgement).
func request(typ uint16, flags uint16, payload []byte) ([]byte, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 2}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("set rtnetlink timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("bind rtnetlink socket: %w", err)
	}
	s := seq.Add(1)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(payload))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(payload)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags)
	binary.NativeEndian.PutUint32(msg[8:], s)
	msg = append(msg, payload...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send rtnetlink request: %w", err)
	}
	buf := make([]byte, os.Getpagesize()*2)
	for range 16 { // bounded: one answer is expected, skip strays
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("read rtnetlink answer: %w", err)
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return nil, errors.New("malformed rtnetlink answer")
			}
			mtyp := binary.NativeEndian.Uint16(b[4:])
			mseq := binary.NativeEndian.Uint32(b[8:])
			body := b[unix.SizeofNlMsghdr:l]
			b = b[min(nlaAlign(l), len(b)):]
			if mseq != s {
				continue
			}
			if mtyp == unix.NLMSG_ERROR {
				if len(body) < 4 {
					return nil, errors.New("short rtnetlink error")
				}
				if code := int32(binary.NativeEndian.Uint32(body)); code != 0 {
					return nil, unix.Errno(-code)
				}
				return nil, nil
			}
			return body, nil
		}
	}
	return nil, errors.New("no rtnetlink answer")
}
