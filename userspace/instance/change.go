package instance

import (
	"fmt"
	"slices"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Change is what a policy or allowlist change did, to each target.
type Change[T any] struct {
	Op       string   // "add" or "del"
	Iface    string   //
	Instance *Side[T] // the pinned maps; nil: nothing pinned
	Config   *Side[T] // the config file; nil: none given
}

// Side is what a change did to one target.
type Side[T any] struct {
	PinDir    string // the instance's
	Attached  bool   // the instance's program runs
	File      string // the config file's name
	Changed   []T
	Unchanged []T
	Notes     []string
}

func newChange[T any](op string, t *Instance) *Change[T] {
	c := &Change[T]{Op: op, Iface: t.iface}
	if t.pinned != nil {
		c.Instance = &Side[T]{PinDir: t.dir, Attached: t.attached, Changed: []T{}, Unchanged: []T{}}
	}
	if t.file != nil {
		c.Config = &Side[T]{File: t.file.Name(), Changed: []T{}, Unchanged: []T{}}
	}
	return c
}

// RuleChange is one rule a policy change added, replaced, deleted or
// left.
type RuleChange struct {
	Rule vocab.PolicyRule
	// Previous is the rule it replaced (add --replace); nil otherwise.
	Previous *vocab.PolicyRule
}

// SameAction reports whether a and b do the same (the action, and the
// target for forward).
func SameAction(a, b vocab.PolicyRule) bool { return a.Action == b.Action && a.Target == b.Target }

// ActionString is a rule's action as a person reads it: "forward to ADDR".
func ActionString(r vocab.PolicyRule) string {
	if r.Action == vocab.ActionForward {
		return r.Action.String() + " to " + vocab.FormatTarget(r.Target)
	}
	return r.Action.String()
}

// RuleKeyString names the streams a rule applies to.
func RuleKeyString(r vocab.PolicyRule) string {
	if r.AnySID {
		return fmt.Sprintf("mid %d (any sid)", r.MID)
	}
	return fmt.Sprintf("mid %d sid %d", r.MID, r.SID)
}

// sameRuleKey: a and b apply to the same streams.
func sameRuleKey(a, b vocab.PolicyRule) bool {
	return a.MID == b.MID && a.AnySID == b.AnySID && (a.AnySID || a.SID == b.SID)
}

// Origin is where a listing was read, and how the config file given
// compares.
type Origin struct {
	// Source names it: "the running instance on X", or the config file
	// (saying when it does not set the key) when nothing is pinned.
	Source string
	// FileDiffers: the config file given sets the key otherwise than the
	// instance holds it, and a restart with the file applies the file's
	// (FileCount entries).
	FileDiffers bool
	FileCount   int
}

// sameSet compares two lists as sets.
func sameSet[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
