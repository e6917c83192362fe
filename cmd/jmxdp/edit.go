package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/instance"
	"github.com/spf13/cobra"
)

// `jmxdp policy` and `jmxdp allowlist` change a running (or pinned)
// instance through its pinned maps, with effect on the next packet, and
// with --config FILE write the same change into the config file, so that
// it survives a restart even though a file's policy: and allowlist: keys
// are authoritative at start. docs/cli.md describes both; the
// transactions are userspace/instance's.

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

// check validates the flags that need no system access.
func (f *editFlags) check() error {
	if err := checkIfaceName(f.iface); err != nil {
		return err
	}
	return checkFormat(f.format)
}

// open opens the instance and, with --config, its file: at least one
// must be there.
func (f *editFlags) open(cmd *cobra.Command) (*instance.Instance, error) {
	return instance.Open(where(cmd, f.iface, f.pinDir, f.runDir), f.configPath)
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

// toChangeJSON renders a change's items with item.
func toChangeJSON[S, T any](c *instance.Change[S], item func(S) T) *changeJSON[T] {
	side := func(s *instance.Side[S], inst bool) *targetJSON[T] {
		if s == nil {
			return nil
		}
		j := &targetJSON[T]{File: s.File, Changed: []T{}, Unchanged: []T{}, Notes: s.Notes}
		if inst {
			att := s.Attached
			j.PinDir, j.Attached = s.PinDir, &att
		}
		for _, x := range s.Changed {
			j.Changed = append(j.Changed, item(x))
		}
		for _, x := range s.Unchanged {
			j.Unchanged = append(j.Unchanged, item(x))
		}
		return j
	}
	return &changeJSON[T]{Op: c.Op, Iface: c.Iface, Instance: side(c.Instance, true), Config: side(c.Config, false)}
}

// write prints the change: JSON, or a few lines saying what changed where.
func (c *changeJSON[T]) write(w io.Writer, format string, t *instance.Instance, describe func(T) string) error {
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
			if !t.Attached() {
				when = "kept when jmxdp run starts again on " + t.Iface() + " with a config file that does not set this key"
			}
			fmt.Fprintf(w, "%s %s %s the %s (%s): %s\n", past, list(in.Changed), prep, t.Name(), in.PinDir, when)
		}
		if len(in.Unchanged) > 0 {
			fmt.Fprintf(w, "the %s already had this: %s\n", t.Name(), list(in.Unchanged))
		}
	} else {
		fmt.Fprintf(w, "no running instance on %s (nothing pinned in %s): changed %s only; it applies when jmxdp run starts with it\n",
			t.Iface(), t.Dir(), c.Config.File)
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

// newListCmd is `policy list` and `allowlist list`: open the instance (or
// the file) and print with list.
func newListCmd(short string, list func(*cobra.Command, *instance.Instance, string) error) *cobra.Command {
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

// warnFileDiffers warns, on stderr, that the config file given sets key
// otherwise than the instance holds it.
func warnFileDiffers(cmd *cobra.Command, t *instance.Instance, key string, o instance.Origin, unit string) {
	if o.FileDiffers {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: the %s in %s differs from the instance's: a restart with %s applies the file's (%d %s)\n",
			key, t.File(), t.File(), o.FileCount, unit)
	}
}
