package daemon_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Issue 15, live at MTU 9000, in driver and generic mode: jumbo Jmirror frames over IPv4 and IPv6
// (behind extension headers), IPv4 and IPv6 fragments of datagrams larger
// still, all captured through multi-buffer XDP and AF_XDP (XDP_USE_SG):
// every mirrored packet is in its stream's file, byte for byte.
func TestJumboLive(t *testing.T) {
	for _, mode := range []string{"driver", "generic"} {
		for _, fs := range []int{2048, 4096} {
			t.Run(fmt.Sprintf("%s frame_size %d", mode, fs), func(t *testing.T) { jumboLive(t, mode, fs) })
		}
	}
}

func jumboLive(t *testing.T, mode string, frameSize int) {
	e := newEnv(t)
	for _, args := range [][]string{
		{"link", "set", e.lab.HostIface, "mtu", "9000"},
		{"-n", e.lab.Name, "link", "set", e.lab.RouterIface, "mtu", "9000"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	cfg := e.config()
	cfg.Capture.FrameSize = frameSize
	cfg.Capture.XDPMode = mode
	d := e.start(t, cfg)
	r4, c4 := e.lab.RouterAddr.Addr(), e.lab.HostAddr.Addr()
	r6, c6 := netip.MustParseAddr("2001:db8:15::1"), netip.MustParseAddr("2001:db8:15::100")
	want := map[uint32][][]byte{} // by sid
	var frames [][]byte
	add := func(m gen.Mirror, n int) {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(m.SID) ^ byte(i) ^ byte(len(want[m.SID]))
		}
		m.SrcMAC, m.DstMAC, m.MID = e.lab.RouterMAC, e.lab.HostMAC, 60
		m.Inner = gen.InnerIPv4UDP(netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2"), 1000, 2000, payload)
		f, err := m.Frames()
		if err != nil {
			t.Fatal(err)
		}
		for _, fr := range f {
			if len(fr) > 9014 {
				t.Fatalf("a %d-byte frame exceeds MTU 9000", len(fr))
			}
		}
		want[m.SID] = append(want[m.SID], m.Inner)
		frames = append(frames, f...)
	}
	for i := range 10 {
		// 9000-byte frames: sid 1 over IPv4, sid 2 over IPv6 behind
		// hop-by-hop and destination options.
		add(gen.Mirror{Router: r4, Collector: c4, SID: 1, IPID: uint16(i)}, 8900+i)
		add(gen.Mirror{Router: r6, Collector: c6, SID: 2, UDPChecksum: true,
			IPv6Ext: []gen.ExtHeader{{Type: gen.ExtHopByHop}, {Type: gen.ExtDstOpts, Len: 16}}}, 8850+i)
		// Fragments at MTU 9000 of 20000-byte datagrams: sid 3 IPv4, sid 4
		// IPv6 behind a routing header.
		add(gen.Mirror{Router: r4, Collector: c4, SID: 3, IPID: uint16(0x100 + i), MTU: 9000}, 20000+i)
		add(gen.Mirror{Router: r6, Collector: c6, SID: 4, UDPChecksum: true, MTU: 9000, IPv6FragID: uint32(0x200 + i),
			IPv6Ext: []gen.ExtHeader{{Type: gen.ExtRouting, Len: 24}}}, 20000+i)
	}
	e.send(t, frames)
	settle(t, d, len(frames))
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c[vocab.StatJmirror] != 40 || c[vocab.StatActionCapture] != uint64(len(frames)) || c[vocab.StatCaptureFailed] != 0 ||
		c[vocab.StatMalformedTruncated] != 0 || c[vocab.StatFragTracked] != 40 {
		t.Errorf("kernel: jmirror %d, action_capture %d of %d frames, capture_failed %d, truncated %d, frag_tracked %d",
			c[vocab.StatJmirror], c[vocab.StatActionCapture], len(frames), c[vocab.StatCaptureFailed],
			c[vocab.StatMalformedTruncated], c[vocab.StatFragTracked])
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	var joined uint64
	for _, q := range d.Capture().Stats().Queues {
		if !q.SG {
			t.Errorf("queue %d: socket without XDP_USE_SG", q.Queue)
		}
		joined += q.Chains.Joined
		if q.Chains.Dropped != 0 {
			t.Errorf("queue %d: %d chains dropped", q.Queue, q.Chains.Dropped)
		}
	}
	chains := 0
	for _, f := range frames {
		if len(f) > frameSize-256 {
			chains++
		}
	}
	if joined != uint64(chains) {
		t.Errorf("%d descriptor chains joined, want %d (the frames larger than a UMEM frame's %d bytes)", joined, chains, frameSize-256)
	}
	files := streamFiles(t, e.out)
	for sid, inners := range want {
		dir := "mid-60/sid-" + string(rune('0'+sid))
		got := filePackets(t, files[dir]...)
		if len(got) != len(inners) {
			t.Errorf("%s: %d packets in the file, want %d", dir, len(got), len(inners))
			continue
		}
		for i := range got {
			if !bytes.Equal(got[i], inners[i]) {
				t.Errorf("%s: packet %d (%d bytes) differs from the one mirrored (%d bytes)", dir, i, len(got[i]), len(inners[i]))
			}
		}
	}
}
