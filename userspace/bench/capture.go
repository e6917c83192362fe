package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/loader"
	jmmaps "github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/gen"
	"github.com/jmxdp/jmxdp/userspace/lab"
	"github.com/jmxdp/jmxdp/userspace/netns"
	"github.com/jmxdp/jmxdp/userspace/udprecv"
	"github.com/jmxdp/jmxdp/userspace/writer"
	"github.com/jmxdp/jmxdp/userspace/xmit"
)

// SectionCapture is live capture to per-stream files: jmxdp against what
// an operator would otherwise run (tcpdump then a split per stream, or a
// userspace UDP collector), as the highest offered rate each writes
// without losing a packet.
const SectionCapture = "capture_to_disk"

// Sizes of the capture section.
const (
	captureStreams      = 1000 // 100 intercepts x 10 sessions
	captureStreamsShort = 50   // 10 x 5
	// The sender: xmit (BPF_PROG_TEST_RUN live frames) in a process of its
	// own on CPU captureSenderCPU, from captureThreads threads, in bursts of
	// captureBurst frames or a captureCalls-th of a second's worth, the
	// larger. A live-frames call ends with a sleep of tens of ms in the
	// kernel, and concurrent calls queue for part of it: measured here, 16
	// threads make about 175 calls a second and more threads fewer.
	captureSenderCPU = 0
	captureBurst     = 1024
	captureThreads   = 16
	captureCalls     = 150
	// Each paced step lasts about this long.
	captureStepTime      = 2 * time.Second
	captureStepTimeShort = 500 * time.Millisecond
	// captureFastFrames is what the as-fast-as-possible step sends.
	captureFastFrames      = 2_000_000
	captureFastFramesShort = 10_000
	// captureMaxRuns caps the runs of this section in full mode: each run
	// climbs six ladders (about two minutes here); more would take the
	// section past six minutes. No run starts after captureRunBudget.
	captureMaxRuns   = 3
	captureRunBudget = 4 * time.Minute
	// captureMaxOpen is the writers' max_open_files for both jmxdp and
	// udprecv: above the stream count, as an operator expecting 1000
	// streams would set it (the default 512 would make both evict and
	// reopen files all the time).
	captureMaxOpen = 2048
	// captureTmpfsSize holds the biggest step's files (tcpdump's capture
	// and its split: about 1.7 GB at 2M frames).
	captureTmpfsSize = "4g"
	// Bounds of the waits after a step.
	captureSettle  = 300 * time.Millisecond // no progress for this long: done
	captureMaxWait = 20 * time.Second
	// tcpdumpSettle outlasts libpcap's TPACKET_V3 block timeout (tcpdump
	// asks for 1 s): a partly filled block reaches tcpdump only then.
	tcpdumpSettle = 1500 * time.Millisecond
)

// Offered rates in frames/s; 0 is as fast as the sender goes.
var (
	captureRates      = []float64{100e3, 200e3, 400e3, 800e3, 1600e3, 0}
	captureRatesShort = []float64{5e3, 10e3}
)

// TcpdumpArgs are tcpdump's arguments around the interface and the file:
// what an operator runs to record the mirror port, with a 32 MiB buffer.
func TcpdumpArgs(iface, file string) []string {
	return []string{"-i", iface, "-w", file, "-B", "32768", "-n", "udp dst port " + strconv.Itoa(int(gen.DefaultPort))}
}

// captureStep is one step of a ladder: what was offered and what ended up
// in files.
type captureStep struct {
	Rate    float64 // asked for, frames/s; 0: as fast as possible
	Offered float64 // achieved, frames/s
	Sent    uint64
	Written uint64
	Loss    float64 // 1 - Written/Sent
	Elapsed time.Duration
	// Lost says where the system counted its losses.
	Lost string
	// SplitRate is tcpdump's split per stream, frames/s (0 otherwise).
	SplitRate float64
	Streams   int // streams with a file
}

// captureStepHook, if set, sees every step (tests).
var captureStepHook func(dir, system string, st captureStep)

// captureSystem is one way of getting the mirror port into per-stream
// files.
type captureSystem interface {
	name() string
	// start makes the system ready to receive, writing under out.
	start(out string) error
	// finish waits (bounded) until what was sent has been dealt with,
	// stops, and counts the packets in the files.
	finish(sent uint64, st *captureStep) error
	// abort stops without counting.
	abort()
}

