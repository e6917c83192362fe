package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jmxdp/jmxdp/userspace/instance"
	"github.com/jmxdp/jmxdp/userspace/runstate"
	"github.com/spf13/cobra"
)

// where is how the commands that find an instance were told to look:
// --iface, --pin-dir when given, and --run-dir. instance.Locate and
// instance.Open decide from it (and --config) where its maps are.
func where(cmd *cobra.Command, iface, pinDirFlag, runDir string) instance.Where {
	return instance.Where{Iface: iface, PinBase: pinDirFlag, PinBaseSet: cmd.Flags().Changed("pin-dir"), RunDir: runDir}
}

// instanceDir is where the instance on iface has its maps (PIN_DIR/IFACE):
// see instance.Locate.
func instanceDir(cmd *cobra.Command, iface, pinDirFlag, configPath, runDir string) (string, *runstate.State, error) {
	return instance.Locate(where(cmd, iface, pinDirFlag, runDir), configPath)
}

// addRunDirFlag is the hidden --run-dir that tests point at a directory
// of their own.
func addRunDirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "run-dir", runstate.DefaultDir, "directory of the running instances' state files")
	cmd.Flags().MarkHidden("run-dir")
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

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
