package loader_test

import (
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The program caches each stream's action in its stream entry, and in the
// cache slot the stream holds (on this CPU: the test runs pinned to one).
// Every change to the policy or the default action must reach the very
// next frame of a stream whose action is cached, whichever rule it adds or
// removes.
func TestPolicyCacheFollowsEveryChange(t *testing.T) {
	p := loadProgram(t, loader.Config{DefaultAction: vocab.ActionCount})
	pinCPU(t, 0)
	f := frame(t, mirror(7, 1, ipv4Echo()))
	steps := []struct {
		name   string
		change func() error
		want   vocab.Verdict
	}{
		{"default count", func() error { return nil }, drop},
		{"cached count", func() error { return nil }, drop},
		{"mid rule pass", func() error {
			return p.Maps.PutPolicy(vocab.PolicyRule{MID: 7, AnySID: true, Action: vocab.ActionPass})
		}, pass},
		{"exact rule count", func() error { return p.Maps.PutPolicy(vocab.PolicyRule{MID: 7, SID: 1, Action: vocab.ActionCount}) }, drop},
		{"exact rule replaced by pass", func() error { return p.Maps.PutPolicy(vocab.PolicyRule{MID: 7, SID: 1, Action: vocab.ActionPass}) }, pass},
		{"exact rule deleted, mid rule pass", func() error { return p.Maps.DeletePolicy(vocab.PolicyRule{MID: 7, SID: 1}) }, pass},
		{"mid rule count", func() error {
			return p.Maps.PutPolicy(vocab.PolicyRule{MID: 7, AnySID: true, Action: vocab.ActionCount})
		}, drop},
		{"mid rule deleted, default count", func() error { return p.Maps.DeletePolicy(vocab.PolicyRule{MID: 7, AnySID: true}) }, drop},
		{"default pass", func() error { return p.Maps.SetSettings(vocab.Settings{DefaultAction: vocab.ActionPass}) }, pass},
		{"another stream's rule", func() error {
			return p.Maps.PutPolicy(vocab.PolicyRule{MID: 8, AnySID: true, Action: vocab.ActionCount})
		}, pass},
	}
	var gen uint32
	for i, s := range steps {
		if err := s.change(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		v, err := p.Run(f)
		if err != nil {
			t.Fatalf("%s: run: %v", s.name, err)
		}
		if v != s.want {
			t.Fatalf("step %d (%s): verdict %v, want %v", i, s.name, v, s.want)
		}
		// The entry must hold the action just applied under the current
		// generation: that is what the next frame reuses.
		if err := p.Objects().JmPolicyGen.Lookup(uint32(0), &gen); err != nil {
			t.Fatal(err)
		}
		// The slot holds the stream from its first frame on: its hits
		// take the action from there.
		slot := slotOn(t, p, k1(7, 1), 0)
		if slot.Valid == 0 || slot.Key.Mid != 7 {
			t.Fatalf("%s: the stream holds no slot: %+v", s.name, slot)
		}
		wantAction := uint32(vocab.ActionCount)
		if s.want == pass {
			wantAction = uint32(vocab.ActionPass)
		}
		const valid = 1 << 31
		if got := uint32(slot.PolicyCache); got != valid|wantAction || uint32(slot.PolicyCache>>32) != gen {
			t.Fatalf("%s: policy_cache %#x, want action %d valid under generation %#x", s.name, slot.PolicyCache, wantAction, gen)
		}
		st, ok, err := p.Maps.Stream(k1(7, 1))
		if err != nil || !ok || st.Inner[vocab.InnerIPv4] != uint64(i+1) {
			t.Fatalf("%s: stream packets %d (%v, %v), want %d", s.name, st.Inner[vocab.InnerIPv4], ok, err, i+1)
		}
	}
}
