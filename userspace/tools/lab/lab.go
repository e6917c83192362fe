// Package lab builds the veth lab jmxdp's demo and end-to-end tests run in:
// a veth pair whose host end stays in the caller's (root) namespace, where
// jmxdp attaches as it would to a NIC, and whose router end lives in a
// network namespace of its own, from which the "routers" send.
//
//	root namespace                 namespace Name
//	HostIface (HostAddr, HostMAC) <-veth-> RouterIface (RouterAddr)
//	jmxdp attaches here                    xdp_pass attached, link pinned
//
// A lab outlives the process that made it (the namespace is a named one,
// the router end's XDP link is pinned); Down removes it.
package lab

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/jmxdp/jmxdp/userspace/pins"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/netns"
	"github.com/jmxdp/jmxdp/userspace/tools/send"
)

// Defaults of Config.
const (
	DefaultName        = "jmxdp-lab"
	DefaultHostIface   = "jmxlab0"
	DefaultRouterIface = "jmxlab1"
	// DefaultPinRoot holds one directory per lab (PinDir's default).
	DefaultPinRoot = pins.BPFFSRoot + "/jmxdp-lab"
)

// PinName is the file, in PinDir, of the router end's pinned XDP link.
const PinName = "router_xdp_link"

// aliasPrefix marks host ends made by Up: their alias is aliasPrefix+Name.
// Down deletes a host interface only when it carries its lab's mark.
const aliasPrefix = "jmxdp-lab:"

// Config describes a lab. Zero fields take their defaults (see Default).
type Config struct {
	Name        string           // namespace of the router side; default "jmxdp-lab"
	HostIface   string           // host end (jmxdp attaches here); default "jmxlab0"
	RouterIface string           // router end, inside the namespace; default "jmxlab1"
	HostAddr    netip.Prefix     // default 203.0.113.10/24, where gen's demo traffic goes
	RouterAddr  netip.Prefix     // default 203.0.113.1/24
	HostMAC     net.HardwareAddr // default gen.DefaultDstMAC(), the demo frames' destination
	PinDir      string           // router end's XDP link pin; default DefaultPinRoot/Name
	// MTU of both ends; default DefaultMTU.
	MTU int
	// Queues is the RX and TX queues of each end (numrxqueues and
	// numtxqueues); 0 is the kernel's default, 1. veth hands a frame
	// redirected into it (XDP_REDIRECT, as xmit sends) to the peer's RX
	// queue of the sending CPU (CPU modulo queues), so with 2 queues two
	// senders on two CPUs load both.
	Queues int
}

// MaxQueues bounds Config.Queues.
const MaxQueues = 64

// DefaultMTU lets the lab carry a 1500-byte packet under two VLAN tags (a
// 1522-byte frame, as gen.Demo makes). Linux's AF_PACKET sends frames of
// up to MTU+14 bytes, MTU+18 when the outer tag is 802.1Q, so an 802.1ad
// (QinQ) frame of 1522 bytes needs an MTU of 1508.
const DefaultMTU = 1508

// Default is the demo lab: generated demo traffic (gen.DemoNetwork) is
// addressed to its host end.
func Default() Config {
	dn := gen.DemoNetwork()
	return Config{
		Name:        DefaultName,
		HostIface:   DefaultHostIface,
		RouterIface: DefaultRouterIface,
		HostAddr:    netip.PrefixFrom(dn.Collector, 24),
		RouterAddr:  netip.PrefixFrom(dn.Gateway, 24),
		HostMAC:     dn.CollectorMAC,
		PinDir:      filepath.Join(DefaultPinRoot, DefaultName),
		MTU:         DefaultMTU,
	}
}

