package gen

import "testing"

// TestStreamPickerMatchesScan: the tree chooses, for every draw, the stream
// the linear scan it replaced chose, zero counts and all.
func TestStreamPickerMatchesScan(t *testing.T) {
	rng := newRand(3)
	for _, n := range []int{1, 2, 3, 7, 8, 9, 100, 1000} {
		streams := make([]*demoStream, n)
		remaining := 0
		for i := range streams {
			streams[i] = &demoStream{total: rng.IntN(5)} // some have none to send
			remaining += streams[i].total
		}
		p := newStreamPicker(streams)
		for remaining > 0 {
			r := rng.IntN(remaining)
			want, rr := -1, r
			for i, s := range streams { // the old scan
				left := s.total - s.sent
				if rr < left {
					want = i
					break
				}
				rr -= left
			}
			if got := p.pick(r); got != want {
				t.Fatalf("%d streams, r %d of %d: picked %d, the scan %d", n, r, remaining, got, want)
			}
			streams[want].sent++
			remaining--
		}
	}
}

// TestDemoPickLinear: building the demo for 10x the streams costs less than
// 3x the stream-choosing work per datagram (the linear scan it replaced:
// 10x, making 30k streams take 36 s and 1M streams hours).
func TestDemoPickLinear(t *testing.T) {
	perDatagram := func(intercepts, sessions int) float64 {
		cfg := DefaultDemo()
		cfg.Intercepts, cfg.SessionsPer, cfg.PacketsPer = intercepts, sessions, 2
		_, sum, probes, err := demo(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return float64(probes) / float64(sum.JmirrorDatagrams)
	}
	small, large := perDatagram(20, 25), perDatagram(20, 250)
	t.Logf("probes per datagram: %.1f for 500 streams, %.1f for 5000", small, large)
	if large > 3*small {
		t.Fatalf("probes per datagram grew from %.1f to %.1f for 10x the streams", small, large)
	}
}
