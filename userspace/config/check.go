package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jmxdp/jmxdp/userspace/handoff"
	"github.com/jmxdp/jmxdp/userspace/retention"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The checks below are shared by the decoder, which adds the file position,
// and Validate, which sees values set by flags: both must refuse the same.

const (
	maxInt32  = math.MaxInt32
	maxUint32 = math.MaxUint32
	maxInt64  = math.MaxInt64
)

var (
	errEmptyPorts  = errors.New("empty list: Jmirror needs at least one UDP port (default [30030])")
	errEmptyQueues = errors.New("empty list: write all for every queue, or list queue numbers")
)

// checkRange refuses v outside min..max, calling negative numbers negative.
func checkRange(v, min, max int64) error {
	switch {
	case v < 0 && min >= 0:
		return fmt.Errorf("%d is negative", v)
	case v < min:
		return fmt.Errorf("%d is below the minimum %d", v, min)
	case v > max:
		return fmt.Errorf("%d is above the maximum %d", v, max)
	}
	return nil
}

func checkDuration(v, min time.Duration) error {
	switch {
	case v < 0:
		return fmt.Errorf("%v is negative", v)
	case v < min:
		return fmt.Errorf("%v is too short: must be positive", v)
	}
	return nil
}

func checkPort(v int64) error {
	if v < 1 || v > math.MaxUint16 {
		return fmt.Errorf("%d is not a UDP port (1..65535)", v)
	}
	return nil
}

// checkFrameSize wants an AF_XDP aligned-mode chunk size: a power of two
// from 2048 to the (x86, arm64 4K) page.
func checkFrameSize(v int64) error {
	if v != 2048 && v != 4096 {
		return fmt.Errorf("%d: want 2048 or 4096", v)
	}
	return nil
}

// checkFrames wants a power of two: the AF_XDP rings are sized from it.
func checkFrames(v int64) error {
	if v < MinFramesPerQueue || v > MaxFramesPerQueue || v&(v-1) != 0 {
		return fmt.Errorf("%d is not a power of two in %d..%d", v, MinFramesPerQueue, MaxFramesPerQueue)
	}
	return nil
}

// checkMID reports a mid beyond the 30 bits of the wire format; lit is the
// value as written, so that a hex id is echoed in hex.
func checkMID(v uint64, lit string) error {
	if v > vocab.MaxMID {
		return fmt.Errorf("%s is not a 30-bit intercept id (max %#x)", lit, vocab.MaxMID)
	}
	return nil
}

func checkSID(v uint64, lit string) error {
	if v > maxUint32 {
		return fmt.Errorf("%s does not fit in 32 bits (max %#x)", lit, uint64(maxUint32))
	}
	return nil
}

// checkXDPMode is exact, not case-insensitive: the command compares the
// string, and a flag's value reaches it without passing through a parser.
func checkXDPMode(s string) error {
	switch s {
	case "auto", "driver", "generic":
		return nil
	}
	return fmt.Errorf("%q is not an XDP mode (want auto, driver or generic)", s)
}

// checkIfName applies the kernel's rules for interface names
// (dev_valid_name): at most 15 bytes, not . or .., no '/', ':' or space.
func checkIfName(s string) error {
	if s == "" || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\r\v\f") {
		return fmt.Errorf("%q is not an interface name (1 to 15 characters, no '/', ':' or spaces)", s)
	}
	return nil
}

// CheckPrefix refuses a prefix with host bits: 192.0.2.1/24 is usually a
// typo for a host or for its network, and the kernel's LPM trie would
// silently treat it as the network.
func CheckPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("%v is not a valid prefix", p)
	}
	if m := p.Masked(); m != p {
		return fmt.Errorf("%v has host bits set; did you mean %v?", p, m)
	}
	// No IPv6 form of an IPv4 router (docs/operating.md, Security).
	return vocab.CheckAllowPrefix(p)
}

