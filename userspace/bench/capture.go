package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/runstate"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
	"github.com/jmxdp/jmxdp/userspace/tools/xmit"
)

// SectionCapture is live capture to per-stream files: jmxdp against what
// an operator would otherwise run (tcpdump -w, or a userspace UDP
// collector), as the CPU time each spends per frame written on the same
// traffic, and as the highest offered rate each writes without losing a
// packet.
const SectionCapture = "capture_to_disk"

// Sizes of the capture section's loss-free ladders.
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
	// captureMaxRuns caps the ladder runs in full mode: a run climbs six
	// ladders and the sender's (about two minutes here). No run starts
	// after captureRunBudget (counted from the first ladder), which keeps
	// the section, CPU cases included, under about eight minutes.
	captureMaxRuns   = 3
	captureRunBudget = 150 * time.Second
	// captureMaxOpen is the ladders' max_open_files for both jmxdp and
	// udprecv: above the stream count, as an operator expecting 1000
	// streams would set it, whatever RLIMIT_NOFILE gives.
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
	// xmitCallWorth is the most of its rate one xmit call sends at once
	// (xmit.Options.Rate): a thread's bursts are at most its share of the
	// rate times this.
	xmitCallWorth = 200 * time.Millisecond
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

// captureStepHook, if set, sees every ladder step (tests).
var captureStepHook func(dir, system string, st captureStep)

// captureSystem is one way of getting the mirror port into files.
type captureSystem interface {
	name() string
	// passThrough: the system receives through the host's stack, so the
	// host end needs xdp_pass (veth only takes redirected frames when its
	// receiving end runs XDP), as a NIC driver hands frames up.
	passThrough() bool
	// start makes the system ready to receive, writing under out.
	start(out string) error
	// drain waits (bounded) until what was sent has been dealt with.
	drain(sent uint64)
	// stop stops the system and counts the packets in its files:
	// Written, Streams, Lost and CPU.
	stop(st *captureStep) error
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

	cb, down, err := newCaptureBench(opts, "jmxcap", streams, rates, stepTime)
	if err != nil {
		return sec, err
	}
	defer down()
	l := cb.lab

	exe, why := jmxdpExecutable(opts)
	if why != "" {
		sec.Skipped = append(sec.Skipped, "jmxdp: "+why)
	}
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		tcpdump = ""
		sec.Skipped = append(sec.Skipped, "tcpdump not found: no tcpdump baseline")
	}
	addr := netip.AddrPortFrom(l.HostAddr.Addr(), gen.DefaultPort)

	// The sender and the kernel's receive path (veth receives in the
	// sender's softirq) get captureSenderCPU; every receiver (a process of
	// its own, started pinned) and this process the other CPUs: as an
	// operator keeps a capture process off the NIC's interrupt CPU.
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

	// CPU per frame written: every receiver on the same traffic, on the
	// tmpfs (the disk's speed is not the receivers' cost).
	def := config.Default().Output
	var cpuSystems []captureSystem
	if exe != "" {
		cpuSystems = append(cpuSystems, &jmxdpSystem{lab: l, exe: exe})
	}
	if tcpdump != "" {
		cpuSystems = append(cpuSystems, &tcpdumpSystem{bin: tcpdump, iface: l.HostIface})
	}
	cpuSystems = append(cpuSystems, &udprecvSystem{addr: addr, maxOpen: def.MaxOpenFiles, rotateSize: def.RotateSize, rotateAge: def.RotateAge})
	cpuRes, err := cb.cpuCases(dirs[0], cpuSystems)
	if err != nil {
		return sec, fmt.Errorf("CPU per frame: %w", err)
	}

	// The sender's own ceiling, at the CPU cases' settings and at the
	// ladders'.
	ceil, ceilPlan, err := cb.cpuCeiling()
	if err != nil {
		return sec, fmt.Errorf("sender ceiling: %w", err)
	}

	// The loss-free ladders.
	var systems []captureSystem
	if exe != "" {
		systems = append(systems, &jmxdpSystem{lab: l, exe: exe, maxOpen: captureMaxOpen, scrape: true})
	}
	if tcpdump != "" {
		systems = append(systems, &tcpdumpSystem{bin: tcpdump, iface: l.HostIface, split: true})
	}
	systems = append(systems, &udprecvSystem{addr: addr, maxOpen: captureMaxOpen, rotateSize: def.RotateSize, rotateAge: def.RotateAge})
	sender := &dropSystem{iface: l.HostIface}
	results := map[string]map[string]*captureLadders{}
	senderLad := &captureLadders{}
	began := time.Now()
	done := 0
	for run := range runs {
		if run > 0 && !opts.Short && time.Since(began) > captureRunBudget {
			capped += fmt.Sprintf(" (%d done: the time budget of %v was spent)", run, captureRunBudget)
			break
		}
		done++
		steps, err := cb.ladder(dirs[0], sender, run)
		if err != nil {
			return sec, fmt.Errorf("sender into xdp_drop: %w", err)
		}
		senderLad.add(steps)
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

	sec.Note = cb.cpuNote(cpuRes) + " " + fmt.Sprintf("Loss-free ladders: veth lab, frames sent from its router end by xmit (BPF_PROG_TEST_RUN live frames, as jmxdp gen --fast) in a process of its own pinned to CPU %d, in bursts of %d frames or 1/%d s worth (the larger) from %d threads, "+
		"%d streams of IPv4 Jmirror frames (mirrored packets of simple IMIX sizes); every receiver is a process of its own pinned to the other CPUs; the receivers that are not XDP programs get the frames through xdp_pass on the host end, as from a NIC driver; "+
		"offered rates %s frames/s for about %v each, each ladder stopped after its first lossy step; loss-free rate = the highest achieved offered rate "+
		"with every packet in a file (median of %d run(s)%s). jmxdp: `jmxdp run --max-open-files %d` on the host end (default capture policy); "+
		"tcpdump: tcpdump %s, then `jmxdp decode --out` (in the bench process) splits the file per stream; udprecv: a Go UDP collector "+
		"(recvmmsg, SO_RCVBUFFORCE 32 MiB) writing through jmxdp's own writer (MaxOpen %d); sender: the same sends into xdp_drop on the host end, the sender's own ceiling. Outer UDP checksums are 0, as routers send "+
		"them, so the host's stack does not verify them in software. The disk directory goes through the page cache (%s). %s",
		captureSenderCPU, captureBurst, captureCalls, captureThreads, streams, rateList(rates), stepTime, done, capped, captureMaxOpen, strings.Join(TcpdumpArgs(l.HostIface, "FILE"), " "), captureMaxOpen,
		dirsNote(dirs), captureTable(dirs, systems, results, senderLad))

	sec.Figures = append(sec.Figures, cpuFigures(cpuRes)...)
	asked := cpuCasesFull[0].rate
	if opts.Short {
		asked = cpuCasesShort[0].rate
	}
	sec.Figures = append(sec.Figures, ceilingFigures(ceil, ceilPlan, asked, senderLad, rates)...)
	for _, d := range dirs {
		sec.Figures = append(sec.Figures, captureFigures(d.name, results[d.name], systems, senderLad)...)
	}
	return sec, nil
}

