package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	jmmaps "github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/pins"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/xmit"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// jmxdpSystem is `jmxdp run` on the lab's host end, a process of its own:
// this executable (or Options.Jmxdp), with the default config but for the
// interface, the output directory and the metrics address (a free port:
// the default one may be in use), and, in the ladders, max_open_files.
// Its pinned maps and AF_XDP sockets are read from outside (costing it
// nothing) to follow its progress and say where frames were lost.
type jmxdpSystem struct {
	lab *lab.Lab
	exe string
	// maxOpen sets --max-open-files; 0 keeps the default.
	maxOpen int
	// scrape reads /metrics once before stopping, which says where frames
	// were lost in more detail. Not in the CPU cases: the scrape's work
	// (about 1 s with 100k streams) would be in the figure.
	scrape bool
	// label, if set, names the system instead of "jmxdp"; args are added
	// to `jmxdp run`'s; stored, if set, counts what it stored instead of
	// the files under out (the NATS sink: natsSystem).
	label  string
	args   []string
	stored func() (packets uint64, streams int, err error)
	// sinkSummary, if set, says from the process's last words where the
	// sink lost or kept batches (the NATS sink: natsSystem).
	sinkSummary func(*lineBuffer) []string

	p      *proc
	out    string
	port   int
	pins   *jmmaps.Pinned
	frames uint64 // the program's frame count at start
}

func (j *jmxdpSystem) name() string {
	if j.label != "" {
		return j.label
	}
	return "jmxdp"
}
func (j *jmxdpSystem) passThrough() bool { return false }

// pinDir is where `jmxdp run` pins its maps for the lab's interface.
func (j *jmxdpSystem) pinDir() string { return pins.Dir(config.DefaultPinDir, j.lab.HostIface) }

func (j *jmxdpSystem) start(out string) error {
	// A fresh instance every time: pinned maps left by an earlier run
	// would be taken over, with their counters and stream table.
	if err := j.purge(); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	args := []string{"run", "--iface", j.lab.HostIface, "--out", out, "--metrics-addr", "127.0.0.1:" + strconv.Itoa(port)}
	if j.maxOpen > 0 {
		args = append(args, "--max-open-files", strconv.Itoa(j.maxOpen))
	}
	args = append(args, j.args...)
	cmd := exec.Command(j.exe, append([]string{ChildArg, roleMain}, args...)...)
	p, err := startProc("jmxdp run", cmd)
	if err != nil {
		return err
	}
	j.p, j.out, j.port = p, out, port
	if err := j.waitReady(); err != nil {
		j.abort()
		return err
	}
	if j.pins, err = jmmaps.OpenPinned(j.pinDir()); err != nil {
		j.abort()
		return fmt.Errorf("jmxdp's pinned maps: %w", err)
	}
	c, err := j.pins.Counters()
	if err != nil {
		j.abort()
		return fmt.Errorf("jmxdp's counters: %w", err)
	}
	j.frames = c[vocab.StatFrames]
	return nil
}

