package daemon

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The stream table refuses new streams when full (their counts go to their
// router's total, docs/datapath.md "Eviction"); the daemon then makes room
// by retiring idle streams into their router's retired total.
const (
	// retireEvery is how often the daemon checks whether the table
	// refused streams since the last check (a read of the counters).
	retireEvery = 10 * time.Second
	// retireIdle is how long a stream must have been silent to be
	// retired.
	retireIdle = 10 * time.Minute
)

// retireIfFull retires up to a quarter of the table's streams, the longest
// idle first, when the table refused streams since the last call: only
// then, since finding idle streams walks the whole table.
func (d *Daemon) retireIfFull() {
	m := d.prog.Maps
	c, err := m.Counters()
	if err != nil {
		return
	}
	full := c[vocab.StatStreamFull]
	if full == d.fullSeen {
		return
	}
	d.fullSeen = full
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return
	}
	cutoff := time.Duration(ts.Nano()) - retireIdle
	if cutoff <= 0 {
		return
	}
	n, err := m.RetireIdle(cutoff, int(m.StreamCapacity()/4))
	if err != nil {
		d.log.Warn("cannot retire idle streams from the full stream table", "err", err)
		return
	}
	d.log.Info("stream table full: retired idle streams into their routers' totals",
		"retired", n, "idle_for", retireIdle, "refused_packets", full)
}
