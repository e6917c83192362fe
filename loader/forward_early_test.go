package loader_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The flags and reason of struct jm_xsk_meta (bpf/include/structs.h,
// consts.h), which BPF_PROG_TEST_RUN returns in front of a frame handed
// to userspace.
const (
	testMetaLen       = 32
	testMetaOuterV6   = 0x1
	testMetaFirstFrag = 0x2
	testMetaLaterFrag = 0x4
	testMetaHeld      = 0x8
	testMetaForward   = 0x80
)

// TestForwardEarlyFragmentsTestRun: BPF_PROG_TEST_RUN on a forwarded
// datagram whose later fragment comes before its first, outer IPv4 and
// IPv6. The early fragment is held (handed to userspace, JM_META_HELD)
// and leaves the mark JM_ACTION_EARLY under its datagram's key; the first
// fragment finds it, is recorded JM_ACTION_FORWARD_USER and handed to
// userspace unchanged (JM_META_FORWARD, reason frag_early), and so is the
// fragment after it; a datagram in order is still forwarded by the
// program. Without an AF_XDP socket here, handed frames fall back to
// XDP_PASS (counted capture_failed).
func TestForwardEarlyFragmentsTestRun(t *testing.T) {
	n := newFwdNet(t)
	p, err := loader.Load(loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rules := []vocab.PolicyRule{
		{MID: 50, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fwdTarget4, 30031)},
		{MID: 51, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fwdTarget6, 0)},
	}
	if err := netns.Do(n.ns, func() error {
		return p.Configure(loader.Config{Policies: rules, ForwardLookupInterface: "jmfib"})
	}); err != nil {
		t.Fatalf("configure: %v", err)
	}
	big := gen.InnerIPv4UDP(subA, subB, 1000, 2000, make([]byte, 3000))
	for _, tc := range []struct {
		name          string
		inOrder, late gen.Mirror
	}{
		{"outer IPv4", gen.Mirror{Router: router1, Collector: collector, MID: 50, SID: 1, Inner: big, MTU: 1500, IPID: 5001},
			gen.Mirror{Router: router1, Collector: collector, MID: 50, SID: 2, Inner: big, MTU: 1500, IPID: 5002}},
		{"outer IPv6", gen.Mirror{Router: router6, Collector: coll6, MID: 51, SID: 1, Inner: big, MTU: 1500, UDPChecksum: true, IPv6FragID: 0x5001},
			gen.Mirror{Router: router6, Collector: coll6, MID: 51, SID: 2, Inner: big, MTU: 1500, UDPChecksum: true, IPv6FragID: 0x5002}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := p.Maps.Counters()
			if err != nil {
				t.Fatal(err)
			}
			// In order: the program forwards every fragment, and the pair
			// now counts as one whose early fragments are held.
			for i, f := range frames(t, tc.inOrder) {
				if v, _ := n.run(t, p, f); v != vocab.VerdictRedirect {
					t.Fatalf("in order, fragment %d: verdict %v, want XDP_REDIRECT", i, v)
				}
			}
			fs := frames(t, tc.late)
			if len(fs) != 3 {
				t.Fatalf("%d fragments, want 3", len(fs))
			}
			var outerV6 uint8
			if tc.late.Router.Is6() {
				outerV6 = testMetaOuterV6
			}
			// The second fragment first: held, and the mark left.
			v, out := n.run(t, p, fs[1])
			if flags := metaFlags(t, out, fs[1]); v != vocab.VerdictPass || flags != testMetaLaterFrag|testMetaHeld|outerV6 {
				t.Fatalf("early fragment: verdict %v, flags %#x, want XDP_PASS (no socket) with LATER_FRAG|HELD", v, flags)
			}
			if a := fragAction(t, p, tc.late); a != uint32(vocab.ActionEarly) {
				t.Fatalf("after the early fragment its datagram's record is action %d, want JM_ACTION_EARLY", a)
			}
			// The first, then the last: both to userspace, unchanged.
			for i, want := range []uint8{testMetaForward | testMetaFirstFrag, testMetaForward | testMetaLaterFrag} {
				f := fs[[]int{0, 2}[i]]
				v, out := n.run(t, p, f)
				flags := metaFlags(t, out, f)
				want |= outerV6
				if v != vocab.VerdictPass || flags != want || metaReason(out) != uint16(vocab.FwdFragEarly) {
					t.Fatalf("fragment %d after the early one: verdict %v, flags %#x reason %d, want XDP_PASS, flags %#x reason frag_early",
						[]int{0, 2}[i], v, flags, metaReason(out), want)
				}
			}
			if a := fragAction(t, p, tc.late); a != uint32(vocab.ActionForwardUser) {
				t.Errorf("after the first fragment the record is action %d, want JM_ACTION_FORWARD_USER", a)
			}
			after, err := p.Maps.Counters()
			if err != nil {
				t.Fatal(err)
			}
			d := func(s vocab.Stat) uint64 { return after[s] - before[s] }
			if d(vocab.StatFragHeld) != 1 || d(vocab.StatFwdFragEarly) != 2 || d(vocab.StatFwdUserspace) != 2 ||
				d(vocab.StatFwdSent) != 3 || d(vocab.StatCaptureFailed) != 3 {
				t.Errorf("counters after: %v (before %v)", named(after), named(before))
			}
			fwd, err := p.Maps.ForwardStreams()
			if err != nil {
				t.Fatal(err)
			}
			k := vocab.StreamKey{Router: tc.late.Router, MID: tc.late.MID, SID: tc.late.SID}
			if st := fwd[k]; st.Userspace[vocab.FwdFragEarly] != 2 || st.Packets != 0 {
				t.Errorf("%v: %+v, want 2 frag_early and nothing the program sent", k, st)
			}
		})
	}
}

