package decode

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jmxdp/jmxdp/userspace/capfile"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/reasm"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// outWriter turns frames into per-stream pcapng files with the live
// capture's writers (writer.Manager in SingleFile mode: per-stream buffers,
// a bounded number of open files): decode each frame, reassemble outer
// IPv4 fragments, write the mirrored packet.
type outWriter struct {
	dir            string
	ports          []uint16
	allowUntrusted bool // --allow-untrusted-out
	// m is made at the first packet, under target().
	m *writer.Manager
	// paths and packets: each stream's file and what it holds, once m is
	// closed (complete).
	paths   map[streamID]string
	packets map[streamID]uint64
	reasm   *reasm.Reassembler
	written uint64
	// fragmented counts Jmirror first fragments (a copy of one within the
	// reassembly timeout once: firsts), reassembled the datagrams written
	// from fragments: the difference never made it to a file.
	fragmented, reassembled uint64
	firsts                  firstSeen
	// keep, if set, says which streams to write; stage, if set, is where
	// to write them until a filter decides (filter.go).
	keep  func(mid, sid uint32) bool
	stage string
	// completed: m is closed, paths and written are final.
	completed bool
}

type streamID struct{ mid, sid uint32 }

// StreamPath is where a stream's file lives under dir.
func StreamPath(dir string, mid, sid uint32) string {
	return writer.SingleFilePath(dir, writer.Key{MID: mid, SID: sid})
}

func newOutWriter(dir string, ports []uint16, allowUntrusted bool) (*outWriter, error) {
	if err := pcapng.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	// decode runs as root as often as not: a directory where another
	// user can plant links would let them aim its writes.
	if err := pcapng.CheckTrustedDir(dir); err != nil && !allowUntrusted {
		return nil, fmt.Errorf("%w (--allow-untrusted-out writes there anyway)", err)
	}
	return &outWriter{
		allowUntrusted: allowUntrusted,
		dir:            dir,
		ports:          ports,
		paths:          make(map[streamID]string),
		packets:        make(map[streamID]uint64),
		reasm:          reasm.New(reasm.Config{}),
	}, nil
}

func (o *outWriter) decoded(port uint16) bool { return slices.Contains(o.ports, port) }

// frame writes the mirrored packet f carries. An outer fragment goes to
// the reassembler, and the datagram it completes is written timestamped
// with its last fragment (as the kernel's defragmenter and tshark do).
func (o *outWriter) frame(f capfile.Frame) error {
	u := jmirror.Unwrap(f.Data, o.decoded, o.reasm, f.Time)
	if u.Fragment && u.Class == jmirror.ClassJmirror && u.Header.FirstFragment && o.firsts.first(f.Time, u.Header, f.Data) {
		o.fragmented++
	}
	if !u.OK {
		return nil // a fragment's failures are counted by the reassembler
	}
	if u.Fragment {
		o.reassembled++
	}
	return o.write(f.Time, &u)
}

func (o *outWriter) write(ts time.Time, u *jmirror.Unwrapped) error {
	h := &u.Packet
	if o.keep != nil && !o.keep(h.MID, h.SID) {
		return nil
	}
	if o.m == nil {
		// A capture's file is read back by tools that expect the
		// router on each packet: decode keeps the per-packet comment.
		m, err := writer.New(writer.Config{Dir: o.target(), SingleFile: true, PacketComments: true, AllowUntrustedDir: o.allowUntrusted})
		if err != nil {
			return fmt.Errorf("stream files: %w", err)
		}
		o.m = m
	}
	if !o.m.Write(writer.Key{MID: h.MID, SID: h.SID}, ts, h.Router, pcapng.KindOf(h.Inner), u.Payload()) {
		return fmt.Errorf("write mid %d sid %d: %s", h.MID, h.SID, o.failure())
	}
	return nil
}

// failure says why the writer dropped a packet.
func (o *outWriter) failure() string {
	st := o.m.Stats()
	var why []string
	for r := writer.DropReason(0); r < writer.NumDropReasons; r++ {
		if st.Drops[r] > 0 {
			why = append(why, fmt.Sprintf("%d packets dropped (%s)", st.Drops[r], r))
		}
	}
	if len(why) == 0 {
		return "dropped"
	}
	return strings.Join(why, ", ")
}

// complete closes the writer: every file written out and renamed into
// place under target(), paths and written set.
func (o *outWriter) complete() error {
	if o.completed {
		return nil
	}
	o.completed = true
	if o.m == nil {
		return nil
	}
	err := o.m.Close()
	for _, ss := range o.m.Streams() {
		if ss.Packets == 0 {
			continue
		}
		id := streamID{ss.Key.MID, ss.Key.SID}
		o.written += ss.Packets
		o.packets[id] = ss.Packets
		o.paths[id] = StreamPath(o.target(), ss.Key.MID, ss.Key.SID)
	}
	if err != nil {
		return fmt.Errorf("stream files: %w", err)
	}
	return nil
}

// finish records the files in the report.
func (o *outWriter) finish(rep *Report) error {
	if err := o.complete(); err != nil {
		return err
	}
	for i := range rep.Streams {
		s := &rep.Streams[i]
		s.File = o.paths[streamID{s.MID, s.SID}]
	}
	for _, p := range o.paths {
		rep.Files = append(rep.Files, p)
	}
	slices.Sort(rep.Files)
	rep.Totals.Written = o.written
	if o.fragmented > o.reassembled {
		rep.Totals.ReassemblyFailed = o.fragmented - o.reassembled
	}
	return nil
}

// close completes every file, whatever errors some of them give, so
// nothing already decoded is lost, and removes the staging directory.
func (o *outWriter) close() error {
	var errs []error
	errs = append(errs, o.complete())
	if o.stage != "" {
		errs = append(errs, os.RemoveAll(o.stage))
	}
	return errors.Join(errs...)
}

// firstSeen tells a Jmirror first fragment from a copy of one, as the
// kernel does (the fragment key, the stream, the mirrored length and the
// fingerprint of its first bytes) but by capture time, within the
// reassembly timeout: the reassembler discards such a copy, so it is not a
// datagram that failed. Bounded by time: entries older than the timeout go.
type firstSeen struct {
	at    map[firstKey]time.Time
	order []firstEntry
}

type firstKey struct {
	frag     jmirror.FragKey
	mid, sid uint32
	innerLen int
	fp       uint64
}

type firstEntry struct {
	k  firstKey
	at time.Time
}

// firstTimeout is the reassembler's default timeout, which decode uses.
const firstTimeout = 30 * time.Second

func (s *firstSeen) first(now time.Time, h jmirror.Header, frame []byte) bool {
	if s.at == nil {
		s.at = make(map[firstKey]time.Time)
	}
	for len(s.order) > 0 && now.Sub(s.order[0].at) >= firstTimeout {
		if e := s.order[0]; s.at[e.k].Equal(e.at) {
			delete(s.at, e.k)
		}
		s.order = s.order[1:]
	}
	k := firstKey{h.Frag, h.MID, h.SID, h.InnerLen, h.Fingerprint(frame)}
	if t, ok := s.at[k]; ok && now.Sub(t) < firstTimeout {
		return false
	}
	s.at[k] = now
	s.order = append(s.order, firstEntry{k, now})
	return true
}
