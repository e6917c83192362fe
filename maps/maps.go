package maps

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Maps wraps the program's maps with typed accessors.
type Maps struct {
	m *bpf.Maps
	// retire orders RetireIdle against the readers that sum streams and
	// router totals together (EachStreamAndRouters).
	retire sync.RWMutex
}

// New wraps maps loaded (or reopened from pins) elsewhere; it does not own
// them: the loader closes them.
func New(m *bpf.Maps) *Maps { return &Maps{m: m} }

const batchSize = 4096

func mapName(mp *ebpf.Map) string {
	if info, err := mp.Info(); err == nil && info.Name != "" {
		return info.Name
	}
	return mp.String()
}

// Streams returns every entry of the stream table, sorted by (mid, sid,
// router). Callers that only need sums should use EachStream, which holds
// no copy of the table.
func (m *Maps) Streams() ([]vocab.Stream, error) {
	var out []vocab.Stream
	if err := m.EachStream(func(s vocab.Stream) { out = append(out, s) }); err != nil {
		return nil, err
	}
	vocab.SortStreams(out)
	return out, nil
}

// Stream reads one stream's exact counts: its table entry plus the cache
// slots that hold it (streamExact); ok is false when it counted nothing.
func (m *Maps) Stream(k vocab.StreamKey) (vocab.StreamStats, bool, error) {
	key := streamKeyToBPF(k)
	return m.streamExact(&key)
}

// StreamCapacity is the size of the stream table.
func (m *Maps) StreamCapacity() uint32 { return m.m.JmStreams.MaxEntries() }

// Counters sums the per-CPU global counters.
func (m *Maps) Counters() (vocab.Counters, error) {
	var per []bpf.Counters
	var c vocab.Counters
	if err := m.m.JmStats.Lookup(uint32(0), &per); err != nil {
		return c, fmt.Errorf("read counters: %w", err)
	}
	for i := range per {
		for s := range c {
			c[s] += per[i].Count[s]
		}
	}
	return c, nil
}

// SetPort turns decoding of UDP destination port p on or off.
func (m *Maps) SetPort(p uint16, on bool) error {
	var v uint32
	if on {
		v = portDecode
	}
	if err := m.m.JmPorts.Put(uint32(p), v); err != nil {
		return fmt.Errorf("set port %d: %w", p, err)
	}
	return nil
}

const portDecode = 1 // JM_PORT_DECODE

// Ports lists the ports being decoded, ascending.
func (m *Maps) Ports() ([]uint16, error) {
	var out []uint16
	err := readAll(m.m.JmPorts, func(k *uint32, v *uint32) {
		if *v&portDecode != 0 {
			out = append(out, uint16(*k))
		}
	})
	slices.Sort(out)
	return slices.Compact(out), err
}

// SetPorts makes ports exactly the decoded set.
func (m *Maps) SetPorts(ports []uint16) error {
	old, err := m.Ports()
	if err != nil {
		return err
	}
	for _, p := range old {
		if !slices.Contains(ports, p) {
			if err := m.SetPort(p, false); err != nil {
				return err
			}
		}
	}
	for _, p := range ports {
		if err := m.SetPort(p, true); err != nil {
			return err
		}
	}
	return nil
}

// Settings reads the global switches.
func (m *Maps) Settings() (vocab.Settings, error) {
	var v bpf.Settings
	if err := m.m.JmConfig.Lookup(uint32(0), &v); err != nil {
		return vocab.Settings{}, fmt.Errorf("read settings: %w", err)
	}
	return vocab.Settings{DefaultAction: vocab.Action(v.DefaultAction), AllowlistEnabled: v.AllowlistEnabled != 0}, nil
}

// SetSettings writes the global switches.
func (m *Maps) SetSettings(s vocab.Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	v := bpf.Settings{DefaultAction: uint32(s.DefaultAction)}
	if s.AllowlistEnabled {
		v.AllowlistEnabled = 1
	}
	if err := m.m.JmConfig.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	// The default action is part of what the program caches per stream.
	return m.newPolicyGeneration()
}

