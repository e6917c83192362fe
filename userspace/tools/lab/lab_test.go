package lab_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
)

func cmdOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// gone fails t if anything of cfg's lab is left.
func gone(t *testing.T, cfg lab.Config) {
	t.Helper()
	cfg = cfg.WithDefaults()
	if netns.Exists(cfg.Name) {
		t.Errorf("namespace %s left", cfg.Name)
	}
	if ifc, err := net.InterfaceByName(cfg.HostIface); err == nil {
		t.Errorf("host interface %s left (index %d)", cfg.HostIface, ifc.Index)
	}
	if _, err := os.Lstat(cfg.PinPath()); err == nil {
		t.Errorf("pin %s left", cfg.PinPath())
	}
	if _, err := os.Lstat(cfg.PinDir); err == nil {
		t.Errorf("pin directory %s left", cfg.PinDir)
	}
}

// foreignIface makes an interface named name that is not a lab's (a veth:
// not every kernel has the dummy driver).
func foreignIface(t *testing.T, name string) {
	t.Helper()
	cmdOut(t, "ip", "link", "add", name, "type", "veth", "peer", "name", name+"p")
	t.Cleanup(func() { exec.Command("ip", "link", "del", "dev", name).Run() })
}

// ping sends ICMP echo requests to dst, one every 200 ms, until a reply
// comes or timeout passes.
func ping(dst netip.Addr, timeout time.Duration) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	id := uint16(os.Getpid())
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	buf := make([]byte, 1500)
	end := time.Now().Add(timeout)
	for seq := uint16(1); time.Now().Before(end); seq++ {
		req := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq), 'j', 'm', 'x', 'd', 'p', 0}
		ck := gen.Checksum(req)
		req[2], req[3] = byte(ck>>8), byte(ck)
		if err := unix.Sendto(fd, req, 0, to); err != nil {
			return fmt.Errorf("send echo request: %w", err)
		}
		for time.Now().Before(end) {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				break // timeout: send the next request
			}
			// Raw IPv4 sockets hand over the IP header.
			if n < 20 || buf[0]>>4 != 4 {
				continue
			}
			icmp := buf[int(buf[0]&15)*4 : n]
			sa, _ := from.(*unix.SockaddrInet4)
			if len(icmp) >= 8 && icmp[0] == 0 && icmp[4] == byte(id>>8) && icmp[5] == byte(id) &&
				sa != nil && sa.Addr == dst.As4() {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply from %v within %v", dst, timeout)
}

func TestRandom(t *testing.T) {
	bench := netip.MustParsePrefix("198.18.0.0/15")
	seen := map[string]bool{}
	for _, prefix := range []string{"send", "a/b c:d", "", "averyveryverylongprefix"} {
		for range 20 {
			c := lab.Random(prefix)
			if err := c.Validate(); err != nil {
				t.Fatalf("Random(%q) = %+v: %v", prefix, c, err)
			}
			for _, n := range []string{c.Name, c.HostIface, c.RouterIface} {
				if seen[n] {
					t.Fatalf("name %s drawn twice", n)
				}
				seen[n] = true
			}
			if len(c.HostIface) > 15 || len(c.RouterIface) > 15 {
				t.Errorf("interface names %q %q too long", c.HostIface, c.RouterIface)
			}
			if !bench.Contains(c.HostAddr.Addr()) || !bench.Contains(c.RouterAddr.Addr()) ||
				c.HostAddr.Masked() != c.RouterAddr.Masked() || c.HostAddr.Addr() == c.RouterAddr.Addr() {
				t.Errorf("addresses %v %v", c.HostAddr, c.RouterAddr)
			}
			if c.HostMAC[0]&3 != 2 {
				t.Errorf("MAC %v is not locally administered unicast", c.HostMAC)
			}
			if !strings.HasPrefix(c.PinDir, lab.DefaultPinRoot+"/") {
				t.Errorf("pin dir %s", c.PinDir)
			}
		}
	}
}

func TestDefault(t *testing.T) {
	c := lab.Default()
	if c.Name != "jmxdp-lab" || c.HostIface != "jmxlab0" || c.RouterIface != "jmxlab1" ||
		c.HostAddr.String() != "203.0.113.10/24" || c.RouterAddr.String() != "203.0.113.1/24" ||
		c.HostMAC.String() != "02:00:00:00:00:02" || c.PinDir != "/sys/fs/bpf/jmxdp-lab/jmxdp-lab" || c.MTU != 1508 {
		t.Errorf("Default() = %+v", c)
	}
	if got := (lab.Config{Name: "x"}).WithDefaults(); got.PinDir != "/sys/fs/bpf/jmxdp-lab/x" || got.HostIface != "jmxlab0" {
		t.Errorf("WithDefaults: %+v", got)
	}
}

