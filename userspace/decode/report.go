// Package decode runs capture files through the Jmirror data path offline,
// with the kernel program (BPF_PROG_TEST_RUN) or the Go decoder, and reports
// what the live path would count.
package decode

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Report is the result of a decode. Its JSON form is a stable interface,
// documented in docs/decode-json.md: fields are only ever added.
type Report struct {
	Streams []StreamReport `json:"streams"`
	Totals  Totals         `json:"totals"`
	Engine  string         `json:"engine"`
	Ports   []uint16       `json:"ports"`
	Files   []string       `json:"files,omitempty"` // pcapng files written by --out
	// CandidatePorts: Jmirror-looking traffic on ports that were not
	// decoded (port discovery), by port; [] when there is none.
	CandidatePorts []CandidatePort `json:"candidate_ports"`
	// Filter is --filter as given; StreamsTotal counts the streams before
	// it (Streams holds the matching ones). Without a filter, Filter is
	// absent and StreamsTotal = len(Streams).
	Filter       string `json:"filter,omitempty"`
	StreamsTotal int    `json:"streams_total"`
}

// CandidatePort is a port that carried Jmirror-looking traffic without
// being decoded.
type CandidatePort struct {
	Port    uint16 `json:"port"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

func candidateReports(cs []vocab.Candidate) []CandidatePort {
	out := make([]CandidatePort, 0, len(cs))
	for _, c := range cs {
		out = append(out, CandidatePort{Port: c.Port, Packets: c.Packets, Bytes: c.Bytes})
	}
	return out
}

// StreamReport is one (mid, sid), summed over the routers sending it.
type StreamReport struct {
	MID     uint32         `json:"mid"`
	SID     uint32         `json:"sid"`
	Packets uint64         `json:"packets"`
	Bytes   uint64         `json:"bytes"`
	Routers []RouterReport `json:"routers"`
	Inner   InnerReport    `json:"inner"`
	File    string         `json:"file,omitempty"`
}

// RouterReport is one router's share of a stream.
type RouterReport struct {
	Addr    string `json:"addr"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// InnerReport counts a stream's mirrored packets by kind.
type InnerReport struct {
	IPv4    uint64 `json:"ipv4"`
	IPv6    uint64 `json:"ipv6"`
	PPP     uint64 `json:"ppp"`
	Unknown uint64 `json:"unknown"`
	Empty   uint64 `json:"empty"`
}

// Totals are the global counters. The first five are the documented core;
// Frames = Jmirror + NotJmirror + Malformed + Fragments + Untrusted +
// IPv6ExtTooLong.
type Totals struct {
	Frames     uint64 `json:"frames"`
	Jmirror    uint64 `json:"jmirror"`
	NotJmirror uint64 `json:"not_jmirror"`
	Malformed  uint64 `json:"malformed"`
	Fragments  uint64 `json:"fragments"`

	JmirrorBytes        uint64 `json:"jmirror_bytes"`
	MalformedShort      uint64 `json:"malformed_short"`
	MalformedTruncated  uint64 `json:"malformed_truncated"`
	FragmentedDatagrams uint64 `json:"fragmented_datagrams"`
	FragmentsTracked    uint64 `json:"fragments_tracked"`
	FragmentsUnmatched  uint64 `json:"fragments_unmatched"`
	Untrusted           uint64 `json:"untrusted"`
	VersionNonzero      uint64 `json:"version_nonzero"`
	// Skipped frames are outside what XDP sees (shorter than an Ethernet
	// header, or longer than 65557 bytes: a 65535-byte IP packet behind
	// Ethernet and two VLAN tags): not given to either engine. The program
	// is frags-aware: a jumbo frame is seen whole.
	Skipped uint64 `json:"skipped"`
	// Written and ReassemblyFailed describe --out.
	Written          uint64 `json:"written,omitempty"`
	ReassemblyFailed uint64 `json:"reassembly_failed,omitempty"`

	// UntrustedMapped: of Untrusted, the datagrams over IPv6 from a source
	// that embeds an IPv4 address, which is never a router.
	UntrustedMapped uint64 `json:"untrusted_mapped"`

	// FragmentsDuplicate: copies of a first fragment already counted (in
	// Fragments, not Jmirror); FragmentsHeld: later fragments ahead of
	// their first that a live capture holds (in Fragments).
	FragmentsDuplicate uint64 `json:"fragments_duplicate"`
	FragmentsHeld      uint64 `json:"fragments_held"`

	// IPv6ExtTooLong: outer IPv6 frames whose extension-header chain goes
	// on past the 8 headers jmxdp walks (a class of its own, like
	// NotJmirror).
	IPv6ExtTooLong uint64 `json:"ipv6_ext_too_long"`
}

func totalsFrom(c vocab.Counters) Totals {
	return Totals{
		Frames:              c[vocab.StatFrames],
		Jmirror:             c[vocab.StatJmirror],
		NotJmirror:          c[vocab.StatNotJmirror],
		Malformed:           c[vocab.StatMalformedShort] + c[vocab.StatMalformedTruncated],
		Fragments:           c[vocab.StatFragTracked] + c[vocab.StatFragUnmatched] + c[vocab.StatFragDuplicate] + c[vocab.StatFragHeld],
		JmirrorBytes:        c[vocab.StatJmirrorBytes],
		MalformedShort:      c[vocab.StatMalformedShort],
		MalformedTruncated:  c[vocab.StatMalformedTruncated],
		FragmentedDatagrams: c[vocab.StatFragFirst],
		FragmentsTracked:    c[vocab.StatFragTracked],
		FragmentsUnmatched:  c[vocab.StatFragUnmatched],
		Untrusted:           c[vocab.StatUntrusted],
		UntrustedMapped:     c[vocab.StatUntrustedMapped],
		FragmentsDuplicate:  c[vocab.StatFragDuplicate],
		FragmentsHeld:       c[vocab.StatFragHeld],
		IPv6ExtTooLong:      c[vocab.StatIPv6ExtLong],
		VersionNonzero:      c[vocab.StatVersionNonzero],
	}
}

// streamReports groups per-router entries into (mid, sid) streams. Sorting
// the entries by (mid, sid, router) first orders both the streams and each
// stream's routers.
func streamReports(in []vocab.Stream) []StreamReport {
	vocab.SortStreams(in)
	type id struct{ mid, sid uint32 }
	idx := make(map[id]int)
	var out []StreamReport
	for _, s := range in {
		k := id{s.MID, s.SID}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, StreamReport{MID: s.MID, SID: s.SID, Routers: []RouterReport{}})
		}
		r := &out[i]
		r.Packets += s.Packets
		r.Bytes += s.Bytes
		r.Inner.IPv4 += s.Inner[vocab.InnerIPv4]
		r.Inner.IPv6 += s.Inner[vocab.InnerIPv6]
		r.Inner.PPP += s.Inner[vocab.InnerPPP]
		r.Inner.Unknown += s.Inner[vocab.InnerUnknown]
		r.Inner.Empty += s.Inner[vocab.InnerEmpty]
		r.Routers = append(r.Routers, RouterReport{Addr: s.Router.String(), Packets: s.Packets, Bytes: s.Bytes})
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	if r.Streams == nil {
		r.Streams = []StreamReport{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON report: %w", err)
	}
	return nil
}

// WriteTable writes the report for a person to read.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MID\tSID\tPACKETS\tBYTES\tIPV4\tIPV6\tPPP\tUNKNOWN\tEMPTY\t ROUTERS")
	for _, s := range r.Streams {
		routers := make([]string, len(s.Routers))
		for i, rt := range s.Routers {
			routers[i] = fmt.Sprintf("%s (%d pkts)", rt.Addr, rt.Packets)
		}
		fmt.Fprintf(tw, "%d (0x%x)\t%d (0x%x)\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t %s\n",
			s.MID, s.MID, s.SID, s.SID, s.Packets, s.Bytes,
			s.Inner.IPv4, s.Inner.IPv6, s.Inner.PPP, s.Inner.Unknown, s.Inner.Empty,
			strings.Join(routers, ", "))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	t := r.Totals
	fmt.Fprintf(w, "\n%d streams; engine %s; ports %v\n", len(r.Streams), r.Engine, r.Ports)
	fmt.Fprintf(w, "frames %d: jmirror %d (%d bytes mirrored), not jmirror %d, malformed %d (short %d, truncated %d), later fragments %d (tracked %d, unmatched %d), untrusted %d\n",
		t.Frames, t.Jmirror, t.JmirrorBytes, t.NotJmirror, t.Malformed, t.MalformedShort, t.MalformedTruncated,
		t.Fragments-t.FragmentsDuplicate, t.FragmentsTracked, t.FragmentsUnmatched, t.Untrusted)
	if t.UntrustedMapped > 0 {
		fmt.Fprintf(w, "warning: %d Jmirror datagrams from IPv6 sources that embed an IPv4 address (::ffff:0:0/96, ::/96) dropped: never a router\n", t.UntrustedMapped)
	}
	if t.FragmentedDatagrams > 0 {
		fmt.Fprintf(w, "fragmented Jmirror datagrams: %d\n", t.FragmentedDatagrams)
	}
	if t.IPv6ExtTooLong > 0 {
		fmt.Fprintf(w, "outer IPv6 frames with more than 8 extension headers (not walked, passed): %d\n", t.IPv6ExtTooLong)
	}
	if t.FragmentsDuplicate > 0 || t.FragmentsHeld > 0 {
		fmt.Fprintf(w, "fragments: %d later ones ahead of their first (held by a live capture), %d copies of a first fragment (counted once, in no stream)\n",
			t.FragmentsHeld, t.FragmentsDuplicate)
	}
	if t.VersionNonzero > 0 {
		fmt.Fprintf(w, "warning: %d Jmirror headers have a non-zero version field\n", t.VersionNonzero)
	}
	if t.Skipped > 0 {
		fmt.Fprintf(w, "warning: %d frames skipped: shorter than 14 or longer than 65557 bytes, outside what XDP sees\n", t.Skipped)
	}
	for _, c := range r.CandidatePorts {
		fmt.Fprintf(w, "hint: %d Jmirror-looking packets to UDP port %d, which was not decoded: add --port %d, or use --port auto\n",
			c.Packets, c.Port, c.Port)
	}
	if len(r.Files) > 0 {
		fmt.Fprintf(w, "wrote %d packets to %d files", t.Written, len(r.Files))
		if t.ReassemblyFailed > 0 {
			fmt.Fprintf(w, " (%d fragmented datagrams could not be reassembled)", t.ReassemblyFailed)
		}
		fmt.Fprintln(w)
	}
	return nil
}