// newPolicyGeneration retires the actions the program cached per stream:
// call it after every change to the policy or the default action. The
// value is random rather than incremented, so two processes changing the
// policy at once cannot both write the same next value and leave a cache
// filled in between looking current.
func (m *Maps) newPolicyGeneration() error {
	var cur uint32
	if err := m.m.JmPolicyGen.Lookup(uint32(0), &cur); err != nil {
		return fmt.Errorf("read policy generation: %w", err)
	}
	next := rand.Uint32()
	for next == cur {
		next = rand.Uint32()
	}
	if err := m.m.JmPolicyGen.Put(uint32(0), next); err != nil {
		return fmt.Errorf("write policy generation: %w", err)
	}
	return nil
}

// PutPolicy adds or replaces a rule.
func (m *Maps) PutPolicy(r vocab.PolicyRule) error {
	if err := r.Validate(); err != nil {
		return err
	}
	k := policyKeyToBPF(r)
	if err := m.m.JmPolicy.Put(&k, policyValueToBPF(r)); err != nil {
		return fmt.Errorf("put policy %v: %w", r, err)
	}
	return m.newPolicyGeneration()
}

// DeletePolicy removes the rule for r's (MID, SID/AnySID); its Action is
// ignored. Deleting an absent rule is not an error.
func (m *Maps) DeletePolicy(r vocab.PolicyRule) error {
	k := policyKeyToBPF(r)
	if err := m.m.JmPolicy.Delete(&k); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return fmt.Errorf("delete policy %v: %w", r, err)
	}
	return m.newPolicyGeneration()
}

// Policies lists the rules, sorted by (mid, any-sid first, sid).
func (m *Maps) Policies() ([]vocab.PolicyRule, error) {
	var out []vocab.PolicyRule
	err := readAll(m.m.JmPolicy, func(k *bpf.PolicyKey, v *bpf.PolicyValue) {
		out = append(out, vocab.PolicyRule{
			MID: k.Mid, SID: k.Sid, AnySID: k.Scope == uint32(bpf.ScopeMID),
			Action: vocab.Action(v.Action), Target: policyTargetFromBPF(v),
		})
	})
	vocab.SortRules(out)
	return out, err
}

// AddAllow adds a trusted router prefix. The allowlist only takes effect
// once Settings.AllowlistEnabled is set (the loader does it when non-empty).
func (m *Maps) AddAllow(p netip.Prefix) error {
	if err := vocab.CheckAllowPrefix(p); err != nil {
		return fmt.Errorf("add allowlist prefix: %w", err)
	}
	k := allowKey(p)
	if err := m.m.JmAllowlist.Put(&k, uint32(1)); err != nil {
		return fmt.Errorf("add allowlist prefix %v: %w", p, err)
	}
	return nil
}

// DelAllow removes a prefix; removing an absent one is not an error.
func (m *Maps) DelAllow(p netip.Prefix) error {
	k := allowKey(p)
	if err := m.m.JmAllowlist.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete allowlist prefix %v: %w", p, err)
	}
	return nil
}

