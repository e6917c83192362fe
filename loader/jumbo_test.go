package loader_test

import (
	"net"
	"os/exec"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
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
