package main

import (
	"errors"
	"fmt"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/spf13/cobra"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check a configuration file",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a config file as `jmxdp run --config FILE` reads it and print the effective config",
		Long: `check reads FILE as ` + "`jmxdp run --config FILE`" + ` would, without flags, and
prints the configuration run would use: every key with its value, defaults
included, as YAML that run accepts. It exits 1, with one FILE:LINE: KEY:
MESSAGE line per problem, if the file is refused. It needs no privileges and
changes nothing: it does not look at the interface, the pinned maps or the
output directory, which run checks when it starts.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err == nil {
				err = cfg.Validate()
			}
			return reportConfig(cmd, args[0], cfg, err)
		},
	})
	return cmd
}

// reportConfig is the output of `config check` and `run --check-config`:
// on success the effective configuration on stdout, otherwise every
// problem on stderr, one a line, and exit status 1. file is the config
// file, "" when there is none.
func reportConfig(cmd *cobra.Command, file string, cfg config.Config, err error) error {
	if err != nil {
		problems := splitErrors(err)
		for _, p := range problems {
			var ce *config.Error
			// Validate names the key but not the file, since a value may
			// have come from a flag; here the file is known.
			if errors.As(p, &ce) && ce.File == "" && file != "" {
				c := *ce
				c.File = file
				p = &c
			}
			fmt.Fprintln(cmd.ErrOrStderr(), p)
		}
		what := file
		if what == "" {
			what = "the flags"
		}
		return &exitError{code: 1, err: fmt.Errorf("%s: refused (%s)", what, plural(len(problems), "problem", "problems"))}
	}
	out, err := cfg.Marshal()
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	src := "the defaults"
	if file != "" {
		src = file
	}
	fmt.Fprintf(w, "# The effective configuration of jmxdp run, from %s with the flags applied:\n# every key with its value, defaults included.\n", src)
	_, err = w.Write(out)
	return err
}

// splitErrors undoes errors.Join, which config uses for several problems.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []error{err}
}
