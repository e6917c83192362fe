// Command jmxdp demultiplexes Juniper Jmirror mirror traffic with XDP.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/jmxdp/jmxdp/userspace/bench"
	"github.com/spf13/cobra"
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRootCmd() *cobra.Command {
	var verbose bool
	root := &cobra.Command{
		Use:           "jmxdp",
		Short:         "Demultiplex Juniper Jmirror lawful-intercept mirror traffic with XDP",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})))
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug messages")
	root.AddCommand(newDecodeCmd(), newGenCmd(), newLabCmd(), newRunCmd(), newDetachCmd(), newDemoCmd(), newPolicyCmd(), newAllowlistCmd(), newStatsCmd(), newBenchCmd(), newStreamHashCmd())
	return root
}

func main() {
	// `jmxdp bench` re-executes jmxdp as its traffic sender: play that part
	// if this is such a process.
	bench.RunChildIfAsked()
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "jmxdp:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
