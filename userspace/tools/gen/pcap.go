package gen

import (
	"bufio"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Packet is one frame and when it was seen.
type Packet struct {
	Time time.Time
	Data []byte
}

// pcapSnapLen is libpcap's maximum; generated frames are far shorter.
const pcapSnapLen = 262144

// WritePcap writes pkts as a classic pcap file with Ethernet link type and
// nanosecond timestamps.
func WritePcap(w io.Writer, pkts []Packet) error {
	bw := bufio.NewWriter(w) // pcapgo writes each header and frame separately
	pw := pcapgo.NewWriterNanos(bw)
	if err := pw.WriteFileHeader(pcapSnapLen, layers.LinkTypeEthernet); err != nil {
		return fmt.Errorf("write pcap header: %w", err)
	}
	for i, p := range pkts {
		// pcap stores unsigned 32-bit seconds; pcapgo would silently wrap
		// (and replaces a zero time with now, which breaks determinism).
		if sec := p.Time.Unix(); sec < 0 || sec > 0xffffffff {
			return fmt.Errorf("write pcap packet %d: time %v outside the 32-bit pcap range", i, p.Time)
		}
		if len(p.Data) > pcapSnapLen {
			return fmt.Errorf("write pcap packet %d: %d bytes exceed snap length %d", i, len(p.Data), pcapSnapLen)
		}
		ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: len(p.Data)}
		if err := pw.WritePacket(ci, p.Data); err != nil {
			return fmt.Errorf("write pcap packet %d: %w", i, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write pcap: %w", err)
	}
	return nil
}
