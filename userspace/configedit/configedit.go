// Package configedit changes the `policy:` and `allowlist:` lists of a
// `jmxdp run` configuration file in place, for `jmxdp policy` and
// `jmxdp allowlist --config FILE`.
//
// An edit works on the file's yaml.Node tree: the tree says where the list,
// its items and the next key are, and the change is made there in the text,
// so that everything else in the file stays byte for byte as it was: other
// keys, comments, blank lines, quoting, hex ids, alignment. A new item takes
// the style of its list (flow `[a, b]` or block `- a`; a policy rule is
// written as a flow mapping `{mid: 60, sid: 1, action: count}` unless the
// list's rules are block mappings). A key the file lacks is appended at the
// end of the file. The comment lines directly above a deleted block item go
// with it.
//
// Every result is read back with config.Parse and must be the old
// configuration with exactly the change: if a layout defeats the text edit
// (a flow mapping as the whole document, say), the edited tree is encoded
// by yaml.v3 instead (comments kept, blank lines not), and if that does not
// give the change either, the edit is refused and the file left alone.
// Lists written with YAML anchors or aliases are refused: an edit there
// would change what the alias means elsewhere.
//
// File.Save writes atomically: a temporary file in the same directory with
// the original's permissions (and owner, when allowed), synced, renamed
// over the original, then the directory synced. A reader sees the old file
// or the new one, never a mix.
package configedit

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

var (
	// ErrExists: the list already has an item for that key (a policy rule
	// for the same mid and sid, whatever its action; the same prefix).
	ErrExists = errors.New("already in the file")
	// ErrNotFound: the list has no such item.
	ErrNotFound = errors.New("not in the file")
	// ErrAlias: the list uses YAML anchors or aliases and is not edited.
	ErrAlias = errors.New("written with YAML anchors or aliases: edit it by hand")
)

// The top-level keys this package edits.
const (
	KeyPolicy    = "policy"
	KeyAllowlist = "allowlist"
)

// Doc is the text of a configuration file and what it configures.
type Doc struct {
	name string
	data []byte
	cfg  config.Config
	// treeEdits counts the edits made by encoding the tree (the fallback
	// for unusual layouts, which loses blank lines), for tests.
	treeEdits int
}

// Parse checks data as config.Parse does (name is used in messages) and
// returns it ready for editing. A file jmxdp run would refuse is refused.
func Parse(data []byte, name string) (*Doc, error) {
	cfg, err := config.Parse(data, name)
	if err != nil {
		return nil, err
	}
	return &Doc{name: name, data: slices.Clone(data), cfg: cfg}, nil
}

// Bytes is the current text.
func (d *Doc) Bytes() []byte { return slices.Clone(d.data) }

// Config is what the current text configures.
func (d *Doc) Config() config.Config { return d.cfg }

// Name is the name used in messages.
func (d *Doc) Name() string { return d.name }

// sameRule reports whether a and b are for the same (mid, sid or any sid).
func sameRule(a, b vocab.PolicyRule) bool {
	return a.MID == b.MID && a.AnySID == b.AnySID && (a.AnySID || a.SID == b.SID)
}

func ruleName(r vocab.PolicyRule) string {
	if r.AnySID {
		return fmt.Sprintf("mid %d (any sid)", r.MID)
	}
	return fmt.Sprintf("mid %d sid %d", r.MID, r.SID)
}

// FindPolicy returns the file's rule for r's (mid, sid), if any.
func (d *Doc) FindPolicy(r vocab.PolicyRule) (vocab.PolicyRule, bool) {
	i := slices.IndexFunc(d.cfg.Policy, func(x vocab.PolicyRule) bool { return sameRule(x, r) })
	if i < 0 {
		return vocab.PolicyRule{}, false
	}
	return d.cfg.Policy[i], true
}

// HasAllow reports whether the allowlist holds exactly p.
func (d *Doc) HasAllow(p netip.Prefix) bool { return slices.Contains(d.cfg.Allowlist, p) }

// AddPolicy appends rule r, creating the policy key if the file has none.
// A rule for the same (mid, sid) is ErrExists, whatever its action.
func (d *Doc) AddPolicy(r vocab.PolicyRule) error { return d.AddPolicies([]vocab.PolicyRule{r}) }

