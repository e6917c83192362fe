package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/logid"
)

// newStreamHashCmd maps streams to the names logs give them with
// hide_ids on, and back.
func newStreamHashCmd() *cobra.Command {
	var out, cfgPath, mid, sid string
	cmd := &cobra.Command{
		Use:   "stream-hash (--mid M [--sid S] | HASH) [--out DIR | --config FILE]",
		Short: "Name a stream as the logs do with hide_ids on (stream-HASH), or find the stream of a HASH",
		Long: `With metrics.hide_ids on, jmxdp's logs name a stream stream-HASH and an
intercept intercept-HASH instead of their ids: a keyed hash whose key is the
output directory's .jmxdp-log-key (root-only). stream-hash prints the name of
--mid M --sid S (or of --mid M alone), or, given a HASH from a log, the stream
directories under the output directory it belongs to. It reads the key of
--out (default: output.dir of --config, else /var/lib/jmxdp/streams).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := config.DefaultOutputDir
			if cfgPath != "" {
				cfg, err := config.Load(cfgPath)
				if err != nil {
					return err
				}
				dir = cfg.Output.Dir
			}
			if cmd.Flags().Changed("out") {
				dir = out
			}
			if (len(args) == 1) == (mid != "") {
				return errors.New("give --mid (and --sid), or a HASH")
			}
			if sid != "" && mid == "" {
				return errors.New("--sid needs --mid")
			}
			n, err := logid.Load(dir)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no log key in %s: jmxdp has not run there with hide_ids on", dir)
			} else if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if len(args) == 1 {
				found, err := n.Find(dir, args[0])
				if err != nil {
					return err
				}
				if len(found) == 0 {
					return fmt.Errorf("no stream directory under %s has the name %s", dir, args[0])
				}
				for _, f := range found {
					fmt.Fprintln(w, f)
				}
				return nil
			}
			m, err := parseID(mid, "--mid")
			if err != nil {
				return err
			}
			if sid == "" {
				fmt.Fprintln(w, n.InterceptName(m))
				return nil
			}
			s, err := parseID(sid, "--sid")
			if err != nil {
				return err
			}
			fmt.Fprintln(w, n.StreamName(m, s))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&mid, "mid", "", "intercept id (decimal or 0x hex)")
	fl.StringVar(&sid, "sid", "", "session id (decimal or 0x hex)")
	fl.StringVarP(&out, "out", "o", config.DefaultOutputDir, "output directory whose key to use")
	fl.StringVarP(&cfgPath, "config", "c", "", "take the output directory from this config file")
	return cmd
}

// parseID reads decimal or 0x hex; a leading zero is decimal, as in the
// config file, never octal.
func parseID(s, flag string) (uint32, error) {
	base, digits := 10, s
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		base, digits = 16, s[2:]
	}
	v, err := strconv.ParseUint(digits, base, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q: not a 32-bit decimal or 0x hex id", flag, s)
	}
	return uint32(v), nil
}
