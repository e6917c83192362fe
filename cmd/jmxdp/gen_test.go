package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/decode"
)

// TestGenTrafficJSONMatchesDecode generates with the traffic model and
// checks the JSON summary against what jmxdp decode reports for the file.
func TestGenTrafficJSONMatchesDecode(t *testing.T) {
	pcap := filepath.Join(t.TempDir(), "traffic.pcap")
	out, err := run(t, "gen", "--out", pcap, "--packets-total", "1000", "--routers", "3", "--intercepts", "4", "--sessions", "2",
		"--imix", "64:7,576:4,1400:1", "--fragments", "0.05", "--malformed", "0.02", "--noise", "0.1", "--seed", "3", "--format", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var sum genSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("gen output is not JSON: %v\n%s", err, out)
	}
	if sum.Model != "traffic" || sum.Totals.Jmirror+sum.Totals.Malformed != 1000 || sum.Totals.Malformed == 0 || sum.Totals.Fragments == 0 || len(sum.Streams) != 8 {
		t.Fatalf("summary %+v", sum.Totals)
	}
	dec, err := run(t, "decode", "--engine", "go", "--format", "json", pcap)
	if err != nil {
		t.Fatal(err)
	}
	var rep decode.Report
	if err := json.Unmarshal([]byte(dec), &rep); err != nil {
		t.Fatalf("decode output is not JSON: %v\n%s", err, dec)
	}
	if !reflect.DeepEqual(rep.Streams, sum.Streams) {
		t.Errorf("streams differ:\ndecode %+v\ngen    %+v", rep.Streams, sum.Streams)
	}
	tot := rep.Totals
	if tot.Frames != uint64(sum.Totals.Frames) || tot.Jmirror != uint64(sum.Totals.Jmirror) || tot.JmirrorBytes != sum.Totals.JmirrorBytes ||
		tot.NotJmirror != uint64(sum.Totals.NotJmirror) || tot.Malformed != uint64(sum.Totals.Malformed) ||
		tot.Fragments != uint64(sum.Totals.Fragments) || tot.FragmentedDatagrams != uint64(sum.Totals.FragmentedDatagrams) {
		t.Errorf("totals: decode %+v, gen %+v", tot, sum.Totals)
	}
}

// TestGenDemoJSONMatchesDecode: the demo stays the default and its JSON
// summary matches decode too.
func TestGenDemoJSONMatchesDecode(t *testing.T) {
	pcap := filepath.Join(t.TempDir(), "demo.pcap")
	out, err := run(t, "gen", "--out", pcap, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var sum genSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Model != "demo" {
		t.Fatalf("%v %q\n%s", err, sum.Model, out)
	}
	dec, err := run(t, "decode", "--engine", "go", "--format", "json", pcap)
	if err != nil {
		t.Fatal(err)
	}
	var rep decode.Report
	if err := json.Unmarshal([]byte(dec), &rep); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rep.Streams, sum.Streams) || rep.Totals.Jmirror != uint64(sum.Totals.Jmirror) {
		t.Errorf("demo: decode and gen differ")
	}
	text, err := run(t, "gen", "--out", pcap)
	if err != nil || !strings.Contains(text, "wrote "+pcap) {
		t.Fatalf("%v\n%s", err, text)
	}
}

func TestGenBadTrafficFlags(t *testing.T) {
	pcap := filepath.Join(t.TempDir(), "x.pcap")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--imix", "64"}, "--imix"},
		{[]string{"--model", "nope"}, "--model"},
		{[]string{"--format", "xml"}, "--format"},
		{[]string{"--fragments", "2"}, "ratio"},
	} {
		out, err := run(t, append([]string{"gen", "--out", pcap}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v\n%s", c.args, err, out)
		}
	}
}

// TestGenJumboIPv6: --mtu 9000 with jumbo sizes, --ipv6 routers with
// --ipv6-ext headers, fragments of both families: decode reports what gen
// made; a bad --ipv6-ext is refused with a message naming it.
func TestGenJumboIPv6(t *testing.T) {
	pcap := filepath.Join(t.TempDir(), "jumbo.pcap")
	out, err := run(t, "gen", "--out", pcap, "--packets-total", "600", "--routers", "4", "--intercepts", "3", "--sessions", "2",
		"--imix", "64:2,1400:1,8900:2", "--fragments", "0.1", "--mtu", "9000", "--ipv6", "0.5", "--ipv6-ext", "hbh,routing:24",
		"--seed", "5", "--format", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var sum genSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("gen output is not JSON: %v\n%s", err, out)
	}
	if sum.Model != "traffic" || sum.Totals.Jmirror+sum.Totals.Malformed != 600 || sum.Totals.Fragments == 0 {
		t.Fatalf("summary %+v", sum.Totals)
	}
	for _, eng := range []string{"go", "bpf"} {
		if eng == "bpf" && os.Geteuid() != 0 {
			continue
		}
		dec, err := run(t, "decode", "--engine", eng, "--format", "json", pcap)
		if err != nil {
			t.Fatal(err)
		}
		var rep decode.Report
		if err := json.Unmarshal([]byte(dec), &rep); err != nil {
			t.Fatalf("decode output is not JSON: %v\n%s", err, dec)
		}
		if !reflect.DeepEqual(rep.Streams, sum.Streams) {
			t.Errorf("%s: streams differ:\ndecode %+v\ngen    %+v", eng, rep.Streams, sum.Streams)
		}
		if tot := rep.Totals; tot.Frames != uint64(sum.Totals.Frames) || tot.Jmirror != uint64(sum.Totals.Jmirror) || tot.Skipped != 0 ||
			tot.Fragments != uint64(sum.Totals.Fragments) || tot.FragmentedDatagrams != uint64(sum.Totals.FragmentedDatagrams) {
			t.Errorf("%s: totals: decode %+v, gen %+v", eng, tot, sum.Totals)
		}
	}
	for _, bad := range []string{"esp", "hbh:12", "dst:x"} {
		if out, err := run(t, "gen", "--out", pcap, "--ipv6", "1", "--ipv6-ext", bad); err == nil || !strings.Contains(strings.ToLower(out+err.Error()), "ipv6") {
			t.Errorf("--ipv6-ext %s: %v %s", bad, err, out)
		}
	}
}