// AddPolicies appends rules in one edit (see AddPolicy); nothing is
// added if one of them is refused.
func (d *Doc) AddPolicies(rules []vocab.PolicyRule) error {
	want := d.cfg
	want.Policy, want.PolicySet = slices.Clone(d.cfg.Policy), true
	c := change{key: KeyPolicy}
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			return err
		}
		if i := slices.IndexFunc(want.Policy, func(x vocab.PolicyRule) bool { return sameRule(x, r) }); i >= 0 {
			return fmt.Errorf("%s: rule for %s (action %s): %w", d.name, ruleName(r), want.Policy[i].Action, ErrExists)
		}
		want.Policy = append(want.Policy, r)
		c.items = append(c.items, ruleItem(r))
	}
	if len(rules) == 0 {
		return nil
	}
	return d.apply(c, want)
}

// SetPolicyAction changes the action of the file's rule for r's (mid, sid)
// to r.Action, in place. No such rule is ErrNotFound.
func (d *Doc) SetPolicyAction(r vocab.PolicyRule) error {
	if err := r.Validate(); err != nil {
		return err
	}
	i := slices.IndexFunc(d.cfg.Policy, func(x vocab.PolicyRule) bool { return sameRule(x, r) })
	if i < 0 {
		return fmt.Errorf("%s: no rule for %s: %w", d.name, ruleName(r), ErrNotFound)
	}
	old := d.cfg.Policy[i]
	if old.Action == r.Action && old.Target == r.Target {
		return nil
	}
	if old.Action == vocab.ActionForward || r.Action == vocab.ActionForward {
		// A forward rule has a to: key the in-place action edit does not
		// write: the rule is rewritten whole, at the end of the list.
		if err := d.DeletePolicy(r); err != nil {
			return err
		}
		return d.AddPolicy(r)
	}
	want := d.cfg
	want.Policy = slices.Clone(d.cfg.Policy)
	want.Policy[i].Action = r.Action
	return d.apply(change{key: KeyPolicy, match: ruleMatcher(r), action: r.Action.String()}, want)
}

// DeletePolicy removes the rule for r's (mid, sid); r.Action is ignored.
// The key stays, with an empty list if it was the last rule: the file
// still says what the policy is.
func (d *Doc) DeletePolicy(r vocab.PolicyRule) error {
	i := slices.IndexFunc(d.cfg.Policy, func(x vocab.PolicyRule) bool { return sameRule(x, r) })
	if i < 0 {
		return fmt.Errorf("%s: no rule for %s: %w", d.name, ruleName(r), ErrNotFound)
	}
	want := d.cfg
	want.Policy = slices.Delete(slices.Clone(d.cfg.Policy), i, i+1)
	return d.apply(change{key: KeyPolicy, match: ruleMatcher(r), del: true}, want)
}

// AddAllow appends prefix p to the allowlist, creating the key if the file
// has none. p must have no host bits set.
func (d *Doc) AddAllow(p netip.Prefix) error { return d.AddAllows([]netip.Prefix{p}) }

// AddAllows appends prefixes in one edit (see AddAllow); nothing is added
// if one of them is refused.
func (d *Doc) AddAllows(prefixes []netip.Prefix) error {
	want := d.cfg
	want.Allowlist, want.AllowlistSet = slices.Clone(d.cfg.Allowlist), true
	c := change{key: KeyAllowlist}
	for _, p := range prefixes {
		if err := config.CheckPrefix(p); err != nil {
			return err
		}
		if slices.Contains(want.Allowlist, p) {
			return fmt.Errorf("%s: allowlist prefix %s: %w", d.name, p, ErrExists)
		}
		want.Allowlist = append(want.Allowlist, p)
		c.items = append(c.items, prefixItem(p))
	}
	if len(prefixes) == 0 {
		return nil
	}
	return d.apply(c, want)
}

// DeleteAllow removes prefix p from the allowlist. The key stays, with an
// empty list if it was the last prefix (then any source is trusted).
func (d *Doc) DeleteAllow(p netip.Prefix) error {
	i := slices.Index(d.cfg.Allowlist, p)
	if i < 0 {
		return fmt.Errorf("%s: allowlist prefix %s: %w", d.name, p, ErrNotFound)
	}
	want := d.cfg
	want.Allowlist = slices.Delete(slices.Clone(d.cfg.Allowlist), i, i+1)
	return d.apply(change{key: KeyAllowlist, match: prefixMatcher(p), del: true}, want)
}

// change is one edit of the list under key: append items (match nil), or
// find the item match accepts and delete it (del) or set its action.
type change struct {
	key    string
	match  func(n *yaml.Node) bool
	items  []newItem
	del    bool
	action string
}

