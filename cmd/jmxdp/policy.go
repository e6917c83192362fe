package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/configedit"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/forward"
	"github.com/jmxdp/jmxdp/userspace/runstate"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/spf13/cobra"
)

// `jmxdp policy` and `jmxdp allowlist` change a running (or pinned)
// instance through its pinned maps, with effect on the next packet, and
// with --config FILE write the same change into the config file, so that
// it survives a restart even though a file's policy: and allowlist: keys
// are authoritative at start. docs/cli.md describes both.

// editFlags are the flags the policy and allowlist commands share.
type editFlags struct {
	iface      string
	configPath string
	pinDir     string
	runDir     string
	format     string
}

func (f *editFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.iface, "iface", "i", "", "interface of the instance (required)")
	fl.StringVarP(&f.configPath, "config", "c", "", "also write the change into this config file (jmxdp run --config)")
	fl.StringVar(&f.pinDir, "pin-dir", "", "bpffs directory of pinned maps (default: the config file's capture.pin_dir, else the running instance's, else "+config.DefaultPinDir+")")
	addRunDirFlag(cmd, &f.runDir)
	fl.StringVar(&f.format, "format", "table", "table or json")
}

// target is what a change applies to: the instance's pinned maps, a config
// file, or both.
type target struct {
	iface    string
	dir      string       // PIN_DIR/IFACE
	pinned   *maps.Pinned // nil: nothing pinned there
	attached bool         // a pinned XDP link: the program runs
	file     *configedit.File
	state    *runstate.State // the running instance's state file, when it told where the maps are
}

func (t *target) Close() {
	if t.pinned != nil {
		t.pinned.Close()
	}
	t.file.Close() // the file's edit lock
}

// instanceName names the pinned instance in messages.
func (t *target) instanceName() string {
	if t.attached {
		return fmt.Sprintf("running instance on %s", t.iface)
	}
	return fmt.Sprintf("stopped instance on %s (maps still pinned, no program attached)", t.iface)
}

// checkIfaceName applies the kernel's rules for interface names; the name
// also becomes a directory under the pin directory.
func checkIfaceName(s string) error {
	if s == "" {
		return errors.New("--iface is required")
	}
	if len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\r\v\f") {
		return fmt.Errorf("--iface %q is not an interface name (1 to 15 characters, no '/', ':' or spaces)", s)
	}
	return nil
}

func checkFormat(s string) error {
	if s != "table" && s != "json" {
		return fmt.Errorf("--format %q: want table or json", s)
	}
	return nil
}

// check validates the flags that need no system access.
func (f *editFlags) check() error {
	if err := checkIfaceName(f.iface); err != nil {
		return err
	}
	return checkFormat(f.format)
}

// open loads the config file (if any) and the pinned maps (if any): at
// least one must be there.
func (f *editFlags) open(cmd *cobra.Command) (_ *target, err error) {
	t := &target{iface: f.iface}
	defer func() {
		if err != nil {
			t.Close() // the file's edit lock, the maps
		}
	}()
	base := config.DefaultPinDir
	if f.configPath != "" {
		file, err := configedit.Load(f.configPath)
		if err != nil {
			return nil, err
		}
		t.file = file
		if ifc := file.Config().Interface; ifc != "" && ifc != f.iface {
			return nil, fmt.Errorf("%s configures interface %s, not %s", f.configPath, ifc, f.iface)
		}
		t.file = file
		base = file.Config().Capture.PinDir
	}
	t.dir = daemon.PinDir(base, f.iface)
	if cmd.Flags().Changed("pin-dir") {
		t.dir = daemon.PinDir(f.pinDir, f.iface)
	} else if f.configPath == "" {
		// Where the running instance said it pinned its maps.
		dir, st, err := instanceDir(cmd, f.iface, f.pinDir, "", f.runDir)
		if err != nil {
			return nil, err
		}
		t.dir, t.state = dir, st
	}
	pinned, err := openPinned(t.dir)
	switch {
	case errors.Is(err, maps.ErrNotPinned):
		if t.file == nil {
			return nil, noInstance(f.iface, t.dir, true)
		}
	case err != nil:
		return nil, err
	default:
		t.pinned = pinned
		_, lerr := os.Lstat(daemon.LinkPin(t.dir))
		t.attached = lerr == nil
	}
	return t, nil
}

