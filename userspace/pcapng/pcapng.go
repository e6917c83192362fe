// Package pcapng writes the decapsulated packets of one Jmirror stream to a
// pcapng file, one interface per (router, link type) so Wireshark keeps
// routers and encapsulations apart.
//
// A Writer never leaves a corrupt file behind: blocks are buffered and
// written whole, and when a write fails (disk full, I/O error) the file is
// truncated back to the last complete block and the Writer forgets what the
// failed write held, reporting the packets lost in a *WriteError. It stays
// usable, so a later packet retries. Append reopens a file to add packets and
// cuts off a torn tail left by a crash.
package pcapng

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// LinkKind is the encapsulation of a mirrored packet.
type LinkKind uint8

const (
	// LinkUnknown is a mirrored payload that is neither IP nor PPP (or is
	// empty). It is kept byte for byte under LINKTYPE_USER0 (147), which
	// Wireshark shows as plain data rather than as broken IP.
	LinkUnknown LinkKind = iota
	// LinkRawIP is a bare IPv4 or IPv6 packet (LINKTYPE_RAW, 101).
	LinkRawIP
	// LinkPPPHDLC is a PPP frame in HDLC-like framing, starting FF 03
	// (LINKTYPE_PPP_HDLC, 50), as routers mirror L2TP and PPPoE sessions.
	LinkPPPHDLC
)

// LinkType returns the pcapng link type of k.
func (k LinkKind) LinkType() (layers.LinkType, error) {
	switch k {
	case LinkUnknown:
		return linkTypeUser0, nil
	case LinkRawIP:
		return layers.LinkTypeRaw, nil
	case LinkPPPHDLC:
		return layers.LinkTypePPP_HDLC, nil
	}
	return 0, fmt.Errorf("unknown link kind %d", uint8(k))
}

func (k LinkKind) String() string {
	switch k {
	case LinkUnknown:
		return "unknown"
	case LinkRawIP:
		return "ip"
	case LinkPPPHDLC:
		return "ppp"
	}
	return fmt.Sprintf("LinkKind(%d)", uint8(k))
}

// KindOf is the encapsulation a mirrored packet of kind k is written with.
func KindOf(k vocab.Inner) LinkKind {
	switch k {
	case vocab.InnerIPv4, vocab.InnerIPv6:
		return LinkRawIP
	case vocab.InnerPPP:
		return LinkPPPHDLC
	}
	return LinkUnknown
}

// linkTypeUser0 is LINKTYPE_USER0, which layers does not name.
const linkTypeUser0 layers.LinkType = 147

const (
	dirMode  = 0o700
	fileMode = 0o600
	// With a group (Options.GID): the group reads files and enters
	// directories, and setgid directories hand their group to what is
	// created in them, so a new file needs no chown.
	groupDirMode  = 0o750 | os.ModeSetgid
	groupFileMode = 0o640
)

// Modes returns the modes of the directories and files made for group gid
// (0: none, root-only).
func Modes(gid uint32) (dir, file os.FileMode) {
	if gid != 0 {
		return groupDirMode, groupFileMode
	}
	return dirMode, fileMode
}

// DefaultBufferSize is the Writer's buffer size unless Options say
// otherwise.
const DefaultBufferSize = 64 << 10

// minBufClass is the smallest buffer a Writer takes: a stream that sends a
// packet a second holds no more than this between two flushes.
const minBufClass = 1 << 10

// ErrNeedsFile is returned by WritePacket on a suspended Writer whose
// buffer cannot take the packet: Reopen it (or Flush after Reopen) first.
// Nothing changed.
var ErrNeedsFile = errors.New("pcapng: buffer full and the file is closed")

