// Package pcapng writes the decapsulated packets of one Jmirror stream to a
// pcapng file, one interface per (router, link type) so Wireshark keeps
// routers and encapsulations apart.
package pcapng

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
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

// linkTypeUser0 is LINKTYPE_USER0, which layers does not name.
const linkTypeUser0 layers.LinkType = 147

const (
	dirMode  = 0o700
	fileMode = 0o600
	bufSize  = 64 << 10
	shbType  = 0x0a0d0d0a
)

type ifaceKey struct {
	router netip.Addr
	kind   LinkKind
}

type iface struct {
	index int
	opts  pcapgo.NgPacketOptions // carries the "router=" comment
}

// Writer writes one stream's pcapng file. It is not safe for concurrent use.
type Writer struct {
	path   string
	f      *os.File
	bw     *bufio.Writer
	ng     *pcapgo.NgWriter
	ifaces map[ifaceKey]iface
	// ngBase is the NgWriter interface id that maps to the file's interface
	// 0; see Create.
	ngBase  int
	packets uint64
	bytes   uint64
	closed  bool
}

// redirect lets the NgWriter be built against a scratch buffer and then
// pointed at the file.
type redirect struct{ w io.Writer }

func (r *redirect) Write(p []byte) (int, error) { return r.w.Write(p) }

// Create creates (or truncates) the pcapng file at path for the stream
// (mid, sid) and writes its section header. Missing parent directories are
// created with mode 0700 and the file gets mode 0600, whatever the umask or
// the mode of a file it replaces: the contents are intercepted traffic.
func Create(path string, mid, sid uint32) (*Writer, error) {
	if err := mkdirAll(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return nil, fmt.Errorf("create pcapng file: %w", err)
	}
	// O_CREATE's mode is filtered by the umask and ignored for an existing
	// file, so set it explicitly.
	if err := f.Chmod(fileMode); err != nil {
		f.Close()
		return nil, fmt.Errorf("set mode of %s: %w", path, err)
	}
	w, err := newWriter(f, path, mid, sid)
	if err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

func newWriter(f *os.File, path string, mid, sid uint32) (*Writer, error) {
	// pcapgo.NgWriter always writes an interface right after the section
	// header, but our interfaces only become known with the packets. So the
	// NgWriter first writes into a scratch buffer, only the section header
	// goes to the file, and the placeholder interface (NgWriter id 0) is
	// dropped: NgWriter id n is file interface n-1 from then on.
	var scratch bytes.Buffer
	sink := &redirect{w: &scratch}
	ng, err := pcapgo.NewNgWriterInterface(sink, pcapgo.NgInterface{LinkType: layers.LinkTypeRaw}, pcapgo.NgWriterOptions{
		SectionInfo: pcapgo.NgSectionInfo{
			Application: "jmxdp",
			Comment:     fmt.Sprintf("Jmirror mid=%d sid=%d", mid, sid),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("pcapng section header: %w", err)
	}
	if err := ng.Flush(); err != nil {
		return nil, fmt.Errorf("pcapng section header: %w", err)
	}
	hdr := scratch.Bytes()
	if len(hdr) < 12 || binary.LittleEndian.Uint32(hdr) != shbType ||
		int(binary.LittleEndian.Uint32(hdr[4:8])) > len(hdr) {
		return nil, fmt.Errorf("pcapng section header: unexpected output from pcapgo (%d bytes)", len(hdr))
	}
	bw := bufio.NewWriterSize(f, bufSize)
	if _, err := bw.Write(hdr[:binary.LittleEndian.Uint32(hdr[4:8])]); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	sink.w = bw
	return &Writer{
		path:   path,
		f:      f,
		bw:     bw,
		ng:     ng,
		ifaces: make(map[ifaceKey]iface),
		ngBase: 1,
	}, nil
}

// mkdirAll is os.MkdirAll that gives the directories it creates mode 0700
// regardless of the umask and leaves existing ones alone.
func mkdirAll(dir string) error {
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
		if err := os.Mkdir(d, dirMode); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue // created meanwhile by someone else: not ours to chmod
			}
			return fmt.Errorf("create directory: %w", err)
		}
		if err := os.Chmod(d, dirMode); err != nil {
			return fmt.Errorf("set mode of directory: %w", err)
		}
	}
	return nil
}

