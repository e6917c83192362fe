package send_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
	"github.com/jmxdp/jmxdp/userspace/tools/send"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// receiver reads what arrives on an interface of the test's namespace.
type receiver struct {
	fd int
}

func listen(t *testing.T, ifindex int) *receiver {
	t.Helper()
	// Protocol 0 until bound, so nothing from other interfaces gets in.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
		t.Fatal(err)
	}
	// The kernel strips VLAN tags into metadata before AF_PACKET sees a
	// frame; auxdata gives them back.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		t.Fatal(err)
	}
	return &receiver{fd: fd}
}

// next returns the next frame that came in (not one the host sent), as it
// was on the wire, or nil after 50 ms without one.
func (r *receiver) next(t *testing.T) []byte {
	buf := make([]byte, 1<<16)
	oob := make([]byte, 256)
	for {
		n, oobn, _, from, err := unix.Recvmsg(r.fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return nil
		}
		if err != nil {
			t.Errorf("receive: %v", err)
			return nil
		}
		if sll, ok := from.(*unix.SockaddrLinklayer); ok && sll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		frame := bytes.Clone(buf[:n])
		cmsgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, c := range cmsgs {
			if c.Header.Level != unix.SOL_PACKET || c.Header.Type != unix.PACKET_AUXDATA || len(c.Data) < int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
				continue
			}
			aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&c.Data[0]))
			if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 && len(frame) >= 12 {
				tpid := uint16(unix.ETH_P_8021Q)
				if aux.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
					tpid = aux.Vlan_tpid
				}
				tag := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, tpid), aux.Vlan_tci)
				frame = append(frame[:12:12], append(tag, frame[12:]...)...)
			}
		}
		return frame
	}
}

// collect reads frames for which keep is true until it has want of them
// and none came for quiet, or no frame came for limit/2, at most for limit.
func (r *receiver) collect(t *testing.T, want int, keep func([]byte) bool, quiet, limit time.Duration) [][]byte {
	t.Helper()
	var got [][]byte
	end := time.Now().Add(limit)
	lastSeen := time.Now()
	for time.Now().Before(end) {
		idle := time.Since(lastSeen)
		if len(got) >= want && idle >= quiet || idle >= limit/2 {
			break
		}
		f := r.next(t)
		if f == nil {
			continue
		}
		lastSeen = time.Now()
		if keep == nil || keep(f) {
			got = append(got, f)
		}
	}
	return got
}

// counter counts, in the background, the frames for which keep is true.
type counter struct {
	mu   sync.Mutex
	n    uint64
	b    uint64
	stop chan struct{}
	done chan struct{}
}

