package daemon

import (
	"fmt"
	"log/slog"

	"github.com/jmxdp/jmxdp/userspace/handoff"
	"github.com/jmxdp/jmxdp/userspace/retention"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// startRetention sets up what output.max_bytes, max_age and on_complete
// ask for, before the writers: their first completions (the .part files
// of an earlier run) come from writer.NewGroup. Retention deletes nothing
// before startKeeper, called once the writers hold the directory's lock.
func (d *Daemon) startRetention() error {
	o := d.cfg.Output
	attr := func(p string) slog.Attr { return d.ids.Path("file", p) }
	if len(o.OnComplete) > 0 {
		var err error
		d.handoff, err = handoff.New(handoff.Config{
			Argv:     o.OnComplete,
			Workers:  o.OnCompleteWorkers,
			Timeout:  o.OnCompleteTimeout,
			Logger:   d.log,
			FileAttr: attr,
			// d.keeper is set below, before any file can be submitted.
			Done: func(path string) {
				if d.keeper != nil {
					d.keeper.Check(path) // moved away by the command?
				}
			},
		})
		if err != nil {
			return fmt.Errorf("output.on_complete: %w", err)
		}
		d.log.Info("handing completed files off", "on_complete", o.OnComplete[0], "workers", o.OnCompleteWorkers,
			"timeout", o.OnCompleteTimeout)
	}
	if o.MaxBytes > 0 || o.MaxAge > 0 {
		scope, err := retention.ParseScope(o.Retention)
		if err != nil {
			return err
		}
		cfg := retention.Config{Dir: o.Dir, MaxBytes: o.MaxBytes, MaxAge: o.MaxAge, Scope: scope, Logger: d.log, FileAttr: attr}
		if d.handoff != nil {
			cfg.Hold = d.handoff.Pending // retention waits for the hand-off
		}
		if d.keeper, err = retention.New(cfg); err != nil {
			return fmt.Errorf("output.max_bytes/max_age: %w", err)
		}
	}
	return nil
}

// startKeeper lets retention walk and delete.
func (d *Daemon) startKeeper() {
	if d.keeper != nil {
		d.keeper.Start()
	}
}

// completed is writer.Config.OnComplete: it runs on a capture goroutine,
// and both calls only queue. The hand-off first: once queued, the file is
// held from retention.
func (d *Daemon) completed(c writer.Completed) {
	if d.handoff != nil {
		d.handoff.Submit(c.Path)
	}
	if d.keeper != nil {
		d.keeper.Add(c.Path, c.Size, c.Time)
	}
}

// onComplete is the writers' hook, nil when there is nothing to do.
func (d *Daemon) onComplete() func(writer.Completed) {
	if d.handoff == nil && d.keeper == nil {
		return nil
	}
	return d.completed
}

// stopRetention, after the writers closed: the hand-offs of their last
// files get up to one on_complete_timeout to finish.
func (d *Daemon) stopRetention() error {
	var err error
	if d.handoff != nil {
		err = d.handoff.Close(d.cfg.Output.OnCompleteTimeout)
	}
	if d.keeper != nil {
		d.keeper.Close()
	}
	return err
}

func (d *Daemon) retentionStats() retention.Stats {
	if d.keeper == nil {
		return retention.Stats{}
	}
	return d.keeper.Stats()
}

func (d *Daemon) handoffStats() handoff.Stats {
	if d.handoff == nil {
		return handoff.Stats{}
	}
	return d.handoff.Stats()
}