// WithDefaults fills c's zero fields from Default (PinDir from c.Name).
func (c Config) WithDefaults() Config {
	d := Default()
	if c.Name == "" {
		c.Name = d.Name
	}
	if c.HostIface == "" {
		c.HostIface = d.HostIface
	}
	if c.RouterIface == "" {
		c.RouterIface = d.RouterIface
	}
	if !c.HostAddr.IsValid() {
		c.HostAddr = d.HostAddr
	}
	if !c.RouterAddr.IsValid() {
		c.RouterAddr = d.RouterAddr
	}
	if len(c.HostMAC) == 0 {
		c.HostMAC = d.HostMAC
	}
	if c.PinDir == "" {
		c.PinDir = filepath.Join(DefaultPinRoot, c.Name)
	}
	if c.MTU == 0 {
		c.MTU = d.MTU
	}
	return c
}

// PinPath is the pinned XDP link of the router end.
func (c Config) PinPath() string { return filepath.Join(c.PinDir, PinName) }

// Validate checks a config with defaults filled in.
func (c Config) Validate() error {
	if c.Name == "" || c.Name == "." || c.Name == ".." || strings.ContainsAny(c.Name, "/\x00 ") {
		return fmt.Errorf("lab name %q: want a single word usable as a file name", c.Name)
	}
	for _, n := range []string{c.HostIface, c.RouterIface} {
		if err := checkIfname(n); err != nil {
			return err
		}
	}
	if c.HostIface == c.RouterIface {
		return fmt.Errorf("host and router interfaces are both named %q", c.HostIface)
	}
	for _, p := range []netip.Prefix{c.HostAddr, c.RouterAddr} {
		if !p.IsValid() {
			return fmt.Errorf("invalid address prefix %v", p)
		}
	}
	if c.HostAddr.Addr() == c.RouterAddr.Addr() {
		return fmt.Errorf("host and router both have address %v", c.HostAddr.Addr())
	}
	if len(c.HostMAC) != 6 || c.HostMAC[0]&1 != 0 {
		return fmt.Errorf("host MAC %v: want a unicast Ethernet address", c.HostMAC)
	}
	if c.MTU < 68 || c.MTU > 65535 {
		return fmt.Errorf("MTU %d: want 68 to 65535", c.MTU)
	}
	if c.Queues < 0 || c.Queues > MaxQueues {
		return fmt.Errorf("%d queues: want 0 to %d", c.Queues, MaxQueues)
	}
	if !filepath.IsAbs(c.PinDir) {
		return fmt.Errorf("pin directory %q is not an absolute path", c.PinDir)
	}
	return nil
}

func checkIfname(n string) error {
	if n == "" || len(n) > 15 || n == "." || n == ".." || strings.ContainsAny(n, "/:\x00 \t\n") {
		return fmt.Errorf("interface name %q: want 1 to 15 characters, no '/', ':' or spaces", n)
	}
	return nil
}

// Random is a config with unique names for a test: namespace
// prefix-XXXXXXXX, interfaces of at most 13 characters built from prefix's
// first letters and the same random part, a random /30 in 198.18.0.0/15
// (RFC 2544's benchmark range) not already on an interface here, and a
// random locally administered MAC.
func Random(prefix string) Config {
	var b [12]byte
	rand.Read(b[:])
	tag := fmt.Sprintf("%x", b[:4])
	clean := sanitize(prefix)
	if clean == "" {
		clean = "jmxlab"
	}
	short := clean[:min(len(clean), 4)]
	mac := net.HardwareAddr(bytes.Clone(b[4:10]))
	mac[0] = mac[0]&^1 | 2
	var host, router netip.Prefix
	used := addrsInUse()
	for try := 0; ; try++ {
		var r [2]byte
		rand.Read(r[:])
		// 198.18.0.0/15 holds 2^15 blocks of 4 addresses.
		block := uint32(binary.BigEndian.Uint16(r[:])>>1) * 4
		base := uint32(198)<<24 + 18<<16 + block
		host = netip.PrefixFrom(addr4(base+1), 30)
		router = netip.PrefixFrom(addr4(base+2), 30)
		if try >= 16 || !overlaps(used, host) {
			break
		}
	}
	name := clean + "-" + tag
	return Config{
		Name:        name,
		HostIface:   short + tag + "h",
		RouterIface: short + tag + "r",
		HostAddr:    host,
		RouterAddr:  router,
		HostMAC:     mac,
		PinDir:      filepath.Join(DefaultPinRoot, name),
		MTU:         DefaultMTU,
	}
}