// captureToDisk measures the capture section in a lab of its own.
func captureToDisk(opts Options, tmp string) (Section, error) {
	sec := Section{Name: SectionCapture}
	if !isRoot() {
		sec.Skipped = append(sec.Skipped, "not root: the lab (namespaces, veth), XDP and tcpdump need root")
		return sec, nil
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	runs := opts.Runs
	if runs <= 0 {
		runs = 1
		if !opts.Short {
			runs = captureMaxRuns
		}
	}
	rates, streams, stepTime := captureRates, captureStreams, captureStepTime
	if opts.Short {
		rates, streams, stepTime = captureRatesShort, captureStreamsShort, captureStepTimeShort
	}
	capped := ""
	if !opts.Short && runs > captureMaxRuns {
		capped = fmt.Sprintf(" (capped from %d to keep the section short)", runs)
		runs = captureMaxRuns
	}

	cb := &captureBench{opts: opts, rates: rates, stepTime: stepTime}
	l, err := lab.Up(lab.Random("jmxcap"))
	if err != nil {
		return sec, fmt.Errorf("capture lab: %w", err)
	}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintf(opts.Progress, "bench: capture: %v\n", err)
		}
	}()
	cb.lab = l
	if cb.templates, err = captureTemplates(l); err != nil {
		return sec, err
	}
	cb.intercepts = 10
	if streams >= 100 {
		cb.intercepts = streams / 10
	}
	cb.sessions = streams / cb.intercepts

	// The daemon's maps are pinned per run of the bench, removed after.
	pinDir := filepath.Join(loader.BPFFSRoot, "jmxdp-bench-"+l.Name)
	defer os.RemoveAll(pinDir)

	systems := []captureSystem{&jmxdpSystem{lab: l, pinDir: pinDir}}
	if bin, err := exec.LookPath("tcpdump"); err != nil {
		sec.Skipped = append(sec.Skipped, "tcpdump not found: no tcpdump baseline")
	} else {
		systems = append(systems, &tcpdumpSystem{bin: bin, iface: l.HostIface})
	}
	systems = append(systems, &udprecvSystem{addr: netip.AddrPortFrom(l.HostAddr.Addr(), gen.DefaultPort)})

	// The sender and the kernel's receive path (veth receives in the
	// sender's softirq) get captureSenderCPU; every receiver, this process's
	// threads and the tcpdump it starts (inheriting it), the other CPUs: as
	// an operator keeps a capture process off the NIC's interrupt CPU.
	if runtime.NumCPU() > 1 {
		unpin, err := pinProcess(receiverCPUs())
		if err != nil {
			return sec, err
		}
		defer unpin()
	}

	dirs, undo, skipped, err := captureDirs(tmp)
	defer undo()
	if err != nil {
		return sec, err
	}
	sec.Skipped = append(sec.Skipped, skipped...)

	results := map[string]map[string]*captureLadders{}
	began := time.Now()
	done := 0
	for run := range runs {
		if run > 0 && !opts.Short && time.Since(began) > captureRunBudget {
			capped += fmt.Sprintf(" (%d done: the time budget of %v was spent)", run, captureRunBudget)
			break
		}
		done++
		for _, d := range dirs {
			if results[d.name] == nil {
				results[d.name] = map[string]*captureLadders{}
			}
			for _, sys := range systems {
				lad := results[d.name][sys.name()]
				if lad == nil {
					lad = &captureLadders{}
					results[d.name][sys.name()] = lad
				}
				steps, err := cb.ladder(d, sys, run)
				if err != nil {
					return sec, fmt.Errorf("%s on %s: %w", sys.name(), d.name, err)
				}
				lad.add(steps)
			}
		}
	}

	sec.Note = fmt.Sprintf("veth lab, frames sent from its router end by xmit (BPF_PROG_TEST_RUN live frames, as jmxdp gen --fast) in a process of its own pinned to CPU %d, in bursts of %d frames or 1/%d s worth (the larger) from %d threads, "+
		"%d streams of IPv4 Jmirror frames (mirrored packets of simple IMIX sizes); the receivers (this process's other threads, tcpdump) are pinned to the other CPUs; the receivers that are not XDP programs get the frames through xdp_pass on the host end, as from a NIC driver; "+
		"offered rates %s frames/s for about %v each, each ladder stopped after its first lossy step; loss-free rate = the highest achieved offered rate "+
		"with every packet in a file (median of %d run(s)%s). jmxdp: `jmxdp run` (daemon, default capture policy) on the host end; "+
		"tcpdump: tcpdump %s, then `jmxdp decode --out` (in process) splits the file per stream; udprecv: a Go UDP collector "+
		"(recvmmsg, SO_RCVBUFFORCE 32 MiB) writing through jmxdp's own writer. Writers: max_open_files %d. Outer UDP checksums are 0, as routers send "+
		"them, so the host's stack does not verify them in software. The disk directory goes through the page cache (%s). %s",
		captureSenderCPU, captureBurst, captureCalls, captureThreads, streams, rateList(rates), stepTime, done, capped, strings.Join(TcpdumpArgs(l.HostIface, "FILE"), " "), captureMaxOpen,
		dirsNote(dirs), captureTable(dirs, systems, results))

	for _, d := range dirs {
		sec.Figures = append(sec.Figures, captureFigures(d.name, results[d.name], systems)...)
	}
	return sec, nil
}

