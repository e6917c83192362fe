package capture

import (
	"time"

	"golang.org/x/sys/unix"
)

// clock turns the kernel's CLOCK_MONOTONIC receive times into wall-clock
// times. The offset between the two clocks moves when NTP steps or slews
// the wall clock, so it is measured again at every refresh.
type clock struct {
	offset int64 // CLOCK_REALTIME - CLOCK_MONOTONIC, ns
}

func newClock() *clock {
	c := &clock{}
	c.refresh()
	return c
}

func (c *clock) refresh() {
	var mono, real1, real2 unix.Timespec
	// Bracket the monotonic read with two wall-clock reads and take their
	// midpoint: the error is then half of one clock read at most.
	if unix.ClockGettime(unix.CLOCK_REALTIME, &real1) != nil ||
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono) != nil ||
		unix.ClockGettime(unix.CLOCK_REALTIME, &real2) != nil {
		return
	}
	realMid := (real1.Nano() + real2.Nano()) / 2
	c.offset = realMid - mono.Nano()
}

// wall converts a kernel monotonic time; 0 (no timestamp) means now.
func (c *clock) wall(mono int64) time.Time {
	if mono == 0 {
		return time.Now()
	}
	return time.Unix(0, mono+c.offset)
}
