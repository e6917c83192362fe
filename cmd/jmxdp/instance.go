package main

import (
	"fmt"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/runstate"
	"github.com/spf13/cobra"
)

// instanceDir is where the instance on iface has its maps (PIN_DIR/IFACE),
// for the commands that find an instance: --pin-dir when given, else the
// config file's capture.pin_dir (--config), else what the running `jmxdp
// run` recorded in its state file under /run/jmxdp, else the default. The
// state file is what makes `stats --iface X` find a daemon whose pin dir
// came from its config file. runDir is runstate.DefaultDir but in tests.
func instanceDir(cmd *cobra.Command, iface, pinDirFlag, configPath, runDir string) (dir string, st *runstate.State, err error) {
	if cmd.Flags().Changed("pin-dir") {
		return daemon.PinDir(pinDirFlag, iface), nil, nil
	}
	if configPath != "" {
		cfg, err := config.Load(configPath)
		if err != nil {
			return "", nil, err
		}
		return daemon.PinDir(cfg.Capture.PinDir, iface), nil, nil
	}
	if s, _, err := runstate.Read(runDir, iface); err == nil && s.PinDir != "" {
		return s.PinDir, &s, nil
	}
	return daemon.PinDir(config.DefaultPinDir, iface), nil, nil
}

// addRunDirFlag is the hidden --run-dir that tests point at a directory
// of their own.
func addRunDirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "run-dir", runstate.DefaultDir, "directory of the running instances' state files")
	cmd.Flags().MarkHidden("run-dir")
}

// stateNote says which config file the running instance was started with,
// when the command was not given one: a change made only live is undone
// by that file at the next start.
func stateNote(st *runstate.State) string {
	if st == nil || st.Config == "" {
		return ""
	}
	return fmt.Sprintf("the instance was started with --config %s: give --config %s to keep this change across a restart", st.Config, st.Config)
}