// Bad configs are refused before anything is made.
func TestUpInvalid(t *testing.T) {
	for _, c := range []struct {
		mod  func(*lab.Config)
		want string
	}{
		{func(c *lab.Config) { c.HostIface = "sixteen-chars-xx" }, "interface name"},
		{func(c *lab.Config) { c.RouterIface = c.HostIface }, "both named"},
		{func(c *lab.Config) { c.Name = "a/b" }, "lab name"},
		{func(c *lab.Config) { c.RouterAddr = c.HostAddr }, "both have address"},
		{func(c *lab.Config) { c.HostMAC = net.HardwareAddr{1, 0, 0, 0, 0, 1} }, "unicast"},
		{func(c *lab.Config) { c.PinDir = "relative" }, "absolute"},
		{func(c *lab.Config) { c.MTU = 10 }, "MTU"},
		{func(c *lab.Config) { c.Queues = lab.MaxQueues + 1 }, "queues"},
	} {
		cfg := lab.Random("inval")
		c.mod(&cfg)
		if _, err := lab.Up(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Up(%+v): %v, want %q", cfg, err, c.want)
		}
		gone(t, cfg)
	}
}

func TestUp(t *testing.T) {
	l := labtest.New(t, "labup")

	// Host end: root namespace, our MAC and address, up.
	host, err := net.InterfaceByName(l.HostIface)
	if err != nil {
		t.Fatal(err)
	}
	if host.Index != l.HostIndex || !bytes.Equal(host.HardwareAddr, l.HostMAC) || host.Flags&net.FlagUp == 0 || host.MTU != lab.DefaultMTU {
		t.Errorf("host end %+v, lab %+v", host, l)
	}
	addrs, _ := host.Addrs()
	if len(addrs) != 1 || addrs[0].String() != l.HostAddr.String() {
		t.Errorf("host end addresses %v, want only %v (IPv6 off)", addrs, l.HostAddr)
	}
	// No prefix route in the root namespace (it would shadow real hosts
	// in the lab's range): a host route to the router end only.
	routes := strings.TrimSpace(cmdOut(t, "ip", "-4", "route", "show", "dev", l.HostIface))
	if routes != l.RouterAddr.Addr().String()+" scope link" {
		t.Errorf("routes via the host end:\n%s\nwant only a host route to %v", routes, l.RouterAddr.Addr())
	}
	// Router end: not here, but in the namespace, with xdp_pass.
	if _, err := net.InterfaceByName(l.RouterIface); err == nil {
		t.Errorf("router end %s is in the root namespace", l.RouterIface)
	}
	out := cmdOut(t, "ip", "-n", l.Name, "-d", "link", "show", "dev", l.RouterIface)
	if !strings.Contains(out, "prog/xdp id") || !strings.Contains(out, fmt.Sprintf("mtu %d ", lab.DefaultMTU)) || !strings.Contains(out, "state UP") || !strings.Contains(out, l.RouterMAC.String()) {
		t.Errorf("router end:\n%s", out)
	}
	out = cmdOut(t, "ip", "-n", l.Name, "addr", "show", "dev", l.RouterIface)
	if !strings.Contains(out, "inet "+l.RouterAddr.String()) || strings.Contains(out, "inet6") {
		t.Errorf("router end addresses:\n%s", out)
	}
	for _, c := range [][]string{
		{"cat", "/proc/sys/net/ipv6/conf/" + l.HostIface + "/disable_ipv6"},
		{"ip", "netns", "exec", l.Name, "cat", "/proc/sys/net/ipv6/conf/" + l.RouterIface + "/disable_ipv6"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).Output(); err == nil && strings.TrimSpace(string(out)) != "1" {
			t.Errorf("%s: %s", strings.Join(c, " "), out)
		}
	}
	if l.XDPMode != "driver" {
		t.Errorf("veth takes driver-mode XDP, got %q", l.XDPMode)
	}

	// The pin is the XDP link of the router end, running xdp_pass.
	lk, err := link.LoadPinnedLink(l.PinPath(), nil)
	if err != nil {
		t.Fatalf("pinned link: %v", err)
	}
	defer lk.Close()
	info, err := lk.Info()
	if err != nil {
		t.Fatal(err)
	}
	if xi := info.XDP(); info.Type != link.XDPType || xi == nil || int(xi.Ifindex) != l.RouterIndex {
		t.Errorf("pinned link %+v (xdp %+v), router ifindex %d", info, info.XDP(), l.RouterIndex)
	}
	prog, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if pi, err := prog.Info(); err != nil || pi.Name != "xdp_pass" {
		t.Errorf("attached program %+v: %v", pi, err)
	}

	// The two ends talk: ICMP echo from the namespace to the host end,
	// with ping(8) when installed and always with a raw socket.
	if _, err := exec.LookPath("ping"); err == nil {
		cmdOut(t, "ip", "netns", "exec", l.Name, "ping", "-n", "-c1", "-W2", l.HostAddr.Addr().String())
	} else {
		testenv.PartSkip(t, "ping not installed: ping(8) not tried, only the raw socket")
	}
	if err := l.Do(func() error { return ping(l.HostAddr.Addr(), 3*time.Second) }); err != nil {
		t.Errorf("ping from the router side: %v", err)
	}

	// The lab outlives its maker: nothing of it depends on this process's
	// descriptors (the link is pinned); a sender works on the router end.
	s, err := l.Sender()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestUpTwiceRefused(t *testing.T) {
	l := labtest.New(t, "twice")
	_, err := lab.Up(l.Config)
	if !errors.Is(err, lab.ErrExists) || !strings.Contains(err.Error(), "jmxdp lab down --name "+l.Name) {
		t.Fatalf("second Up: %v", err)
	}
	// Refusing touched nothing.
	if !netns.Exists(l.Name) {
		t.Error("namespace removed")
	}
	if _, err := os.Lstat(l.PinPath()); err != nil {
		t.Error(err)
	}
	if ifc, err := net.InterfaceByName(l.HostIface); err != nil || ifc.Index != l.HostIndex {
		t.Errorf("host end: %v", err)
	}
	// The same with only the pin left (a half-removed lab).
	cfg := l.Config
	cfg.HostIface = lab.Random("x").HostIface
	cfg.Name = lab.Random("x").Name
	cfg.PinDir = l.PinDir
	if _, err := lab.Up(cfg); !errors.Is(err, lab.ErrExists) || !strings.Contains(err.Error(), l.PinPath()) {
		t.Errorf("Up over a pin: %v", err)
	}
	gone(t, lab.Config{Name: cfg.Name, HostIface: cfg.HostIface})
}

func TestDown(t *testing.T) {
	l := labtest.New(t, "down")
	// A socket in the namespace does not stop Down.
	s, err := l.Sender()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	gone(t, l.Config)
	for range 2 {
		if err := lab.Down(l.Config); err != nil {
			t.Errorf("Down again: %v", err)
		}
	}
	// The name is free again.
	l2, err := lab.Up(l.Config)
	if err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
	if err := l2.Down(); err != nil {
		t.Fatal(err)
	}
	gone(t, l.Config)
}

// Down leaves an interface it did not make alone, even under the lab's
// host interface name.
func TestDownSparesOthers(t *testing.T) {
	testenv.RequireRoot(t)
	cfg := lab.Random("spare")
	foreignIface(t, cfg.HostIface)
	if err := lab.Down(cfg); err == nil || !strings.Contains(err.Error(), "not deleting") {
		t.Errorf("Down: %v", err)
	}
	if _, err := net.InterfaceByName(cfg.HostIface); err != nil {
		t.Errorf("dummy deleted: %v", err)
	}
}

func TestFailedUpLeavesNothing(t *testing.T) {
	testenv.RequireRoot(t)
	t.Run("host iface taken", func(t *testing.T) {
		cfg := lab.Random("clash")
		t.Cleanup(func() { lab.Down(cfg) })
		foreignIface(t, cfg.HostIface)
		_, err := lab.Up(cfg)
		if err == nil || !strings.Contains(err.Error(), "already exists") || !strings.Contains(err.Error(), cfg.HostIface) {
			t.Fatalf("Up: %v", err)
		}
		if netns.Exists(cfg.Name) {
			t.Error("namespace left")
		}
		if _, err := os.Lstat(cfg.PinDir); err == nil {
			t.Error("pin directory left")
		}
		if _, err := net.InterfaceByName(cfg.HostIface); err != nil {
			t.Errorf("the other interface was deleted: %v", err)
		}
	})
	t.Run("host iface of another lab", func(t *testing.T) {
		other := labtest.New(t, "other")
		cfg := lab.Random("clash")
		cfg.HostIface = other.HostIface
		t.Cleanup(func() { lab.Down(lab.Config{Name: cfg.Name, HostIface: "unused0"}) })
		_, err := lab.Up(cfg)
		if !errors.Is(err, lab.ErrExists) || !strings.Contains(err.Error(), "belongs to lab "+other.Name) {
			t.Fatalf("Up: %v", err)
		}
		if netns.Exists(cfg.Name) {
			t.Error("namespace left")
		}
		if ifc, err := net.InterfaceByName(other.HostIface); err != nil || ifc.Index != other.HostIndex {
			t.Errorf("the other lab's interface: %v", err)
		}
	})
	t.Run("half way", func(t *testing.T) {
		// Namespace, veth pair and addresses are made before the pin
		// directory turns out not to be on a bpffs.
		cfg := lab.Random("half")
		cfg.PinDir = t.TempDir()
		t.Cleanup(func() { lab.Down(cfg) })
		_, err := lab.Up(cfg)
		if err == nil || !strings.Contains(err.Error(), "not on a bpffs") {
			t.Fatalf("Up: %v", err)
		}
		if netns.Exists(cfg.Name) {
			t.Error("namespace left")
		}
		if _, err := net.InterfaceByName(cfg.HostIface); err == nil {
			t.Error("host interface left")
		}
		if _, err := os.Lstat(cfg.PinPath()); err == nil {
			t.Error("pin left")
		}
	})
}
