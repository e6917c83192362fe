// Package forward readies the forward action's path before its rules take
// effect (docs/forward.md): for each target, the kernel's route (no route
// is an error), the egress interface in the program's devmap with its own
// address as the source, and the next hop's neighbour entry resolved so
// that the first frame finds it.
package forward

import (
	"fmt"
	"log/slog"

	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/nexthop"
)

// Prepare readies the path of every forward rule in rules. It changes
// only the forward maps (devmap and sources), never the policy: call it
// before writing the rules, so that a target with no route is refused
// before anything takes effect. A neighbour that cannot be probed is
// logged, not refused: frames that meet it go to userspace, counted.
func Prepare(m *maps.Maps, rules []maps.PolicyRule, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	for _, r := range rules {
		if r.Action != maps.ActionForward {
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
