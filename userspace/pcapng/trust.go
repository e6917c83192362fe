package pcapng

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrUntrustedDir is returned by CheckTrustedDir for a directory another
// user could change.
var ErrUntrustedDir = errors.New("another user could plant links in it")

// CheckTrustedDir refuses an output directory that a user other than root
// or the process's own could change: one owned by another user, or
// writable by group or others, or under a directory writable by group or
// others (unless that one has the sticky bit, as /tmp does, which keeps
// others from renaming what is not theirs). The owners of the directories
// above are not judged: a clone in alice's home, run with sudo by alice,
// is alice's to trust. In such a directory another user can plant a
// symbolic link where a stream's file or directory goes, and a root
// process would write through it. The group that output.group names may
// read, never write.
func CheckTrustedDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	euid := uint32(os.Geteuid())
	for d, first := abs, true; ; d, first = filepath.Dir(d), false {
		fi, err := os.Lstat(d)
		if err != nil {
			return fmt.Errorf("output directory %s: %w", dir, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			// A link in the path: judge where it leads (a link in /
			// such as /var -> /private/var is common), its own
			// directory was judged already.
			real, err := filepath.EvalSymlinks(d)
			if err != nil {
				return fmt.Errorf("output directory %s: %w", dir, err)
			}
			if fi, err = os.Stat(real); err != nil {
				return fmt.Errorf("output directory %s: %w", dir, err)
			}
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil // not a Unix file system: nothing to judge
		}
		perm := fi.Mode()
		switch {
		case first && st.Uid != 0 && st.Uid != euid:
			return fmt.Errorf("output directory %s: %s is owned by uid %d: %w", dir, d, st.Uid, ErrUntrustedDir)
		case first && perm&0o022 != 0:
			return fmt.Errorf("output directory %s is writable by %s (mode %o): %w", dir, who(perm), perm.Perm(), ErrUntrustedDir)
		case !first && perm&0o022 != 0 && perm&os.ModeSticky == 0:
			return fmt.Errorf("output directory %s: %s is writable by %s without the sticky bit (mode %o): %w", dir, d, who(perm), perm.Perm(), ErrUntrustedDir)
		}
		if filepath.Dir(d) == d {
			return nil
		}
	}
}

func who(m os.FileMode) string {
	var w []string
	if m&0o020 != 0 {
		w = append(w, "its group")
	}
	if m&0o002 != 0 {
		w = append(w, "others")
	}
	return strings.Join(w, " and ")
}

// CheckNoLinks refuses a path under root whose components below root
// (dir included) are symbolic links or not directories: a stream's
// directory of an earlier run, or one planted while the output directory
// was open to others, must not lead the writer out of it.
func CheckNoLinks(root, dir string) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%s is not under %s", dir, root)
	}
	if rel == "." {
		return nil
	}
	d := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		d = filepath.Join(d, part)
		fi, err := os.Lstat(d)
		if err != nil {
			return err
		}
		// Errnos, so that a writer's fault kinds stay those of the
		// system calls (ELOOP is what O_NOFOLLOW gives for a link).
		if fi.Mode()&os.ModeSymlink != 0 {
			return &fs.PathError{Op: "open", Path: d, Err: syscall.ELOOP}
		}
		if !fi.IsDir() {
			return &fs.PathError{Op: "open", Path: d, Err: syscall.ENOTDIR}
		}
	}
	return nil
}
