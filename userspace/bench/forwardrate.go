package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/xmit"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The forward rate's target: behind a second veth pair in the root
// namespace, reached by a host route (never a prefix route there).
var (
	fwdRateSrc    = netip.MustParseAddr("198.18.99.1")
	fwdRateTarget = netip.MustParseAddr("198.18.99.50")
)

const fwdRatePort = 30031

// fwdRateResult is the forward rate's medians.
type fwdRateResult struct {
	fwd, drop float64 // Mpps
	note      string
}

// forwardRate blasts one forwarded stream at the host end of a fresh veth
// lab, whose jmxdp redirects each frame, re-originated to the target, out
// of a second veth pair; the target end runs xdp_drop, so the rate is the
// frames that arrive there (its XDP drops as veth counts them) over the
// sender's busy time. Next to it, alternating in the same lab, xdp_drop
// on the host end itself: the XDP_DROP limit of that path.
func forwardRate(runs int, blast time.Duration, progress io.Writer) (_ fwdRateResult, err error) {
	cfg := lab.Random("jmxfwd")
	l, err := lab.Up(cfg)
	if err != nil {
		return fwdRateResult{}, err
	}
	defer func() {
		if derr := lab.Down(cfg); derr != nil {
			fmt.Fprintf(progress, "bench: forward rate: %v\n", derr)
		}
	}()
	tag := fmt.Sprintf("%d", os.Getpid()%100000)
	egress, target, fib, fibPeer := "jmxfe"+tag, "jmxft"+tag, "jmxfl"+tag, "jmxfp"+tag
	defer func() {
		// Deleting one end of a veth pair deletes both.
		for _, d := range []string{egress, fib} {
			_ = exec.Command("ip", "link", "del", d).Run()
		}
	}()
	tmac, err := fwdRatePath(egress, target, fib, fibPeer)
	if err != nil {
		return fwdRateResult{}, err
	}
	inner := gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, lineRateInner-28)
	frame, err := gen.Mirror{DstMAC: l.HostMAC, Router: router, Collector: l.HostAddr.Addr(), Inner: inner}.Frame()
	if err != nil {
		return fwdRateResult{}, err
	}
	p, err := loader.Load(loader.Options{MaxStreams: 4096, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fwdRateResult{}, err
	}
	defer p.Close()
	rules := []vocab.PolicyRule{{MID: 1, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fwdRateTarget, fwdRatePort)}}
	if err := p.Configure(loader.Config{DefaultAction: vocab.ActionCount, Policies: rules, ForwardLookupInterface: fib}); err != nil {
		return fwdRateResult{}, fmt.Errorf("forward rate: configure: %w", err)
	}
	// The target end receives redirected frames only with an XDP program
	// of its own (docs/forward.md): xdp_drop, which counts them.
	td, err := xmit.AttachDrop(target)
	if err != nil {
		return fwdRateResult{}, err
	}
	defer td.Close()
	xo := xmit.Options{
		Iface: l.RouterIface, Netns: l.Name, Templates: [][]byte{frame},
		Intercepts: 1, Sessions: 1, BaseMID: 1, BaseSID: 1, Duration: blast, Threads: 1,
		// The program rewrites each frame in place: the generator restores
		// the template's headers, for the baseline's blasts too.
		RestoreHeaders: true,
	}
	var fwdRates, dropRates []float64
	var sentF, gotF, sentD, gotD, progSent uint64
	rate := func(n uint64, st xmit.Stats) float64 { return float64(n) / busySeconds(st) / 1e6 }
	runDrop := func() error {
		st, dropped, err := dropBlast(l, xo)
		if err != nil {
			return err
		}
		sentD += st.Sent
		gotD += dropped
		dropRates = append(dropRates, rate(dropped, st))
		return nil
	}
	runFwd := func() (err error) {
		if _, err := p.Attach(l.HostIface, loader.ModeDriver); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, p.Detach()) }()
		before, err := xmit.XDPDrops(target)
		if err != nil {
			return err
		}
		cb, err := p.Maps.Counters()
		if err != nil {
			return err
		}
		st, err := xmit.Run(context.Background(), xo)
		if err != nil {
			return err
		}
		after, err := xmit.XDPDrops(target)
		if err != nil {
			return err
		}
		ca, err := p.Maps.Counters()
		if err != nil {
			return err
		}
		sentF += st.Sent
		gotF += after - before
		progSent += ca[vocab.StatFwdSent] - cb[vocab.StatFwdSent]
		fwdRates = append(fwdRates, rate(after-before, st))
		return nil
	}
	if err := alternate(runs, runDrop, runFwd, func(i int) {
		fmt.Fprintf(progress, "bench: forward rate: run %d/%d\n", i+1, runs)
	}); err != nil {
		return fwdRateResult{}, err
	}
	f, d := median(fwdRates), median(dropRates)
	if !(f > 0 && d > 0) {
		return fwdRateResult{}, fmt.Errorf("forward rate: forwarded %.3g Mpps, xdp_drop %.3g Mpps: nothing received (target MAC %s)", f, d, tmac)
	}
	return fwdRateResult{fwd: f, drop: d, note: fmt.Sprintf(
		"over %d runs: forward: sent %d, the program forwarded %d, the target end received %d (with any frame the egress end sends on its own once up, such as IPv6 link-local traffic); xdp_drop: sent %d, dropped %d",
		runs, sentF, progSent, gotF, sentD, gotD)}, nil
}

// fwdRatePath makes the forward rate's path in the root namespace: the
// egress veth pair (egress, with the source address as a /32, and the
// target end up), a host route and a permanent neighbour entry for the
// target, and the fib lookup interface (a veth end left down, forwarding
// on: docs/forward.md). Returns the target end's MAC.
func fwdRatePath(egress, target, fib, fibPeer string) (net.HardwareAddr, error) {
	if err := ipCmds(
		[]string{"link", "add", egress, "type", "veth", "peer", "name", target},
		[]string{"link", "set", egress, "up"},
		[]string{"link", "set", target, "up"},
		[]string{"link", "add", fib, "type", "veth", "peer", "name", fibPeer},
	); err != nil {
		return nil, err
	}
	if out, err := exec.Command("sysctl", "-qw", "net.ipv4.conf."+fib+".forwarding=1").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sysctl forwarding on %s: %v: %s", fib, err, out)
	}
	ifc, err := net.InterfaceByName(target)
	if err != nil {
		return nil, err
	}
	err = ipCmds(
		[]string{"addr", "add", fwdRateSrc.String() + "/32", "dev", egress},
		[]string{"route", "add", fwdRateTarget.String() + "/32", "dev", egress, "src", fwdRateSrc.String()},
		[]string{"neigh", "replace", fwdRateTarget.String(), "lladdr", ifc.HardwareAddr.String(), "dev", egress, "nud", "permanent"},
	)
	return ifc.HardwareAddr, err
}

func ipCmds(cmds ...[]string) error {
	for _, c := range cmds {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}