// WritePacket appends one decapsulated packet mirrored by router. The first
// packet of each (router, kind) pair adds an interface named
// jmirror-<router>-<ip|ppp|unknown>. Timestamps keep nanosecond resolution.
func (w *Writer) WritePacket(ts time.Time, router netip.Addr, kind LinkKind, data []byte) error {
	if w.closed {
		return fmt.Errorf("write %s: writer is closed", w.path)
	}
	if !router.IsValid() {
		return fmt.Errorf("write %s: invalid router address", w.path)
	}
	// pcapng timestamps are unsigned nanoseconds since 1970 and
	// time.UnixNano is only defined up to 2262.
	if ts.Before(time.Unix(0, 0)) || ts.After(time.Unix(0, 1<<63-1)) {
		return fmt.Errorf("write %s: timestamp %v out of pcapng range", w.path, ts)
	}
	router = router.Unmap()
	key := ifaceKey{router, kind}
	ifc, ok := w.ifaces[key]
	if !ok {
		var err error
		if ifc, err = w.addInterface(key); err != nil {
			return err
		}
	}
	ci := gopacket.CaptureInfo{
		Timestamp:      ts,
		CaptureLength:  len(data),
		Length:         len(data),
		InterfaceIndex: ifc.index,
	}
	if err := w.ng.WritePacketWithOptions(ci, data, ifc.opts); err != nil {
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	w.packets++
	w.bytes += uint64(len(data))
	return nil
}

func (w *Writer) addInterface(key ifaceKey) (iface, error) {
	lt, err := key.kind.LinkType()
	if err != nil {
		return iface{}, fmt.Errorf("write %s: %w", w.path, err)
	}
	what := "raw IP"
	switch key.kind {
	case LinkPPPHDLC:
		what = "PPP in HDLC-like framing"
	case LinkUnknown:
		what = "payload neither IP nor PPP"
	}
	id, err := w.ng.AddInterface(pcapgo.NgInterface{
		Name:        fmt.Sprintf("jmirror-%s-%s", key.router, key.kind),
		Description: fmt.Sprintf("Jmirror from router %s, %s", key.router, what),
		LinkType:    lt,
		// NgWriter always writes if_tsresol 9 (nanoseconds).
		TimestampResolution: 9,
	})
	if err != nil {
		return iface{}, fmt.Errorf("write %s: add interface: %w", w.path, err)
	}
	// The file index is what the packet block carries; NgWriter only checks
	// it is below its own (one higher) interface count.
	ifc := iface{
		index: id - w.ngBase,
		opts:  pcapgo.NgPacketOptions{Comments: []string{"router=" + key.router.String()}},
	}
	w.ifaces[key] = ifc
	return ifc, nil
}

// Flush writes buffered data to the file.
func (w *Writer) Flush() error {
	if w.closed {
		return nil
	}
	if err := w.ng.Flush(); err != nil {
		return fmt.Errorf("flush %s: %w", w.path, err)
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("flush %s: %w", w.path, err)
	}
	return nil
}

// Close flushes and closes the file. Calling it again does nothing.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	ferr := w.Flush()
	w.closed = true
	cerr := w.f.Close()
	if cerr != nil {
		cerr = fmt.Errorf("close %s: %w", w.path, cerr)
	}
	return errors.Join(ferr, cerr)
}

// Packets returns the number of packets written.
func (w *Writer) Packets() uint64 { return w.packets }

// Bytes returns the number of packet data bytes written, without pcapng
// framing.
func (w *Writer) Bytes() uint64 { return w.bytes }