// captureBench is what the ladders share.
type captureBench struct {
	opts Options
	lab  *lab.Lab
	// templates are the frames xmit stamps with intercepts x sessions
	// streams.
	templates            [][]byte
	intercepts, sessions int
	rates                []float64
	stepTime             time.Duration
	seq                  int
}

// captureDir is one place the files go.
type captureDir struct {
	name, path, fs string
}

// captureDirs mounts a tmpfs under tmp and finds a directory on a disk:
// tmp itself unless it is in memory, then /var/tmp. undo unmounts and
// removes what was made; call it even on error.
func captureDirs(tmp string) (dirs []captureDir, undo func(), skipped []string, err error) {
	var undos []func()
	undo = func() {
		for i := len(undos) - 1; i >= 0; i-- {
			undos[i]()
		}
	}
	mnt := filepath.Join(tmp, "tmpfs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return nil, undo, nil, fmt.Errorf("tmpfs mount point: %w", err)
	}
	undos = append(undos, func() { os.Remove(mnt) })
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size="+captureTmpfsSize+",mode=0700"); err != nil {
		return nil, undo, nil, fmt.Errorf("mount tmpfs on %s: %w", mnt, err)
	}
	undos = append(undos, func() {
		if unix.Unmount(mnt, 0) != nil {
			unix.Unmount(mnt, unix.MNT_DETACH) // busy: let it go when free
		}
	})
	dirs = append(dirs, captureDir{name: "tmpfs", path: mnt, fs: "tmpfs"})

	disk := tmp
	if inMemory(disk) {
		d, err := os.MkdirTemp("/var/tmp", "jmxdp-bench-")
		if err != nil {
			return dirs, undo, []string{"disk: " + tmp + " is in memory and /var/tmp is unusable: " + err.Error()}, nil
		}
		undos = append(undos, func() { os.RemoveAll(d) })
		disk = d
	}
	if inMemory(disk) {
		return dirs, undo, []string{"disk: no directory on a disk (" + disk + " is in memory)"}, nil
	}
	path := filepath.Join(disk, "disk")
	if err := os.Mkdir(path, 0o700); err != nil {
		return dirs, undo, nil, fmt.Errorf("disk directory: %w", err)
	}
	undos = append(undos, func() { os.RemoveAll(path) })
	dirs = append(dirs, captureDir{name: "disk", path: path, fs: fsName(path)})
	return dirs, undo, nil, nil
}

func inMemory(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && (st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC)
}

// fsName names the file system path is on, from /proc/self/mounts: the
// longest mount point that is a prefix of it.
func fsName(path string) string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "unknown"
	}
	best, name := "", "unknown"
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, name = mp, f[2]+" on "+f[0]
		}
	}
	return name
}

func dirsNote(dirs []captureDir) string {
	var s []string
	for _, d := range dirs {
		s = append(s, d.name+": "+d.fs)
	}
	return strings.Join(s, "; ")
}

