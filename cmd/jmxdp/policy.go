package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/jmxdp/jmxdp/userspace/configedit"
	"github.com/jmxdp/jmxdp/userspace/instance"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/spf13/cobra"
)

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

// ruleChangeJSON is a rule a change touched, with the action it replaced.
func ruleChangeJSON(c instance.RuleChange) ruleJSON {
	j := toRuleJSON(c.Rule)
	if c.Previous != nil {
		j.PreviousAction = instance.ActionString(*c.Previous)
	}
	return j
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
	cmd.AddCommand(newPolicyAddCmd(), newPolicyDelCmd(), newListCmd("List the rules of the instance (or of the config file when nothing is pinned)", policyList))
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
			c, err := t.AddPolicy(r, replace)
			if err != nil {
				return err
			}
			return toChangeJSON(c, ruleChangeJSON).write(cmd.OutOrStdout(), f.format, t, describeRule)
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
			c, err := t.DeletePolicy(r)
			if err != nil {
				return err
			}
			return toChangeJSON(c, ruleChangeJSON).write(cmd.OutOrStdout(), f.format, t, describeRule)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&rf.mid, "mid", "", "intercept id (30 bits, decimal or 0x hex)")
	cmd.Flags().StringVar(&rf.sid, "sid", "", `session id, or "any" (the default): the mid-wide rule`)
	return cmd
}

func policyList(cmd *cobra.Command, t *instance.Instance, format string) error {
	w := cmd.OutOrStdout()
	l, err := t.Policy()
	if err != nil {
		return err
	}
	warnFileDiffers(cmd, t, "policy", l.Origin, "rules")
	if format == "json" {
		out := make([]ruleJSON, len(l.Rules))
		for i, r := range l.Rules {
			out[i] = toRuleJSON(r)
		}
		return writeJSON(w, out)
	}
	if !t.Pinned() {
		fmt.Fprintf(w, "no running instance on %s (nothing pinned in %s); the policy in %s:\n", t.Iface(), t.Dir(), l.Source)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MID\tSID\tACTION")
	for _, r := range l.Rules {
		sid := "any"
		if !r.AnySID {
			sid = fmt.Sprintf("%d (0x%x)", r.SID, r.SID)
		}
		fmt.Fprintf(tw, "%d (0x%x)\t%s\t%s\n", r.MID, r.MID, sid, r.Action)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d rules in %s; streams no rule names: %s (default action)\n", len(l.Rules), l.Source, l.Default)
	return nil
}
