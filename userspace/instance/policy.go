package instance

import (
	"fmt"
	"slices"

	"github.com/jmxdp/jmxdp/userspace/forward"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// AddPolicy adds r to the instance and the config file; with replace it
// changes the action of an existing rule for the same streams. The
// instance's rule changes in one map update (every packet sees the old or
// the new action). Everything is checked before anything changes, and
// when the file cannot be written the instance's rule is put back.
func (t *Instance) AddPolicy(r vocab.PolicyRule, replace bool) (*Change[RuleChange], error) {
	c := newChange[RuleChange]("add", t)
	var instRules []vocab.PolicyRule
	var instOld, fileOld vocab.PolicyRule
	var inInst, inFile bool
	if t.pinned != nil {
		var err error
		if instRules, err = t.pinned.Policies(); err != nil {
			return nil, err
		}
		if i := slices.IndexFunc(instRules, func(x vocab.PolicyRule) bool { return sameRuleKey(x, r) }); i >= 0 {
			instOld, inInst = instRules[i], true
		}
	}
	if t.file != nil {
		fileOld, inFile = t.file.FindPolicy(r)
	}
	// Refuse before changing anything.
	if inInst && !SameAction(instOld, r) && !replace {
		return nil, fmt.Errorf("the %s already has a rule for %s (action %s); use --replace to change its action",
			t.Name(), RuleKeyString(r), ActionString(instOld))
	}
	if inFile && !SameAction(fileOld, r) && !replace {
		return nil, fmt.Errorf("%s already has a rule for %s (action %s); use --replace to change its action",
			t.file.Name(), RuleKeyString(r), ActionString(fileOld))
	}
	if t.pinned != nil && r.Action == vocab.ActionForward {
		// The route, egress and neighbour first: no route refuses the
		// rule before the file or the instance changes.
		if err := forward.Prepare(t.pinned.Maps, []vocab.PolicyRule{r}, nil); err != nil {
			return nil, err
		}
	}
	instDone := t.pinned == nil || (inInst && SameAction(instOld, r))
	fileDone := t.file == nil || (inFile && SameAction(fileOld, r))
	if instDone && fileDone {
		return nil, fmt.Errorf("%s: %s already exists in %s: nothing to do", RuleKeyString(r), r.Action, t.targetsName())
	}

	fileChanged := false
	if t.file != nil && !fileDone {
		var err error
		switch {
		case inFile:
			err = t.file.SetPolicyAction(r)
		case !t.file.Config().PolicySet && t.pinned != nil:
			// A policy key makes the file authoritative at start: seed it
			// with the instance's whole policy, so a restart keeps all of it.
			rules := slices.DeleteFunc(slices.Clone(instRules), func(x vocab.PolicyRule) bool { return sameRuleKey(x, r) })
			rules = append(rules, r)
			err = t.file.AddPolicies(rules)
			if len(rules) > 1 {
				c.Config.Notes = append(c.Config.Notes, fmt.Sprintf("%s had no policy key: wrote the instance's whole policy (%d rules), which the file now sets at start",
					t.file.Name(), len(rules)))
			}
		default:
			err = t.file.AddPolicy(r)
		}
		if err != nil {
			return nil, err
		}
		fileChanged = true
		fi := RuleChange{Rule: r}
		if inFile {
			fi.Previous = &fileOld
		}
		c.Config.Changed = append(c.Config.Changed, fi)
	} else if t.file != nil {
		c.Config.Unchanged = append(c.Config.Unchanged, RuleChange{Rule: r})
	}

	if t.pinned != nil && !instDone {
		// One map update: a replaced rule changes atomically.
		if err := t.pinned.PutPolicy(r); err != nil {
			return nil, err
		}
		ii := RuleChange{Rule: r}
		if inInst {
			ii.Previous = &instOld
		}
		c.Instance.Changed = append(c.Instance.Changed, ii)
	} else if t.pinned != nil {
		c.Instance.Unchanged = append(c.Instance.Unchanged, RuleChange{Rule: r})
	}
	if t.pinned != nil && t.file == nil {
		c.Instance.Notes = append(c.Instance.Notes, t.liveOnlyNote("policy"))
	}

	if fileChanged {
		if err := t.save(t.file); err != nil {
			if t.pinned != nil && !instDone {
				var undo error
				if inInst {
					undo = t.pinned.PutPolicy(instOld) // back in one update
				} else {
					undo = t.pinned.DeletePolicy(r)
				}
				if undo != nil {
					return nil, fmt.Errorf("%w; and undoing the change in the instance failed: %v", err, undo)
				}
				return nil, fmt.Errorf("%w (the instance's policy is unchanged)", err)
			}
			return nil, err
		}
	}
	return c, nil
}

// DeletePolicy deletes the rule for r's streams (r's action is not
// looked at) from the instance and the config file; when the file cannot
// be written the instance's rule is put back.
func (t *Instance) DeletePolicy(r vocab.PolicyRule) (*Change[RuleChange], error) {
	c := newChange[RuleChange]("del", t)
	var instOld, fileOld vocab.PolicyRule
	var inInst, inFile bool
	if t.pinned != nil {
		rules, err := t.pinned.Policies()
		if err != nil {
			return nil, err
		}
		if i := slices.IndexFunc(rules, func(x vocab.PolicyRule) bool { return sameRuleKey(x, r) }); i >= 0 {
			instOld, inInst = rules[i], true
		}
	}
	fileHasKey := t.file != nil && t.file.Config().PolicySet
	if t.file != nil {
		fileOld, inFile = t.file.FindPolicy(r)
	}
	if !inInst && !inFile {
		where := t.targetsName()
		if t.file != nil && !fileHasKey {
			where += " (which has no policy key)"
		}
		return nil, fmt.Errorf("no rule for %s in %s", RuleKeyString(r), where)
	}
	if inFile {
		if err := t.file.DeletePolicy(r); err != nil {
			return nil, err
		}
		c.Config.Changed = append(c.Config.Changed, RuleChange{Rule: fileOld})
	} else if t.file != nil {
		c.Config.Unchanged = append(c.Config.Unchanged, RuleChange{Rule: r})
		if !fileHasKey {
			c.Config.Notes = append(c.Config.Notes, fmt.Sprintf("%s has no policy key: a start with it applies no rules, so there is nothing to delete there", t.file.Name()))
		} else {
			c.Config.Notes = append(c.Config.Notes, fmt.Sprintf("%s had no rule for %s", t.file.Name(), RuleKeyString(r)))
		}
	}
	if inInst {
		if err := t.pinned.DeletePolicy(r); err != nil {
			return nil, err
		}
		c.Instance.Changed = append(c.Instance.Changed, RuleChange{Rule: instOld})
	} else if t.pinned != nil {
		c.Instance.Unchanged = append(c.Instance.Unchanged, RuleChange{Rule: r})
		c.Instance.Notes = append(c.Instance.Notes, fmt.Sprintf("the %s had no rule for %s", t.Name(), RuleKeyString(r)))
	}
	if t.pinned != nil && t.file == nil {
		c.Instance.Notes = append(c.Instance.Notes, t.liveOnlyNote("policy"))
	}
	if inFile {
		if err := t.save(t.file); err != nil {
			if inInst {
				if undo := t.pinned.PutPolicy(instOld); undo != nil {
					return nil, fmt.Errorf("%w; and restoring the rule in the instance failed: %v", err, undo)
				}
				return nil, fmt.Errorf("%w (the instance's policy is unchanged)", err)
			}
			return nil, err
		}
	}
	return c, nil
}

// PolicyList is the policy of an instance, or of its config file when
// nothing is pinned.
type PolicyList struct {
	Rules   []vocab.PolicyRule // in the instance's order
	Default vocab.Action       // for streams no rule names
	Origin
}

// Policy reads the instance's policy (the file's when nothing is
// pinned).
func (t *Instance) Policy() (*PolicyList, error) {
	if t.pinned != nil {
		rules, err := t.pinned.Policies()
		if err != nil {
			return nil, err
		}
		s, err := t.pinned.Settings()
		if err != nil {
			return nil, err
		}
		l := &PolicyList{Rules: rules, Default: s.DefaultAction, Origin: Origin{Source: "the " + t.Name()}}
		if t.file != nil && t.file.Config().PolicySet && !sameSet(rules, t.file.Config().Policy) {
			l.FileDiffers, l.FileCount = true, len(t.file.Config().Policy)
		}
		return l, nil
	}
	cfg := t.file.Config()
	l := &PolicyList{Rules: slices.Clone(cfg.Policy), Default: cfg.DefaultAction, Origin: Origin{Source: t.file.Name()}}
	vocab.SortRules(l.Rules)
	if !cfg.PolicySet {
		l.Source += " (no policy key: a start applies no rules)"
	}
	return l, nil
}