// captureTemplates are xmit's templates: Jmirror frames from the lab's
// router end to its host end, mirrored IPv4 packets of simple IMIX sizes
// in its proportions (64:7, 576:4, 1400:1). xmit cycles over them call by
// call and stamps each copy with the next stream.
func captureTemplates(l *lab.Lab) ([][]byte, error) {
	var out [][]byte
	for _, size := range gen.SimpleIMIX() {
		inner := gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, size.Size-28)
		f, err := gen.Mirror{DstMAC: l.HostMAC, Router: l.RouterAddr.Addr(), Collector: l.HostAddr.Addr(), MID: 1, SID: 1, Inner: inner}.Frame()
		if err != nil {
			return nil, fmt.Errorf("capture template: %w", err)
		}
		if err := readdress(f, l); err != nil {
			return nil, fmt.Errorf("capture template: %w", err)
		}
		for range size.Weight {
			out = append(out, f)
		}
	}
	return out, nil
}

// readdress rewrites an untagged Ethernet/IPv4 frame in place: from the
// lab's router end to its host end, with the IPv4 checksum redone. The UDP
// checksum is 0 (none), as gen and routers send it.
func readdress(f []byte, l *lab.Lab) error {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[14]>>4 != 4 {
		return errors.New("not an untagged IPv4 frame")
	}
	ihl := int(f[14]&0x0f) * 4
	if ihl < 20 || len(f) < 14+ihl+8 || f[14+9] != 17 {
		return errors.New("not UDP over IPv4")
	}
	if binary.BigEndian.Uint16(f[14+ihl+6:]) != 0 {
		return errors.New("UDP checksum set: rewriting addresses would break it")
	}
	copy(f[0:6], l.HostMAC)
	copy(f[6:12], l.RouterMAC)
	ip := f[14 : 14+ihl]
	src, dst := l.RouterAddr.Addr().As4(), l.HostAddr.Addr().As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	ip[10], ip[11] = 0, 0
	var sum uint32
	for i := 0; i < ihl; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	return nil
}

// ladder offers each rate in turn to sys writing in d, until a step loses
// packets.
func (cb *captureBench) ladder(d captureDir, sys captureSystem, run int) ([]captureStep, error) {
	var steps []captureStep
	for _, rate := range cb.rates {
		cb.seq++
		out := filepath.Join(d.path, fmt.Sprintf("%s-%d", sys.name(), cb.seq))
		st, err := cb.step(sys, out, rate)
		os.RemoveAll(out)
		if err != nil {
			return steps, err
		}
		fmt.Fprintf(cb.opts.Progress, "bench: capture run %d %s %s: offered %.0f kpps (asked %s), sent %d, written %d, loss %.4f%s\n",
			run+1, d.name, sys.name(), st.Offered/1e3, rateName(rate), st.Sent, st.Written, st.Loss, prefixed(" (", st.Lost, ")"))
		if captureStepHook != nil {
			captureStepHook(d.name, sys.name(), st)
		}
		steps = append(steps, st)
		if st.Written < st.Sent {
			break
		}
	}
	return steps, nil
}

func prefixed(pre, s, post string) string {
	if s == "" {
		return ""
	}
	return pre + s + post
}