// jmxdpExecutable is the jmxdp binary the section runs as `jmxdp run`:
// Options.Jmxdp, else this executable when it is jmxdp (SetMain). why says
// why there is none.
func jmxdpExecutable(opts Options) (exe, why string) {
	if opts.Jmxdp != "" {
		return opts.Jmxdp, ""
	}
	if mainFunc == nil {
		return "", "this program is not jmxdp (no bench.SetMain) and Options.Jmxdp is not set"
	}
	exe, err := os.Executable()
	if err != nil {
		return "", "find this executable: " + err.Error()
	}
	return exe, ""
}

// captureBench is what the runs share.
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
	// nofile, if not 0, is the RLIMIT_NOFILE receivers start with;
	// nofileGot the one they got (withNofile).
	nofile, nofileGot uint64
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

// newCaptureBench makes the veth lab (names from prefix) and the frame
// templates of the capture and nats_sink sections, with streams spread
// over intercepts of ten sessions at most; down removes the lab.
func newCaptureBench(opts Options, prefix string, streams int, rates []float64, stepTime time.Duration) (*captureBench, func(), error) {
	cb := &captureBench{opts: opts, rates: rates, stepTime: stepTime}
	l, err := lab.Up(lab.Random(prefix))
	if err != nil {
		return nil, nil, fmt.Errorf("%s lab: %w", prefix, err)
	}
	down := func() {
		// jmxdp's runs on the lab left their lock, state and checkpoint
		// files in /run/jmxdp (kept after a stop by design).
		runstate.Remove(runstate.DefaultDir, l.HostIface)
		if err := l.Down(); err != nil {
			fmt.Fprintf(opts.Progress, "bench: %s: %v\n", prefix, err)
		}
	}
	cb.lab = l
	if cb.templates, err = captureTemplates(l); err != nil {
		down()
		return nil, nil, err
	}
	cb.intercepts = 10
	if streams >= 100 {
		cb.intercepts = streams / 10
	}
	cb.sessions = streams / cb.intercepts
	return cb, down, nil
}