func (r *receiver) count(t *testing.T, keep func([]byte) bool) *counter {
	c := &counter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			if f := r.next(t); f != nil && keep(f) {
				c.mu.Lock()
				c.n++
				c.b += uint64(len(f))
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(c.end)
	return c
}

func (c *counter) get() (uint64, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, c.b
}

func (c *counter) end() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

// waitFor waits up to 5 s for the counter to reach n frames.
func (c *counter) waitFor(n uint64) (uint64, uint64) {
	end := time.Now().Add(5 * time.Second)
	for {
		got, _ := c.get()
		if got >= n || time.Now().After(end) {
			// A little longer, to see extra frames too.
			time.Sleep(50 * time.Millisecond)
			return c.get()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testDst is the destination of the test's own frames: no host stack
// takes it, and nothing else in the lab sends to it.
var testDst = net.HardwareAddr{0x02, 'j', 'm', 'x', 'd', 'p'}

const testEtherType = 0x88b5 // IEEE local experimental

// testFrames are n frames from src to testDst of sizes 60..(60+n%200),
// numbered.
func testFrames(src net.HardwareAddr, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		f := make([]byte, 60+i%200)
		copy(f, testDst)
		copy(f[6:], src)
		binary.BigEndian.PutUint16(f[12:], testEtherType)
		binary.BigEndian.PutUint32(f[14:], uint32(i))
		for j := 18; j < len(f); j++ {
			f[j] = byte(i + j)
		}
		out[i] = f
	}
	return out
}

func isTest(src net.HardwareAddr) func([]byte) bool {
	return func(f []byte) bool {
		return len(f) >= 14 && bytes.Equal(f[:6], testDst) && bytes.Equal(f[6:12], src) &&
			binary.BigEndian.Uint16(f[12:]) == testEtherType
	}
}

func totalBytes(frames [][]byte) (n uint64) {
	for _, f := range frames {
		n += uint64(len(f))
	}
	return n
}

func openSender(t *testing.T, l *lab.Lab) *send.Sender {
	t.Helper()
	s, err := l.Sender()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Frames sent on the router end come out of the host end byte for byte:
// the demo capture (VLAN and QinQ tags, outer IPv6, fragments, noise),
// Jmirror frames addressed to the host, and a runt nobody pads.
func TestSendByteForByte(t *testing.T) {
	l := labtest.New(t, "sendx")
	rx := listen(t, l.HostIndex)
	s := openSender(t, l)

	pkts, _, err := gen.Demo(gen.DefaultDemo())
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for _, p := range pkts {
		frames = append(frames, p.Data)
	}
	for i := range 5 {
		m := gen.Mirror{SrcMAC: l.RouterMAC, DstMAC: l.HostMAC, Router: l.RouterAddr.Addr(), Collector: l.HostAddr.Addr(),
			MID: 7, SID: uint32(i), Inner: gen.InnerIPv4ICMPEcho(l.RouterAddr.Addr(), l.HostAddr.Addr(), 1, uint16(i), 100*i)}
		f, err := m.Frame()
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	runt := append(append(bytes.Clone(testDst), l.RouterMAC...), 0x88, 0xb5, 'r', 'u', 'n', 't')
	frames = append(frames, runt)

	n, err := s.Send(frames)
	if err != nil || n != len(frames) {
		t.Fatalf("Send: %d of %d, %v", n, len(frames), err)
	}
	got := rx.collect(t, len(frames), nil, 200*time.Millisecond, 5*time.Second)
	// Everything sent arrives, in order. The host stack answers the
	// frames to its address: its own frames are outgoing and not
	// collected, but it asks for the router's MAC, and the ARP reply comes
	// in; anything extra is logged.
	i := 0
	var extra int
	for _, g := range got {
		if i < len(frames) && bytes.Equal(g, frames[i]) {
			i++
		} else {
			extra++
			t.Logf("other frame: %x", g[:min(len(g), 64)])
		}
	}
	if i != len(frames) {
		t.Fatalf("received %d of %d frames in order (%d received in all); first missing: %x", i, len(frames), len(got), frames[i])
	}
}

func TestSendErrors(t *testing.T) {
	l := labtest.New(t, "senderr")
	s := openSender(t, l)
	if s.Interface() != l.RouterIface || s.Ifindex() != l.RouterIndex {
		t.Errorf("sender on %s (%d), router end %s (%d)", s.Interface(), s.Ifindex(), l.RouterIface, l.RouterIndex)
	}
	ok := testFrames(l.RouterMAC, 3)
	if n, err := s.Send([][]byte{ok[0], {}}); n != 0 || err == nil || !strings.Contains(err.Error(), "frame 1 is empty") {
		t.Errorf("empty frame: %d %v", n, err)
	}
	big := make([]byte, 9000)
	copy(big, ok[0])
	n, err := s.Send([][]byte{ok[0], ok[1], big, ok[2]})
	if n != 2 || !errors.Is(err, unix.EMSGSIZE) || !strings.Contains(err.Error(), "frame 2") {
		t.Errorf("oversized frame: %d %v", n, err)
	}
	if n, err := s.Send(nil); n != 0 || err != nil {
		t.Errorf("nothing to send: %d %v", n, err)
	}
	if _, err := s.Run(context.Background(), nil, send.Options{}); err == nil {
		t.Error("Run without frames")
	}
	if _, err := s.Run(context.Background(), ok, send.Options{Rate: -1}); err == nil {
		t.Error("Run with a negative rate")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Send(ok); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Send after Close: %v", err)
	}

	if _, err := send.Open(l.RouterIface, ""); err == nil {
		t.Error("router end found in the root namespace")
	}
	if _, err := send.Open(l.RouterIface, "jmxdp-no-such-ns"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing namespace: %v", err)
	}
	if _, err := send.Open("nosuchiface0", l.Name); err == nil || !strings.Contains(err.Error(), "nosuchiface0") {
		t.Errorf("missing interface: %v", err)
	}
	// The host end, from the root namespace, works too.
	hs, err := send.Open(l.HostIface, "")
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	if n, err := hs.Send(ok); n != len(ok) || err != nil {
		t.Errorf("send on the host end: %d %v", n, err)
	}
}

// Run paces: 2000 frames at 20000/s take about 100 ms (loose bounds: the
// machine is shared), and every frame it reports arrives.
func TestRunRate(t *testing.T) {
	l := labtest.New(t, "rate")
	rx := listen(t, l.HostIndex)
	c := rx.count(t, isTest(l.RouterMAC))
	s := openSender(t, l)
	frames := testFrames(l.RouterMAC, 500)

	start := time.Now()
	rep, err := s.Run(context.Background(), frames, send.Options{Rate: 20000, Loops: 4})
	wall := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 2000 || rep.Bytes != 4*totalBytes(frames) {
		t.Errorf("report %+v, want 2000 frames, %d bytes", rep, 4*totalBytes(frames))
	}
	if rep.Elapsed < 80*time.Millisecond || wall < 80*time.Millisecond {
		t.Errorf("2000 frames at 20000/s took %v (wall %v), want >= ~100ms", rep.Elapsed, wall)
	}
	if rep.Elapsed > wall || rep.Elapsed > 10*time.Second || !withinRate(rep, 20000) {
		t.Errorf("elapsed %v, wall %v", rep.Elapsed, wall)
	}
	if n, b := c.waitFor(rep.Sent); n != rep.Sent || b != rep.Bytes {
		t.Errorf("host end got %d frames, %d bytes; report %+v", n, b, rep)
	}
	t.Logf("%+v (%.0f frames/s)", rep, float64(rep.Sent)/rep.Elapsed.Seconds())
}

// Loops and Duration stop Run; the report counts exactly what went out.
func TestRunStops(t *testing.T) {
	l := labtest.New(t, "stops")
	rx := listen(t, l.HostIndex)
	c := rx.count(t, isTest(l.RouterMAC))
	s := openSender(t, l)
	frames := testFrames(l.RouterMAC, 300)
	var want struct{ n, b uint64 }
	check := func(name string, rep send.Report) {
		t.Helper()
		want.n += rep.Sent
		want.b += rep.Bytes
		if n, b := c.waitFor(want.n); n != want.n || b != want.b {
			t.Errorf("%s: host end got %d frames, %d bytes in all; reports say %d, %d", name, n, b, want.n, want.b)
		}
	}

	// One pass by default, as fast as possible.
	rep, err := s.Run(context.Background(), frames, send.Options{})
	if err != nil || rep.Sent != 300 || rep.Bytes != totalBytes(frames) {
		t.Errorf("one pass: %+v %v", rep, err)
	}
	check("one pass", rep)

	rep, err = s.Run(context.Background(), frames, send.Options{Loops: 3})
	if err != nil || rep.Sent != 900 || rep.Bytes != 3*totalBytes(frames) {
		t.Errorf("3 loops: %+v %v", rep, err)
	}
	check("3 loops", rep)

	// Loops stops before a long Duration.
	rep, err = s.Run(context.Background(), frames, send.Options{Rate: 50000, Loops: 2, Duration: time.Minute})
	if err != nil || rep.Sent != 600 || rep.Elapsed > 10*time.Second {
		t.Errorf("2 loops within a minute: %+v %v", rep, err)
	}
	check("2 loops", rep)

	// Duration: 200 ms at 5000/s is about 1000 frames (loops 0: until
	// Duration), a partial pass at the end counted exactly. A stalled
	// machine may send fewer, never more than the rate allows.
	rep, err = s.Run(context.Background(), frames, send.Options{Rate: 5000, Duration: 200 * time.Millisecond})
	if err != nil || rep.Elapsed < 200*time.Millisecond || rep.Elapsed > 5*time.Second || !withinRate(rep, 5000) {
		t.Errorf("200 ms at 5000/s: %+v %v", rep, err)
	}
	check("duration", rep)

	// A short Duration cuts many loops short.
	rep, err = s.Run(context.Background(), frames, send.Options{Rate: 1000, Loops: 1000, Duration: 100 * time.Millisecond})
	if err != nil || !withinRate(rep, 1000) || rep.Elapsed < 100*time.Millisecond || rep.Elapsed > 5*time.Second {
		t.Errorf("1000 loops within 100 ms: %+v %v", rep, err)
	}
	check("duration before loops", rep)

	// Cancelling stops it and says so; what went out is reported.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rep, err = s.Run(ctx, frames, send.Options{Rate: 2000, Duration: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) || rep.Elapsed > 5*time.Second || !withinRate(rep, 2000) {
		t.Errorf("cancelled: %+v %v", rep, err)
	}
	check("cancelled", rep)
}

// withinRate: no more frames than rate allows in the time taken, plus the
// token bucket's 5 ms.
func withinRate(rep send.Report, rate float64) bool {
	return float64(rep.Sent) <= rate*(rep.Elapsed.Seconds()+0.005)+1
}

// Unpaced Run goes in batches: many frames in a short time. The host end
// may drop some of a flood (its backlog), so only the report is checked.
func TestRunFlood(t *testing.T) {
	testenv.RequireRoot(t)
	if testing.Short() {
		t.Skip("floods a veth for 200 ms")
	}
	l := labtest.New(t, "flood")
	s := openSender(t, l)
	frames := testFrames(l.RouterMAC, 64)
	for i := range frames {
		frames[i] = frames[i][:60] // all one size
	}
	rep, err := s.Run(context.Background(), frames, send.Options{Duration: 200 * time.Millisecond})
	if err != nil || rep.Bytes != 60*rep.Sent || rep.Elapsed < 200*time.Millisecond || rep.Elapsed > 5*time.Second {
		t.Fatalf("flood: %+v %v", rep, err)
	}
	if rep.Sent < 1000 {
		t.Errorf("only %d frames in %v unpaced", rep.Sent, rep.Elapsed)
	}
	t.Logf("%+v (%.0f frames/s)", rep, float64(rep.Sent)/rep.Elapsed.Seconds())
}