// Options tune CreateWith, AppendWith and Resume. The zero value is what
// Create and Append use.
type Options struct {
	// BufferSize is how many bytes of blocks a Writer holds before writing
	// them to the file; 0 means DefaultBufferSize. It bounds what one failed
	// write can lose (and the Writer's memory).
	BufferSize int
	// Exclusive makes CreateWith fail, with an error matching fs.ErrExist,
	// when the file exists (O_EXCL) instead of truncating it.
	Exclusive bool
	// NoPacketComments leaves out the per-packet "router=<address>"
	// comment: the packet's interface already names its router (if_name,
	// if_description), and the comment costs 20-44 bytes a packet.
	NoPacketComments bool
	// Memory, if set, is added every buffer's capacity while the Writer
	// holds it, so that the owner of many Writers can bound their total.
	Memory *atomic.Int64
	// DirReady says the caller made the file's directory (mode 0700), and
	// UmaskKeepsMode that the process's umask leaves 0600 alone: CreateIn
	// then skips the directory walk and the chmod, which are most of the
	// system calls of a new stream's file.
	DirReady, UmaskKeepsMode bool
	// GID, if not 0, is the group given read access: files get mode 0640
	// and directories 0750 with the setgid bit, chowned to GID when made
	// here (a file takes its directory's group). UmaskKeepsMode then
	// means the umask leaves 0750 alone.
	GID uint32
}

func (o Options) bufSize() int {
	if o.BufferSize <= 0 {
		return DefaultBufferSize
	}
	return o.BufferSize
}

// WriteError is returned when writing to the file failed. The file was
// truncated back to its last complete block, so it is still valid, but the
// packets the Writer had accepted and not yet written are gone.
type WriteError struct {
	// Lost counts the packets accepted (by WritePacket calls that returned
	// nil) but never written, plus the packet of the failing WritePacket
	// call, if it was one.
	Lost int
	// Bytes is the size of the write that failed: what did not fit.
	Bytes int
	Err   error
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("%v (%d packets lost)", e.Err, e.Lost)
}

func (e *WriteError) Unwrap() error { return e.Err }

// file is what a Writer needs of its *os.File; tests inject faults here.
type file interface {
	io.WriterAt
	Truncate(size int64) error
	Close() error
}

type ifaceKey struct {
	router netip.Addr
	kind   LinkKind
}

type iface struct {
	index   uint32
	comment string // "router=<addr>"
}

// Writer writes one stream's pcapng file. It is not safe for concurrent use.
//
// Blocks go to a buffer that is written to the file as a whole when full, on
// Flush and on Close. The Writer keeps the committed state (the file's size
// and the interfaces and packets it holds); a failed write rolls the file
// and the Writer back to it.
type Writer struct {
	// What every packet touches comes first, in two cache lines: with
	// thousands of streams, a packet's Writer is rarely in cache.
	buf []byte // nil until the first block, and after each flush
	f   file   // nil while suspended
	// lastIdx is the interface id of the previous packet (-1: none yet),
	// lastKey its key: most streams have one.
	lastKey ifaceKey
	lastIdx int
	packets uint64 // accepted: written or buffered
	bytes   uint64
	off     int64 // committed: the file's size
	bufSize int
	// class is the capacity of the next buffer taken: it doubles, up to
	// bufSize, each time a buffer fills, and halves each time Flush finds
	// one less than a quarter full, so that a slow stream holds little.
	class    int
	comments bool
	// torn is set when a failed write could not be truncated off; the
	// truncation is retried before anything else is written.
	torn   bool
	closed bool
	gid    uint32 // Options.GID, for Restart (in the bools' padding)

	path     string
	mid, sid uint32
	mem      *atomic.Int64
	// ifList are the interfaces by id, ifcs theirs; ifaces indexes them
	// once there are more than ifaceScan.
	ifList []ifaceKey
	ifcs   []*iface
	ifaces map[ifaceKey]*iface

	// Committed: what the file holds (and off).
	cIfaces  int
	cPackets uint64
	cBytes   uint64

	recovered int64
}

// bufPools hold buffers by power-of-two capacity, from minBufClass up.
var bufPools [16]sync.Pool

func poolOf(c int) *sync.Pool {
	if c < minBufClass || c&(c-1) != 0 {
		return nil
	}
	i := 0
	for n := minBufClass; n < c; n <<= 1 {
		i++
	}
	if i >= len(bufPools) {
		return nil
	}
	return &bufPools[i]
}

