package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/spf13/cobra"
)

// labGeteuid is os.Geteuid, replaceable by tests.
var labGeteuid = os.Geteuid

func newLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab up|down [flags]",
		Short: "Create or remove a veth lab to run jmxdp on without a router",
		Long: `lab builds a veth pair to try jmxdp on. The host end stays in the root
namespace: attach jmxdp there as to a NIC. The router end lives in a network
namespace of its own, with a trivial XDP program attached (pinned under
/sys/fs/bpf/jmxdp-lab/NAME) so that XDP can redirect frames into it; send
generated traffic from there. The default addresses and MAC are those the
generated demo traffic uses (collector 203.0.113.10, 02:00:00:00:00:02).
The host end gets its address without a prefix route (noprefixroute) and a
host route (/32) to the router end only: the lab never shadows real hosts
in its range in the root namespace.

The lab stays until 'jmxdp lab down'. Both need root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("missing subcommand: jmxdp lab up or jmxdp lab down")
		},
	}
	cmd.AddCommand(newLabUpCmd(), newLabDownCmd())
	return cmd
}

// labFlags are the flags up and down share.
type labFlags struct {
	name, hostIface, routerIface string
}

func (f *labFlags) add(cmd *cobra.Command) {
	d := lab.Default()
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", d.Name, "lab name: the router side's network namespace")
	fl.StringVar(&f.hostIface, "host-iface", d.HostIface, "host end of the veth pair, in the root namespace (jmxdp attaches here)")
	fl.StringVar(&f.routerIface, "router-iface", d.RouterIface, "router end of the veth pair, inside the namespace")
}

func (f *labFlags) config() lab.Config {
	return lab.Config{Name: f.name, HostIface: f.hostIface, RouterIface: f.routerIface}.WithDefaults()
}

func requireRoot(what string) error {
	if labGeteuid() != 0 {
		return &exitError{code: 1, err: fmt.Errorf("%s needs root (network namespaces, BPF): run it with sudo", what)}
	}
	return nil
}

func newLabUpCmd() *cobra.Command {
	var (
		f                    labFlags
		hostAddr, routerAddr string
	)
	cmd := &cobra.Command{
		Use:   "up [--name N] [--host-iface X] [--router-iface Y] [--host-addr A/L] [--router-addr B/L]",
		Short: "Create the lab: a namespace and a veth pair into it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := f.config()
			var err error
			if cfg.HostAddr, err = netip.ParsePrefix(hostAddr); err != nil {
				return fmt.Errorf("--host-addr: %w", err)
			}
			if cfg.RouterAddr, err = netip.ParsePrefix(routerAddr); err != nil {
				return fmt.Errorf("--router-addr: %w", err)
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			if err := requireRoot("jmxdp lab up"); err != nil {
				return err
			}
			l, err := lab.Up(cfg)
			if err != nil {
				return err
			}
			printLab(cmd.OutOrStdout(), l)
			return nil
		},
	}
	f.add(cmd)
	d := lab.Default()
	cmd.Flags().StringVar(&hostAddr, "host-addr", d.HostAddr.String(), "address/length of the host end")
	cmd.Flags().StringVar(&routerAddr, "router-addr", d.RouterAddr.String(), "address/length of the router end")
	return cmd
}

func printLab(w io.Writer, l *lab.Lab) {
	fmt.Fprintf(w, "lab %s is up\n", l.Name)
	fmt.Fprintf(w, "  host end    %-15s %-18s %s  (root namespace: attach jmxdp here)\n", l.HostIface, l.HostAddr, l.HostMAC)
	fmt.Fprintf(w, "  router end  %-15s %-18s %s  (namespace %s, xdp_pass attached in %s mode)\n", l.RouterIface, l.RouterAddr, l.RouterMAC, l.Name, l.XDPMode)
	fmt.Fprintf(w, "  MTU %d; router end's XDP link pinned at %s\n", l.MTU, l.PinPath())
	fmt.Fprintf(w, "next:\n")
	fmt.Fprintf(w, "  sudo jmxdp run --iface %s --out ./demo-out\n", l.HostIface)
	fmt.Fprintf(w, "  sudo jmxdp gen --iface %s --netns %s\n", l.RouterIface, l.Name)
	fmt.Fprintf(w, "  sudo ip netns exec %s ping -c1 %s\n", l.Name, l.HostAddr.Addr())
	fmt.Fprintf(w, "  sudo jmxdp lab down%s\n", l.Flags())
}

func newLabDownCmd() *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "down [--name N] [--host-iface X]",
		Short: "Remove the lab (nothing to do if it is gone)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := f.config()
			if err := cfg.Validate(); err != nil {
				return err
			}
			if err := requireRoot("jmxdp lab down"); err != nil {
				return err
			}
			if err := lab.Down(cfg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s is down\n", cfg.Name)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}