// liveOnlyNote says that a change made to the instance only is undone at
// its next start, which applies the config (file and flags) and never
// what the pinned maps held.
func liveOnlyNote(t *target, key string) string {
	n := "not written to a config file: live until the next start, which applies the config's " + key + " (give --config FILE to keep it)"
	if s := stateNote(t.state); s != "" {
		n += "; " + s
	}
	return n
}

func noInstance(iface, dir string, hintConfig bool) error {
	msg := fmt.Sprintf("no running instance on %s (nothing pinned in %s)", iface, dir)
	if hintConfig {
		msg += "; give --config FILE to change a stopped instance's configuration"
	}
	return errors.New(msg)
}

// openPinned opens the maps pinned in dir, explaining a permission error.
func openPinned(dir string) (*maps.Pinned, error) {
	p, err := maps.OpenPinned(dir)
	if err == nil || errors.Is(err, maps.ErrNotPinned) {
		return p, err
	}
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("read the pinned maps in %s: %w (needs root: CAP_BPF)", dir, err)
	}
	return nil, fmt.Errorf("read the pinned maps in %s: %w", dir, err)
}

// targetJSON is what a change did to one target.
type targetJSON[T any] struct {
	PinDir    string   `json:"pin_dir,omitempty"`
	Attached  *bool    `json:"attached,omitempty"`
	File      string   `json:"file,omitempty"`
	Changed   []T      `json:"changed"`
	Unchanged []T      `json:"unchanged"`
	Notes     []string `json:"notes,omitempty"`
}

// changeJSON is the --format json output of add and del.
type changeJSON[T any] struct {
	Op       string         `json:"op"`
	Iface    string         `json:"iface"`
	Instance *targetJSON[T] `json:"instance"`
	Config   *targetJSON[T] `json:"config"`
}

func newChange[T any](op string, t *target) *changeJSON[T] {
	c := &changeJSON[T]{Op: op, Iface: t.iface}
	if t.pinned != nil {
		att := t.attached
		c.Instance = &targetJSON[T]{PinDir: t.dir, Attached: &att, Changed: []T{}, Unchanged: []T{}}
	}
	if t.file != nil {
		c.Config = &targetJSON[T]{File: t.file.Name(), Changed: []T{}, Unchanged: []T{}}
	}
	return c
}

// write prints the change: JSON, or a few lines saying what changed where.
func (c *changeJSON[T]) write(w io.Writer, format string, t *target, describe func(T) string) error {
	if format == "json" {
		return writeJSON(w, c)
	}
	past, prep := "added", "to"
	if c.Op == "del" {
		past, prep = "deleted", "from"
	}
	list := func(items []T) string {
		s := make([]string, len(items))
		for i, it := range items {
			s[i] = describe(it)
		}
		return strings.Join(s, ", ")
	}
	if in := c.Instance; in != nil {
		if len(in.Changed) > 0 {
			when := "in effect from the next packet"
			if !t.attached {
				when = "kept when jmxdp run starts again on " + t.iface + " with a config file that does not set this key"
			}
			fmt.Fprintf(w, "%s %s %s the %s (%s): %s\n", past, list(in.Changed), prep, t.instanceName(), in.PinDir, when)
		}
		if len(in.Unchanged) > 0 {
			fmt.Fprintf(w, "the %s already had this: %s\n", t.instanceName(), list(in.Unchanged))
		}
	} else {
		fmt.Fprintf(w, "no running instance on %s (nothing pinned in %s): changed %s only; it applies when jmxdp run starts with it\n",
			t.iface, t.dir, c.Config.File)
	}
	if cf := c.Config; cf != nil {
		if len(cf.Changed) > 0 {
			fmt.Fprintf(w, "%s %s %s %s\n", past, list(cf.Changed), prep, cf.File)
		}
		if len(cf.Unchanged) > 0 {
			fmt.Fprintf(w, "%s already had this: %s\n", cf.File, list(cf.Unchanged))
		}
	}
	for _, tj := range []*targetJSON[T]{c.Instance, c.Config} {
		if tj != nil {
			for _, n := range tj.Notes {
				fmt.Fprintln(w, n)
			}
		}
	}
	return nil
}

