package maps

import (
	"net/netip"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// SetAllowlist makes the allowlist hold want and the settings s, in the
// one order that never opens a gap on a running program: a switch that
// ends off is turned off before any prefix goes, the prefixes in want are
// put before the stale ones are deleted, and a switch that ends on is
// turned on only once they are all in. No packet sees an enabled empty
// list or a half-filled one. The loader's Configure and a live `jmxdp
// allowlist` change (and its rollback) both go through here.
func (m *Maps) SetAllowlist(want []netip.Prefix, s vocab.Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	for _, p := range want {
		// Before any change: a refused prefix changes nothing.
		if err := vocab.CheckAllowPrefix(p); err != nil {
			return err
		}
	}
	cur, err := m.Settings()
	if err != nil {
		return err
	}
	old, err := m.Allowlist()
	if err != nil {
		return err
	}
	if !s.AllowlistEnabled && cur != s {
		if err := m.SetSettings(s); err != nil {
			return err
		}
	}
	keep := make(map[netip.Prefix]bool, len(want))
	for _, p := range want {
		if err := m.AddAllow(p); err != nil {
			return err
		}
		keep[p.Masked()] = true
	}
	for _, p := range old {
		if !keep[p] {
			if err := m.DelAllow(p); err != nil {
				return err
			}
		}
	}
	// Written even when unchanged, as the loader always has: it also
	// starts a new policy generation (SetSettings).
	return m.SetSettings(s)
}
