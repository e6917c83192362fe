package decode_test

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// Port discovery on the real captures: decoded with no port, each reports
// its router's port as a candidate with every packet; with --port auto it
// decodes to exactly the figures of its known port. Both engines.
func TestDiscoveryRealCaptures(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	for _, eng := range engines(t) {
		for _, c := range realCaptures {
			t.Run(string(eng)+"/"+c.file, func(t *testing.T) {
				path := []string{filepath.Join(dir, c.file)}
				plain, err := decode.Files(path, decode.Options{Engine: eng, MaxStreams: 4096})
				if err != nil {
					t.Fatal(err)
				}
				want := []decode.CandidatePort{{Port: c.port, Packets: c.packets}}
				var bytes uint64
				for _, r := range c.routers {
					bytes += r[1]
				}
				want[0].Bytes = bytes
				if !reflect.DeepEqual(plain.CandidatePorts, want) || len(plain.Streams) != 0 {
					t.Errorf("no --port: candidates %+v streams %d, want %+v and none decoded", plain.CandidatePorts, len(plain.Streams), want)
				}
				var table strings.Builder
				if err := plain.WriteTable(&table); err != nil {
					t.Fatal(err)
				}
				if hint := "use --port auto"; !strings.Contains(table.String(), hint) {
					t.Errorf("table has no hint:\n%s", table.String())
				}

				auto, err := decode.Files(path, decode.Options{Auto: true, Engine: eng, MaxStreams: 4096})
				if err != nil {
					t.Fatal(err)
				}
				known, err := decode.Files(path, decode.Options{Ports: []uint16{c.port}, Engine: eng, MaxStreams: 4096})
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(auto.Streams, known.Streams) || auto.Totals != known.Totals {
					t.Errorf("--port auto\n%+v\n%+v\nknown port\n%+v\n%+v", auto.Streams, auto.Totals, known.Streams, known.Totals)
				}
				if len(auto.CandidatePorts) != 0 {
					t.Errorf("candidates left after --port auto: %+v", auto.CandidatePorts)
				}
			})
		}
	}
}

// The JSON form carries candidate_ports, as docs/decode-json.md says.
func TestCandidatePortsJSON(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	rep, err := decode.Files([]string{filepath.Join(dir, "jmirror_ip.pcap")}, decode.Options{Engine: decode.EngineGo})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		CandidatePorts []map[string]any `json:"candidate_ports"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.CandidatePorts) != 1 || doc.CandidatePorts[0]["port"] != float64(6502) || doc.CandidatePorts[0]["packets"] != float64(38) {
		t.Errorf("candidate_ports %v", doc.CandidatePorts)
	}
}