// apply makes the change, in the text if possible, else in the encoded
// tree, and keeps the result only if it configures want.
func (d *Doc) apply(c change, want config.Config) error {
	var errs []error
	for i, edit := range []func([]byte, change) ([]byte, error){editText, editTree} {
		out, err := edit(d.data, c)
		if errors.Is(err, ErrAlias) {
			return fmt.Errorf("%s: %s is %w", d.name, c.key, err)
		}
		if err == nil {
			var got config.Config
			if got, err = config.Parse(out, d.name); err == nil {
				if err = sameConfig(got, want); err == nil {
					d.data, d.cfg = out, got
					if i > 0 {
						d.treeEdits++
					}
					return nil
				}
			}
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("%s: could not edit %s in place; change the file by hand: %w", d.name, c.key, errors.Join(errs...))
}

// sameConfig reports how got differs from want, or nil.
func sameConfig(got, want config.Config) error {
	if !slices.Equal(got.Policy, want.Policy) || got.PolicySet != want.PolicySet {
		return fmt.Errorf("edit gave policy %v, want %v", got.Policy, want.Policy)
	}
	if !slices.Equal(got.Allowlist, want.Allowlist) || got.AllowlistSet != want.AllowlistSet {
		return fmt.Errorf("edit gave allowlist %v, want %v", got.Allowlist, want.Allowlist)
	}
	got.Policy, want.Policy, got.Allowlist, want.Allowlist = nil, nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		return errors.New("edit changed other keys")
	}
	return nil
}

// ParseID reads an intercept or session id as the config file does:
// decimal or 0x hex; leading zeros are decimal; no sign, 0o, 0b or _.
func ParseID(s string) (uint64, error) {
	t := s
	base := 10
	if len(t) > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X') {
		base, t = 16, t[2:]
	}
	if t == "" || strings.ContainsAny(t, "+-_") {
		return 0, fmt.Errorf("%q is not a decimal or 0x hex integer", s)
	}
	v, err := strconv.ParseUint(t, base, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%s is out of range", s)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal or 0x hex integer", s)
	}
	return v, nil
}

// ParsePrefix reads an allowlist entry as the config file does: a prefix
// without host bits, or an address meaning /32 or /128. Zones are refused.
func ParsePrefix(s string) (netip.Prefix, error) { return config.ParsePrefix(s) }

// File is a configuration file opened for editing.
type File struct {
	*Doc
	path string // symlinks resolved: Save replaces the target, not the link
	perm os.FileMode
	uid  int
	gid  int
	lock *os.File // held from Load to Close; nil where none can be made
}

// lockWait bounds how long Load waits for another editor of the file.
const lockWait = 30 * time.Second

// lockFile takes an exclusive lock on .NAME.lock next to the config file,
// waiting up to lockWait for another `policy`/`allowlist --config` run. A
// lock on the file itself would not do: Save replaces it by a rename, and
// a waiter would then hold a lock on the old inode. Where the directory
// is read-only (a Kubernetes ConfigMap) there is no lock, and Save fails
// on its own.
func lockFile(real string) (*os.File, error) {
	dir, base := filepath.Split(real)
	path := filepath.Join(dir, "."+base+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config lock %s: %w", path, err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("config lock %s: %w (another jmxdp policy or allowlist run is editing the file)", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close releases the file's edit lock. Another editor's Load waits for it.
func (f *File) Close() error {
	if f == nil || f.lock == nil {
		return nil
	}
	err := f.lock.Close()
	f.lock = nil
	return err
}

// Load reads and checks the file at path, and holds its edit lock until
// Close: concurrent editors (policy add --config from two shells) take
// turns, each reading what the other saved, so no change is lost. It must
// exist: a misspelt path must not quietly become a new file that nothing
// reads.
func Load(path string) (f *File, err error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	lock, err := lockFile(real)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && lock != nil {
			lock.Close()
		}
	}()
	st, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("config %s: not a regular file", path)
	}
	data, err := os.ReadFile(real)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	doc, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	f = &File{Doc: doc, path: real, perm: st.Mode().Perm(), uid: -1, gid: -1, lock: lock}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		f.uid, f.gid = int(sys.Uid), int(sys.Gid)
	}
	return f, nil
}

// Path is the file written by Save (the target of a symlink).
func (f *File) Path() string { return f.path }

// Save writes the current text over the file atomically, keeping its
// permissions and, when allowed, its owner.
func (f *File) Save() error {
	return writeAtomic(f.path, f.data, f.perm, f.uid, f.gid)
}

// WriteAtomic replaces path with data: a temporary file next to it, with
// mode perm, synced and renamed over path.
func WriteAtomic(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, data, perm, -1, -1)
}

func writeAtomic(path string, data []byte, perm os.FileMode, uid, gid int) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if uid >= 0 && (uid != os.Geteuid() || gid != os.Getegid()) {
		// Only root may give a file away; anyone else keeps it as their own.
		if err := tmp.Chown(uid, gid); err != nil && os.Geteuid() == 0 {
			return err
		}
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
