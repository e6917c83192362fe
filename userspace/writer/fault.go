package writer

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/jmxdp/jmxdp/userspace/pcapng"
)

// Faults. A failed create, open, write, flush, close or rename puts the
// stream in a fault state: its packets are dropped (DropDisk) without
// touching the disk until RetryInterval has passed; the next packet then
// probes: it is written and flushed at once. The fault's kind (the errno's
// text, such as "no space left on device") is a condition logged once when it
// appears, and once when it is over, with the packets dropped meanwhile. A
// successful probe lets every stream waiting on the condition resume at
// once, but the condition (and the jmxdp_writer_faults gauge) stays until
// writes have succeeded for recoverHold with no new fault: on a nearly full
// disk, where writes fail and succeed by turns, the gauge holds and the log
// has two lines, not two a second. A condition nothing probes ends when it
// has not been seen for the idle limit.

// recoverHold is how long writes must succeed before a fault condition is
// over.
const recoverHold = 10 * time.Second

// errNoSpace is ENOSPC's condition kind.
var errNoSpace = syscall.ENOSPC.Error()

// roomFor reports whether the output file system has room for n bytes:
// a full disk's condition ends only when the write that failed would now
// fit, so that probes of one packet into the last free bytes do not make
// it flap between "full" and "works again".
func (m *Manager) roomFor(n int) bool {
	var st syscall.Statfs_t
	if n <= 0 || syscall.Statfs(m.cfg.Dir, &st) != nil {
		return true // cannot tell: trust the write that worked
	}
	return st.Bavail*uint64(st.Bsize) >= uint64(n)
}

// writeError is the pcapng.WriteError in err's chain, nil if none: the
// packets a failed write lost and the bytes it wanted.
func writeError(err error) (werr *pcapng.WriteError) {
	errors.As(err, &werr)
	return werr
}

func lostOf(err error) int {
	if werr := writeError(err); werr != nil {
		return werr.Lost
	}
	return 0
}

func faultKind(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return "error"
}

// fault records a fault of s: lost packets dropped, the condition logged if
// new, s waiting to retry.
func (m *Manager) fault(s *stream, now time.Time, err error, lost int) {
	if lost > 0 {
		m.count(s, DropDisk, uint64(lost))
	}
	kind := faultKind(err)
	c := m.conds[kind]
	if c == nil {
		c = &faultCond{kind: kind}
		m.conds[kind] = c
	}
	if !c.active {
		c.active, c.dropped, c.since = true, 0, now
		m.addFaults(1)
		m.log.Warn("writing stream files failed: dropping the packets of the failing streams and retrying (logged once until writes succeed again)",
			"dir", m.cfg.Dir, m.cfg.IDs.Err(err), "retry", m.cfg.RetryInterval)
	}
	c.dropped += uint64(lost)
	c.lastFault = now
	c.okSince = time.Time{} // a fault during the hold starts it again
	if werr := writeError(err); werr != nil {
		s.failedBytes = werr.Bytes
	}
	s.fault, s.faultEpoch, s.probe = c, c.epoch, false
	s.retryAt = now.Add(m.cfg.RetryInterval).UnixNano()
}

// retryDue reports whether s, in a fault, may write again: its condition
// was cleared, or it is time to probe.
func (m *Manager) retryDue(s *stream, now time.Time) bool {
	if s.faultEpoch != s.fault.epoch {
		s.fault, s.probe = nil, false
		return true
	}
	n := now.UnixNano()
	if n >= s.retryAt || s.retryAt-n > int64(m.cfg.RetryInterval) { // or the clock stepped back
		s.probe = true
		return true
	}
	return false
}

// dropFaulted counts packets dropped while s waits to retry.
func (m *Manager) dropFaulted(s *stream, n int) {
	m.count(s, DropDisk, uint64(n))
	if c := s.fault; c != nil && c.active && c.epoch == s.faultEpoch {
		c.dropped += uint64(n)
	}
}

// clearFault ends s's fault after a successful probe. Its condition's other
// streams resume at once; the condition itself ends after recoverHold of
// success (settleConditions).
func (m *Manager) clearFault(s *stream, now time.Time) {
	c := s.fault
	s.fault, s.probe = nil, false
	if c != nil && c.active && c.epoch == s.faultEpoch {
		c.epoch++ // the waiting streams resume without probing
		if c.okSince.IsZero() {
			c.okSince = now
		}
	}
}

// settleConditions ends the conditions whose writes have succeeded for
// recoverHold since the last fault.
func (m *Manager) settleConditions(now time.Time) {
	m.endConditions(now, "writing stream files works again", func(c *faultCond) bool {
		return !c.okSince.IsZero() && now.Sub(c.okSince) >= recoverHold && now.Sub(c.lastFault) >= recoverHold
	})
}

// endConditions ends the active conditions that over says are over,
// logging msg.
func (m *Manager) endConditions(now time.Time, msg string, over func(*faultCond) bool) {
	for _, c := range m.conds {
		if c.active && over(c) {
			m.endCondition(c, now, msg)
		}
	}
}

// addFaults changes the active conditions' count, which Stats reads.
func (m *Manager) addFaults(d int) {
	m.mu.Lock()
	m.totals.Faults += d
	m.mu.Unlock()
}

func (m *Manager) endCondition(c *faultCond, now time.Time, msg string) {
	c.active, c.okSince = false, time.Time{}
	c.epoch++
	m.addFaults(-1)
	m.log.Info(msg, "dir", m.cfg.Dir, "error", c.kind, "dropped", c.dropped, "after", now.Sub(c.since).Round(time.Millisecond))
}

// expireConditions ends conditions no stream has hit for the idle limit:
// nothing probed (the streams went quiet), so nothing is known to fail.
func (m *Manager) expireConditions(now time.Time) {
	m.endConditions(now, "no stream file fault seen for a long time; considering the condition over", func(c *faultCond) bool {
		return now.Sub(c.lastFault) > m.idleLimit
	})
}

// fixDir gives a directory of the output the group and mode this Manager
// makes directories with (Config.Group): an earlier run's may have
// others. It costs a stat, and a chown or chmod only where they differ.
func (m *Manager) fixDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if m.cfg.Group != 0 && ok && st.Gid != m.cfg.Group {
		// chown clears the setgid bit: the chmod below sets it again.
		if err := os.Lchown(dir, -1, int(m.cfg.Group)); err != nil {
			return fmt.Errorf("set group of %s: %w", dir, err)
		}
		fi, err = os.Lstat(dir)
		if err != nil {
			return err
		}
	}
	const bits = os.ModePerm | os.ModeSetgid
	if fi.Mode()&bits != m.dirMode&bits {
		if err := os.Chmod(dir, m.dirMode); err != nil {
			return fmt.Errorf("set mode of %s: %w", dir, err)
		}
	}
	return nil
}

func (m *Manager) fixDirLogged(dir string) {
	if err := m.fixDir(dir); err != nil {
		m.log.Warn("cannot set the mode of a stream directory of an earlier run", m.cfg.IDs.Err(err))
	}
}