// saveConfig writes a changed config file; tests replace it to make the
// write fail.
var saveConfig = func(f *configedit.File) error { return f.Save() }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// ruleJSON is a policy rule in JSON; sid is 0 when any_sid.
type ruleJSON struct {
	MID            uint32 `json:"mid"`
	SID            uint32 `json:"sid"`
	AnySID         bool   `json:"any_sid"`
	Action         string `json:"action"`
	To             string `json:"to,omitempty"` // the forward action's target
	PreviousAction string `json:"previous_action,omitempty"`
}

func toRuleJSON(r vocab.PolicyRule) ruleJSON {
	j := ruleJSON{MID: r.MID, SID: r.SID, AnySID: r.AnySID, Action: r.Action.String()}
	if r.Action == vocab.ActionForward {
		j.To = vocab.FormatTarget(r.Target)
	}
	return j
}

// sameAction: a and b do the same (action, and target for forward).
func sameAction(a, b vocab.PolicyRule) bool { return a.Action == b.Action && a.Target == b.Target }

// actionString is the action as a person reads it: "forward to ADDR".
func actionString(r vocab.PolicyRule) string {
	if r.Action == vocab.ActionForward {
		return r.Action.String() + " to " + vocab.FormatTarget(r.Target)
	}
	return r.Action.String()
}

func describeRule(r ruleJSON) string {
	s := fmt.Sprintf("mid %d sid %d", r.MID, r.SID)
	if r.AnySID {
		s = fmt.Sprintf("mid %d (any sid)", r.MID)
	}
	act := r.Action
	if r.To != "" {
		act += " to " + r.To
	}
	if r.PreviousAction != "" {
		return fmt.Sprintf("%s: %s -> %s", s, r.PreviousAction, act)
	}
	return s + ": " + act
}

func ruleKeyString(r vocab.PolicyRule) string {
	if r.AnySID {
		return fmt.Sprintf("mid %d (any sid)", r.MID)
	}
	return fmt.Sprintf("mid %d sid %d", r.MID, r.SID)
}

func sameRuleKey(a, b vocab.PolicyRule) bool {
	return a.MID == b.MID && a.AnySID == b.AnySID && (a.AnySID || a.SID == b.SID)
}

// ruleFlags are --mid, --sid, --action and --to.
type ruleFlags struct {
	mid, sid, action, to string
}

