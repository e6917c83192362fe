package natexport

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jmxdp/jmxdp/userspace/writer"
)

// state is what the exporter knows of one output stream, kept in a small
// file per stream and written again at every message:
//
//   - Seq: the last stream sequence whose packets are all in the files.
//   - Pending: a message (PendingSeq) was being written; Part, Size and
//     Newest say how the stream's files were before it, so that a restart
//     after a SIGKILL undoes what of it reached the files (truncates Part
//     back to Size, removes files newer than Newest) and writes it again
//     when it is redelivered: no packet twice, none lost.
type state struct {
	Seq        uint64 `json:"seq"`
	Pending    bool   `json:"pending,omitempty"`
	PendingSeq uint64 `json:"pending_seq,omitempty"`
	Part       string `json:"part,omitempty"`
	Size       int64  `json:"size,omitempty"`
	Newest     string `json:"newest,omitempty"`
	// gen numbers the writes of the file: the newest valid slot wins.
	gen uint64
}

// The state file holds two slots, written in turn in place (one pwrite,
// no new inode): a write that is cut short leaves the other slot, the
// state before it. Replacing a file per message (write a temporary,
// rename) was three quarters of the exporter's CPU (docs/scale-out.md).
// A slot is magic, generation, length and CRC-32C (of the generation and
// the JSON), then the state as JSON.
const (
	stateSlot   = 2048
	stateHeader = 4 + 8 + 4 + 4
	stateMagic  = 0x4a585331 // "JXS1"
)

func statePath(dir string, k writer.Key) string {
	return filepath.Join(dir, fmt.Sprintf("mid-%d-sid-%d.json", k.MID, k.SID))
}

func loadState(dir string, k writer.Key) (state, error) {
	var st state
	b, err := os.ReadFile(statePath(dir, k))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("export state: %w", err)
	}
	found := false
	for i := range 2 {
		if slot, ok := decodeSlot(b, i); ok && (!found || slot.gen > st.gen) {
			st, found = slot, true
		}
	}
	if found {
		return st, nil
	}
	// A file of the first version: the state as JSON, whole.
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("export state %s: no valid slot: %w", statePath(dir, k), err)
	}
	return st, nil
}

func decodeSlot(b []byte, i int) (state, bool) {
	var st state
	le := binary.LittleEndian
	if len(b) < (i+1)*stateSlot {
		return st, false
	}
	b = b[i*stateSlot : (i+1)*stateSlot]
	n := int(le.Uint32(b[12:]))
	if le.Uint32(b) != stateMagic || n > stateSlot-stateHeader ||
		crc32.Checksum(append(b[4:12:12], b[stateHeader:stateHeader+n]...), castagnoli) != le.Uint32(b[16:]) {
		return st, false
	}
	if json.Unmarshal(b[stateHeader:stateHeader+n], &st) != nil {
		return st, false
	}
	st.gen = le.Uint64(b[4:])
	return st, true
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// saveState writes st into the slot its next generation picks and
// returns that generation (for the next write). Not synced: a SIGKILL
// leaves the kernel's copy, which is what the exporter survives.
func saveState(dir string, k writer.Key, st state) (uint64, error) {
	js, err := json.Marshal(st)
	if err != nil {
		return st.gen, err
	}
	if len(js) > stateSlot-stateHeader {
		return st.gen, fmt.Errorf("export state: %d bytes, more than a slot holds (an output path that long?)", len(js))
	}
	gen := st.gen + 1
	le := binary.LittleEndian
	b := make([]byte, stateHeader, stateSlot)
	le.PutUint32(b, stateMagic)
	le.PutUint64(b[4:], gen)
	le.PutUint32(b[12:], uint32(len(js)))
	b = append(b, js...)
	le.PutUint32(b[16:], crc32.Checksum(append(b[4:12:12], js...), castagnoli))
	b = b[:stateSlot]
	f, err := os.OpenFile(statePath(dir, k), os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return st.gen, fmt.Errorf("export state: %w", err)
	}
	_, err = f.WriteAt(b, int64(gen%2)*stateSlot)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return st.gen, fmt.Errorf("export state: %w", err)
	}
	return gen, nil
}

func fileBase(name string) string {
	return strings.TrimSuffix(strings.TrimSuffix(name, ".part"), ".pcapng")
}

// newestFile is the latest file name base in a stream directory, "" if
// none.
func newestFile(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	newest := ""
	for _, e := range ents {
		if b := fileBase(e.Name()); b > newest {
			newest = b
		}
	}
	return newest, nil
}

// undo puts a stream's files back as they were before a pending message:
// the files begun since are removed, the file it was appended to cut back
// (under its .part name, or the name a rotation gave it).
func undo(streamDir string, st state) error {
	ents, err := os.ReadDir(streamDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	partBase := ""
	if st.Part != "" {
		partBase = fileBase(filepath.Base(st.Part))
	}
	for _, e := range ents {
		b := fileBase(e.Name())
		if b > st.Newest && b != partBase {
			if err := os.Remove(filepath.Join(streamDir, e.Name())); err != nil {
				return err
			}
		}
	}
	if st.Part == "" {
		return nil
	}
	for _, p := range []string{st.Part, strings.TrimSuffix(st.Part, ".part")} {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > st.Size {
			return os.Truncate(p, st.Size)
		}
		return nil
	}
	return nil
}
