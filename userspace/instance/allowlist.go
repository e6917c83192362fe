package instance

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// ChangeAllowlist adds (add) or deletes prefixes in the instance and the
// config file. The instance's switch is on exactly when its list has
// entries, switched gap-free as maps.SetAllowlist does; when the file
// cannot be written the instance's list and switch are put back as they
// were.
func (t *Instance) ChangeAllowlist(add bool, prefixes []netip.Prefix) (*Change[netip.Prefix], error) {
	op := "del"
	if add {
		op = "add"
	}
	c := newChange[netip.Prefix](op, t)
	var inst []netip.Prefix
	var settings vocab.Settings
	if t.pinned != nil {
		var err error
		if inst, err = t.pinned.Allowlist(); err != nil {
			return nil, err
		}
		if settings, err = t.pinned.Settings(); err != nil {
			return nil, err
		}
	}
	fileHasKey := t.file != nil && t.file.Config().AllowlistSet
	var instTodo, fileTodo []netip.Prefix
	for _, p := range prefixes {
		inInst := slices.Contains(inst, p)
		inFile := t.file != nil && t.file.HasAllow(p)
		instNeeds := t.pinned != nil && inInst != add
		fileNeeds := t.file != nil && inFile != add && (add || fileHasKey)
		if !instNeeds && !fileNeeds {
			if add {
				return nil, fmt.Errorf("%s is already in the allowlist of %s: nothing to do", p, t.targetsName())
			}
			where := t.targetsName()
			if t.file != nil && !fileHasKey {
				where += " (which has no allowlist key)"
			}
			return nil, fmt.Errorf("%s is not in the allowlist of %s", p, where)
		}
		if instNeeds {
			instTodo = append(instTodo, p)
			c.Instance.Changed = append(c.Instance.Changed, p)
		} else if t.pinned != nil {
			c.Instance.Unchanged = append(c.Instance.Unchanged, p)
		}
		if fileNeeds {
			fileTodo = append(fileTodo, p)
			c.Config.Changed = append(c.Config.Changed, p)
		} else if t.file != nil {
			c.Config.Unchanged = append(c.Config.Unchanged, p)
		}
	}

	// The file's new text first: nothing changes if it cannot be made.
	if len(fileTodo) > 0 {
		todo := fileTodo
		if add && !fileHasKey && t.pinned != nil {
			// The key makes the file authoritative at start: seed it with
			// the instance's whole list.
			todo = append(slices.Clone(inst), instTodo...)
			if len(todo) > len(fileTodo) {
				c.Config.Notes = append(c.Config.Notes, fmt.Sprintf("%s had no allowlist key: wrote the instance's whole allowlist (%d prefixes), which the file now sets at start",
					t.file.Name(), len(todo)))
			}
		}
		if add {
			if err := t.file.AddAllows(todo); err != nil {
				return nil, err
			}
		} else {
			for _, p := range todo {
				if err := t.file.DeleteAllow(p); err != nil {
					return nil, err
				}
			}
		}
	} else if t.file != nil && !add && !fileHasKey {
		c.Config.Notes = append(c.Config.Notes, fmt.Sprintf("%s has no allowlist key: a start with it accepts any router, so there is nothing to delete there", t.file.Name()))
	}

	undo := func() error { return nil }
	if t.pinned != nil && len(instTodo) > 0 {
		want, after := slices.Clone(inst), settings
		if add {
			want = append(want, instTodo...)
			after.AllowlistEnabled = true
		} else {
			want = slices.DeleteFunc(want, func(p netip.Prefix) bool { return slices.Contains(instTodo, p) })
			after.AllowlistEnabled = settings.AllowlistEnabled && len(want) > 0
		}
		if err := t.pinned.SetAllowlist(want, after); err != nil {
			return nil, err
		}
		undo = func() error { return t.pinned.SetAllowlist(inst, settings) }
	}
	if t.pinned != nil && t.file == nil {
		c.Instance.Notes = append(c.Instance.Notes, t.liveOnlyNote("allowlist"))
	}
	if t.pinned != nil && !add && len(instTodo) > 0 && len(inst) == len(instTodo) {
		c.Instance.Notes = append([]string{"the instance's allowlist is now empty: it accepts Jmirror from any source"}, c.Instance.Notes...)
	}
	if len(fileTodo) > 0 {
		if err := t.save(t.file); err != nil {
			if uerr := undo(); uerr != nil {
				return nil, fmt.Errorf("%w; and undoing the change in the instance failed: %v", err, uerr)
			}
			if t.pinned != nil {
				return nil, fmt.Errorf("%w (the instance's allowlist is unchanged)", err)
			}
			return nil, err
		}
	}
	return c, nil
}

// AllowList is the allowlist of an instance, or of its config file when
// nothing is pinned.
type AllowList struct {
	Prefixes []netip.Prefix // sorted
	// Enabled is the instance's switch (a file's list is on when it has
	// entries).
	Enabled bool
	Origin
}

// Allowlist reads the instance's allowlist (the file's when nothing is
// pinned).
func (t *Instance) Allowlist() (*AllowList, error) {
	if t.pinned != nil {
		list, err := t.pinned.Allowlist()
		if err != nil {
			return nil, err
		}
		s, err := t.pinned.Settings()
		if err != nil {
			return nil, err
		}
		l := &AllowList{Prefixes: list, Enabled: s.AllowlistEnabled, Origin: Origin{Source: "the " + t.Name()}}
		if fc := t.file; fc != nil && fc.Config().AllowlistSet && !sameSet(list, fc.Config().Allowlist) {
			l.FileDiffers, l.FileCount = true, len(fc.Config().Allowlist)
		}
		return l, nil
	}
	cfg := t.file.Config()
	l := &AllowList{Prefixes: slices.Clone(cfg.Allowlist), Enabled: true, Origin: Origin{Source: t.file.Name()}}
	slices.SortFunc(l.Prefixes, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	if !cfg.AllowlistSet {
		l.Source += " (no allowlist key: a start accepts any router)"
	}
	return l, nil
}