// parse reads the rule; wantAction is false for del.
func (f *ruleFlags) parse(cmd *cobra.Command, wantAction bool) (vocab.PolicyRule, error) {
	var r vocab.PolicyRule
	if !cmd.Flags().Changed("mid") {
		return r, errors.New("--mid is required (the intercept id, decimal or 0x hex)")
	}
	mid, err := configedit.ParseID(f.mid)
	if err != nil {
		return r, fmt.Errorf("--mid: %w", err)
	}
	if mid > vocab.MaxMID {
		return r, fmt.Errorf("--mid %s: not a 30-bit intercept id (max %#x)", f.mid, vocab.MaxMID)
	}
	r.MID = uint32(mid)
	if s := f.sid; s == "" || strings.EqualFold(s, "any") {
		if cmd.Flags().Changed("sid") && s == "" {
			return r, errors.New(`--sid: empty (give a session id, or "any")`)
		}
		r.AnySID = true
	} else {
		sid, err := configedit.ParseID(s)
		if err != nil {
			return r, fmt.Errorf("--sid: %w", err)
		}
		if sid > 1<<32-1 {
			return r, fmt.Errorf("--sid %s: does not fit in 32 bits (max 0xffffffff)", s)
		}
		r.SID = uint32(sid)
	}
	if wantAction {
		if !cmd.Flags().Changed("action") {
			return r, errors.New("--action is required (capture, count, pass or forward)")
		}
		if r.Action, err = vocab.ParseAction(f.action); err != nil {
			return r, fmt.Errorf("--action: %w", err)
		}
		hasTo := cmd.Flags().Lookup("to") != nil && cmd.Flags().Changed("to")
		switch {
		case r.Action == vocab.ActionForward && !hasTo:
			return r, errors.New("--action forward needs --to IP:PORT, [IPv6]:PORT or an address (the stream's own port)")
		case r.Action != vocab.ActionForward && hasTo:
			return r, fmt.Errorf("--to goes only with --action forward, not %s", r.Action)
		case hasTo:
			if r.Target, err = vocab.ParseTarget(f.to); err != nil {
				return r, fmt.Errorf("--to: %w", err)
			}
		}
	}
	return r, nil
}

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy add|del|list --iface IF [flags]",
		Short: "Show or change the per-stream policy of an instance, live and in its config file",
		Long: `policy changes the per-stream actions of the jmxdp instance on an interface.
A change goes into the instance's pinned maps and applies to the next packet;
with --config FILE it is also written into the file (comments and the rest of
the file kept), so that a restart with that file keeps it. Without a running
or pinned instance, --config FILE changes the file only. Ids are decimal or
0x hex; --sid omitted or "any" means every session of the mid. See docs/cli.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("missing subcommand: jmxdp policy add, del or list")
		},
	}
	cmd.AddCommand(newPolicyAddCmd(), newPolicyDelCmd(), newPolicyListCmd())
	return cmd
}

func newPolicyAddCmd() *cobra.Command {
	var f editFlags
	var rf ruleFlags
	var replace bool
	cmd := &cobra.Command{
		Use:   "add --iface IF --mid M [--sid S|any] --action capture|count|pass|forward [--to IP:PORT] [--replace] [--config FILE]",
		Short: "Add a rule (--replace: change the action of an existing one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			r, err := rf.parse(cmd, true)
			if err != nil {
				return err
			}
			t, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer t.Close()
			c, err := policyAdd(t, r, replace)
			if err != nil {
				return err
			}
			return c.write(cmd.OutOrStdout(), f.format, t, describeRule)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&rf.mid, "mid", "", "intercept id (30 bits, decimal or 0x hex)")
	cmd.Flags().StringVar(&rf.sid, "sid", "", `session id (32 bits), or "any" (the default): every session of the mid`)
	cmd.Flags().StringVar(&rf.action, "action", "", "capture, count, pass or forward")
	cmd.Flags().StringVar(&rf.to, "to", "", "the forward action's target: IP:PORT, [IPv6]:PORT, or an address alone for the stream's own port (docs/forward.md)")
	cmd.Flags().BoolVar(&replace, "replace", false, "change the action of an existing rule for the same mid and sid (in one update: every packet sees the old or the new action)")
	return cmd
}

func policyAdd(t *target, r vocab.PolicyRule, replace bool) (*changeJSON[ruleJSON], error) {
	c := newChange[ruleJSON]("add", t)
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
	if inInst && !sameAction(instOld, r) && !replace {
		return nil, fmt.Errorf("the %s already has a rule for %s (action %s); use --replace to change its action",
			t.instanceName(), ruleKeyString(r), actionString(instOld))
	}
	if inFile && !sameAction(fileOld, r) && !replace {
		return nil, fmt.Errorf("%s already has a rule for %s (action %s); use --replace to change its action",
			t.file.Name(), ruleKeyString(r), actionString(fileOld))
	}
	if t.pinned != nil && r.Action == vocab.ActionForward {
		// The route, egress and neighbour first: no route refuses the
		// rule before the file or the instance changes.
		if err := forward.Prepare(t.pinned.Maps, []vocab.PolicyRule{r}, nil); err != nil {
			return nil, err
		}
	}
	instDone := t.pinned == nil || (inInst && sameAction(instOld, r))
	fileDone := t.file == nil || (inFile && sameAction(fileOld, r))
	if instDone && fileDone {
		return nil, fmt.Errorf("%s: %s already exists in %s: nothing to do", ruleKeyString(r), r.Action, targetsName(t))
	}

	item := toRuleJSON(r)
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
		fi := item
		if inFile {
			fi.PreviousAction = actionString(fileOld)
		}
		c.Config.Changed = append(c.Config.Changed, fi)
	} else if t.file != nil {
		c.Config.Unchanged = append(c.Config.Unchanged, item)
	}

	if t.pinned != nil && !instDone {
		// One map update: a replaced rule changes atomically.
		if err := t.pinned.PutPolicy(r); err != nil {
			return nil, err
		}
		ii := item
		if inInst {
			ii.PreviousAction = actionString(instOld)
		}
		c.Instance.Changed = append(c.Instance.Changed, ii)
	} else if t.pinned != nil {
		c.Instance.Unchanged = append(c.Instance.Unchanged, item)
	}
	if t.pinned != nil && t.file == nil {
		c.Instance.Notes = append(c.Instance.Notes, liveOnlyNote(t, "policy"))
	}

	if fileChanged {
		if err := saveConfig(t.file); err != nil {
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

func targetsName(t *target) string {
	switch {
	case t.pinned != nil && t.file != nil:
		return fmt.Sprintf("the %s and in %s", t.instanceName(), t.file.Name())
	case t.pinned != nil:
		return "the " + t.instanceName()
	}
	return t.file.Name()
}

func newPolicyDelCmd() *cobra.Command {
	var f editFlags
	var rf ruleFlags
	cmd := &cobra.Command{
		Use:   "del --iface IF --mid M [--sid S|any] [--config FILE]",
		Short: "Delete the rule for a mid and sid (or the mid-wide rule)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			r, err := rf.parse(cmd, false)
			if err != nil {
				return err
			}
			t, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer t.Close()
			c, err := policyDel(t, r)
			if err != nil {
				return err
			}
			return c.write(cmd.OutOrStdout(), f.format, t, describeRule)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&rf.mid, "mid", "", "intercept id (30 bits, decimal or 0x hex)")
	cmd.Flags().StringVar(&rf.sid, "sid", "", `session id, or "any" (the default): the mid-wide rule`)
	return cmd
}

func policyDel(t *target, r vocab.PolicyRule) (*changeJSON[ruleJSON], error) {
	c := newChange[ruleJSON]("del", t)
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
		where := targetsName(t)
		if t.file != nil && !fileHasKey {
			where += " (which has no policy key)"
		}
		return nil, fmt.Errorf("no rule for %s in %s", ruleKeyString(r), where)
	}
	if inFile {
		if err := t.file.DeletePolicy(r); err != nil {
			return nil, err
		}
		c.Config.Changed = append(c.Config.Changed, toRuleJSON(fileOld))
	} else if t.file != nil {
		c.Config.Unchanged = append(c.Config.Unchanged, toRuleJSON(r))
		if !fileHasKey {
			c.Config.Notes = append(c.Config.Notes, fmt.Sprintf("%s has no policy key: a start with it applies no rules, so there is nothing to delete there", t.file.Name()))
		} else {
			c.Config.Notes = append(c.Config.Notes, fmt.Sprintf("%s had no rule for %s", t.file.Name(), ruleKeyString(r)))
		}
	}
	if inInst {
		if err := t.pinned.DeletePolicy(r); err != nil {
			return nil, err
		}
		c.Instance.Changed = append(c.Instance.Changed, toRuleJSON(instOld))
	} else if t.pinned != nil {
		c.Instance.Unchanged = append(c.Instance.Unchanged, toRuleJSON(r))
		c.Instance.Notes = append(c.Instance.Notes, fmt.Sprintf("the %s had no rule for %s", t.instanceName(), ruleKeyString(r)))
	}
	if t.pinned != nil && t.file == nil {
		c.Instance.Notes = append(c.Instance.Notes, liveOnlyNote(t, "policy"))
	}
	if inFile {
		if err := saveConfig(t.file); err != nil {
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

func newPolicyListCmd() *cobra.Command {
	return newListCmd("List the rules of the instance (or of the config file when nothing is pinned)", policyList)
}

// newListCmd is `policy list` and `allowlist list`: open the instance (or
// the file) and print with list.
func newListCmd(short string, list func(*cobra.Command, *target, string) error) *cobra.Command {
	var f editFlags
	cmd := &cobra.Command{
		Use:   "list --iface IF [--config FILE] [--format table|json]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			t, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer t.Close()
			return list(cmd, t, f.format)
		},
	}
	f.add(cmd)
	cmd.Flags().Lookup("config").Usage = "config file: listed when nothing is pinned, else compared with the instance"
	return cmd
}

func policyList(cmd *cobra.Command, t *target, format string) error {
	w := cmd.OutOrStdout()
	var rules []vocab.PolicyRule
	var def vocab.Action
	var source string
	if t.pinned != nil {
		var err error
		if rules, err = t.pinned.Policies(); err != nil {
			return err
		}
		s, err := t.pinned.Settings()
		if err != nil {
			return err
		}
		def, source = s.DefaultAction, "the "+t.instanceName()
		if t.file != nil && t.file.Config().PolicySet && !sameRules(rules, t.file.Config().Policy) {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: the policy in %s differs from the instance's: a restart with %s applies the file's (%d rules)\n",
				t.file.Name(), t.file.Name(), len(t.file.Config().Policy))
		}
	} else {
		cfg := t.file.Config()
		rules, def = slices.Clone(cfg.Policy), cfg.DefaultAction
		// The instance's order: by mid, the mid-wide rule first, then sid.
		slices.SortFunc(rules, func(a, b vocab.PolicyRule) int {
			if a.MID != b.MID {
				return cmp.Compare(a.MID, b.MID)
			}
			if a.AnySID != b.AnySID {
				if a.AnySID {
					return -1
				}
				return 1
			}
			return cmp.Compare(a.SID, b.SID)
		})
		source = t.file.Name()
		if !cfg.PolicySet {
			source += " (no policy key: a start applies no rules)"
		}
	}
	if format == "json" {
		out := make([]ruleJSON, len(rules))
		for i, r := range rules {
			out[i] = toRuleJSON(r)
		}
		return writeJSON(w, out)
	}
	if t.pinned == nil {
		fmt.Fprintf(w, "no running instance on %s (nothing pinned in %s); the policy in %s:\n", t.iface, t.dir, source)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MID\tSID\tACTION")
	for _, r := range rules {
		sid := "any"
		if !r.AnySID {
			sid = fmt.Sprintf("%d (0x%x)", r.SID, r.SID)
		}
		fmt.Fprintf(tw, "%d (0x%x)\t%s\t%s\n", r.MID, r.MID, sid, r.Action)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d rules in %s; streams no rule names: %s (default action)\n", len(rules), source, def)
	return nil
}

// sameRules compares two policies as sets.
func sameRules(a, b []vocab.PolicyRule) bool {
	if len(a) != len(b) {
		return false
	}
	for _, r := range a {
		if !slices.Contains(b, r) {
			return false
		}
	}
	return true
}

// prefixJSON is an allowlist entry in JSON.
type prefixJSON struct {
	Prefix string `json:"prefix"`
}

func describePrefix(p prefixJSON) string { return p.Prefix }

func newAllowlistCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "allowlist add|del|list --iface IF [PREFIX...] [flags]",
		Short: "Show or change the routers allowed to send Jmirror, live and in the config file",
		Long: `allowlist changes the router prefixes the jmxdp instance on an interface accepts
