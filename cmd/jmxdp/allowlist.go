package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/jmxdp/jmxdp/userspace/configedit"
	"github.com/jmxdp/jmxdp/userspace/instance"
	"github.com/spf13/cobra"
)

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
	cmd.AddCommand(newAllowAddDelCmd("add"), newAllowAddDelCmd("del"), newListCmd("List the allowed router prefixes (of the config file when nothing is pinned)", allowList))
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
			c, err := t.ChangeAllowlist(op == "add", prefixes)
			if err != nil {
				return err
			}
			return toChangeJSON(c, func(p netip.Prefix) prefixJSON { return prefixJSON{p.String()} }).write(cmd.OutOrStdout(), f.format, t, describePrefix)
		},
	}
	f.add(cmd)
	return cmd
}

func allowList(cmd *cobra.Command, t *instance.Instance, format string) error {
	w := cmd.OutOrStdout()
	l, err := t.Allowlist()
	if err != nil {
		return err
	}
	warnFileDiffers(cmd, t, "allowlist", l.Origin, "prefixes")
	list, source := l.Prefixes, l.Source
	if format == "json" {
		out := make([]prefixJSON, len(list))
		for i, p := range list {
			out[i] = prefixJSON{p.String()}
		}
		return writeJSON(w, out)
	}
	if !t.Pinned() {
		fmt.Fprintf(w, "no running instance on %s (nothing pinned in %s); the allowlist in %s:\n", t.Iface(), t.Dir(), source)
	}
	fmt.Fprintln(w, "PREFIX")
	for _, p := range list {
		fmt.Fprintln(w, p)
	}
	switch {
	case len(list) == 0:
		fmt.Fprintf(w, "empty allowlist in %s: Jmirror from any source is accepted\n", source)
	case !l.Enabled:
		fmt.Fprintf(w, "%d prefixes in %s, but its allowlist switch is off: any source is accepted\n", len(list), source)
	default:
		fmt.Fprintf(w, "%d prefixes in %s: Jmirror from other sources is dropped and counted as untrusted\n", len(list), source)
	}
	return nil
}