// ensureBuf takes a buffer of at least need bytes (a block larger than
// the class gets a buffer of its own).
func (w *Writer) ensureBuf(need int) {
	if w.buf != nil {
		return
	}
	c := max(w.class, need)
	if p := poolOf(c); p != nil {
		if b, ok := p.Get().(*[]byte); ok {
			w.buf = (*b)[:0]
		}
	}
	if w.buf == nil {
		w.buf = make([]byte, 0, c)
	}
	if w.mem != nil {
		w.mem.Add(int64(cap(w.buf)))
	}
}

func (w *Writer) releaseBuf() {
	w.putBuf(w.buf)
	w.buf = nil
}

// putBuf gives a buffer of this Writer's back to its pool.
func (w *Writer) putBuf(b []byte) {
	if b == nil {
		return
	}
	if w.mem != nil {
		w.mem.Add(-int64(cap(b)))
	}
	if p := poolOf(cap(b)); p != nil {
		b = b[:0]
		p.Put(&b)
	}
}

// limit is how far the buffer fills before it is written out.
func (w *Writer) limit() int {
	if w.buf != nil {
		return max(cap(w.buf), w.class)
	}
	return w.class
}

func newWriter(f file, path string, mid, sid uint32, o Options) *Writer {
	w := new(Writer)
	initWriter(w, f, path, mid, sid, o)
	return w
}

func initWriter(w *Writer, f file, path string, mid, sid uint32, o Options) {
	bs := o.bufSize()
	*w = Writer{
		path:     path,
		f:        f,
		mid:      mid,
		sid:      sid,
		bufSize:  bs,
		class:    min(bs, minBufClass),
		comments: !o.NoPacketComments,
		gid:      o.GID,
		mem:      o.Memory,
		lastIdx:  -1,
	}
}

// addIface appends an interface (its key unmapped).
func (w *Writer) addIface(k ifaceKey, ifc *iface) {
	w.ifList = append(w.ifList, k)
	w.ifcs = append(w.ifcs, ifc)
	if w.ifaces == nil && len(w.ifList) > ifaceScan {
		w.ifaces = make(map[ifaceKey]*iface, 2*len(w.ifList))
		for i, k := range w.ifList {
			if _, dup := w.ifaces[k]; !dup {
				w.ifaces[k] = w.ifcs[i]
			}
		}
	} else if w.ifaces != nil {
		if _, dup := w.ifaces[k]; !dup {
			w.ifaces[k] = ifc
		}
	}
}

// Create creates (or truncates) the pcapng file at path for the stream
// (mid, sid); the section header is written with the first flush. Missing
// parent directories are created with mode 0700 and the file gets mode 0600,
// whatever the umask or the mode of a file it replaces: the contents are
// intercepted traffic.
func Create(path string, mid, sid uint32) (*Writer, error) {
	return CreateWith(path, mid, sid, Options{})
}

// CreateWith is Create with options.
func CreateWith(path string, mid, sid uint32, o Options) (*Writer, error) {
	w := new(Writer)
	if err := CreateIn(w, path, mid, sid, o); err != nil {
		return nil, err
	}
	return w, nil
}

// CreateIn is CreateWith into a Writer the caller allocated (zero, or
// closed): a caller keeping thousands of streams puts each one's Writer
// next to its own state, which the per-packet path then finds in cache
// together.
func CreateIn(w *Writer, path string, mid, sid uint32, o Options) error {
	if !o.DirReady {
		if err := mkdirAll(filepath.Dir(path), o.GID); err != nil {
			return err
		}
	}
	// Never through a link: a root process must not write where a
	// planted link points.
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC | syscall.O_NOFOLLOW
	if o.Exclusive {
		flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL | syscall.O_NOFOLLOW
	}
	_, mode := Modes(o.GID)
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return fmt.Errorf("create pcapng file: %w", err)
	}
	// O_CREATE's mode is filtered by the umask and ignored for an existing
	// file, so set it explicitly (unless the file is new, O_EXCL, and the
	// umask keeps the mode).
	if !(o.Exclusive && o.UmaskKeepsMode) {
		if err := f.Chmod(mode); err != nil {
			f.Close()
			return fmt.Errorf("set mode of %s: %w", path, err)
		}
	}
	initWriter(w, f, path, mid, sid, o)
	return nil
}

