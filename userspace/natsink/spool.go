package natsink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// The spool keeps the batches the cluster did not take, in the order they
// came, in segment files under one directory, until they are re-sent.
// A segment is records of
//
//	u32 body length | body | u32 CRC-32C of the body
//
// and a body is
//
//	u8 version (1) | u16 len, subject | u16 len, Nats-Msg-Id | u16 len, routers | u32 packets | payload
//
// The files are written, not synced: a SIGKILL loses nothing (the kernel
// has the bytes), a power cut may lose the spool's tail, which the next
// start cuts off at the first damaged record.

// ErrSpoolFull is the spool at its size limit.
var ErrSpoolFull = errors.New("spool full")

const (
	spoolVersion = 1
	// segmentMax is where a segment is sealed and the next begun: the
	// unit of replay, read into memory whole.
	segmentMax = 4 << 20
	segPrefix  = "seg-"
	segSuffix  = ".spool"
	// bufMax: records are written in batches of up to this many bytes,
	// at the latest when the publisher's queue is empty (flush). Under a
	// burst that is one write a few dozen records instead of one each:
	// at 100k streams the spool's writes were what made the publisher
	// fall behind its queue.
	bufMax = 256 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type spool struct {
	dir  string
	max  int64
	size int64 // bytes in every segment
	// segs are the sealed segments, oldest first; cur is the one being
	// appended (nil: none).
	segs    []uint64
	cur     *os.File
	curN    uint64
	curSize int64
	curRecs int
	// records counts the records in segs and cur.
	records int
	// buf holds cur's records not written yet, bufPackets their packet
	// counts; lost* add up the records a failed write lost, until
	// takeLoss.
	buf                      []byte
	bufPackets               []int
	lostRecords, lostPackets int
	lostErr                  error
}

// openSpool opens (creating, mode 0700) the spool in dir and takes what
// an earlier run left in it.
func openSpool(dir string, max int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("spool %s: not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o077 != 0) {
		// Intercepted traffic: nobody else reads it or plants files.
		if err := os.Chmod(dir, 0o700); err != nil || int(st.Uid) != os.Geteuid() {
			return nil, fmt.Errorf("spool %s: owned by uid %d with mode %v: want this user's, 0700", dir, st.Uid, fi.Mode().Perm())
		}
	}
	s := &spool{dir: dir, max: max}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	for _, e := range ents {
		name := e.Name()
		num, ok := strings.CutPrefix(name, segPrefix)
		num, ok2 := strings.CutSuffix(num, segSuffix)
		n, err := strconv.ParseUint(num, 10, 64)
		if !ok || !ok2 || err != nil || !e.Type().IsRegular() {
			continue
		}
		recs, size, err := readSegment(filepath.Join(dir, name))
		if err != nil && len(recs) == 0 {
			return nil, err
		}
		s.segs = append(s.segs, n)
		s.size += size
		s.records += len(recs)
	}
	slices.Sort(s.segs)
	if len(s.segs) > 0 {
		s.curN = s.segs[len(s.segs)-1]
	}
	return s, nil
}

func (s *spool) path(n uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s%016d%s", segPrefix, n, segSuffix))
}

// empty: nothing waits to be re-sent.
func (s *spool) empty() bool { return s.records == 0 }

func encodeRecord(m *msg) ([]byte, error) {
	if len(m.subject) > 0xffff || len(m.id) > 0xffff || len(m.routers) > 0xffff {
		return nil, errors.New("spool: header longer than 64 KiB")
	}
	n := 1 + 2 + len(m.subject) + 2 + len(m.id) + 2 + len(m.routers) + 4 + len(m.data)
	b := make([]byte, 0, 4+n+4)
	le := binary.LittleEndian
	b = le.AppendUint32(b, uint32(n))
	b = append(b, spoolVersion)
	for _, f := range []string{m.subject, m.id, m.routers} {
		b = le.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	b = le.AppendUint32(b, uint32(m.packets))
	b = append(b, m.data...)
	return le.AppendUint32(b, crc32.Checksum(b[4:], castagnoli)), nil
}

// add appends m; ErrSpoolFull if that would pass the limit.
func (s *spool) add(m *msg) error {
	rec, err := encodeRecord(m)
	if err != nil {
		return err
	}
	if s.size+int64(len(rec)) > s.max {
		return ErrSpoolFull
	}
	if s.cur != nil && s.curSize+int64(len(rec)) > segmentMax {
		s.seal()
	}
	if s.cur == nil {
		s.curN++
		f, err := os.OpenFile(s.path(s.curN), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.cur, s.curSize, s.curRecs = f, 0, 0
	}
	s.buf = append(s.buf, rec...)
	s.bufPackets = append(s.bufPackets, m.packets)
	s.curSize += int64(len(rec))
	s.size += int64(len(rec))
	s.curRecs++
	s.records++
	if len(s.buf) >= bufMax {
		s.flush()
	}
	return nil
}

// flush writes the buffered records. If that fails they are lost (cut
// off the segment, which stays readable) and counted for takeLoss.
func (s *spool) flush() {
	if len(s.buf) == 0 || s.cur == nil {
		return
	}
	if _, err := s.cur.Write(s.buf); err != nil {
		n := int64(len(s.buf))
		start := s.curSize - n
		s.cur.Truncate(start)
		s.cur.Seek(start, io.SeekStart)
		s.curSize, s.size = start, s.size-n
		s.curRecs -= len(s.bufPackets)
		s.records -= len(s.bufPackets)
		s.lostRecords += len(s.bufPackets)
		for _, p := range s.bufPackets {
			s.lostPackets += p
		}
		s.lostErr = fmt.Errorf("spool: %w", err)
	}
	s.buf, s.bufPackets = s.buf[:0], s.bufPackets[:0]
}

// takeLoss is what failed writes lost since the last call, and why.
func (s *spool) takeLoss() (records, packets int, err error) {
	records, packets, err = s.lostRecords, s.lostPackets, s.lostErr
	s.lostRecords, s.lostPackets, s.lostErr = 0, 0, nil
	return records, packets, err
}

// seal closes the segment being appended; it becomes the newest sealed.
func (s *spool) seal() {
	if s.cur == nil {
		return
	}
	s.flush()
	s.cur.Close()
	s.cur = nil
	s.segs = append(s.segs, s.curN)
}

// oldest reads the oldest segment (sealing the current one if it is the
// only one). The records of a damaged tail are left out.
func (s *spool) oldest() ([]*msg, error) {
	if len(s.segs) == 0 {
		s.seal()
	}
	if len(s.segs) == 0 {
		return nil, nil
	}
	recs, _, err := readSegment(s.path(s.segs[0]))
	if err != nil && len(recs) == 0 {
		return nil, err
	}
	return recs, nil
}

// dropOldest removes the oldest sealed segment, re-sent (or unreadable).
func (s *spool) dropOldest(records int) error {
	if len(s.segs) == 0 {
		return nil
	}
	p := s.path(s.segs[0])
	fi, err := os.Lstat(p)
	if err == nil {
		s.size -= fi.Size()
	}
	s.segs = s.segs[1:]
	s.records = max(s.records-records, 0)
	if len(s.segs) == 0 && s.cur == nil {
		s.records, s.size = 0, 0
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// close closes the current segment; what is in the spool stays for the
// next start.
func (s *spool) close() { s.seal() }

// readSegment reads a segment's records up to the first damaged one (a
// torn tail: an error, with the records before it).
func readSegment(path string) ([]*msg, int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("spool: %w", err)
	}
	var out []*msg
	le := binary.LittleEndian
	off := 0
	for off < len(b) {
		if len(b)-off < 8 {
			return out, int64(len(b)), fmt.Errorf("spool %s: torn record at %d", path, off)
		}
		n := int(le.Uint32(b[off:]))
		if n < 11 || n > len(b)-off-8 {
			return out, int64(len(b)), fmt.Errorf("spool %s: torn record at %d", path, off)
		}
		body := b[off+4 : off+4+n]
		if crc32.Checksum(body, castagnoli) != le.Uint32(b[off+4+n:]) || body[0] != spoolVersion {
			return out, int64(len(b)), fmt.Errorf("spool %s: damaged record at %d", path, off)
		}
		m, ok := decodeBody(body[1:])
		if !ok {
			return out, int64(len(b)), fmt.Errorf("spool %s: damaged record at %d", path, off)
		}
		out = append(out, m)
		off += 4 + n + 4
	}
	return out, int64(len(b)), nil
}

func decodeBody(b []byte) (*msg, bool) {
	le := binary.LittleEndian
	var f [3]string
	for i := range f {
		if len(b) < 2 {
			return nil, false
		}
		n := int(le.Uint16(b))
		if len(b) < 2+n {
			return nil, false
		}
		f[i] = string(b[2 : 2+n])
		b = b[2+n:]
	}
	if len(b) < 4 {
		return nil, false
	}
	return &msg{subject: f[0], id: f[1], routers: f[2], packets: int(le.Uint32(b)), data: b[4:]}, true
}