// step runs one step: start sys, send, let it finish, count.
func (cb *captureBench) step(sys captureSystem, out string, rate float64) (captureStep, error) {
	st := captureStep{Rate: rate}
	n := uint64(captureFastFrames)
	if rate > 0 {
		n = uint64(rate * cb.stepTime.Seconds())
	}
	if cb.opts.Short && rate == 0 {
		n = captureFastFramesShort
	}
	// xmit's frames reach a veth's other end only through an XDP program
	// there: jmxdp itself, or xdp_pass for the receivers that are not XDP.
	if sys.name() != "jmxdp" {
		pass, err := xmit.AttachPass(cb.lab.HostIface)
		if err != nil {
			return st, err
		}
		defer pass.Close()
	}
	if err := sys.start(out); err != nil {
		return st, err
	}
	xo := xmit.Options{
		Iface: cb.lab.RouterIface, Netns: cb.lab.Name, Templates: cb.templates,
		Intercepts: cb.intercepts, Sessions: cb.sessions, BaseMID: 1, BaseSID: 1,
		Rate: rate, Packets: n,
	}
	if rate > 0 {
		// Pacing is by bursts, and each live-frames call sleeps tens of ms
		// after its burst: many threads, each with its share of the rate.
		xo.MaxBurst = max(captureBurst, int(rate/captureCalls))
		xo.Threads = captureThreads
	}
	// Bounded by twice the step's nominal time, plus slack for a slow box.
	limit := 2*cb.stepTime + 10*time.Second
	if rate == 0 {
		limit = 30 * time.Second
	}
	refused0 := cb.vethRefused()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	rep, err := sendFromChild(ctx, xo, []int{captureSenderCPU})
	cancel()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		sys.abort()
		return st, fmt.Errorf("send: %w", err)
	}
	st.Sent, st.Elapsed = rep.Sent, rep.Elapsed
	if rep.Elapsed > 0 {
		st.Offered = float64(rep.Sent) / rep.Elapsed.Seconds()
	}
	if err := sys.finish(rep.Sent, &st); err != nil {
		return st, err
	}
	// Frames the host end's veth ring had no room for: the receiving
	// host's kernel did not keep up (a NIC's RX ring overflowing).
	if r := cb.vethRefused() - refused0; r > 0 {
		st.Lost = prefixed("", st.Lost, ", ") + fmt.Sprintf("veth ring %d", r)
	}
	if st.Sent > 0 {
		st.Loss = 1 - float64(min(st.Written, st.Sent))/float64(st.Sent)
	}
	if st.Written > st.Sent {
		return st, fmt.Errorf("%d packets in the files, %d sent: traffic from elsewhere on the lab?", st.Written, st.Sent)
	}
	return st, nil
}

// waitQuiet polls progress every 20 ms until it reaches want, or has not
// moved for quiet, or captureMaxWait has passed.
func waitQuiet(want uint64, quiet time.Duration, progress func() uint64) {
	end := time.Now().Add(captureMaxWait)
	last, since := progress(), time.Now()
	for last < want && time.Now().Before(end) && time.Since(since) < quiet {
		time.Sleep(20 * time.Millisecond)
		if p := progress(); p != last {
			last, since = p, time.Now()
		}
	}
}

// jmxdpSystem is `jmxdp run` on the lab's host end.
type jmxdpSystem struct {
	lab    *lab.Lab
	pinDir string
	d      *daemon.Daemon
	// The kernel's counters at start: they continue across restarts (the
	// maps stay pinned).
	base jmmaps.Counters
}

func (j *jmxdpSystem) name() string { return "jmxdp" }

func (j *jmxdpSystem) start(out string) error {
	cfg := config.Default()
	cfg.Interface = j.lab.HostIface
	cfg.Ports, cfg.PortsSet = []uint16{gen.DefaultPort}, true
	cfg.DefaultAction, cfg.DefaultActionSet = jmmaps.ActionCapture, true
	cfg.Output.Dir = out
	cfg.Output.MaxOpenFiles = captureMaxOpen
	cfg.Capture.PinDir = j.pinDir
	cfg.Capture.MaxStreams = 1 << 16
	cfg.Metrics.Addr = ""
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("daemon config: %w", err)
	}
	d, err := daemon.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	c, err := d.Counters()
	if err != nil {
		d.Stop()
		return fmt.Errorf("daemon counters: %w", err)
	}
	j.d, j.base = d, c
	return nil
}

func (j *jmxdpSystem) finish(sent uint64, st *captureStep) error {
	d := j.d
	j.d = nil
	// Every frame through the program, then every frame the sockets took
	// through the writers.
	waitQuiet(sent, captureSettle, func() uint64 {
		c, err := d.Counters()
		if err != nil {
			return 0
		}
		return c[jmmaps.StatFrames] - j.base[jmmaps.StatFrames]
	})
	waitQuiet(sent, captureSettle, func() uint64 {
		cs := d.Capture().Stats()
		return cs.Written + cs.Refused + cs.QueueDrops + cs.Unexpected
	})
	cs := d.Capture().Stats()
	var ring uint64
	for _, q := range cs.Queues {
		ring += q.Kernel.RxRingFull + q.Kernel.RxDropped
	}
	c, cerr := d.Counters()
	if err := d.Stop(); err != nil {
		return fmt.Errorf("stop daemon: %w", err)
	}
	ws := d.Writer().Stats()
	st.Written, st.Streams = ws.Packets, int(ws.FilesCompleted)
	var lost []string
	if cs.QueueDrops > 0 {
		lost = append(lost, fmt.Sprintf("queue %d", cs.QueueDrops))
	}
	if ring > 0 {
		lost = append(lost, fmt.Sprintf("AF_XDP ring %d", ring))
	}
	if f := c[jmmaps.StatCaptureFailed] - j.base[jmmaps.StatCaptureFailed]; cerr == nil && f > 0 {
		lost = append(lost, fmt.Sprintf("capture_failed %d", f))
	}
	// Queue drops are also counted by the writer (as reason queue).
	if drops := sumDrops(ws.Drops[:]) - ws.Drops[writer.DropQueue]; drops > 0 {
		lost = append(lost, fmt.Sprintf("writer %d", drops))
	}
	st.Lost = strings.Join(lost, ", ")
	return nil
}

