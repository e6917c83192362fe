package decode_test

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
)

// Issue 19 item 9: a capture whose fragments come last-first and with
// copies of their first fragment. Both engines count each datagram once
// and report the copies and the early fragments; --out writes every
// datagram once, whole, and reports no reassembly failure.
func TestOutFragmentsLastFirstAndDuplicated(t *testing.T) {
	router, coll := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	var pkts []gen.Packet
	var inners [][]byte
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(fs ...[]byte) {
		for _, f := range fs {
			pkts = append(pkts, gen.Packet{Time: t0.Add(time.Duration(len(pkts)) * time.Millisecond), Data: f})
		}
	}
	for i := range 6 {
		payload := make([]byte, 2500)
		for j := range payload {
			payload[j] = byte(i*7 + j)
		}
		m := gen.Mirror{Router: router, Collector: coll, MID: 5, SID: 6, MTU: 1500, IPID: uint16(0x40 + i),
			Inner: gen.InnerIPv4UDP(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, uint16(i), payload)}
		f, err := m.Frames()
		if err != nil || len(f) != 2 {
			t.Fatalf("%d fragments, %v", len(f), err)
		}
		inners = append(inners, m.Inner)
		switch i {
		case 0:
			add(f...) // in order: the pair is known
		case 1, 2:
			add(f[1], f[0]) // last first
		case 3:
			add(f[0], f[0], f[1]) // a copy of the first, while pending
		default:
			add(f[1], f[0], f[0]) // last first, then a copy of the first
		}
	}
	file := filepath.Join(t.TempDir(), "frags.pcap")
	w, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := gen.WritePcap(w, pkts); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for _, eng := range engines(t) {
		t.Run(string(eng), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			rep, err := decode.Files([]string{file}, decode.Options{Engine: eng, OutDir: out, MaxStreams: 4096})
			if err != nil {
				t.Fatal(err)
			}
			tot := rep.Totals
			if tot.Frames != uint64(len(pkts)) || tot.Jmirror != 6 || tot.FragmentedDatagrams != 6 || tot.FragmentsDuplicate != 3 ||
				tot.FragmentsHeld != 4 || tot.FragmentsTracked != 2 || tot.FragmentsUnmatched != 0 ||
				tot.Fragments != tot.FragmentsDuplicate+tot.FragmentsHeld+tot.FragmentsTracked {
				t.Errorf("totals %+v", tot)
			}
			if tot.Frames != tot.Jmirror+tot.NotJmirror+tot.Malformed+tot.Fragments+tot.Untrusted {
				t.Errorf("frames %d are not the sum of the classes: %+v", tot.Frames, tot)
			}
			if tot.Written != 6 || tot.ReassemblyFailed != 0 || len(rep.Streams) != 1 || rep.Streams[0].Packets != 6 {
				t.Fatalf("wrote %d, %d failed, streams %+v", tot.Written, tot.ReassemblyFailed, rep.Streams)
			}
			got, _ := tsharkFrames(t, rep.Streams[0].File)
			if len(got) != len(inners) {
				t.Fatalf("tshark reads %d packets, want %d", len(got), len(inners))
			}
			for i, p := range got {
				if !bytes.Equal(p, inners[i]) {
					t.Errorf("packet %d is not the datagram sent", i)
				}
			}
		})
	}
}
