package natexport

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jmxdp/jmxdp/userspace/writer"
)

// state is what the exporter knows of one output stream, kept in a small
// file per stream and replaced (write, rename) at every message:
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
}

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
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("export state %s: %w", statePath(dir, k), err)
	}
	return st, nil
}

// saveState replaces the stream's state file. Not synced: a SIGKILL
// leaves the kernel's copy, which is what the exporter survives.
func saveState(dir string, k writer.Key, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	p := statePath(dir, k)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("export state: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		return fmt.Errorf("export state: %w", err)
	}
	return nil
}

// fileBase is a stream file's name without .part and .pcapng: the
// writer's names sort by time.
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