// ParsePrefix reads an allowlist entry: a prefix without host bits, or an
// address meaning /32 or /128. Zones are refused. configedit reads its
// edits with it, so that they are what the file accepts.
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, CheckPrefix(p)
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		p := netip.PrefixFrom(a, a.BitLen())
		return p, CheckPrefix(p)
	}
	return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix (e.g. 192.0.2.0/24, 2001:db8::/32)", s)
}

func checkNotEmpty(s string) error {
	if s == "" {
		return errors.New("empty path")
	}
	return nil
}

// checkAbsPath wants an absolute path: the pin directory lives on bpffs,
// never relative to wherever the daemon was started.
func checkAbsPath(s string) error {
	if err := checkNotEmpty(s); err != nil {
		return err
	}
	if !filepath.IsAbs(s) {
		return fmt.Errorf("%q is not an absolute path", s)
	}
	return nil
}

// checkAddr wants host:port with a numeric port, or "" (disabled). The host
// may be empty (every address).
func checkAddr(s string) error {
	if s == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		if p, perr := strconv.ParseUint(port, 10, 16); perr != nil || p == 0 {
			err = fmt.Errorf("bad port %q", port)
		}
	}
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:9877, or \"\" to disable)", s)
	}
	return nil
}

// checkTopStreams bounds the per-stream series of the metrics endpoint: each
// stream is a few series on every scrape.
func checkTopStreams(v int64) error {
	return checkRange(v, 0, MaxTopStreams)
}

// parseInt reads an integer written in decimal or 0x hex, with an optional
// sign. Leading zeros are decimal, as in YAML 1.2: yaml.v3 alone reads
// 012345 as octal (YAML 1.1), which would silently turn one intercept id
// into another. Other forms (0o, 0b, 1_000) are refused, not guessed.
func parseInt(s string) (int64, error) {
	t, neg := s, false
	if len(t) > 0 && (t[0] == '-' || t[0] == '+') {
		neg, t = t[0] == '-', t[1:]
	}
	base := 10
	if len(t) > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X') {
		base, t = 16, t[2:]
	}
	if t == "" || t[0] == '+' || t[0] == '-' || strings.ContainsRune(t, '_') {
		return 0, fmt.Errorf("%q is not a decimal or 0x hex integer", s)
	}
	u, err := strconv.ParseUint(t, base, 64)
	if errors.Is(err, strconv.ErrRange) || u > maxInt64 {
		return 0, fmt.Errorf("%s is out of range", s)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal or 0x hex integer", s)
	}
	if neg {
		return -int64(u), nil
	}
	return int64(u), nil
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// ParseSize reads a byte count: a whole number, optionally followed by a
// unit, B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of
// 1024), in any case and with or without a space ("256MiB", "1 GB",
// "4096", "0"). Negative sizes and sizes beyond int64 are refused.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	digits, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	switch {
	case strings.HasPrefix(t, "-"):
		return 0, fmt.Errorf("size %q is negative", s)
	case digits == "" || strings.HasPrefix(unit, "."):
		return 0, fmt.Errorf("size %q: want a whole number of bytes with an optional unit (e.g. 4096, 256MiB, 1GB)", s)
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (want B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, t[i:])
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > maxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// ruleKey identifies a policy rule regardless of its action: two rules with
// the same key are a mistake, whatever their actions.
type ruleKey struct {
	mid, sid uint32
	any      bool
}

func keyOf(r vocab.PolicyRule) ruleKey { return ruleKey{r.MID, r.SID, r.AnySID} }

func (k ruleKey) String() string {
	if k.any {
		return fmt.Sprintf("mid %d, any sid", k.mid)
	}
	return fmt.Sprintf("mid %d sid %d", k.mid, k.sid)
}

func checkScope(s string) error {
	_, err := retention.ParseScope(s)
	return err
}

// checkArgv: an empty list is no command; otherwise handoff's rules.
func checkArgv(argv []string) error {
	if len(argv) == 0 {
		return nil
	}
	return handoff.CheckArgv(argv)
}