// metaFlags checks that out is in behind the program's metadata and
// returns the metadata's flags.
func metaFlags(t *testing.T, out, in []byte) uint8 {
	t.Helper()
	if len(out) != len(in)+testMetaLen || string(out[testMetaLen:]) != string(in) {
		t.Fatalf("frame out (%d bytes) is not the frame in (%d bytes) behind the metadata", len(out), len(in))
	}
	return out[25]
}

func metaReason(out []byte) uint16 { return binary.NativeEndian.Uint16(out[26:]) }

// fragAction is the action recorded in jm_frags or jm_frags6 for m's
// datagram; 255 if none.
func fragAction(t *testing.T, p *loader.Program, m gen.Mirror) uint32 {
	t.Helper()
	var v bpf.FragValue
	var err error
	if m.Router.Is4() {
		k := bpf.FragKey{Saddr: binary.NativeEndian.Uint32(m.Router.AsSlice()), Daddr: binary.NativeEndian.Uint32(m.Collector.AsSlice()),
			Id: bits.ReverseBytes16(m.IPID), Proto: 17}
		err = p.Objects().JmFrags.Lookup(&k, &v)
	} else {
		k := bpf.Frag6Key{Saddr: m.Router.As16(), Daddr: m.Collector.As16(), Id: bits.ReverseBytes32(m.IPv6FragID)}
		err = p.Objects().JmFrags6.Lookup(&k, &v)
	}
	if err != nil {
		return 255
	}
	return v.Action
}

// TestForwardFibCache: with the per-CPU fib cache (a lookup's answer
// reused within its jiffy), every frame of a 2000-repeat BPF_PROG_TEST_RUN
// is forwarded by the program, a frame out is the exact forwarded frame,
// and a neighbour entry's new address is in the frames once a jiffy has
// passed: the cache never keeps an answer longer.
func TestForwardFibCache(t *testing.T) {
	n := newFwdNet(t)
	p, err := loader.Load(loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// The stream's own port: BPF_PROG_TEST_RUN does not reset the frame
	// between repeats, and the forwarded frame is Jmirror of the stream
	// again (as in BenchmarkForward).
	rules := []vocab.PolicyRule{{MID: 50, AnySID: true, Action: vocab.ActionForward, Target: netip.AddrPortFrom(fwdTarget4, 0)}}
	if err := netns.Do(n.ns, func() error {
		return p.Configure(loader.Config{Policies: rules, ForwardLookupInterface: "jmfib"})
	}); err != nil {
		t.Fatalf("configure: %v", err)
	}
	m := gen.Mirror{Router: router1, Collector: collector, MID: 50, SID: 1, Inner: ipv4Echo(), IPID: 9}
	in := frame(t, m)
	const repeat = 2000
	if err := netns.Do(n.ns, func() error {
		v, _, err := p.Benchmark(in, repeat)
		if err == nil && v != vocab.VerdictRedirect {
			err = fmt.Errorf("verdict %v, want XDP_REDIRECT", v)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if c, err := p.Maps.Counters(); err != nil || c[vocab.StatFwdSent] != repeat || c[vocab.StatFwdUserspace] != 0 {
		t.Fatalf("after %d repeats: %v %v, want all forwarded by the program", repeat, named(c), err)
	}
	// Cached or not, the frame out is exact.
	if v, out := n.run(t, p, in); v != vocab.VerdictRedirect || !bytes.Equal(out, fwdTargetCase{50, fwdTarget4, gen.DefaultPort}.forwarded(t, n, m)) {
		t.Fatalf("verdict %v, frame out %x", v, out)
	}
	// A new neighbour address is used once the jiffy is over (bounded
	// wait: a jiffy is at most 10 ms).
	moved := net.HardwareAddr{0x02, 0, 0, 0, 0x70, 0x51}
	ipIn(t, n.ns, "neigh", "replace", fwdTarget4.String(), "lladdr", moved.String(), "dev", "out", "nud", "permanent")
	time.Sleep(30 * time.Millisecond)
	if v, out := n.run(t, p, in); v != vocab.VerdictRedirect || len(out) < 6 || !bytes.Equal(out[:6], moved) {
		t.Fatalf("after the neighbour moved: verdict %v, destination MAC %x, want %s", v, out[:min(6, len(out))], moved)
	}
}
