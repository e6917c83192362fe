package loader_test

import (
	"fmt"
	"net"
	"os/exec"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/gen"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/testenv"
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
// driver that splits headers from payload): the program pulls the headers
// in (bpf_xdp_pull_data) and gives the verdicts and counters it gives the
// whole frame, which the Go engine sees.
func TestSplitHeaders(t *testing.T) {
	big := gen.InnerIPv4UDP(subA, subB, 1000, 2000, make([]byte, 8000))
	cases := [][]byte{
		frame(t, mirror(70, 1, big)),
		frame(t, mirror6(70, 2, big, ext(gen.ExtHopByHop), gen.ExtHeader{Type: gen.ExtRouting, Len: 40}, ext(gen.ExtDstOpts))),
		setUDPLen(mirror(70, 3, big), frame(t, mirror(70, 3, big)), 9000),
	}
	for _, linear := range []int{14, 40, 100} {
		p := loadProgram(t, loader.Config{DefaultAction: maps.ActionCount})
		eng := jmirror.NewEngine(engineConfig(loader.Config{DefaultAction: maps.ActionCount}), nil)
		for i, f := range cases {
			v, err := p.RunSplit(f, linear)
			if err != nil {
				testenv.SkipOrFail(t, fmt.Sprintf("kernel cannot split a test frame (needs Linux 6.18 for bpf_xdp_pull_data): %v", err))
			}
			if g := eng.Process(f).Verdict; loader.Verdict(g) != v {
				t.Errorf("linear %d, frame %d: kernel %v, Go %v", linear, i, v, loader.Verdict(g))
			}
		}
		kc, err := p.Maps.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if gc := eng.Counters(); gc != kc || kc[maps.StatJmirror] != 2 || kc[maps.StatMalformedTruncated] != 1 {
			t.Errorf("linear %d: kernel %v, Go %v", linear, named(kc), named(gc))
		}
	}
}
