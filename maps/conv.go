package maps

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Addresses are 16 bytes in the kernel, IPv4 as IPv4-mapped IPv6.
func addrTo16(a netip.Addr) [16]byte { return a.As16() }

// addrFrom16 unmaps: the program never keys an IPv6 source in
// ::ffff:0:0/96 (it drops those, see IPv4Embedded), so such a key is an
// IPv4 router.
func addrFrom16(b [16]byte) netip.Addr { return netip.AddrFrom16(b).Unmap() }

func streamKeyToBPF(k vocab.StreamKey) bpf.StreamKey {
	return bpf.StreamKey{Router: addrTo16(k.Router), Mid: k.MID, Sid: k.SID}
}

func streamKeyFromBPF(k *bpf.StreamKey) vocab.StreamKey {
	return vocab.StreamKey{Router: addrFrom16(k.Router), MID: k.Mid, SID: k.Sid}
}

func streamStatsFromBPF(v *bpf.StreamValue) vocab.StreamStats {
	s := vocab.StreamStats{
		Bytes:     v.Bytes,
		FirstSeen: time.Duration(v.FirstSeenNs),
		LastSeen:  time.Duration(v.LastSeenNs),
	}
	copy(s.Inner[:], v.Inner[:])
	// The program counts each frame once, in its kind (see struct
	// jm_stream_value).
	for _, n := range v.Inner {
		s.Packets += n
	}
	return s
}

func policyKeyToBPF(r vocab.PolicyRule) bpf.PolicyKey {
	k := bpf.PolicyKey{Mid: r.MID, Sid: r.SID, Scope: uint32(bpf.ScopeExact)}
	if r.AnySID {
		k.Sid = 0
		k.Scope = uint32(bpf.ScopeMID)
	}
	return k
}

// allowKey builds the LPM key; an IPv4 prefix becomes its IPv4-mapped form.
func allowKey(p netip.Prefix) bpf.AllowKey {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return bpf.AllowKey{Prefixlen: uint32(bits), Addr: addrTo16(p.Addr())}
}

func allowPrefix(k *bpf.AllowKey) netip.Prefix {
	a := netip.AddrFrom16(k.Addr)
	bits := int(k.Prefixlen)
	if a.Is4In6() && bits >= 96 {
		return netip.PrefixFrom(a.Unmap(), bits-96)
	}
	return netip.PrefixFrom(a, bits)
}

// The fragment key holds IPv4 header fields as they are on the wire: the
// kernel copies them without byte swapping, so the Go side must not either.
func fragKeyFromBPF(k *bpf.FragKey) vocab.FragKey {
	var s, d [4]byte
	binary.NativeEndian.PutUint32(s[:], k.Saddr)
	binary.NativeEndian.PutUint32(d[:], k.Daddr)
	var id [2]byte
	binary.NativeEndian.PutUint16(id[:], k.Id)
	return vocab.FragKey{Src: netip.AddrFrom4(s), Dst: netip.AddrFrom4(d), ID: binary.BigEndian.Uint16(id[:]), Proto: k.Proto}
}

func policyValueToBPF(r vocab.PolicyRule) *bpf.PolicyValue {
	v := &bpf.PolicyValue{Action: uint32(r.Action)}
	if r.Action == vocab.ActionForward && r.Target.IsValid() {
		a := r.Target.Addr()
		v.FwdPort = r.Target.Port()
		v.FwdFamily = fwdFamilyV6
		if a.Is4() {
			v.FwdFamily = fwdFamilyV4
		}
		v.FwdAddr = addrTo16(a)
	}
	return v
}

func policyTargetFromBPF(v *bpf.PolicyValue) netip.AddrPort {
	if vocab.Action(v.Action) != vocab.ActionForward {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(addrFrom16(v.FwdAddr), v.FwdPort)
}

func fwdSrcKey(ifindex uint32, a netip.Addr) bpf.FwdSrcKey {
	k := bpf.FwdSrcKey{Ifindex: ifindex, Family: fwdFamilyV6}
	if a.Unmap().Is4() {
		k.Family = fwdFamilyV4
	}
	return k
}

// JM_FWD_FAMILY_V4 and JM_FWD_FAMILY_V6 (bpf/include/consts.h): defines,
// which bpf2go does not carry over.
const (
	fwdFamilyV4 = 4
	fwdFamilyV6 = 6
)
