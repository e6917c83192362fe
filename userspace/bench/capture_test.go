package bench

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
)

// TestCaptureShort runs the capture section's short mode: every receiver
// (each a process of its own) takes the CPU case's traffic and climbs its
// ladder on tmpfs and disk, and the sender its ladder into xdp_drop;
// figures are there and not negative, losses are fractions, every receiver
// wrote something in the CPU case, and no system has more packets in its
// files than were sent. No rate or CPU time is asserted.
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
	var progress strings.Builder
	sec, err := captureToDisk(Options{Short: true, Runs: 1, Jmxdp: jmxdpBinary(t), Progress: &progress}, tmp)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.Skipped) > 0 {
		t.Logf("skipped: %v", sec.Skipped)
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		testenv.PartSkip(t, "tcpdump not installed: no tcpdump baseline to check")
	}
	if sec.Name != SectionCapture {
		t.Errorf("section %q", sec.Name)
	}
	for _, want := range []string{"tmpfs/jmxdp", "tmpfs/udprecv", "disk/jmxdp", "disk/udprecv", "tmpfs/sender"} {
		if seen[want] == 0 {
			t.Errorf("no step of %s", want)
		}
	}
	names := map[string]Figure{}
	for _, f := range sec.Figures {
		names[f.Name] = f
		t.Logf("%s: %.1f %s, baseline %.1f (%s), ratio %.2f; %s", f.Name, f.Value, f.Unit, f.Baseline, f.BaselineName, f.Ratio, f.Note)
		// A loss-free rate is 0 when a system lost at the lowest rate (a
		// busy runner): a finding, not a failure. Negative or NaN is a bug.
		if !(f.Value >= 0 && f.Baseline >= 0 && f.Ratio >= 0) {
			t.Errorf("figure %s: value %v baseline %v ratio %v", f.Name, f.Value, f.Baseline, f.Ratio)
		}
	}
	for _, want := range []string{"capture_lossfree_tmpfs", "capture_lossfree_disk", "cpu_100_jmxdp", "cpu_100_udprecv", "loss_100_jmxdp",
		"sender_ceiling", "sender_ceiling_burst8192"} {
		if _, ok := names[want]; !ok {
			t.Errorf("no figure %s", want)
		}
	}
	// The CPU case: jmxdp wrote (lost less than it was sent), and so did
	// tcpdump and udprecv (their figures' notes say "N written").
	if f, ok := names["loss_100_jmxdp"]; ok && !(f.Baseline > 0 && f.Value < f.Baseline) {
		t.Errorf("jmxdp wrote nothing in the CPU case: %+v", f)
	}
	for _, name := range []string{"jmxdp", "tcpdump", "udprecv"} {
		if name == "tcpdump" && !strings.Contains(sec.Note, "tcpdump") {
			continue
		}
		if m := regexp.MustCompile(name + ` \d+ ns/frame \(CPU [0-9.]+ s - idle [0-9.]+ s over [0-9.]+ s[^;]*; offered [0-9.]+ kpps, (\d+) sent, (\d+) written`).FindStringSubmatch(sec.Note); m == nil {
			t.Errorf("no CPU figures for %s in the note", name)
		} else if m[2] == "0" {
			t.Errorf("%s wrote nothing in the CPU case: %s", name, m[0])
		}
	}
	if f, ok := names["sender_ceiling_burst8192"]; ok && !(f.Value > 0) {
		t.Errorf("sender ceiling %+v", f)
	}
	// No jmxdp instance is left pinned.
	if ents, err := os.ReadDir(config.DefaultPinDir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "jmxc") {
				t.Errorf("pinned maps left in %s/%s", config.DefaultPinDir, e.Name())
			}
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
