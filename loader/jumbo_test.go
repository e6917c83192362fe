package loader_test

import (
	"fmt"
	"net"
	"os/exec"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// A veth at MTU 9000 takes the program in driver and generic mode, and its
// MTU stays 9000. In driver mode veth refuses a program that is not
// frags-aware when the peer's MTU is more than a page holds ("Peer MTU is
// too large to set XDP"): this fails without SEC("xdp.frags").
func TestAttachJumboMTU(t *testing.T) {
	veth, peerNS := vethPairInNetns(t)
	for _, args := range [][]string{
		{"link", "set", veth, "mtu", "9000"},
		{"-n", peerNS, "link", "set", veth + "p", "mtu", "9000", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	mtu := func() int {
		ifc, err := net.InterfaceByName(veth)
		if err != nil {
			t.Fatal(err)
		}
		return ifc.MTU
	}
	for _, mode := range []loader.Mode{loader.ModeDriver, loader.ModeGeneric} {
		p := loadProgram(t, loader.Config{})
		got, err := p.Attach(veth, mode)
		if err != nil {
			t.Fatalf("attach %s at MTU 9000: %v", mode, err)
		}
		if got != mode {
			t.Errorf("attached in %s mode, asked %s", got, mode)
		}
		if m := mtu(); m != 9000 {
			t.Errorf("%s: MTU %d after attach, want 9000", mode, m)
		}
		if err := p.Detach(); err != nil {
			t.Fatal(err)
		}
		if m := mtu(); m != 9000 {
			t.Errorf("%s: MTU %d after detach, want 9000", mode, m)
		}
	}
}

// A multi-buffer frame whose linear part holds only its first bytes (a
// driver that splits headers from payload) gives the verdicts and counters
// the whole frame gives, which the Go engine sees: on both header paths,
// the pull (bpf_xdp_pull_data, Linux 6.18) and the copy older kernels take
// (bpf_xdp_load_bytes into the scratch buffer, forced here). Every shape
// whose headers cross the linear part's end: IPv4, IPv6 behind extension
// headers (QinQ and a 400-byte routing header among them), a datagram cut
// short, and IPv4 and IPv6 fragments of a jumbo datagram.
func TestSplitHeaders(t *testing.T) {
	big := gen.InnerIPv4UDP(subA, subB, 1000, 2000, make([]byte, 8000))
	cases := [][]byte{
		frame(t, mirror(70, 1, big)),
		frame(t, mirror6(70, 2, big, ext(gen.ExtHopByHop), gen.ExtHeader{Type: gen.ExtRouting, Len: 40}, ext(gen.ExtDstOpts))),
		setUDPLen(mirror(70, 3, big), frame(t, mirror(70, 3, big)), 9000),
	}
	long := mirror6(70, 4, big, ext(gen.ExtHopByHop), gen.ExtHeader{Type: gen.ExtRouting, Len: 400}, gen.ExtHeader{Type: gen.ExtAH, Len: 24})
	long.VLANs = []gen.VLAN{{TPID: 0x88a8, ID: 10}, {TPID: 0x8100, ID: 20}}
	cases = append(cases, frame(t, long))
	huge := gen.InnerIPv4UDP(subA, subB, 1000, 2000, make([]byte, 20000))
	m4 := mirror(70, 5, huge)
	m4.MTU, m4.IPID = 9000, 0x70
	m6 := mirror6(70, 6, huge, ext(gen.ExtHopByHop), gen.ExtHeader{Type: gen.ExtRouting, Len: 24})
	m6.MTU, m6.IPv6FragID = 9000, 0x70
	f4, f6 := frames(t, m4), frames(t, m6)
	if len(f4) != 3 || len(f6) != 3 {
		t.Fatalf("%d and %d fragments, want 3 each", len(f4), len(f6))
	}
	cases = append(cases, f4...)
	cases = append(cases, f6...)
	for _, copyHeaders := range []bool{false, true} {
		for _, linear := range []int{14, 40, 100} {
			name := fmt.Sprintf("copy %v, linear %d", copyHeaders, linear)
			p := loadProgramWith(t, loader.Options{MaxStreams: 4096, ForceHeaderCopy: copyHeaders},
				loader.Config{DefaultAction: vocab.ActionCount})
			eng := jmirror.NewEngine(engineConfig(loader.Config{DefaultAction: vocab.ActionCount}), nil)
			for i, f := range cases {
				v, err := p.RunSplit(f, linear)
				if err != nil {
					testenv.SkipOrFail(t, fmt.Sprintf("kernel cannot split a test frame (BPF_PROG_TEST_RUN takes data_end as the linear size from Linux 6.18): %v", err))
				}
				if g := eng.Process(f).Verdict; vocab.Verdict(g) != v {
					t.Errorf("%s, frame %d: kernel %v, Go %v", name, i, v, vocab.Verdict(g))
				}
			}
			kc, err := p.Maps.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if gc := eng.Counters(); gc != kc || kc[vocab.StatJmirror] != 5 || kc[vocab.StatMalformedTruncated] != 1 ||
				kc[vocab.StatFragFirst] != 2 || kc[vocab.StatFragTracked] != 4 {
				t.Errorf("%s: kernel %v, Go %v", name, named(kc), named(gc))
			}
		}
	}
}
