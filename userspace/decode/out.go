package decode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jmxdp/jmxdp/userspace/capfile"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/reasm"
)

// outWriter turns frames into per-stream pcapng files, as the live writers
// do with captured frames: decode each frame, reassemble outer IPv4
// fragments, write the mirrored packet.
type outWriter struct {
	dir     string
	ports   []uint16
	files   map[streamID]*pcapng.Writer
	paths   map[streamID]string
	reasm   *reasm.Reassembler
	written uint64
	// fragmented counts Jmirror first fragments, reassembled the datagrams
	// written from fragments: the difference never made it to a file.
	fragmented, reassembled uint64
	// keep, if set, says which streams to write; stage, if set, is where
	// to write them until a filter decides (filter.go).
	keep  func(mid, sid uint32) bool
	stage string
}

type streamID struct{ mid, sid uint32 }

// StreamPath is where a stream's file lives under dir.
func StreamPath(dir string, mid, sid uint32) string {
	return filepath.Join(dir, fmt.Sprintf("mid-%d", mid), fmt.Sprintf("sid-%d.pcapng", sid))
}

func newOutWriter(dir string, ports []uint16) (*outWriter, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	return &outWriter{
		dir:   dir,
		ports: ports,
		files: make(map[streamID]*pcapng.Writer),
		paths: make(map[streamID]string),
		reasm: reasm.New(reasm.Config{}),
	}, nil
}

func (o *outWriter) decoded(port uint16) bool { return slices.Contains(o.ports, port) }

func (o *outWriter) frame(f capfile.Frame) error {
	h, class := jmirror.Decode(f.Data, o.decoded)
	if h.FirstFragment || h.LaterFragment {
		return o.fragment(f, h, class)
	}
	if class != jmirror.ClassJmirror {
		return nil
	}
	return o.write(f.Time, f.Data, h)
}

// fragment feeds an outer IPv4 fragment to the reassembler and writes the
// datagram it completes, timestamped with its last fragment (as the
// kernel's defragmenter and tshark do).
func (o *outWriter) fragment(f capfile.Frame, h jmirror.Header, class jmirror.Class) error {
	if class == jmirror.ClassJmirror && h.FirstFragment {
		o.fragmented++
	}
	dgram, complete, err := o.reasm.Add(f.Time, f.Data[h.IPOffset:])
	if err != nil || !complete {
		return nil // counted by the reassembler
	}
	frame := make([]byte, h.IPOffset+len(dgram))
	copy(frame, f.Data[:h.IPOffset])
	copy(frame[h.IPOffset:], dgram)
	rh, rclass := jmirror.Decode(frame, o.decoded)
	if rclass != jmirror.ClassJmirror {
		return nil
	}
	o.reassembled++
	return o.write(f.Time, frame, rh)
}

func (o *outWriter) write(ts time.Time, frame []byte, h jmirror.Header) error {
	if o.keep != nil && !o.keep(h.MID, h.SID) {
		return nil
	}
	id := streamID{h.MID, h.SID}
	w, ok := o.files[id]
	if !ok {
		path := StreamPath(o.target(), h.MID, h.SID)
		var err error
		if w, err = pcapng.Create(path, h.MID, h.SID); err != nil {
			return fmt.Errorf("create stream file: %w", err)
		}
		o.files[id] = w
		o.paths[id] = path
	}
	inner := frame[h.InnerOffset() : h.InnerOffset()+h.InnerLen]
	if err := w.WritePacket(ts, h.Router, pcapng.KindOf(h.Inner), inner); err != nil {
		return fmt.Errorf("write mid %d sid %d: %w", h.MID, h.SID, err)
	}
	o.written++
	return nil
}

// finish records the files in the report.
func (o *outWriter) finish(rep *Report) {
	for i := range rep.Streams {
		s := &rep.Streams[i]
		s.File = o.paths[streamID{s.MID, s.SID}]
	}
	for _, p := range o.paths {
		rep.Files = append(rep.Files, p)
	}
	slices.Sort(rep.Files)
	rep.Totals.Written = o.written
	rep.Totals.ReassemblyFailed = o.fragmented - o.reassembled
}

// close flushes and closes every file, whatever errors some of them give,
// so nothing already decoded is lost.
func (o *outWriter) close() error {
	var errs []error
	for _, w := range o.files {
		errs = append(errs, w.Close())
	}
	if o.stage != "" {
		errs = append(errs, os.RemoveAll(o.stage))
	}
	return errors.Join(errs...)
}