Jmirror from (an empty list accepts any source). A change goes into the
instance's pinned maps and applies to the next packet; the kernel's allowlist
switch is turned on only once the prefixes are in, and off before the last one
goes. With --config FILE the change is also written into the file. A bare
address means /32 or /128. See docs/cli.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("missing subcommand: jmxdp allowlist add, del or list")
		},
	}
	cmd.AddCommand(newAllowAddDelCmd("add"), newAllowAddDelCmd("del"), newAllowListCmd())
	return cmd
}

// parsePrefixes reads the arguments, refusing duplicates.
func parsePrefixes(args []string) ([]netip.Prefix, error) {
	if len(args) == 0 {
		return nil, errors.New("give at least one PREFIX (e.g. 192.0.2.0/24, 2001:db8::/32 or an address)")
	}
	var out []netip.Prefix
	for _, s := range args {
		p, err := configedit.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, p) {
			return nil, fmt.Errorf("%s is given twice (as %s)", s, p)
		}
		out = append(out, p)
	}
	return out, nil
}

func newAllowAddDelCmd(op string) *cobra.Command {
	var f editFlags
	short := "Allow routers: add prefixes (a bare address is /32 or /128)"
	if op == "del" {
		short = "Remove prefixes (an empty allowlist accepts any source)"
	}
	cmd := &cobra.Command{
		Use:   op + " --iface IF PREFIX... [--config FILE]",
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			prefixes, err := parsePrefixes(args)
			if err != nil {
				return err
			}
			t, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer t.Close()
			c, err := allowChange(t, op, prefixes)
			if err != nil {
				return err
			}
			return c.write(cmd.OutOrStdout(), f.format, t, describePrefix)
		},
	}
	f.add(cmd)
	return cmd
}

