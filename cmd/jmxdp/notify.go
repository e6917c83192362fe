package main

import (
	"fmt"
	"log/slog"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/sdnotify"
)

// newNotifier reports to systemd when $NOTIFY_SOCKET names it (the unit is
// Type=notify). A socket jmxdp cannot use is logged, not fatal: the daemon
// captures either way, and systemd will say that it never became ready.
func newNotifier(log *slog.Logger) *sdnotify.Notifier {
	n, err := sdnotify.FromEnv()
	if err != nil {
		log.Warn("not notifying the service manager", "err", err)
		return nil
	}
	return n
}

// notifyErr logs a notification that failed: systemd then times the start
// or the reload out, and the log says why.
func notifyErr(log *slog.Logger, err error) {
	if err != nil {
		log.Warn("notify the service manager", "err", err)
	}
}

// readyStatus is `systemctl status`'s line once capturing.
func readyStatus(cfg config.Config) string {
	return fmt.Sprintf("capturing on %s, ports %v, to %s", cfg.Interface, cfg.Ports, cfg.Output.Dir)
}

// statusLine is the status line's short form for `systemctl status`,
// updated with every status log line: the writers' figures only, which
// need no map read.
func statusLine(d *daemon.Daemon, cfg config.Config) string {
	ws := d.Writer().Stats()
	return fmt.Sprintf("capturing on %s: %d packets written, %d files completed, %d streams, %d files open",
		cfg.Interface, ws.Packets, ws.FilesCompleted, ws.Streams, ws.OpenFiles)
}