// waitReady polls /readyz (attached, capture running) every 20 ms.
func (j *jmxdpSystem) waitReady() error {
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", j.port)
	client := http.Client{Timeout: time.Second}
	end := time.Now().Add(procReadyWait)
	for time.Now().Before(end) {
		select {
		case <-j.p.done:
			return fmt.Errorf("jmxdp run exited at start: %v: %s", j.p.err, j.p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		resp, err := client.Get(url)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
	return fmt.Errorf("jmxdp run not ready within %v: %s", procReadyWait, j.p.stderr.String())
}

func (j *jmxdpSystem) drain(sent uint64) {
	// Every frame through the program (read from the pinned maps, from
	// outside), then until the process has gone quiet.
	waitQuiet(sent, captureSettle, func() uint64 {
		c, err := j.pins.Counters()
		if err != nil {
			return 0
		}
		return c[vocab.StatFrames] - j.frames
	})
	j.p.waitCPUQuiet()
}

func (j *jmxdpSystem) stop(st *captureStep) error {
	defer j.abort()
	var lost []string
	var ring uint64
	socks := 0
	if j.scrape {
		lost = j.scraped()
	} else {
		var err error
		if ring, socks, err = xskDrops(j.p.cmd.Process.Pid); err != nil {
			lost = append(lost, "AF_XDP statistics: "+err.Error())
		}
	}
	c, cerr := j.pins.Counters()
	if err := j.p.stop(syscall.SIGTERM); err != nil {
		return err
	}
	st.CPU = j.p.cpu()
	var n uint64
	var files, parts int
	var err error
	if j.stored != nil {
		n, files, err = j.stored()
	} else {
		n, files, parts, err = countCaptures(j.out, ".pcapng")
	}
	if err != nil {
		return err
	}
	st.Written, st.Streams = n, files
	if cerr == nil {
		if f := c[vocab.StatCaptureFailed]; f > 0 {
			lost = append(lost, fmt.Sprintf("capture_failed %d", f))
		}
	}
	if !j.scrape && cerr == nil {
		// Frames the program redirected to the sockets: those not in the
		// rings were dropped there, the rest not in a file after them.
		if ring > 0 {
			lost = append(lost, fmt.Sprintf("AF_XDP ring %d", ring))
		}
		where := "queue or writers"
		if socks == 0 {
			where = "after the program (no AF_XDP socket read)"
		}
		redirected := c[vocab.StatActionCapture] - min(c[vocab.StatCaptureFailed], c[vocab.StatActionCapture])
		if after := int64(redirected) - int64(ring) - int64(n); after > 0 {
			lost = append(lost, fmt.Sprintf("%s %d", where, after))
		}
	}
	if parts > 0 {
		lost = append(lost, fmt.Sprintf("%d .part files left", parts))
	}
	if j.sinkSummary != nil {
		lost = append(lost, j.sinkSummary(j.p.stderr)...)
	}
	st.Lost = strings.Join(lost, ", ")
	return nil
}

// scraped is where jmxdp says frames were lost, from one scrape of its
// metrics (docs/metrics.md).
func (j *jmxdpSystem) scraped() []string {
	m, err := scrapeMetrics(fmt.Sprintf("http://127.0.0.1:%d/metrics", j.port))
	if err != nil {
		return []string{"metrics: " + err.Error()}
	}
	var lost []string
	add := func(what string, n float64) {
		if n > 0 {
			lost = append(lost, fmt.Sprintf("%s %.0f", what, n))
		}
	}
	add("queue", m["jmxdp_capture_queue_drops_total"])
	add("AF_XDP ring", m["jmxdp_xsk_rx_ring_full_total"]+m["jmxdp_xsk_rx_dropped_total"])
	// Queue drops are also counted by the writers (as reason queue).
	add("writer", m["jmxdp_writer_drops_total"]-m[`jmxdp_writer_drops_total{reason="queue"}`])
	return lost
}

// xskDrops sums the drop counters (XDP_STATISTICS) of process pid's
// AF_XDP sockets, read from outside: each of its sockets is duplicated with
// pidfd_getfd(2) (root: CAP_SYS_PTRACE) and asked, which costs the process
// nothing. ring is rx_ring_full + rx_dropped; n the sockets found.
func xskDrops(pid int) (ring uint64, n int, err error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err != nil || !strings.HasPrefix(l, "socket:") {
			continue
		}
		target, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		if err != nil {
			continue // closed since the listing
		}
		if dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil && dom == unix.AF_XDP {
			var st unix.XDPStatistics
			l := uint32(unsafe.Sizeof(st))
			_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
				uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&l)), 0)
			if errno == 0 {
				ring += st.Rx_ring_full + st.Rx_dropped
				n++
			}
		}
		unix.Close(fd)
	}
	return ring, n, nil
}

