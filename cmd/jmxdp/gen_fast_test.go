package main

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
	"github.com/jmxdp/jmxdp/userspace/tools/xmit"
)

func TestGenFastRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"gen", "--fast", "--out", "x.pcap"}, "--fast transmits"},
		{[]string{"gen", "--fast"}, "--out FILE or --iface"},
	} {
		out, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v\n%s", c.args, err, out)
		}
	}
}

// TestGenFast sends the demo model's Jmirror frames with --fast into a lab
// whose host end drops them with xdp_drop, and checks the frames sent
// against the drops the driver counted.
func TestGenFast(t *testing.T) {
	l := labtest.New(t, "jmxgf")
	d, err := xmit.AttachDrop(l.HostIface)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	drops := func() uint64 {
		t.Helper()
		n, err := xmit.XDPDrops(l.HostIface)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	d0 := drops()
	out, err := run(t, "gen", "--fast", "--iface", l.RouterIface, "--netns", l.Name, "--count", "50000", "--intercepts", "3", "--sessions", "5", "--format", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var rep fastReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.Sent != 50000 || rep.Elapsed <= 0 || rep.Rate <= 0 || math.IsInf(rep.Rate, 0) || rep.Templates == 0 || rep.Intercepts != 3 || rep.Sessions != 5 {
		t.Errorf("report %+v", rep)
	}
	if got := drops() - d0; got != rep.Sent {
		t.Errorf("xdp_drop dropped %d, gen sent %d", got, rep.Sent)
	}

	// The traffic model, by time, in text.
	d0 = drops()
	out, err = run(t, "gen", "--fast", "--iface", l.RouterIface, "--netns", l.Name, "--model", "traffic", "--packets-total", "2000", "--duration", "200ms")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var sent uint64
	var iface string
	if _, err := fmt.Sscanf(out, "sent %d frames on %s in", &sent, &iface); err != nil || sent == 0 || iface != l.RouterIface {
		t.Fatalf("%v: %q", err, out)
	}
	if got := drops() - d0; got != sent {
		t.Errorf("xdp_drop dropped %d, gen sent %d", got, sent)
	}
}
