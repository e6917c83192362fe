package daemon

import (
	"time"

	"github.com/jmxdp/jmxdp/userspace/runstate"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// checkpointEvery is how often the accounting is saved for the next start:
// after a kill, what was written or dropped in the last period counts as
// unaccounted, so the figure is an upper bound by that much.
const checkpointEvery = 100 * time.Millisecond

// redirected is the kernel's count of frames handed to AF_XDP sockets
// since the maps were pinned.
func redirected(c vocab.Counters) uint64 {
	return c[vocab.StatActionCapture] - c[vocab.StatCaptureFailed]
}

// checkPreviousRun reports, at start, what a run that ended without a
// clean stop (SIGKILL, a crash, the OOM killer) left unaccounted: frames
// the kernel redirected to it that none of its counters saw written or
// dropped.
func (d *Daemon) checkPreviousRun() {
	c, err := d.prog.Maps.Counters()
	if err != nil {
		d.log.Warn("cannot read the counters for the previous run's accounting", "err", err)
		return
	}
	d.redirectedAtStart = redirected(c)
	prev, err := runstate.ReadCheckpoint(d.runDir, d.cfg.Interface)
	if err != nil || prev.Clean {
		return
	}
	lost := prev.Unaccounted(d.redirectedAtStart)
	d.log.Warn("the previous run did not stop cleanly (killed or crashed): frames the kernel redirected to it that no counter accounts for",
		"lost_in_previous_run", lost, "redirected", d.redirectedAtStart-min(prev.RedirectedAtStart, d.redirectedAtStart),
		"written", prev.Written, "dropped", prev.Dropped+prev.RingDrops, "last_checkpoint", prev.Time,
		"bound", "at most one checkpoint period ("+checkpointEvery.String()+") of frames written after the checkpoint count as lost")
}

func (d *Daemon) checkpoint(clean bool) {
	a, err := d.Account()
	if err != nil {
		return
	}
	var dropped uint64 = a.QueueDrops
	for _, n := range a.WriterDrops {
		dropped += n
	}
	reassembled := d.capture.Stats().Reassembly.Reassembled
	cp := runstate.Checkpoint{Clean: clean, Time: time.Now(), RedirectedAtStart: d.redirectedAtStart,
		Redirected: a.Redirected, Received: a.Received, RingDrops: a.RingDrops, Written: a.Written, Dropped: dropped,
		// A reassembled datagram is several frames and one written
		// packet: count its frames once.
		Fragments: a.Fragments - min(reassembled, a.Fragments)}
	if err := d.lock.WriteCheckpoint(cp); err != nil && !d.checkpointFailed {
		d.checkpointFailed = true
		d.log.Warn("cannot save the accounting checkpoint: a kill will not be accounted at the next start", "err", err)
	}
}

func (d *Daemon) startCheckpoints() {
	d.checkpoint(false)
	d.cpStop, d.cpDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(d.cpDone)
		t := time.NewTicker(checkpointEvery)
		defer t.Stop()
		for tick := 1; ; tick++ {
			select {
			case <-d.cpStop:
				return
			case <-t.C:
				d.checkpoint(false)
				if tick%int(retireEvery/checkpointEvery) == 0 {
					d.retireIfFull()
				}
			}
		}
	}()
}

// haltCheckpoints ends the periodic checkpoints (first thing at a stop:
// the final accounting is the stop's).
func (d *Daemon) haltCheckpoints() {
	if d.cpStop == nil {
		return
	}
	close(d.cpStop)
	<-d.cpDone
	d.cpStop = nil
	d.checkpointsRan = true
}
