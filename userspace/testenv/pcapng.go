package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Packet is one packet of a pcapng file a test reads back.
type Packet struct {
	Time time.Time
	Data []byte
	// Link is the link type of the packet's interface.
	Link layers.LinkType
	// Comment is the packet's first comment (jmxdp's router), if any.
	Comment string
}

// Mixed reads files whose interfaces have several link types (a stream's
// file holds raw IP and PPP packets); Single refuses them.
var (
	Mixed  = pcapgo.NgReaderOptions{WantMixedLinkType: true}
	Single = pcapgo.DefaultNgReaderOptions
)

// ReadPcapng reads every packet of the pcapng file at path, with opts
// (Mixed or Single): the one reader of the tests that check the files
// jmxdp writes.
func ReadPcapng(path string, opts pcapgo.NgReaderOptions) ([]Packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Packet
	for {
		data, ci, popts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ifc, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		p := Packet{Time: ci.Timestamp, Data: bytes.Clone(data), Link: ifc.LinkType}
		if len(popts.Comments) > 0 {
			p.Comment = popts.Comments[0]
		}
		out = append(out, p)
	}
}

// MustReadPcapng is ReadPcapng failing t on an error.
func MustReadPcapng(t testing.TB, path string, opts pcapgo.NgReaderOptions) []Packet {
	t.Helper()
	pkts, err := ReadPcapng(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return pkts
}