func (j *jmxdpSystem) abort() {
	if j.d != nil {
		j.d.Stop()
		j.d = nil
	}
}

// tcpdumpSystem is tcpdump on the host end, then the split per stream.
type tcpdumpSystem struct {
	bin, iface string
	cmd        *exec.Cmd
	file, out  string
	stderr     *lineBuffer
}

func (t *tcpdumpSystem) name() string { return "tcpdump" }

func (t *tcpdumpSystem) start(out string) error {
	if err := os.MkdirAll(out, 0o700); err != nil {
		return fmt.Errorf("tcpdump output: %w", err)
	}
	t.out, t.file = out, filepath.Join(out, "mirror.pcap")
	t.stderr = &lineBuffer{ready: make(chan struct{})}
	t.cmd = exec.Command(t.bin, TcpdumpArgs(t.iface, t.file)...)
	t.cmd.Stderr = t.stderr
	if err := t.cmd.Start(); err != nil {
		return fmt.Errorf("start tcpdump: %w", err)
	}
	// "listening on": the capture socket is open and filtering.
	select {
	case <-t.stderr.ready:
		return nil
	case <-time.After(10 * time.Second):
		t.abort()
		return fmt.Errorf("tcpdump did not start listening within 10s: %s", t.stderr.String())
	}
}

var tcpdumpStat = regexp.MustCompile(`(?m)^(\d+) packets? (captured|received by filter|dropped by kernel)`)