func sanitize(s string) string {
	var out []byte
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			out = append(out, c)
		}
	}
	return strings.Trim(string(out), "-_")
}

func addr4(v uint32) netip.Addr {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

func addrsInUse() []netip.Prefix {
	addrs, _ := net.InterfaceAddrs()
	var out []netip.Prefix
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(ipn.String()); err == nil {
				out = append(out, p.Masked())
			}
		}
	}
	return out
}

func overlaps(used []netip.Prefix, p netip.Prefix) bool {
	for _, u := range used {
		if u.Overlaps(p) {
			return true
		}
	}
	return false
}

// Lab is a lab that is up.
type Lab struct {
	Config
	HostIndex   int              // ifindex of the host end (root namespace)
	RouterIndex int              // ifindex of the router end (in namespace Name)
	RouterMAC   net.HardwareAddr // the router end's MAC
	XDPMode     string           // how xdp_pass is attached to the router end: "driver" or "generic"
}

// ErrExists is wrapped by Up's error when the lab (or part of it) exists.
var ErrExists = errors.New("already exists")

// Up creates the lab: the namespace, the veth pair with the host end in the
// caller's namespace, MACs, addresses (IPv6 off on both ends, so the kernel
// sends no router solicitations or DAD probes into captures), links up,
// and xdp_pass attached to the router end with its link pinned at
// PinPath. It refuses when any part of the lab exists; on a failure half
// way it removes what it made. Up needs root.
func Up(cfg Config) (*Lab, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkAbsent(cfg); err != nil {
		return nil, err
	}
	var undo []func()
	fail := func(err error) (*Lab, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, fmt.Errorf("lab %s up: %w", cfg.Name, err)
	}

	if err := netns.Add(cfg.Name); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { netns.Delete(cfg.Name) })

	mtu := fmt.Sprint(cfg.MTU)
	var queues []string
	if cfg.Queues > 0 {
		q := fmt.Sprint(cfg.Queues)
		queues = []string{"numrxqueues", q, "numtxqueues", q}
	}
	args := append([]string{"link", "add", cfg.HostIface, "mtu", mtu, "address", cfg.HostMAC.String()}, queues...)
	args = append(append(append(args, "type", "veth", "peer", "name", cfg.RouterIface, "mtu", mtu), queues...), "netns", cfg.Name)
	if err := netns.IP(args...); err != nil {
		return fail(fmt.Errorf("create veth pair: %w", err))
	}
	// Deleting one end deletes both.
	undo = append(undo, func() { netns.IP("link", "del", "dev", cfg.HostIface) })
	if err := netns.IP("link", "set", "dev", cfg.HostIface, "alias", aliasPrefix+cfg.Name); err != nil {
		return fail(err)
	}

	disableIPv6(cfg.HostIface)
	err := netns.Do(cfg.Name, func() error { disableIPv6(cfg.RouterIface); return nil })
	if err != nil {
		return fail(err)
	}
	// The host end is in the caller's namespace: a connected route for the
	// lab's prefix would shadow real hosts in that range for as long as
	// the lab lives. It gets its address with no prefix route, and a host
	// route to the router end only.
	for _, args := range [][]string{
		{"addr", "add", cfg.HostAddr.String(), "dev", cfg.HostIface, "noprefixroute"},
		{"-n", cfg.Name, "addr", "add", cfg.RouterAddr.String(), "dev", cfg.RouterIface},
		{"-n", cfg.Name, "link", "set", "dev", "lo", "up"},
		{"-n", cfg.Name, "link", "set", "dev", cfg.RouterIface, "up"},
		{"link", "set", "dev", cfg.HostIface, "up"},
		{"route", "add", netip.PrefixFrom(cfg.RouterAddr.Addr(), 32).String(), "dev", cfg.HostIface},
	} {
		if err := netns.IP(args...); err != nil {
			return fail(err)
		}
	}

	// The kernel gives a link its queue discipline (until then: noop,
	// which drops every frame yet reports success) when it handles the
	// carrier event, up to a second later. Frames sent before are lost.
	if err := waitReady(cfg); err != nil {
		return fail(err)
	}

	l := &Lab{Config: cfg}
	if err := attachPass(l); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { os.Remove(cfg.PinPath()); removePinDirs(cfg) })

	host, err := net.InterfaceByName(cfg.HostIface)
	if err != nil {
		return fail(fmt.Errorf("host end: %w", err))
	}
	l.HostIndex = host.Index
	return l, nil
}

