package maps

import (
	"unsafe"

	"github.com/jmxdp/jmxdp/bpf"
)

// XskMeta is the metadata the program writes in front of each frame it
// redirects to an AF_XDP socket (struct jm_xsk_meta), as bpf2go generated
// it: userspace reads it with the program's own layout, not with offsets
// of its own.
type XskMeta = bpf.XskMeta

// XskMetaLen is sizeof(struct jm_xsk_meta).
const XskMetaLen = int(unsafe.Sizeof(XskMeta{}))

// XskMeta.Flags (enum jm_meta_flag).
const (
	MetaOuterV6  = bpf.MetaOuterV6  // the outer header is IPv6 (else IPv4)
	MetaFirstFrg = bpf.MetaFirstFrg // first fragment of an outer datagram
	MetaLaterFrg = bpf.MetaLaterFrg // a later fragment: only mid and sid are set
	MetaHeld     = bpf.MetaHeld     // a later fragment ahead of its first: mid and sid are 0
	MetaForward  = bpf.MetaForward  // a forwarded stream's frame the program could not send
)

// MetaMagic marks metadata the program wrote (JM_META_MAGIC, "JMXD").
const MetaMagic = bpf.MetaMagic

// ReadXskMeta reads the XskMetaLen bytes in front of a frame. It reports
// false when b is not that long or does not carry the program's magic (a
// driver without metadata support leaves stale bytes there). The copy goes
// into an aligned struct on the caller's stack: no allocation, no
// unaligned access.
func ReadXskMeta(b []byte) (XskMeta, bool) {
	var m XskMeta
	if len(b) != XskMetaLen {
		return m, false
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&m)), XskMetaLen), b)
	return m, m.Magic == MetaMagic
}