func (t *tcpdumpSystem) finish(sent uint64, st *captureStep) error {
	// tcpdump reports nothing while it runs: its file stops growing once
	// its ring is drained.
	waitQuiet(^uint64(0), tcpdumpSettle, func() uint64 {
		fi, err := os.Stat(t.file)
		if err != nil {
			return 0
		}
		return uint64(fi.Size())
	})
	if err := t.stop(); err != nil {
		return err
	}
	counts := map[string]uint64{}
	for _, m := range tcpdumpStat.FindAllStringSubmatch(t.stderr.String(), -1) {
		counts[m[2]], _ = strconv.ParseUint(m[1], 10, 64)
	}
	if _, ok := counts["captured"]; !ok {
		return fmt.Errorf("tcpdump printed no statistics: %s", t.stderr.String())
	}
	if k := counts["dropped by kernel"]; k > 0 {
		st.Lost = fmt.Sprintf("dropped by kernel %d", k)
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

// stop interrupts tcpdump (it then writes out its buffer and prints its
// statistics) and waits for it, killing it after 10 s.
func (t *tcpdumpSystem) stop() error {
	cmd := t.cmd
	t.cmd = nil
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("interrupt tcpdump: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("tcpdump: %w: %s", err, t.stderr.String())
		}
		return nil
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("tcpdump did not exit within 10s of SIGINT")
	}
}

func (t *tcpdumpSystem) abort() {
	if t.cmd != nil {
		t.cmd.Process.Kill()
		t.cmd.Wait()
		t.cmd = nil
	}
}

// lineBuffer keeps a process's stderr (the first 64 KiB) and closes ready
// when "listening on" appears.
type lineBuffer struct {
	mu    sync.Mutex
	b     []byte
	ready chan struct{}
	once  sync.Once
}

func (l *lineBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 64<<10 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	if strings.Contains(string(l.b), "listening on") {
		l.once.Do(func() { close(l.ready) })
	}
	return len(p), nil
}

func (l *lineBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(string(l.b))
}

// udprecvSystem is the Go UDP collector on the host end's address.
type udprecvSystem struct {
	addr netip.AddrPort
	r    *udprecv.Receiver
}

func (u *udprecvSystem) name() string { return "udprecv" }

func (u *udprecvSystem) start(out string) error {
	def := config.Default().Output
	r, err := udprecv.Listen(udprecv.Config{Addr: u.addr, Writer: writer.Config{
		Dir: out, RotateSize: def.RotateSize, RotateAge: def.RotateAge, MaxOpen: captureMaxOpen,
	}})
	if err != nil {
		return err
	}
	u.r = r
	return nil
}

func (u *udprecvSystem) finish(sent uint64, st *captureStep) error {
	r := u.r
	u.r = nil
	waitQuiet(sent, captureSettle, func() uint64 {
		s := r.Stats()
		return s.Datagrams + s.KernelDrops
	})
	// Close writes what is still queued on the socket.
	if err := r.Close(); err != nil {
		return err
	}
	s := r.Stats()
	ws := r.Writer().Stats()
	st.Written, st.Streams = ws.Packets, int(ws.FilesCompleted)
	var lost []string
	if s.KernelDrops > 0 {
		lost = append(lost, fmt.Sprintf("socket drops %d", s.KernelDrops))
	}
	if n := s.Malformed + s.Truncated + s.Refused; n > 0 {
		lost = append(lost, fmt.Sprintf("malformed/truncated/refused %d", n))
	}
	st.Lost = strings.Join(lost, ", ")
	return nil
}

func (u *udprecvSystem) abort() {
	if u.r != nil {
		u.r.Close()
		u.r = nil
	}
}

// captureLadders gathers one system's ladders on one directory.
type captureLadders struct {
	lossFree []float64 // per run: frames/s
	topClean []bool    // per run: the whole ladder was loss-free
	byRate   map[int][]captureStep
	split    []float64
}

func (c *captureLadders) add(steps []captureStep) {
	if c.byRate == nil {
		c.byRate = map[int][]captureStep{}
	}
	best, clean := 0.0, true
	for i, st := range steps {
		c.byRate[i] = append(c.byRate[i], st)
		if st.SplitRate > 0 {
			c.split = append(c.split, st.SplitRate)
		}
		if st.Written < st.Sent {
			clean = false
			break
		}
		best = max(best, st.Offered)
	}
	c.lossFree = append(c.lossFree, best)
	c.topClean = append(c.topClean, clean)
}

// lossFreeRate is the median loss-free rate, and whether the runs mostly
// never lost (then the rate is only a lower bound).
func (c *captureLadders) lossFreeRate() (float64, bool) {
	if c == nil {
		return 0, false
	}
	clean := 0
	for _, b := range c.topClean {
		if b {
			clean++
		}
	}
	return median(c.lossFree), 2*clean > len(c.topClean)
}

// summary is "rate: loss (written kpps)" for every rate offered.
func (c *captureLadders) summary() string {
	if c == nil {
		return ""
	}
	var parts []string
	for i := 0; i < len(c.byRate); i++ {
		steps := c.byRate[i]
		var off, loss, wr []float64
		streams := 0
		for _, st := range steps {
			off = append(off, st.Offered)
			loss = append(loss, st.Loss)
			if st.Elapsed > 0 {
				wr = append(wr, float64(st.Written)/st.Elapsed.Seconds())
			}
			streams = max(streams, st.Streams)
		}
		p := fmt.Sprintf("%s→%.0fk loss %.4f, %.0fk pkt/s written to %d streams", rateName(steps[0].Rate), median(off)/1e3, median(loss), median(wr)/1e3, streams)
		if len(steps) > 1 {
			p += fmt.Sprintf(" (%d runs)", len(steps))
		}
		if lost := steps[len(steps)-1].Lost; lost != "" {
			p += " [last run: " + lost + "]"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func rateName(r float64) string {
	if r == 0 {
		return "max"
	}
	return fmt.Sprintf("%gk", r/1e3)
}

func rateList(rs []float64) string {
	var s []string
	for _, r := range rs {
		if r == 0 {
			s = append(s, "as fast as possible")
		} else {
			s = append(s, rateName(r))
		}
	}
	return strings.Join(s, ", ")
}

// captureTable is the loss at each offered rate, per directory and system.
func captureTable(dirs []captureDir, systems []captureSystem, res map[string]map[string]*captureLadders) string {
	var b strings.Builder
	b.WriteString("Asked rate→achieved offered rate, median loss, written packets/s:")
	for _, d := range dirs {
		for _, s := range systems {
			lad := res[d.name][s.name()]
			fmt.Fprintf(&b, " [%s %s] %s.", d.name, s.name(), lad.summary())
			if lad != nil && len(lad.split) > 0 {
				fmt.Fprintf(&b, " Split per stream: %.0fk frames/s.", median(lad.split)/1e3)
			}
		}
	}
	return b.String()
}

// captureFigures are a directory's figures: jmxdp's loss-free rate against
// the better baseline, then each baseline's against jmxdp.
func captureFigures(dir string, res map[string]*captureLadders, systems []captureSystem) []Figure {
	jm, jmClean := res["jmxdp"].lossFreeRate()
	var bestName string
	var best float64
	for _, s := range systems {
		if s.name() == "jmxdp" {
			continue
		}
		if v, _ := res[s.name()].lossFreeRate(); bestName == "" || v > best {
			best, bestName = v, s.name()
		}
	}
	bound := func(sys string, clean bool) string {
		if clean {
			return "≥: " + sys + " never lost a packet; this is the most the sender offered (xmit, sharing the machine with the receiver). "
		}
		return sys + ": the highest offered rate before the first loss. "
	}
	f := Figure{
		Name: "capture_lossfree_" + dir, Unit: "kpps", Value: jm / 1e3, Baseline: best / 1e3, BaselineName: bestName,
		RatioDesc: "jmxdp/" + bestName, Target: &Target{On: "ratio", Op: ">=", Bound: 3},
		Note: bound("jmxdp", jmClean) + res["jmxdp"].summary(),
	}
	if best > 0 {
		f.Ratio = jm / best
	}
	figs := []Figure{f}
	for _, s := range systems {
		if s.name() == "jmxdp" {
			continue
		}
		v, clean := res[s.name()].lossFreeRate()
		g := Figure{
			Name: "capture_lossfree_" + dir + "_" + s.name(), Unit: "kpps", Value: v / 1e3, Baseline: jm / 1e3, BaselineName: "jmxdp",
			RatioDesc: s.name() + "/jmxdp", Note: bound(s.name(), clean) + res[s.name()].summary(),
		}
		if jm > 0 {
			g.Ratio = v / jm
		}
		figs = append(figs, g)
	}
	return figs
}

// pinProcess sets the CPU affinity of every thread of this process to
// cpus, and returns a function that gives them back the calling thread's
// affinity as it was. Threads made later inherit the affinity of the thread
// that makes them.
func pinProcess(cpus []int) (undo func(), err error) {
	var set, all unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return func() {}, fmt.Errorf("read CPU affinity: %w", err)
	}
	apply := func(s *unix.CPUSet) error {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			// A thread may have exited since the listing.
			if err := unix.SchedSetaffinity(tid, s); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("set CPU affinity of thread %d: %w", tid, err)
			}
		}
		return nil
	}
	if err := apply(&set); err != nil {
		apply(&all)
		return func() {}, err
	}
	return func() { apply(&all) }, nil
}

// receiverCPUs are the CPUs other than the sender's.
func receiverCPUs() []int {
	var out []int
	for c := range runtime.NumCPU() {
		if c != captureSenderCPU {
			out = append(out, c)
		}
	}
	return out
}

// vethRefused is how many frames the router end's veth could not hand to
// the host end (its XDP transmit errors): lost before any receiver.
func (cb *captureBench) vethRefused() uint64 {
	var st map[string]uint64
	if err := netns.Do(cb.lab.Name, func() (err error) { st, err = xmit.DeviceStats(cb.lab.RouterIface); return err }); err != nil {
		return 0
	}
	var n uint64
	for k, v := range st {
		if strings.HasPrefix(k, "tx_queue_") && strings.HasSuffix(k, "_xdp_xmit_errors") {
			n += v
		}
	}
	return n
}