// Allowlist lists the trusted prefixes.
func (m *Maps) Allowlist() ([]netip.Prefix, error) {
	var out []netip.Prefix
	var k bpf.AllowKey
	var v uint32
	// LPM tries support neither batch ops nor stable iteration under
	// concurrent change; they are small, iterate.
	it := m.m.JmAllowlist.Iterate()
	for it.Next(&k, &v) {
		out = append(out, allowPrefix(&k))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate allowlist: %w", err)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out, nil
}

// Untrusted lists sources refused by the allowlist.
func (m *Maps) Untrusted() ([]vocab.UntrustedSource, error) {
	var out []vocab.UntrustedSource
	err := readAll(m.m.JmUntrusted, func(k *bpf.Addr, v *bpf.UntrustedValue) {
		out = append(out, vocab.UntrustedSource{Addr: addrFrom16(k.Addr), Packets: v.Packets, LastSeen: time.Duration(v.LastSeenNs)})
	})
	slices.SortFunc(out, func(a, b vocab.UntrustedSource) int { return a.Addr.Compare(b.Addr) })
	return out, err
}

// Fragments lists the tracked outer IPv4 datagrams.
func (m *Maps) Fragments() (map[vocab.FragKey]vocab.FragEntry, error) {
	out := make(map[vocab.FragKey]vocab.FragEntry)
	err := readAll(m.m.JmFrags, func(k *bpf.FragKey, v *bpf.FragValue) {
		e := vocab.FragEntry{MID: v.Mid, SID: v.Sid, Action: vocab.Action(v.Action), InnerLen: v.InnerLen,
			FirstSeen: time.Duration(v.FirstNs), Fingerprint: v.Fingerprint}
		switch e.Action {
		case vocab.ActionUntrusted:
			e.Untrusted = true
			e.Action = 0
		case vocab.ActionNotJmirror:
			e.NotJmirror = true
			e.Action = 0
		}
		out[fragKeyFromBPF(k)] = e
	})
	return out, err
}

// SetXSK registers an AF_XDP socket for an RX queue.
func (m *Maps) SetXSK(queue uint32, fd int) error {
	if err := m.m.JmXsks.Put(queue, uint32(fd)); err != nil {
		return fmt.Errorf("register AF_XDP socket for queue %d: %w", queue, err)
	}
	return nil
}

// DeleteXSK unregisters the socket of an RX queue.
func (m *Maps) DeleteXSK(queue uint32) error {
	if err := m.m.JmXsks.Delete(queue); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister AF_XDP socket of queue %d: %w", queue, err)
	}
	return nil
}

// Candidates returns the ports not decoded on which Jmirror-looking traffic
// was seen (port discovery), by port.
func (m *Maps) Candidates() ([]vocab.Candidate, error) {
	var out []vocab.Candidate
	err := readAll(m.m.JmCandidates, func(k *uint32, v *bpf.CandidateValue) {
		if v.Packets > 0 && *k < 1<<16 {
			out = append(out, vocab.Candidate{Port: uint16(*k), Packets: v.Packets, Bytes: v.Bytes})
		}
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b vocab.Candidate) int { return int(a.Port) - int(b.Port) })
	return out, nil
}

// EachStream calls fn with every stream's exact counts (its table entry
// plus the cache slots holding it: eachStreamExact), in the kernel's order
// for streams no slot holds, reading the table in batches through one
// reused buffer: memory does not grow with the table.
//
// Each key is seen once. A batch read of a hash map walks it bucket by
// bucket (the cursor is a bucket index, a bucket is copied whole under its
// lock, and a key always hashes to the same bucket of a table that never
// resizes), so an entry added or removed meanwhile is seen at most once.
// Per-key iteration, the fallback on kernels without batch operations,
// restarts from the first bucket when the key it stands on was deleted,
// so there keys already seen are skipped.
func (m *Maps) EachStream(fn func(vocab.Stream)) error {
	return m.eachStreamExact(fn)
}

// readAll reads a map in batches through one reused buffer, falling back
// to per-key iteration on kernels or map types without batch support. fn
// sees each key once: a batch read returns a key at most once (see
// EachStream), and the fallback, which restarts from the first bucket when
// its current key is deleted (an LRU eviction), skips keys it has given.
func readAll[K comparable, V any](mp *ebpf.Map, fn func(*K, *V)) error {
	keys := make([]K, batchSize)
	vals := make([]V, batchSize)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := mp.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			fn(&keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) && n == 0 {
			break
		}
		if err != nil {
			return fmt.Errorf("batch read %s: %w", mapName(mp), err)
		}
	}
	seen := make(map[K]struct{})
	var k K
	var v V
	it := mp.Iterate()
	for it.Next(&k, &v) {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		fn(&k, &v)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate %s: %w", mapName(mp), err)
	}
	return nil
}

