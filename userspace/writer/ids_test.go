package writer

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/logid"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// Ids that no timestamp or counter in a log line contains.
var (
	idInvalid = Key{987001, 654001}
	idFault   = Key{987002, 654002}
	idVanish  = Key{987003, 654003}
	idOther   = Key{987003, 654013}
	idRename  = Key{987004, 654004}
	idRecover = Key{987005, 654005}
)

// provokeIDLogs runs a Manager through every log line that names a stream
// or its file: an invalid packet, a create that fails, an evicted file
// deleted behind the writer, a completed file whose directory went away
// (the rename fails), an earlier run's file that cannot be recovered, and
// the debug lines of completed files. It returns the log and Close's
// error.
func provokeIDLogs(t *testing.T, ids *logid.Namer, dir string) (string, error) {
	t.Helper()
	recoverDir := streamDirOf(dir, idRecover)
	if err := os.MkdirAll(recoverDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(recoverDir, "20250101T000000.000000000Z.pcapng.part"), []byte("not a pcapng file at all, long enough to be read"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs testenv.LogBuffer
	clk := newClock()
	m := newManager(t, Config{Dir: dir, Now: clk.Now, MaxOpen: 1, RetryInterval: time.Hour, IDs: ids,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	waitRecovered(t, m)
	ts := clk.Now()

	if m.Write(idInvalid, ts, netip.Addr{}, pcapng.LinkRawIP, packet(idInvalid, 0, 100)) {
		t.Fatal("a packet without a router was written")
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("mid-%d", idFault.MID)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if write(t, m, idFault, ts, 0, 100) {
		t.Fatal("a write under a file succeeded")
	}
	write(t, m, idVanish, ts, 0, 100)
	write(t, m, idOther, ts, 0, 100) // evicts idVanish's file
	for _, p := range parts(t, dir) {
		if strings.Contains(p, fmt.Sprintf("sid-%d/", idVanish.SID)) {
			os.Remove(p)
		}
	}
	if !write(t, m, idVanish, ts, 1, 100) {
		t.Fatal("the write after the file vanished was dropped")
	}
	write(t, m, idRename, ts, 0, 100)
	if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("mid-%d", idRename.MID))); err != nil {
		t.Fatal(err)
	}
	err := m.Close()
	return logs.String(), err
}

// TestHiddenIDsInLogs: with IDs set, no log line and no error of Close
// carries a mid, a sid or a stream's path; each stream is named by its
// hash. Without, the same lines carry them (so the test sees them).
func TestHiddenIDsInLogs(t *testing.T) {
	idsOf := func(k Key) []string {
		return []string{strconv.Itoa(int(k.MID)), strconv.Itoa(int(k.SID))}
	}
	all := []Key{idInvalid, idFault, idVanish, idRename, idRecover}

	shown, closeErr := provokeIDLogs(t, nil, outDir(t))
	for _, k := range all {
		if !strings.Contains(shown+fmt.Sprint(closeErr), fmt.Sprint(k.MID)) {
			t.Errorf("with ids shown, nothing names mid %d: the scenario misses a log line\n%s", k.MID, shown)
		}
	}

	dir := outDir(t)
	ids, err := logid.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	hidden, closeErr := provokeIDLogs(t, ids, dir)
	text := hidden + "\nclose: " + fmt.Sprint(closeErr)
	if closeErr == nil {
		t.Error("Close did not report the file it could not complete")
	}
	for _, k := range all {
		for _, id := range idsOf(k) {
			if strings.Contains(text, id) {
				t.Errorf("id %s of %v in the logs:\n%s", id, k, text)
			}
		}
	}
	if strings.Contains(text, "mid-") || strings.Contains(text, "sid-") {
		t.Errorf("a stream path in the logs:\n%s", text)
	}
	for what, name := range map[string]string{
		"invalid packet":    ids.StreamName(idInvalid.MID, idInvalid.SID),
		"failed create":     ids.StreamName(idFault.MID, idFault.SID),
		"vanished file":     ids.StreamName(idVanish.MID, idVanish.SID),
		"failed rename":     ids.StreamName(idRename.MID, idRename.SID),
		"recovery":          ids.StreamName(idRecover.MID, idRecover.SID),
		"completed (debug)": ids.StreamName(idOther.MID, idOther.SID),
	} {
		if !strings.Contains(text, name) {
			t.Errorf("%s: no line names %s:\n%s", what, name, text)
		}
	}
	t.Logf("with ids hidden:\n%s", text)
}

// TestGroup: with a group, the output's directories are 2750 and of the
// group, its files 0640 and of the group, in every way a file is made (a
// new stream, a rotation, a directory removed behind the writer, a file
// deleted while evicted) and for an earlier run's directories; a process
// in the group can read them, one outside cannot. Without, 0700/0600 as
// before, and an earlier group run's directories are closed again.
func TestGroup(t *testing.T) {
	testenv.RequireRoot(t)
	const gid = 4711 // numbers need no entry in /etc/group
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	base := t.TempDir()
	// The test's readers are not root: they must get through the parents.
	for d := base; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "out")
	earlier := Key{3, 3}
	if err := os.MkdirAll(streamDirOf(dir, earlier), 0o700); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	m := newManager(t, Config{Dir: dir, Group: gid, MaxOpen: 1, RotateSize: 2000, Now: clk.Now})
	a, b, c, d := Key{1, 1}, Key{1, 2}, Key{1, 3}, Key{2, 1}
	ts := clk.Now()
	write(t, m, a, ts, 0, 100)
	write(t, m, b, ts, 0, 100) // evicts a
	for _, p := range parts(t, dir) {
		if strings.Contains(p, "sid-1/") {
			os.Remove(p) // a's file goes while evicted: Close restarts it
		}
	}
	write(t, m, a, ts, 1, 100)
	for i := range 3 { // a rotation
		write(t, m, c, ts, i, 1500)
	}
	write(t, m, d, ts, 0, 2500)               // completed at once
	os.RemoveAll(filepath.Join(dir, "mid-2")) // its directories go
	write(t, m, d, ts, 1, 100)
	write(t, m, earlier, ts, 0, 100)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if len(completed(t, dir, c)) != 2 || len(completed(t, dir, a)) != 1 || len(completed(t, dir, d)) != 1 {
		t.Fatalf("files: a %v c %v d %v", completed(t, dir, a), completed(t, dir, c), completed(t, dir, d))
	}

	var files, dirs int
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(fi.Name(), ".") {
			return nil // the lock file stays root-only
		}
		want := os.FileMode(0o640)
		if fi.IsDir() {
			want = 0o750 | os.ModeSetgid | os.ModeDir
			dirs++
		} else {
			files++
		}
		if fi.Mode()&(os.ModeType|os.ModePerm|os.ModeSetgid) != want || fi.Sys().(*syscall.Stat_t).Gid != gid {
			t.Errorf("%s: %v gid %d, want %v gid %d", p, fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid, want, gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != 6 || dirs != 9 {
		t.Errorf("%d files in %d directories", files, dirs)
	}
	file := completed(t, dir, a)[0]
	// nobody (65534), with and without the group.
	if out, err := readAs(file, 65534, gid); err != nil {
		t.Errorf("a member of the group cannot read %s: %v %s", file, err, out)
	}
	if out, err := readAs(file, 65534); err == nil {
		t.Errorf("a process outside the group read %s (%s)", file, out)
	}
	if out, err := readAs(filepath.Join(dir, "mid-1"), 65534); err == nil {
		t.Errorf("a process outside the group listed the intercepts (%s)", out)
	}

	// Without a group: the directories of that run are closed again, new
	// files root-only.
	m = newManager(t, Config{Dir: dir})
	write(t, m, Key{5, 5}, ts, 0, 100)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "mid-1"), streamDirOf(dir, a), streamDirOf(dir, Key{5, 5})} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&(os.ModePerm|os.ModeSetgid) != 0o700 {
			t.Errorf("%s: %v after a run without a group", p, fi.Mode())
		}
	}
	if p := permOf(t, completed(t, dir, Key{5, 5})[0]); p != 0o600 {
		t.Errorf("file without a group: %o", p)
	}
}

// readAs runs cat (or ls for a directory) as uid with the given groups.
func readAs(path string, uid uint32, groups ...uint32) (string, error) {
	cmd := exec.Command("cat", path)
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		cmd = exec.Command("ls", path)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: groups}}
	out, err := cmd.CombinedOutput()
	if len(out) > 200 {
		out = out[:200]
	}
	return string(out), err
}
