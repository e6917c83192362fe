// Command jmxdp demultiplexes Juniper Jmirror mirror traffic with XDP.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

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
	var logFormat, logLevel string
	root := &cobra.Command{
		Use:           "jmxdp",
		Short:         "Demultiplex Juniper Jmirror lawful-intercept mirror traffic with XDP",
		Version:       currentBuild().short(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if verbose {
				logLevel = "debug"
			}
			h, err := newLogHandler(cmd.ErrOrStderr(), logFormat, logLevel)
			if err != nil {
				return err
			}
			slog.SetDefault(slog.New(h))
			return nil
		},
	}
	root.SetVersionTemplate("jmxdp {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.BoolVarP(&verbose, "verbose", "v", false, "log debug messages (--log-level debug)")
	pf.StringVar(&logFormat, "log-format", "text", "log format: text (key=value) or json (one object a line)")
	pf.StringVar(&logLevel, "log-level", "info", "least severe messages logged: debug, info, warn or error")
	root.AddCommand(newDecodeCmd(), newExportCmd(), newGenCmd(), newLabCmd(), newRunCmd(), newDetachCmd(), newDemoCmd(), newPolicyCmd(), newAllowlistCmd(), newStatsCmd(), newBenchCmd(),
		newVersionCmd(), newConfigCmd(), newStreamHashCmd(), newBenchChildCmd())
	return root
}

// newLogHandler is the handler of every command's log, on w (stderr).
func newLogHandler(w io.Writer, format, level string) (slog.Handler, error) {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level: %q is not a level (want debug, info, warn or error)", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not a log format (want text or json)", format)
}

func main() { os.Exit(runMain(os.Args[1:])) }

// runMain runs jmxdp's command line args and returns the exit code.
func runMain(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "jmxdp:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}