// checkAbsent refuses to build over anything of the lab's.
func checkAbsent(cfg Config) error {
	down := "run `jmxdp lab down" + cfg.flags() + "` first"
	if netns.Exists(cfg.Name) {
		return fmt.Errorf("lab %s %w (network namespace %s is there); %s", cfg.Name, ErrExists, cfg.Name, down)
	}
	if _, err := os.Lstat(cfg.PinPath()); err == nil {
		return fmt.Errorf("lab %s %w (%s is there); %s", cfg.Name, ErrExists, cfg.PinPath(), down)
	}
	if _, err := net.InterfaceByName(cfg.HostIface); err == nil {
		alias, _ := ifalias(cfg.HostIface)
		if alias == aliasPrefix+cfg.Name {
			return fmt.Errorf("lab %s %w (interface %s is there); %s", cfg.Name, ErrExists, cfg.HostIface, down)
		}
		if other, ok := strings.CutPrefix(alias, aliasPrefix); ok {
			return fmt.Errorf("lab %s: interface %s %w and belongs to lab %s: choose another --host-iface, or run `jmxdp lab down%s` first",
				cfg.Name, cfg.HostIface, ErrExists, other, Config{Name: other, HostIface: cfg.HostIface}.Flags())
		}
		return fmt.Errorf("lab %s: interface %s already exists and is not a lab's: choose another --host-iface", cfg.Name, cfg.HostIface)
	}
	return nil
}

// flags are the `jmxdp lab` flags that select cfg's lab, for messages.
func (c Config) flags() string {
	var s string
	if c.Name != DefaultName {
		s += " --name " + c.Name
	}
	if c.HostIface != DefaultHostIface {
		s += " --host-iface " + c.HostIface
	}
	return s
}

// Flags are the `jmxdp lab down` flags that select this lab ("" for the
// default one), e.g. " --name x --host-iface y".
func (c Config) Flags() string { return c.WithDefaults().flags() }

// attachPass loads xdp_pass alone, attaches it to the router end inside
// the namespace and pins the link. The process's descriptors are closed
// on return: the pin keeps program and link.
func attachPass(l *Lab) error {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()
	prog, err := PassProgram()
	if err != nil {
		return err
	}
	defer prog.Close()
	if err := pins.EnsureDir(l.PinDir); err != nil {
		return err
	}
	var lk link.Link
	err = netns.Do(l.Name, func() error {
		ifc, err := net.InterfaceByName(l.RouterIface)
		if err != nil {
			return fmt.Errorf("router end: %w", err)
		}
		l.RouterIndex, l.RouterMAC = ifc.Index, ifc.HardwareAddr
		// The ifindex is looked up in the calling thread's namespace.
		lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		l.XDPMode = "driver"
		if err != nil {
			lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPGenericMode})
			l.XDPMode = "generic"
		}
		if err != nil {
			return fmt.Errorf("attach %s to %s (MTU %d): %w", PassProgramName, l.RouterIface, l.MTU, err)
		}
		return nil
	})
	if err != nil {
		removePinDirs(l.Config)
		return err
	}
	defer lk.Close()
	if err := lk.Pin(l.PinPath()); err != nil {
		removePinDirs(l.Config)
		return fmt.Errorf("pin XDP link at %s: %w", l.PinPath(), err)
	}
	return nil
}

