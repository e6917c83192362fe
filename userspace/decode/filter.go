package decode

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/jmxdp/jmxdp/userspace/filter"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// decode --filter: the report lists the streams that match, with the
// totals still over every frame, and --out writes only their files.
//
// Which streams match is known from a stream's first packet only when the
// filter refers to nothing but mid and sid: then --out never writes the
// others. A filter on router, inner, packets or bytes can change its
// answer until the capture ends (a second router, a first PPP packet, the
// hundredth packet), so --out writes every stream under a staging
// directory inside the output directory, and once the capture is read
// moves the matching streams' files into place and removes the rest. The
// staging directory (DIR/.jmxdp-filter-*) is on the same file system, so
// the moves are renames; it is removed whatever happens, so a failed
// decode leaves no file of a filtered run behind.

// filterStream is what a filter sees of a stream of the report: all the
// routers that sent it, its packets by inner kind, its totals over routers.
func filterStream(s StreamReport) filter.Stream {
	fs := filter.Stream{MID: s.MID, SID: s.SID, Packets: s.Packets, Bytes: s.Bytes}
	for _, r := range s.Routers {
		if a, err := netip.ParseAddr(r.Addr); err == nil {
			fs.Routers = append(fs.Routers, a)
		}
	}
	fs.Inner[vocab.InnerIPv4] = s.Inner.IPv4
	fs.Inner[vocab.InnerIPv6] = s.Inner.IPv6
	fs.Inner[vocab.InnerPPP] = s.Inner.PPP
	fs.Inner[vocab.InnerUnknown] = s.Inner.Unknown
	fs.Inner[vocab.InnerEmpty] = s.Inner.Empty
	return fs
}

// applyFilter keeps the report's matching streams and settles --out's
// files; it does nothing without a filter.
func applyFilter(rep *Report, f *filter.Filter, out *outWriter) error {
	if f == nil {
		return nil
	}
	rep.Filter = f.String()
	rep.StreamsTotal = len(rep.Streams)
	kept := rep.Streams[:0]
	for _, s := range rep.Streams {
		if f.Match(filterStream(s)) {
			kept = append(kept, s)
		}
	}
	rep.Streams = kept
	if out == nil {
		return nil
	}
	return out.settle(rep)
}

// useFilter prepares --out for a filter: see above.
func (o *outWriter) useFilter(f *filter.Filter) error {
	if f == nil {
		return nil
	}
	if f.OnlyIDs() {
		known := make(map[streamID]bool)
		o.keep = func(mid, sid uint32) bool {
			id := streamID{mid, sid}
			keep, ok := known[id]
			if !ok {
				keep = f.Match(filter.Stream{MID: mid, SID: sid})
				known[id] = keep
			}
			return keep
		}
		return nil
	}
	dir, err := os.MkdirTemp(o.dir, ".jmxdp-filter-")
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	o.stage = dir
	return nil
}

// target is the directory files are created under.
func (o *outWriter) target() string {
	if o.stage != "" {
		return o.stage
	}
	return o.dir
}

// settle moves the staged files of the streams left in the report into
// the output directory; close removes the staging directory with the rest.
func (o *outWriter) settle(rep *Report) error {
	if o.stage == "" {
		return nil
	}
	if err := o.complete(); err != nil {
		return err
	}
	paths := make(map[streamID]string)
	var written uint64
	for _, s := range rep.Streams {
		id := streamID{s.MID, s.SID}
		staged, ok := o.paths[id]
		if !ok {
			continue // no packet of it could be written: fragments not reassembled
		}
		path := StreamPath(o.dir, s.MID, s.SID)
		if err := pcapng.MkdirAll(filepath.Dir(path)); err != nil {
			return fmt.Errorf("output directory: %w", err)
		}
		// The rename must not follow a linked stream directory.
		if err := pcapng.CheckNoLinks(o.dir, filepath.Dir(path)); err != nil {
			return fmt.Errorf("output directory: %w", err)
		}
		if err := os.Rename(staged, path); err != nil {
			return fmt.Errorf("move stream file into place: %w", err)
		}
		paths[id] = path
		written += o.packets[id]
	}
	o.paths, o.written = paths, written
	return nil
}