// purge removes jmxdp's pinned maps and link for the lab's interface, and
// the pin root if that leaves it empty.
func (j *jmxdpSystem) purge() error {
	if err := os.RemoveAll(j.pinDir()); err != nil {
		return fmt.Errorf("remove jmxdp's pinned maps: %w", err)
	}
	os.Remove(config.DefaultPinDir) // only when empty: other instances' pins stay
	return nil
}

func (j *jmxdpSystem) abort() {
	if j.pins != nil {
		j.pins.Close()
		j.pins = nil
	}
	killProc(&j.p)
	j.purge()
}

var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)`)

// scrapeMetrics reads a Prometheus text page: each sample by its name and
// labels, and each name summed over its labels.
func scrapeMetrics(url string) (map[string]float64, error) {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	s := bufio.NewScanner(io.LimitReader(resp.Body, 64<<20))
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		m := metricLine.FindStringSubmatch(s.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		out[m[1]] += v
		if m[2] != "" {
			out[m[1]+m[2]] = v
		}
	}
	return out, s.Err()
}

// udprecvSystem is the Go UDP collector (userspace/bench/udprecv) on the host
// end's address, a process of its own (this executable, re-executed as
// roleUdprecv).
type udprecvSystem struct {
	addr netip.AddrPort
	// The writer's settings: the ladders' max_open_files, or jmxdp's
	// defaults in the CPU cases.
	maxOpen    int
	rotateSize int64
	rotateAge  time.Duration

	p   *proc
	out string
}

func (u *udprecvSystem) name() string      { return "udprecv" }
func (u *udprecvSystem) passThrough() bool { return true }

func (u *udprecvSystem) start(out string) error {
	job, err := json.Marshal(udprecvJob{Addr: u.addr, Dir: out, MaxOpen: u.maxOpen, RotateSize: u.rotateSize, RotateAge: u.rotateAge})
	if err != nil {
		return err
	}
	cmd, err := childCommand(context.Background(), roleUdprecv)
	if err != nil {
		return err
	}
	cmd.Stdin = bytes.NewReader(job)
	p, err := startProc("udprecv", cmd)
	if err != nil {
		return err
	}
	if err := p.waitListening(); err != nil {
		p.kill()
		return err
	}
	u.p, u.out = p, out
	return nil
}

// drain: the socket is read as long as it holds datagrams, so the
// process going quiet means it is empty.
func (u *udprecvSystem) drain(uint64) { u.p.waitCPUQuiet() }

func (u *udprecvSystem) stop(st *captureStep) error {
	p := u.p
	u.p = nil
	// Close writes what is still queued on the socket, then the counters
	// come on stdout.
	if err := p.stop(syscall.SIGTERM); err != nil {
		return err
	}
	st.CPU = p.cpu()
	var res udprecvResult
	if err := json.Unmarshal(p.stdout.Bytes(), &res); err != nil {
		return fmt.Errorf("udprecv's counters: %w: %q", err, p.stdout.String())
	}
	n, files, parts, err := countCaptures(u.out, ".pcapng")
	if err != nil {
		return err
	}
	st.Written, st.Streams = n, files
	s := res.Receiver
	var lost []string
	if s.KernelDrops > 0 {
		lost = append(lost, fmt.Sprintf("socket drops %d", s.KernelDrops))
	}
	if n := s.Malformed + s.Truncated + s.Refused; n > 0 {
		lost = append(lost, fmt.Sprintf("malformed/truncated/refused %d", n))
	}
	if parts > 0 {
		lost = append(lost, fmt.Sprintf("%d .part files left", parts))
	}
	st.Lost = strings.Join(lost, ", ")
	return nil
}

func (u *udprecvSystem) abort() {
	killProc(&u.p)
}

// tcpdumpSystem is tcpdump -w on the host end. In the ladders its file is
// then split per stream (`jmxdp decode --out`, in this process, timed); in
// the CPU cases its packets are only counted.
type tcpdumpSystem struct {
	bin, iface string
	split      bool

	p         *proc
	file, out string
}

func (t *tcpdumpSystem) name() string      { return "tcpdump" }
func (t *tcpdumpSystem) passThrough() bool { return true }

func (t *tcpdumpSystem) start(out string) error {
	if err := os.MkdirAll(out, 0o700); err != nil {
		return fmt.Errorf("tcpdump output: %w", err)
	}
	t.out, t.file = out, filepath.Join(out, "mirror.pcap")
	p, err := startProc("tcpdump", exec.Command(t.bin, TcpdumpArgs(t.iface, t.file)...))
	if err != nil {
		return err
	}
	// "listening on": the capture socket is open and filtering.
	if err := p.waitListening(); err != nil {
		p.kill()
		return err
	}
	t.p = p
	return nil
}

// drain: tcpdump reports nothing while it runs; its file stops growing
// once its ring is drained.
func (t *tcpdumpSystem) drain(uint64) {
	waitQuiet(^uint64(0), tcpdumpSettle, func() uint64 {
		fi, err := os.Stat(t.file)
		if err != nil {
			return 0
		}
		return uint64(fi.Size())
	})
}

var tcpdumpStat = regexp.MustCompile(`(?m)^(\d+) packets? (captured|received by filter|dropped by kernel)`)

func (t *tcpdumpSystem) stop(st *captureStep) error {
	p := t.p
	t.p = nil
	// On SIGINT tcpdump writes out its buffer and prints its statistics.
	if err := p.stop(os.Interrupt); err != nil {
		return err
	}
	st.CPU = p.cpu()
	counts := map[string]uint64{}
	for _, m := range tcpdumpStat.FindAllStringSubmatch(p.stderr.String(), -1) {
		counts[m[2]], _ = strconv.ParseUint(m[1], 10, 64)
	}
	if _, ok := counts["captured"]; !ok {
		return fmt.Errorf("tcpdump printed no statistics: %s", p.stderr.String())
	}
	if k := counts["dropped by kernel"]; k > 0 {
		st.Lost = fmt.Sprintf("dropped by kernel %d", k)
	}
	if !t.split {
		n, err := countFile(t.file)
		if err != nil {
			return fmt.Errorf("count tcpdump's packets: %w", err)
		}
		st.Written, st.Streams = n, 1
		return nil
	}
	t0 := time.Now()
	rep, err := decode.Files([]string{t.file}, decode.Options{
		Ports: []uint16{gen.DefaultPort}, Engine: decode.EngineGo,
		OutDir: filepath.Join(t.out, "streams"), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return fmt.Errorf("split tcpdump's file: %w", err)
	}
	if dt := time.Since(t0).Seconds(); dt > 0 {
		st.SplitRate = float64(rep.Totals.Frames) / dt
	}
	st.Written, st.Streams = rep.Totals.Written, len(rep.Files)
	return nil
}

func (t *tcpdumpSystem) abort() {
	killProc(&t.p)
}

// dropSystem is xdp_drop on the host end: no receiver, only the sender and
// veth. What it "writes" is what reached the host end; its offered rates
// are the sender's own ceiling at the same settings.
type dropSystem struct {
	iface string
	d     *xmit.Drop
	base  uint64
}

func (x *dropSystem) name() string      { return "sender" }
func (x *dropSystem) passThrough() bool { return false }

func (x *dropSystem) start(string) error {
	d, err := xmit.AttachDrop(x.iface)
	if err != nil {
		return err
	}
	base, err := xmit.XDPDrops(x.iface)
	if err != nil {
		d.Close()
		return err
	}
	x.d, x.base = d, base
	return nil
}

func (x *dropSystem) dropped() uint64 {
	n, err := xmit.XDPDrops(x.iface)
	if err != nil {
		return 0
	}
	return n - x.base
}

func (x *dropSystem) drain(sent uint64) { waitQuiet(sent, captureSettle, x.dropped) }

func (x *dropSystem) stop(st *captureStep) error {
	st.Written = x.dropped()
	d := x.d
	x.d = nil
	return d.Close()
}

func (x *dropSystem) abort() {
	if x.d != nil {
		x.d.Close()
		x.d = nil
	}
}
