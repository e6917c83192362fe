package vocab

import (
	"fmt"
	"net/netip"
)

// The kernel keys IPv4 routers as IPv4-mapped IPv6 (::ffff:a.b.c.d), so
// these two IPv6 ranges are where v4 and v6 could be confused.
var (
	v4MappedRange = netip.MustParsePrefix("::ffff:0:0/96")
	v4CompatRange = netip.MustParsePrefix("::/96")
)

// IPv4Embedded reports whether a is an IPv6 address that embeds an IPv4
// one: IPv4-mapped (::ffff:0:0/96) or IPv4-compatible (::/96, which holds
// :: and ::1 too). Neither may be the source of a packet on the wire (RFC
// 4291 2.5.5, RFC 6890), and a mapped one has the very bytes of the IPv4
// router's key, so the program never takes such a source for a router
// (JM_STAT_UNTRUSTED_MAPPED). An IPv4 address is not embedded.
func IPv4Embedded(a netip.Addr) bool {
	if !a.Is6() {
		return false
	}
	a = a.WithZone("")
	return v4MappedRange.Contains(a) || v4CompatRange.Contains(a)
}

// CheckAllowPrefix refuses an allowlist prefix that would confuse IPv4 and
// IPv6 routers: an IPv6 prefix inside ::ffff:0:0/96 or ::/96 (no router
// sends from there; an IPv4 router is named as IPv4), or one that contains
// ::ffff:0:0/96, such as ::/0, which in the kernel's trie of IPv4-mapped
// keys would admit every IPv4 router too.
func CheckAllowPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("invalid prefix %v", p)
	}
	if !p.Addr().Is6() {
		return nil
	}
	switch {
	case p.Bits() >= 96 && v4MappedRange.Contains(p.Addr()):
		return fmt.Errorf("%v is an IPv4-mapped IPv6 prefix, which no router sends from: name an IPv4 router as IPv4 (e.g. %v)",
			p, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96))
	case p.Bits() >= 96 && v4CompatRange.Contains(p.Addr()):
		return fmt.Errorf("%v is in ::/96 (IPv4-compatible, unspecified or loopback), which no router sends from: name an IPv4 router as a.b.c.d/32", p)
	case p.Overlaps(v4MappedRange):
		return fmt.Errorf("%v contains ::ffff:0:0/96, so the kernel would also accept every IPv4 router under it: list the IPv6 prefixes routers use (e.g. 2000::/3) and IPv4 routers as IPv4", p)
	}
	return nil
}
