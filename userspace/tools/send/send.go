// Package send transmits prebuilt Ethernet frames on an interface through
// an AF_PACKET raw socket, exactly as given, in sendmmsg batches.
package send

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/tools/netns"
)

// MaxBatch is the most frames one sendmmsg call carries.
const MaxBatch = 256

// ENOBUFS (a full device queue or a peer that dropped the frame) is
// retried after a pause that doubles from minBackoff to maxBackoff; after
// maxNoProgress attempts in a row that send nothing, Send gives up.
const (
	minBackoff    = 20 * time.Microsecond
	maxBackoff    = 5 * time.Millisecond
	maxNoProgress = 400 // about 1.5 s of back-off
)

// sndbuf is the socket send buffer asked for (best effort).
const sndbuf = 4 << 20

// Sender sends frames on one interface. Send and Run may not be called
// concurrently; Close may be called at any time.
type Sender struct {
	mu      sync.Mutex // guards fd, msgs and iovs
	fd      int
	ifname  string
	ifindex int
	netns   string

	msgs []unix.Mmsghdr
	iovs []unix.Iovec
}

// Open opens a sender on ifname. A non-empty netns names the network
// namespace (as in `ip netns`) the interface lives in; the socket is
// created there and keeps sending there.
func Open(ifname, netnsName string) (*Sender, error) {
	s := &Sender{fd: -1, ifname: ifname, netns: netnsName}
	err := netns.Do(netnsName, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("interface %q: %w", ifname, err)
		}
		// Protocol 0: the socket receives nothing, so no receive queue fills.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind AF_PACKET socket to %s: %w", ifname, err)
		}
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndbuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf)
		}
		s.fd, s.ifindex = fd, ifc.Index
		return nil
	})
	if err != nil {
		where := ""
		if netnsName != "" {
			where = " in network namespace " + netnsName
		}
		return nil, fmt.Errorf("open sender on %s%s: %w", ifname, where, err)
	}
	s.msgs = make([]unix.Mmsghdr, MaxBatch)
	s.iovs = make([]unix.Iovec, MaxBatch)
	return s, nil
}

// Interface is the name of the interface the sender sends on.
func (s *Sender) Interface() string { return s.ifname }

// Ifindex is the interface's index (in its namespace).
func (s *Sender) Ifindex() int { return s.ifindex }

// Close closes the socket. Closing twice is not an error.
func (s *Sender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

// Send sends every frame, in order, MaxBatch per system call. It returns
// how many the kernel took; on an error the frames before that count were
// sent and the one at that index was not. ENOBUFS is retried after a short
// back-off, a bounded number of times.
func (s *Sender) Send(frames [][]byte) (int, error) {
	for i, f := range frames {
		if len(f) == 0 {
			return 0, fmt.Errorf("frame %d is empty", i)
		}
	}
	return s.send(frames)
}

func (s *Sender) send(frames [][]byte) (int, error) {
	sent := 0
	backoff, stalls := minBackoff, 0
	for sent < len(frames) {
		n, err := s.sendmmsg(frames[sent:])
		sent += n
		switch {
		case err == nil:
			backoff, stalls = minBackoff, 0
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.EAGAIN):
			stalls++
			if stalls > maxNoProgress {
				return sent, fmt.Errorf("send frame %d on %s: %w (gave up after %d retries)", sent, s.ifname, err, maxNoProgress)
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, maxBackoff)
		default:
			return sent, fmt.Errorf("send frame %d (%d bytes) on %s: %w", sent, len(frames[sent]), s.ifname, err)
		}
	}
	return sent, nil
}

// errClosed is what sending on a closed Sender returns.
var errClosed = errors.New("sender is closed")