// PutStreams writes n entries into the stream table, the i-th being
// stream(i), in batches: a benchmark fills a million-entry table in well
// under a second. Packets is not stored (the kernel keeps it as the sum of
// Inner). The table refuses entries past its capacity: the write fails.
func (m *Maps) PutStreams(n int, stream func(i int) vocab.Stream) error {
	keys := make([]bpf.StreamKey, 0, min(n, batchSize))
	vals := make([]bpf.StreamValue, 0, min(n, batchSize))
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		if _, err := m.m.JmStreams.BatchUpdate(keys, vals, nil); err != nil {
			return fmt.Errorf("write %d streams: %w", len(keys), err)
		}
		keys, vals = keys[:0], vals[:0]
		return nil
	}
	for i := range n {
		s := stream(i)
		keys = append(keys, streamKeyToBPF(s.StreamKey))
		vals = append(vals, streamStatsToBPF(s.StreamStats))
		if len(keys) == cap(keys) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

func streamStatsToBPF(s vocab.StreamStats) bpf.StreamValue {
	v := bpf.StreamValue{
		Bytes:       s.Bytes,
		FirstSeenNs: uint64(s.FirstSeen),
		LastSeenNs:  uint64(s.LastSeen),
	}
	copy(v.Inner[:], s.Inner[:])
	return v
}

// ForwardStreams reads the per-stream forward counters.
func (m *Maps) ForwardStreams() (map[vocab.StreamKey]vocab.ForwardStats, error) {
	out := make(map[vocab.StreamKey]vocab.ForwardStats)
	if m.m.JmFwdStreams == nil { // pinned by a jmxdp without the forward action
		return out, nil
	}
	err := readAll(m.m.JmFwdStreams, func(k *bpf.StreamKey, v *bpf.FwdStreamValue) {
		s := vocab.ForwardStats{Packets: v.Packets, Bytes: v.Bytes}
		copy(s.Userspace[:], v.Reason[:])
		out[streamKeyFromBPF(k)] = s
	})
	return out, err
}

// SetForwardEgress lets the program send forwarded frames out of ifindex
// (the devmap) from src, that interface's own address for src's family.
func (m *Maps) SetForwardEgress(ifindex uint32, src netip.Addr) error {
	if m.m.JmFwdDevs == nil || m.m.JmFwdSrc == nil {
		return errors.New("the running instance's program has no forward action: restart it with this jmxdp")
	}
	if err := m.m.JmFwdDevs.Put(ifindex, ifindex); err != nil {
		return fmt.Errorf("add egress interface %d to the forward devmap: %w", ifindex, err)
	}
	k := fwdSrcKey(ifindex, src)
	v := bpf.Addr{Addr: addrTo16(src)}
	if err := m.m.JmFwdSrc.Put(&k, &v); err != nil {
		return fmt.Errorf("set forward source %s of interface %d: %w", src, ifindex, err)
	}
	return nil
}

// SetForwardLookupInterface sets the interface the program's fib lookups
// are made from (0: the ingress interface); see docs/forward.md.
func (m *Maps) SetForwardLookupInterface(ifindex uint32) error {
	v := bpf.FwdSettings{FibIfindex: ifindex}
	if err := m.m.JmFwdCfg.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("write forward settings: %w", err)
	}
	return nil
}

// ForwardTarget is the forward target of (mid, sid): the exact rule's,
// else the mid-wide rule's, as the program looks it up.
func (m *Maps) ForwardTarget(mid, sid uint32) (netip.AddrPort, bool, error) {
	for _, r := range []vocab.PolicyRule{{MID: mid, SID: sid}, {MID: mid, AnySID: true}} {
		k := policyKeyToBPF(r)
		var v bpf.PolicyValue
		err := m.m.JmPolicy.Lookup(&k, &v)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return netip.AddrPort{}, false, fmt.Errorf("read policy of mid %d: %w", mid, err)
		}
		if vocab.Action(v.Action) == vocab.ActionForward {
			return policyTargetFromBPF(&v), true, nil
		}
	}
	return netip.AddrPort{}, false, nil
}
