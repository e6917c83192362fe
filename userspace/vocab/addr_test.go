package vocab

import (
	"net/netip"
	"strings"
	"testing"
)

func TestIPv4Embedded(t *testing.T) {
	for s, want := range map[string]bool{
		"::ffff:203.0.113.1": true, "::ffff:0:0": true, "::203.0.113.1": true, "::": true, "::1": true,
		"::ffff:203.0.113.1%eth0": true,
		"203.0.113.1":             false, "0.0.0.0": false, "2001:db8::1": false, "::1:ffff:203.0.113.1": false,
		"::2:0:0": false, "64:ff9b::203.0.113.1": false, "fe80::1": false,
	} {
		if got := IPv4Embedded(netip.MustParseAddr(s)); got != want {
			t.Errorf("IPv4Embedded(%s) = %v, want %v", s, got, want)
		}
	}
	// The 16-byte form of an IPv4 address is embedded; the address is not.
	a := netip.MustParseAddr("192.0.2.1")
	if IPv4Embedded(a) || !IPv4Embedded(netip.AddrFrom16(a.As16())) {
		t.Error("IPv4 vs its IPv4-mapped form")
	}
}

func TestCheckAllowPrefix(t *testing.T) {
	for s, want := range map[string]string{
		"::ffff:203.0.113.1/128": "203.0.113.1/32",
		"::ffff:192.0.2.0/120":   "192.0.2.0/24",
		"::ffff:0:0/96":          "0.0.0.0/0",
		"::203.0.113.1/128":      "a.b.c.d/32",
		"::1/128":                "::/96",
		"::/128":                 "::/96",
		"::/0":                   "every IPv4 router",
		"::/64":                  "every IPv4 router",
		"::ffff:0:0/95":          "every IPv4 router",
	} {
		err := CheckAllowPrefix(netip.MustParsePrefix(s))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckAllowPrefix(%s) = %v, want an error naming %q", s, err, want)
		}
	}
	for _, s := range []string{"203.0.113.1/32", "0.0.0.0/0", "2001:db8::/32", "2000::/3", "::2:0:0/96", "fe80::/10", "::1:0:0:0/80"} {
		if err := CheckAllowPrefix(netip.MustParsePrefix(s)); err != nil {
			t.Errorf("CheckAllowPrefix(%s): %v", s, err)
		}
	}
	if err := CheckAllowPrefix(netip.Prefix{}); err == nil {
		t.Error("the zero prefix is accepted")
	}
}