// removePinDirs removes PinDir and DefaultPinRoot when they are empty
// bpffs directories.
func removePinDirs(c Config) {
	if pins.OnBPFFS(c.PinDir) {
		os.Remove(c.PinDir)
	}
	if filepath.Dir(filepath.Clean(c.PinDir)) == DefaultPinRoot && pins.OnBPFFS(DefaultPinRoot) {
		os.Remove(DefaultPinRoot)
	}
}

// disableIPv6 turns IPv6 off on ifname in the calling thread's namespace;
// kernels without IPv6 have nothing to turn off.
func disableIPv6(ifname string) {
	os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/disable_ipv6", []byte("1"), 0o644)
}

// Down removes the lab: the pinned link, the host end (which takes the
// router end with it) and the namespace. What is already gone is skipped:
// Down on a lab that does not exist succeeds. It deletes the host
// interface only if Up made it for this lab (by its alias).
func Down(cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	var errs []error
	if err := os.Remove(cfg.PinPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("unpin %s: %w", cfg.PinPath(), err))
	}
	removePinDirs(cfg)
	if _, err := net.InterfaceByName(cfg.HostIface); err == nil {
		alias, err := ifalias(cfg.HostIface)
		switch {
		case err != nil:
			errs = append(errs, err)
		case alias != aliasPrefix+cfg.Name:
			errs = append(errs, fmt.Errorf("not deleting interface %s: not made by `jmxdp lab up` for lab %s (alias %q)", cfg.HostIface, cfg.Name, alias))
		default:
			if err := netns.IP("link", "del", "dev", cfg.HostIface); err != nil && linkExists(cfg.HostIface) {
				errs = append(errs, err)
			}
		}
	}
	if netns.Exists(cfg.Name) {
		if err := netns.Delete(cfg.Name); err != nil && netns.Exists(cfg.Name) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab %s down: %w", cfg.Name, err)
	}
	return nil
}

// Down removes the lab; see Down.
func (l *Lab) Down() error { return Down(l.Config) }

// Sender opens a sender on the router end, inside the lab's namespace.
func (l *Lab) Sender() (*send.Sender, error) { return send.Open(l.RouterIface, l.Name) }

// Do runs fn in the lab's namespace (see netns.Do).
func (l *Lab) Do(fn func() error) error { return netns.Do(l.Name, fn) }

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// readyTimeout bounds waitReady.
const readyTimeout = 5 * time.Second

// waitReady waits until both ends are operationally up with a real queue
// discipline.
func waitReady(cfg Config) error {
	end := time.Now().Add(readyTimeout)
	for {
		h, herr := linkState(cfg.HostIface)
		r, rerr := linkState(cfg.RouterIface, "-n", cfg.Name)
		if err := errors.Join(herr, rerr); err != nil {
			return err
		}
		if h.ready() && r.ready() {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("links not ready after %v: %s %s, %s %s", readyTimeout, cfg.HostIface, h, cfg.RouterIface, r)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type state struct {
	Operstate string `json:"operstate"`
	Qdisc     string `json:"qdisc"`
	IfAlias   string `json:"ifalias"`
}

func (s state) ready() bool    { return s.Operstate == "UP" && s.Qdisc != "" && s.Qdisc != "noop" }
func (s state) String() string { return "operstate " + s.Operstate + ", qdisc " + s.Qdisc }

// linkState is what `ip [opts] -j link show dev name` says of the link.
func linkState(name string, opts ...string) (state, error) {
	args := append(append(opts, "-j"), "link", "show", "dev", name)
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return state{}, fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
	}
	var links []state
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return state{}, fmt.Errorf("ip %s: unexpected output %q", strings.Join(args, " "), out)
	}
	return links[0], nil
}

// ifalias is the alias of a link in the caller's namespace.
func ifalias(name string) (string, error) {
	st, err := linkState(name)
	return st.IfAlias, err
}