// sendmmsg makes one sendmmsg call with up to MaxBatch of frames. It
// returns how many were sent, or the error that stopped the batch at its
// first frame. The kernel stops a batch at the first failure and reports
// only the frames before it: the next call starts at the failed frame and
// gets the error.
func (s *Sender) sendmmsg(frames [][]byte) (int, error) {
	// Held across the call so that Close cannot close (and the process
	// reuse) the descriptor under it.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return 0, errClosed
	}
	n := min(len(frames), MaxBatch)
	for i := range n {
		f := frames[i]
		s.iovs[i] = unix.Iovec{Base: &f[0]}
		s.iovs[i].SetLen(len(f))
		s.msgs[i] = unix.Mmsghdr{}
		s.msgs[i].Hdr.Iov = &s.iovs[i]
		s.msgs[i].Hdr.SetIovlen(1)
	}
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(n), 0, 0, 0)
	clear(s.iovs[:n]) // drop the references to the frames
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// Options control Run.
type Options struct {
	// Rate is in frames per second; 0 sends as fast as possible.
	Rate float64
	// Duration stops sending after this long; 0 is no limit.
	Duration time.Duration
	// Loops is how many passes over the frames to make. 0 means until
	// Duration with a Duration, else one pass.
	Loops int
}

// Report is what Run sent.
type Report struct {
	Sent    uint64        // frames the kernel took
	Bytes   uint64        // their bytes (Ethernet header on, no FCS)
	Elapsed time.Duration // from the first send to the end
}

// Run sends frames in order, over and over, paced by a token bucket and in
// batches: it never sleeps per frame unless the rate is below a frame per
// millisecond or so. It stops after opt.Loops passes, after opt.Duration,
// or when ctx is done, whichever is first; it returns ctx.Err() in the
// last case, with the report of what was sent until then.
func (s *Sender) Run(ctx context.Context, frames [][]byte, opt Options) (rep Report, err error) {
	if len(frames) == 0 {
		return rep, errors.New("no frames to send")
	}
	for i, f := range frames {
		if len(f) == 0 {
			return rep, fmt.Errorf("frame %d is empty", i)
		}
	}
	if opt.Rate < 0 || opt.Duration < 0 || opt.Loops < 0 {
		return rep, fmt.Errorf("negative rate, duration or loops (%v, %v, %d)", opt.Rate, opt.Duration, opt.Loops)
	}
	loops := opt.Loops
	if loops == 0 && opt.Duration == 0 {
		loops = 1
	}
	start := time.Now()
	var deadline time.Time
	if opt.Duration > 0 {
		deadline = start.Add(opt.Duration)
	}
	defer func() { rep.Elapsed = time.Since(start) }()

	// The bucket holds up to 5 ms worth of frames (at least one batch's
	// worth when that is less than MaxBatch) and starts with one token.
	burst := max(1, opt.Rate*0.005)
	tokens, last := min(1, burst), start
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	wait := func(d time.Duration) error {
		if !deadline.IsZero() {
			if left := time.Until(deadline); left < d {
				d = max(left, 0)
			}
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return nil
		}
	}

	pos, passes := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			return rep, nil
		}
		n := min(MaxBatch, len(frames)-pos)
		if opt.Rate > 0 {
			tokens = min(burst, tokens+now.Sub(last).Seconds()*opt.Rate)
			last = now
			if tokens < float64(min(n, int(burst))) {
				// Sleep until a batch's worth is there (or one frame's at
				// low rates).
				need := float64(min(n, int(burst))) - tokens
				if err := wait(time.Duration(need / opt.Rate * float64(time.Second))); err != nil {
					return rep, err
				}
				continue
			}
			n = min(n, int(tokens))
		}
		sent, err := s.send(frames[pos : pos+n])
		for _, f := range frames[pos : pos+sent] {
			rep.Bytes += uint64(len(f))
		}
		rep.Sent += uint64(sent)
		tokens -= float64(sent)
		if err != nil {
			return rep, err
		}
		pos += n
		if pos == len(frames) {
			pos = 0
			passes++
			if loops > 0 && passes >= loops {
				return rep, nil
			}
		}
	}
}
