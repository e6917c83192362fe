// Package logid names Jmirror streams in log lines. With ids shown, a
// stream is "mid-M/sid-S" and a file its path. With ids hidden
// (metrics.hide_ids), a stream is a keyed hash, "stream-3fa1c2d9e0b1", and
// the ids in paths and error texts are replaced by it: whoever reads the
// logs learns neither which intercepts run nor their session ids.
//
// The key is 32 random bytes in the output directory (KeyFile, mode 0600,
// made on first use): a plain hash of 62 bits of ids could be reversed by
// trying candidate ids, a keyed one only by someone who can read the key,
// who can read the streams anyway. The same key gives the same hashes
// across restarts. `jmxdp stream-hash` maps a stream to its hash and back.
package logid

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// KeyFile is the key's name in the output directory. The writer's
// recovery and the tests' walks skip dot files.
const KeyFile = ".jmxdp-log-key"

const (
	keyLen = 32
	// hashLen hex digits (48 bits): about 0.002 collisions expected among
	// a million streams, so a hash names one stream in practice (Find
	// lists every match).
	hashLen = 12
)

// Namer names streams in logs. A nil *Namer shows ids.
type Namer struct{ key []byte }

// Open returns a Namer hiding ids with the key of the output directory
// dir, which it makes if there is none.
func Open(dir string) (*Namer, error) {
	n, err := Load(dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return n, err
	}
	key := make([]byte, keyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	path := filepath.Join(dir, KeyFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return Load(dir) // made meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	_, err = f.Write([]byte(hex.EncodeToString(key) + "\n"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("log key %s: %w", path, err)
	}
	return &Namer{key: key}, nil
}

// Load returns the Namer of output directory dir, whose key must exist
// (an error matching fs.ErrNotExist otherwise).
func Load(dir string) (*Namer, error) {
	path := filepath.Join(dir, KeyFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != keyLen {
		return nil, fmt.Errorf("log key %s: not %d hex-encoded bytes", path, keyLen)
	}
	return &Namer{key: key}, nil
}

// Hidden reports whether ids are hidden.
func (n *Namer) Hidden() bool { return n != nil }

func (n *Namer) sum(kind string, ids ...uint32) string {
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte(kind))
	var b [4]byte
	for _, id := range ids {
		binary.BigEndian.PutUint32(b[:], id)
		m.Write(b[:])
	}
	return hex.EncodeToString(m.Sum(nil))[:hashLen]
}

// StreamName is how logs name stream (mid, sid): "mid-M/sid-S", or
// "stream-HASH" when ids are hidden.
func (n *Namer) StreamName(mid, sid uint32) string {
	if n == nil {
		return fmt.Sprintf("mid-%d/sid-%d", mid, sid)
	}
	return "stream-" + n.sum("stream\x00", mid, sid)
}

// InterceptName is how logs name intercept mid: "mid-M", or
// "intercept-HASH" when ids are hidden.
func (n *Namer) InterceptName(mid uint32) string {
	if n == nil {
		return fmt.Sprintf("mid-%d", mid)
	}
	return "intercept-" + n.sum("mid\x00", mid)
}

// Stream is the attribute stream=NAME (StreamName).
func (n *Namer) Stream(mid, sid uint32) slog.Attr {
	return slog.String("stream", n.StreamName(mid, sid))
}

// Path is the attribute key=PATH, with the ids in PATH replaced when they
// are hidden (Redact).
func (n *Namer) Path(key, path string) slog.Attr { return slog.String(key, n.Redact(path)) }

// Err is the attribute error=TEXT, with the ids in TEXT replaced when
// they are hidden: errors of the file system carry the stream's path.
func (n *Namer) Err(err error) slog.Attr {
	if err == nil {
		return slog.String("error", "<nil>")
	}
	return slog.String("error", n.Redact(err.Error()))
}

// Error returns err with the ids in its text replaced when they are
// hidden (errors.Is and As still see err); nil stays nil.
func (n *Namer) Error(err error) error {
	if n == nil || err == nil {
		return err
	}
	return &redacted{err: err, text: n.Redact(err.Error())}
}

type redacted struct {
	err  error
	text string
}

func (r *redacted) Error() string { return r.text }
func (r *redacted) Unwrap() error { return r.err }

// idPath matches the ids of a stream's directory or file name:
// mid-M/sid-S (the directory, or SingleFile's sid-S.pcapng) or mid-M
// alone.
var idPath = regexp.MustCompile(`\bmid-(\d+)(?:` + regexp.QuoteMeta(string(filepath.Separator)) + `sid-(\d+))?`)

// Redact replaces, when ids are hidden, every mid-M/sid-S in s by
// stream-HASH and every other mid-M by intercept-HASH.
func (n *Namer) Redact(s string) string {
	if n == nil || !strings.Contains(s, "mid-") {
		return s
	}
	return idPath.ReplaceAllStringFunc(s, func(m string) string {
		sub := idPath.FindStringSubmatch(m)
		mid, err := strconv.ParseUint(sub[1], 10, 32)
		if err != nil {
			return "intercept-?"
		}
		if sub[2] == "" {
			return n.InterceptName(uint32(mid))
		}
		sid, err := strconv.ParseUint(sub[2], 10, 32)
		if err != nil {
			return "stream-?"
		}
		return n.StreamName(uint32(mid), uint32(sid))
	})
}

// Find lists the streams and intercepts under output directory dir whose
// name (StreamName or InterceptName, with or without its prefix) is name,
// as "mid-M/sid-S" or "mid-M": it maps a hash in a log back to ids. It
// looks only at the directories present (a stream that never wrote a file
// has none).
func (n *Namer) Find(dir, name string) ([]string, error) {
	want := strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(name), "stream-"), "intercept-")
	if len(want) != hashLen || strings.Trim(want, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("%q is not a stream hash (%d hex digits, e.g. stream-3fa1c2d9e0b1)", name, hashLen)
	}
	if n == nil {
		return nil, errors.New("ids are not hidden: no hash to look up")
	}
	mids, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var found []string
	for _, md := range mids {
		mid, ok := idOf(md, "mid-")
		if !ok {
			continue
		}
		if n.sum("mid\x00", mid) == want {
			found = append(found, md.Name())
		}
		sids, err := os.ReadDir(filepath.Join(dir, md.Name()))
		if err != nil {
			return found, err
		}
		for _, sd := range sids {
			if sid, ok := idOf(sd, "sid-"); ok && n.sum("stream\x00", mid, sid) == want {
				found = append(found, md.Name()+"/"+sd.Name())
			}
		}
	}
	slices.Sort(found)
	return found, nil
}

func idOf(de fs.DirEntry, prefix string) (uint32, bool) {
	if !de.IsDir() || !strings.HasPrefix(de.Name(), prefix) {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(de.Name(), prefix), 10, 32)
	return uint32(v), err == nil
}
