// Package forward readies the forward action's path before its rules take
// effect (docs/forward.md): for each target, the kernel's route (no route
// is an error), the egress interface in the program's devmap with its own
// address as the source, and the next hop's neighbour entry resolved so
// that the first frame finds it.
package forward

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/nexthop"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Prepare readies the path of every forward rule in rules. It changes
// only the forward maps (devmap and sources), never the policy: call it
// before writing the rules, so that a target with no route is refused
// before anything takes effect. A neighbour that cannot be probed is
// logged, not refused: frames that meet it go to userspace, counted.
func Prepare(m *maps.Maps, rules []vocab.PolicyRule, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	for _, r := range rules {
		if r.Action != vocab.ActionForward {
			continue
		}
		dst := r.Target.Addr()
		rt, err := nexthop.Lookup(dst)
		if err != nil {
			return fmt.Errorf("policy %v: target %s: %w", r, dst, err)
		}
		if err := m.SetForwardEgress(rt.Ifindex, rt.Src); err != nil {
			return fmt.Errorf("policy %v: %w", r, err)
		}
		if _, err := nexthop.Probe(rt.Ifindex, rt.NextHop(dst)); err != nil {
			log.Warn("forward: could not start resolving the next hop's neighbour entry; frames that meet it missing go to userspace",
				"target", dst, "next_hop", rt.NextHop(dst), "ifindex", rt.Ifindex, "err", err)
		}
	}
	return nil
}

// LookupInterface resolves the interface the program's fib lookups are
// made from (0: the ingress). The kernel refuses lookups from an interface
// whose forwarding sysctl is off; with forward rules, one named here whose
// forwarding is off for a family a target uses is refused, and none named
// is logged, since the ingress's forwarding is normally off.
func LookupInterface(name string, rules []vocab.PolicyRule, log *slog.Logger) (uint32, error) {
	if log == nil {
		log = slog.Default()
	}
	var v4, v6 bool
	for _, r := range rules {
		if r.Action == vocab.ActionForward {
			v4 = v4 || r.Target.Addr().Is4()
			v6 = v6 || r.Target.Addr().Is6()
		}
	}
	if name == "" {
		if v4 || v6 {
			log.Warn("forward rules without forward_lookup_interface: the program's fib lookups are made from the ingress interface, which the kernel refuses while its IP forwarding is off (frames then go to userspace, counted forward_no_route); see docs/forward.md")
		}
		return 0, nil
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("forward_lookup_interface %s: %w", name, err)
	}
	for _, f := range []struct {
		want bool
		path string
	}{{v4, "/proc/sys/net/ipv4/conf/" + name + "/forwarding"}, {v6, "/proc/sys/net/ipv6/conf/" + name + "/forwarding"}} {
		if !f.want {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return 0, fmt.Errorf("forward_lookup_interface %s: %w", name, err)
		}
		if strings.TrimSpace(string(b)) != "1" {
			return 0, fmt.Errorf("forward_lookup_interface %s: %s is not 1: the kernel refuses fib lookups from it", name, f.path)
		}
	}
	return uint32(ifc.Index), nil
}

// KeepEvery is how often Keep re-readies the forward paths: well inside
// the kernel's neighbour reachable time (30 s by default), so that an
// entry that went stale or failed is probed before frames find it gone.
const KeepEvery = 10 * time.Second

// Keep re-readies the path of every forward rule in m's policy (the live
// one: rules added with `jmxdp policy add` too) every `every` until ctx
// ends: the route (the egress and source maps follow a route change) and
// the neighbour entry (probed when it has no usable address). A target
// that lost its route is logged when that changes and counted per frame
// by the program (forward_no_route or forward_no_source).
func Keep(ctx context.Context, m *maps.Maps, every time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	failing := map[vocab.PolicyRule]string{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rules, err := m.Policies()
		if err != nil {
			log.Warn("forward: cannot read the policy to refresh forward paths", "err", err)
			continue
		}
		for _, r := range rules {
			if r.Action != vocab.ActionForward {
				continue
			}
			err := Prepare(m, []vocab.PolicyRule{r}, log)
			switch {
			case err != nil && failing[r] != err.Error():
				log.Warn("forward: a target's path is gone; its frames go to userspace, counted", "rule", r.String(), "err", err)
				failing[r] = err.Error()
			case err == nil && failing[r] != "":
				log.Info("forward: a target's path is back", "rule", r.String())
				delete(failing, r)
			}
		}
	}
}