// mkdirAll is os.MkdirAll that gives the directories it creates mode 0700
// (or, with a group, 2750 and that group) regardless of the umask and
// leaves existing ones alone.
func mkdirAll(dir string, gid uint32) error {
	mode, _ := Modes(gid)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("create directory %s: %s is not a directory", dir, d)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("create directory %s: %w", dir, err)
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := os.Mkdir(d, mode.Perm()); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue // created meanwhile by someone else: not ours to chmod
			}
			return fmt.Errorf("create directory: %w", err)
		}
		if gid != 0 {
			// Before the chmod: chown clears the setgid bit.
			if err := os.Lchown(d, -1, int(gid)); err != nil {
				return fmt.Errorf("set group of directory: %w", err)
			}
		}
		if err := os.Chmod(d, mode); err != nil {
			return fmt.Errorf("set mode of directory: %w", err)
		}
	}
	return nil
}

// MkdirAll creates dir and its missing parents with mode 0700, whatever the
// umask, leaving existing directories alone.
func MkdirAll(dir string) error { return mkdirAll(dir, 0) }

// MkdirAllGroup is MkdirAll for group gid (0: MkdirAll): the directories
// it creates get mode 2750 and that group.
func MkdirAllGroup(dir string, gid uint32) error { return mkdirAll(dir, gid) }

// CheckPacket reports whether WritePacket would take a packet of n bytes
// with these attributes; it says nothing about the file.
func CheckPacket(ts time.Time, router netip.Addr, kind LinkKind, n int) error {
	return CheckPacketAt(Nanos(ts), router, kind, n)
}

// Nanos is ts in the nanoseconds since 1970 that WritePacketAt takes, or
// an out-of-range value (which CheckPacketAt refuses) for a time pcapng
// cannot hold: before 1970, or after 2262, where time.UnixNano ends.
func Nanos(ts time.Time) uint64 {
	if ts.Before(time.Unix(0, 0)) || ts.After(time.Unix(0, math.MaxInt64)) {
		return math.MaxUint64
	}
	return uint64(ts.UnixNano())
}

// CheckPacketAt is CheckPacket with the time as WritePacketAt takes it.
func CheckPacketAt(ns uint64, router netip.Addr, kind LinkKind, n int) error {
	if !router.IsValid() {
		return errors.New("invalid router address")
	}
	if kind > LinkPPPHDLC {
		return fmt.Errorf("unknown link kind %d", uint8(kind))
	}
	if ns > math.MaxInt64 {
		return errors.New("timestamp out of pcapng range (1970 to 2262)")
	}
	if n > MaxPacketLen {
		return fmt.Errorf("packet of %d bytes, longer than %d", n, MaxPacketLen)
	}
	return nil
}

// WritePacket appends one decapsulated packet mirrored by router. The first
// packet of each (router, kind) pair adds an interface named
// jmirror-<router>-<ip|ppp|unknown>. Timestamps keep nanosecond resolution.
//
// The packet goes to the buffer, which is written out when it cannot take
// the next block. If that write fails, the error is a *WriteError: the file
// is still valid, and the packets it had not received, this one included,
// are lost. Other errors (closed Writer, invalid packet) change nothing.
func (w *Writer) WritePacket(ts time.Time, router netip.Addr, kind LinkKind, data []byte) error {
	return w.WritePacketAt(Nanos(ts), router, kind, data)
}

