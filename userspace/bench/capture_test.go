package bench

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/gen"
	"github.com/jmxdp/jmxdp/userspace/lab"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// TestCaptureShort runs the capture section's short mode: every system
// climbs its ladder on tmpfs and disk; figures are positive, losses are
// fractions, and no system has more packets in its files than were sent.
// No rate is asserted.
func TestCaptureShort(t *testing.T) {
	testenv.RequireRoot(t)
	var mu sync.Mutex
	seen := map[string]int{}
	captureStepHook = func(dir, system string, st captureStep) {
		mu.Lock()
		defer mu.Unlock()
		seen[dir+"/"+system]++
		if st.Loss < 0 || st.Loss > 1 {
			t.Errorf("%s %s: loss %v outside [0, 1]", dir, system, st.Loss)
		}
		if st.Written > st.Sent {
			t.Errorf("%s %s: %d written, only %d sent", dir, system, st.Written, st.Sent)
		}
		if st.Sent == 0 || st.Offered <= 0 {
			t.Errorf("%s %s: nothing offered: %+v", dir, system, st)
		}
	}
	t.Cleanup(func() { captureStepHook = nil })
	tmp := t.TempDir()
	sec, err := captureToDisk(Options{Short: true, Runs: 1}, tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.Skipped) > 0 {
		t.Logf("skipped: %v", sec.Skipped)
	}
	if sec.Name != SectionCapture {
		t.Errorf("section %q", sec.Name)
	}
	for _, want := range []string{"tmpfs/jmxdp", "tmpfs/udprecv", "disk/jmxdp", "disk/udprecv"} {
		if seen[want] == 0 {
			t.Errorf("no step of %s", want)
		}
	}
	names := map[string]bool{}
	for _, f := range sec.Figures {
		names[f.Name] = true
		t.Logf("%s: %.1f %s, baseline %.1f (%s), ratio %.2f; %s", f.Name, f.Value, f.Unit, f.Baseline, f.BaselineName, f.Ratio, f.Note)
		// A loss-free rate is 0 when a system lost at the lowest rate (a
		// busy runner): a finding, not a failure. Negative or NaN is a bug.
		if !(f.Value >= 0 && f.Baseline >= 0 && f.Ratio >= 0) {
			t.Errorf("figure %s: value %v baseline %v ratio %v", f.Name, f.Value, f.Baseline, f.Ratio)
		}
	}
	for _, want := range []string{"capture_lossfree_tmpfs", "capture_lossfree_disk"} {
		if !names[want] {
			t.Errorf("no figure %s", want)
		}
	}
	t.Logf("note: %s", sec.Note)
	// The tmpfs is unmounted and the lab gone.
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil && strings.Contains(string(b), tmp) {
		t.Errorf("still mounted under %s", tmp)
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, ifc := range ifs {
			if strings.HasPrefix(ifc.Name, "jmxc") {
				t.Errorf("interface %s left behind", ifc.Name)
			}
		}
	}
}

// readdress turns gen's frames into frames the lab's host end accepts:
// its MAC and address, a correct IPv4 checksum.
func TestReaddress(t *testing.T) {
	m := gen.Mirror{Router: netip.MustParseAddr("192.0.2.1"), Collector: netip.MustParseAddr("203.0.113.10"), MID: 1, SID: 2,
		Inner: gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, 8)}
	f, err := m.Frame()
	if err != nil {
		t.Fatal(err)
	}
	l := &lab.Lab{Config: lab.Random("jmxcap"), RouterMAC: net.HardwareAddr{2, 1, 2, 3, 4, 5}}
	if err := readdress(f, l); err != nil {
		t.Fatal(err)
	}
	want, err := gen.Mirror{SrcMAC: l.RouterMAC, DstMAC: l.HostMAC, Router: l.RouterAddr.Addr(), Collector: l.HostAddr.Addr(),
		MID: 1, SID: 2, Inner: m.Inner}.Frame()
	if err != nil {
		t.Fatal(err)
	}
	if string(f) != string(want) {
		t.Errorf("readdressed\n%x\nwant\n%x", f, want)
	}
	if readdress(make([]byte, 20), l) == nil {
		t.Error("short frame accepted")
	}
}