// allowChange adds or deletes prefixes, keeping the kernel's allowlist
// switch on exactly when the list has entries, in the order
// loader.Configure uses: on after the prefixes are in, off before the last
// goes, so that no packet sees an enabled empty list or a half-filled one.
func allowChange(t *target, op string, prefixes []netip.Prefix) (*changeJSON[prefixJSON], error) {
	c := newChange[prefixJSON](op, t)
	add := op == "add"
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
				return nil, fmt.Errorf("%s is already in the allowlist of %s: nothing to do", p, targetsName(t))
			}
			where := targetsName(t)
			if t.file != nil && !fileHasKey {
				where += " (which has no allowlist key)"
			}
			return nil, fmt.Errorf("%s is not in the allowlist of %s", p, where)
		}
		if instNeeds {
			instTodo = append(instTodo, p)
			c.Instance.Changed = append(c.Instance.Changed, prefixJSON{p.String()})
		} else if t.pinned != nil {
			c.Instance.Unchanged = append(c.Instance.Unchanged, prefixJSON{p.String()})
		}
		if fileNeeds {
			fileTodo = append(fileTodo, p)
			c.Config.Changed = append(c.Config.Changed, prefixJSON{p.String()})
		} else if t.file != nil {
			c.Config.Unchanged = append(c.Config.Unchanged, prefixJSON{p.String()})
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

	undo, err := applyAllow(t.pinned, add, inst, instTodo, settings)
	if err != nil {
		return nil, err
	}
	if t.pinned != nil && t.file == nil {
		c.Instance.Notes = append(c.Instance.Notes, liveOnlyNote(t, "allowlist"))
	}
	if t.pinned != nil && !add && len(instTodo) > 0 && len(inst) == len(instTodo) {
		c.Instance.Notes = append([]string{"the instance's allowlist is now empty: it accepts Jmirror from any source"}, c.Instance.Notes...)
	}
	if len(fileTodo) > 0 {
		if err := saveConfig(t.file); err != nil {
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

// applyAllow changes the pinned allowlist gap-free and returns how to undo
// it.
func applyAllow(m *maps.Pinned, add bool, before, todo []netip.Prefix, s vocab.Settings) (func() error, error) {
	nothing := func() error { return nil }
	if m == nil || len(todo) == 0 {
		return nothing, nil
	}
	setEnabled := func(on bool) error {
		s.AllowlistEnabled = on
		return m.SetSettings(s)
	}
	wasOn := s.AllowlistEnabled
	if add {
		for _, p := range todo {
			if err := m.AddAllow(p); err != nil {
				return nil, err
			}
		}
		if !wasOn {
			if err := setEnabled(true); err != nil {
				return nil, err
			}
		}
		return func() error {
			if len(before) == 0 {
				if err := setEnabled(false); err != nil {
					return err
				}
			}
			for _, p := range todo {
				if err := m.DelAllow(p); err != nil {
					return err
				}
			}
			return nil
		}, nil
	}
	emptied := len(before) == len(todo)
	if emptied && wasOn {
		if err := setEnabled(false); err != nil {
			return nil, err
		}
	}
	for _, p := range todo {
		if err := m.DelAllow(p); err != nil {
			return nil, err
		}
	}
	return func() error {
		for _, p := range todo {
			if err := m.AddAllow(p); err != nil {
				return err
			}
		}
		if emptied && wasOn {
			return setEnabled(true)
		}
		return nil
	}, nil
}

func newAllowListCmd() *cobra.Command {
	return newListCmd("List the allowed router prefixes (of the config file when nothing is pinned)", allowList)
}

func allowList(cmd *cobra.Command, t *target, format string) error {
	w := cmd.OutOrStdout()
	var list []netip.Prefix
	var source string
	enabled := true
	if t.pinned != nil {
		var err error
		if list, err = t.pinned.Allowlist(); err != nil {
			return err
		}
		s, err := t.pinned.Settings()
		if err != nil {
			return err
		}
		enabled, source = s.AllowlistEnabled, "the "+t.instanceName()
		if fc := t.file; fc != nil && fc.Config().AllowlistSet && !samePrefixes(list, fc.Config().Allowlist) {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: the allowlist in %s differs from the instance's: a restart with %s applies the file's (%d prefixes)\n",
				fc.Name(), fc.Name(), len(fc.Config().Allowlist))
		}
	} else {
		cfg := t.file.Config()
		list, source = slices.Clone(cfg.Allowlist), t.file.Name()
		slices.SortFunc(list, func(a, b netip.Prefix) int {
			return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
		})
		if !cfg.AllowlistSet {
			source += " (no allowlist key: a start accepts any router)"
		}
	}
	if format == "json" {
		out := make([]prefixJSON, len(list))
		for i, p := range list {
			out[i] = prefixJSON{p.String()}
		}
		return writeJSON(w, out)
	}
	if t.pinned == nil {
		fmt.Fprintf(w, "no running instance on %s (nothing pinned in %s); the allowlist in %s:\n", t.iface, t.dir, source)
	}
	fmt.Fprintln(w, "PREFIX")
	for _, p := range list {
		fmt.Fprintln(w, p)
	}
	switch {
	case len(list) == 0:
		fmt.Fprintf(w, "empty allowlist in %s: Jmirror from any source is accepted\n", source)
	case !enabled:
		fmt.Fprintf(w, "%d prefixes in %s, but its allowlist switch is off: any source is accepted\n", len(list), source)
	default:
		fmt.Fprintf(w, "%d prefixes in %s: Jmirror from other sources is dropped and counted as untrusted\n", len(list), source)
	}
	return nil
}

func samePrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for _, p := range a {
		if !slices.Contains(b, p) {
			return false
		}
	}
	return true
}