// WritePacketAt is WritePacket with the time in nanoseconds since 1970,
// for callers that convert their clock once per batch. What CheckPacketAt
// refuses, and a closed Writer, change nothing and return an error.
//
// On a suspended Writer (see Suspend) the packet goes to the buffer if it
// fits; if it does not, WritePacketAt returns ErrNeedsFile and changes
// nothing.
func (w *Writer) WritePacketAt(ns uint64, router netip.Addr, kind LinkKind, data []byte) error {
	if w.closed {
		return fmt.Errorf("write %s: writer is closed", w.path)
	}
	if err := CheckPacketAt(ns, router, kind, len(data)); err != nil {
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	if w.torn {
		if w.f == nil {
			return ErrNeedsFile
		}
		if err := w.retruncate(); err != nil {
			return &WriteError{Lost: 1, Err: err}
		}
	}
	key := ifaceKey{router, kind}
	idx := w.lastIdx
	if idx < 0 || w.lastKey != key {
		idx = -1
		if ifc := w.lookupIface(key); ifc != nil {
			idx = int(ifc.index)
		}
	}
	need := 0
	comment := ""
	if idx < 0 {
		need += idbLen(ifaceKey{router, kind})
		if w.comments {
			comment = "router=" + router.String()
		}
	} else if w.comments {
		comment = w.ifcs[idx].comment
	}
	need += epbLen(len(data), comment)
	if w.off == 0 && len(w.buf) == 0 {
		need += shbLen(w.mid, w.sid)
	}
	if len(w.buf) > 0 && len(w.buf)+need > w.limit() {
		if w.f == nil {
			return ErrNeedsFile
		}
		w.class = min(w.class*2, w.bufSize) // filled: the next one is larger
		if werr := w.flush(); werr != nil {
			werr.Lost++ // this packet never made it into the buffer
			return werr
		}
	}
	w.ensureBuf(need)
	w.ensureSHB()
	if idx < 0 {
		ukey := ifaceKey{router, kind}
		idx = len(w.ifList)
		w.addIface(ukey, &iface{index: uint32(idx), comment: "router=" + ukey.router.String()})
		w.buf = appendIDB(w.buf, ukey)
	}
	w.lastKey, w.lastIdx = key, idx
	w.buf = appendEPB(w.buf, uint32(idx), ns, data, comment)
	w.packets++
	w.bytes += uint64(len(data))
	if len(w.buf) >= w.bufSize && w.f != nil {
		w.class = w.bufSize
		if werr := w.flush(); werr != nil {
			return werr
		}
	}
	return nil
}

// lookupIface finds the interface of key; nil if it has none yet. An
// IPv4-mapped IPv6 router is not the IPv4 router: it gets an interface of
// its own, never the IPv4 router's tag.
func (w *Writer) lookupIface(key ifaceKey) *iface {
	if w.ifaces == nil {
		// A few interfaces (routers x kinds): a scan is cheaper than
		// hashing the key.
		for i, k := range w.ifList {
			if k == key {
				return w.ifcs[i]
			}
		}
		return nil
	}
	return w.ifaces[key]
}

// ifaceScan is how many interfaces lookupIface scans rather than hashes.
const ifaceScan = 16

// ensureSHB starts the buffer with the section header if the file has
// nothing yet (or all of it was rolled back).
func (w *Writer) ensureSHB() {
	if w.off == 0 && len(w.buf) == 0 {
		w.ensureBuf(shbLen(w.mid, w.sid))
		w.buf = appendSHB(w.buf, w.mid, w.sid)
	}
}

// flush writes the buffer at the committed offset; on failure it rolls
// back.
func (w *Writer) flush() *WriteError {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.f.WriteAt(w.buf, w.off); err != nil {
		lost := int(w.packets - w.cPackets)
		n := len(w.buf)
		return &WriteError{Lost: lost, Bytes: n, Err: w.rollback(err)}
	}
	w.off += int64(len(w.buf))
	// The buffer goes back to its pool: a stream between two flushes
	// holds none.
	w.releaseBuf()
	w.cIfaces = len(w.ifList)
	w.cPackets, w.cBytes = w.packets, w.bytes
	return nil
}

// rollback forgets the buffer and truncates off whatever part of it reached
// the file.
func (w *Writer) rollback(cause error) error {
	w.releaseBuf()
	w.lastIdx = -1
	for _, k := range w.ifList[w.cIfaces:] {
		if w.ifaces != nil && w.ifaces[k] != nil && w.ifaces[k].index >= uint32(w.cIfaces) {
			delete(w.ifaces, k)
		}
	}
	w.ifList = w.ifList[:w.cIfaces]
	w.ifcs = w.ifcs[:w.cIfaces]
	w.packets, w.bytes = w.cPackets, w.cBytes
	w.torn = true
	if err := w.retruncate(); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

func (w *Writer) retruncate() error {
	if err := w.f.Truncate(w.off); err != nil {
		return fmt.Errorf("truncate %s back to %d bytes: %w", w.path, w.off, err)
	}
	w.torn = false
	return nil
}

// Flush writes buffered data to the file. On failure the error is a
// *WriteError, as for WritePacket.
func (w *Writer) Flush() error {
	if w.closed {
		return nil
	}
	if w.f == nil {
		if len(w.buf) == 0 && w.off > 0 {
			return nil
		}
		return ErrNeedsFile
	}
	if w.torn {
		// The buffer is empty: WritePacket takes nothing while torn.
		return w.retruncate()
	}
	if n := len(w.buf); n > 0 && n < w.limit()/4 {
		w.class = max(w.class/2, min(w.bufSize, minBufClass)) // a slow stream
	}
	w.ensureSHB()
	if werr := w.flush(); werr != nil {
		return werr
	}
	return nil
}

// Suspend flushes the buffer and closes the file, keeping the Writer's
// state: WritePacket then fills a new buffer until it is full, and Reopen
// opens the file again. Suspending a suspended Writer does nothing. If the
// flush fails the file is rolled back, as for WritePacket, and closed all
// the same.
func (w *Writer) Suspend() error {
	if w.closed || w.f == nil {
		return nil
	}
	var errs []error
	if err := w.Flush(); err != nil {
		errs = append(errs, err)
		if w.torn {
			if err := w.retruncate(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	w.releaseBuf()
	if err := w.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close %s: %w", w.path, err))
	}
	w.f = nil
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// Suspended reports whether the file is closed (Suspend) and the Writer not.
func (w *Writer) Suspended() bool { return w.f == nil && !w.closed }

// Reopen opens a suspended Writer's file again, to append at the size it
// had. A file that is longer (a failed write left a tail that could not be
// cut off) is truncated back, counted in Recovered; one that is shorter or
// gone is an error (matching fs.ErrNotExist if gone), and the Writer stays
// suspended.
func (w *Writer) Reopen() error {
	if w.closed {
		return fmt.Errorf("reopen %s: writer is closed", w.path)
	}
	if w.f != nil {
		return nil
	}
	f, err := os.OpenFile(w.path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if fi.Size() < w.off {
		f.Close()
		return fmt.Errorf("reopen %s: %d bytes, %d written: %w", w.path, fi.Size(), w.off, ErrIncomplete)
	}
	if fi.Size() > w.off {
		if err := f.Truncate(w.off); err != nil {
			f.Close()
			return fmt.Errorf("truncate %s to %d bytes: %w", w.path, w.off, err)
		}
		w.recovered += fi.Size() - w.off
	}
	w.f = f
	w.torn = false
	return nil
}

// Close flushes and closes the file; if the flush fails the file is rolled
// back as for WritePacket and closed, and the error is (or wraps) a
// *WriteError. Calling Close again does nothing.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	var errs []error
	if w.f == nil {
		// Suspended: whatever is buffered needs the file back.
		if len(w.buf) == 0 && w.off > 0 {
			w.closed = true
			return nil
		}
		if err := w.Reopen(); err != nil {
			w.closed = true
			lost := int(w.packets - w.cPackets)
			w.releaseBuf()
			w.packets, w.bytes = w.cPackets, w.cBytes
			return &WriteError{Lost: lost, Err: err}
		}
	}
	if w.torn {
		if err := w.retruncate(); err != nil {
			errs = append(errs, err)
		}
	}
	if !w.torn {
		w.ensureSHB() // a file without packets is still valid pcapng
		if werr := w.flush(); werr != nil {
			errs = append(errs, werr)
			if w.torn { // and the rollback failed: one last try
				if err := w.retruncate(); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	w.closed = true
	w.releaseBuf()
	if err := w.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close %s: %w", w.path, err))
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// Path returns the file's path.
func (w *Writer) Path() string { return w.path }

// Packets returns the number of packets accepted: in the file or in the
// buffer. After Close (or after a write error) it is what the file holds.
func (w *Writer) Packets() uint64 { return w.packets }

// Bytes returns the number of packet data bytes accepted, without pcapng
// framing.
func (w *Writer) Bytes() uint64 { return w.bytes }

// Committed returns the packets and packet data bytes the file holds, not
// counting the buffer.
func (w *Writer) Committed() (packets, bytes uint64) { return w.cPackets, w.cBytes }

// Size returns the size the file will have once the buffer is written.
func (w *Writer) Size() int64 { return w.off + int64(len(w.buf)) }

// Buffered returns the number of bytes waiting in the buffer.
func (w *Writer) Buffered() int { return len(w.buf) }

// Recovered returns the number of bytes Append (or Resume) cut off the end
// of the file: a torn block left by a crash or a failed write.
func (w *Writer) Recovered() int64 { return w.recovered }

// State is a snapshot of what a Writer's file holds, enough for Resume to
// reopen it without reading it again. It is small: no buffer.
type State struct {
	valid    bool
	size     int64
	mid, sid uint32
	packets  uint64
	bytes    uint64
	ifaces   []ifaceKey
}

// Size returns the file's size in bytes.
func (s State) Size() int64 { return s.size }

// Packets returns the number of packets in the file.
func (s State) Packets() uint64 { return s.packets }

// Bytes returns the number of packet data bytes in the file.
func (s State) Bytes() uint64 { return s.bytes }

// State returns the committed state: what the file holds, without the
// buffer. Take it after Close to Resume the file later.
func (w *Writer) State() State {
	return State{
		valid:   true,
		size:    w.off,
		mid:     w.mid,
		sid:     w.sid,
		packets: w.cPackets,
		bytes:   w.cBytes,
		ifaces:  slices.Clone(w.ifList[:w.cIfaces]),
	}
}

// restore sets the committed (and accepted) state.
func (w *Writer) restore(size int64, ifaces []ifaceKey, packets, bytes uint64) {
	w.off = size
	w.ifList, w.ifcs, w.ifaces = nil, nil, nil
	for i, k := range ifaces {
		ifc := w.lookupIface(k) // a file may name a (router, kind) twice: the first wins
		if ifc == nil {
			ifc = &iface{index: uint32(i), comment: "router=" + k.router.String()}
		}
		w.addIface(k, ifc)
	}
	w.cIfaces = len(ifaces)
	w.packets, w.cPackets = packets, packets
	w.bytes, w.cBytes = bytes, bytes
}

// Restart moves a suspended Writer whose file is gone (deleted behind its
// back) to a new file at path, created as CreateWith does with Exclusive:
// the packets still in the buffer go there, after a section header and the
// interfaces they use, so they are not lost with the old file. The old
// file's packets are no longer counted in Packets.
func (w *Writer) Restart(path string) error {
	if w.closed || w.f != nil {
		return fmt.Errorf("restart %s: writer not suspended", w.path)
	}
	if err := mkdirAll(filepath.Dir(path), w.gid); err != nil {
		return err
	}
	_, mode := Modes(w.gid)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return fmt.Errorf("create pcapng file: %w", err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("set mode of %s: %w", path, err)
	}
	// The interfaces the old file held, then what the buffer holds: its
	// blocks keep their interface ids.
	prefix := appendSHB(nil, w.mid, w.sid)
	for _, k := range w.ifList[:w.cIfaces] {
		prefix = appendIDB(prefix, k)
	}
	old := w.buf
	w.buf = nil
	w.ensureBuf(len(prefix) + len(old))
	w.buf = append(append(w.buf, prefix...), old...)
	w.putBuf(old)
	w.path, w.f, w.off, w.torn, w.recovered = path, f, 0, false, 0
	w.packets -= w.cPackets
	w.bytes -= w.cBytes
	w.cPackets, w.cBytes, w.cIfaces = 0, 0, 0
	return nil
}
