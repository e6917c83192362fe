// Package config reads the YAML configuration file of `jmxdp run`, holds its
// defaults and checks values, whether they come from the file or from flags.
//
// The flow of the command is:
//
//	cfg, err := config.Load(path) // or config.Default() without --config
//	if flagPorts != nil {         // a flag overrides the file
//		cfg.Ports, cfg.PortsSet = flagPorts, true
//	}
//	err = cfg.Validate()          // checks the merged result
//	err = cfg.CheckOutputDir()    // the only check that touches the system
//
// Load and Parse report problems in the file with its name and line
// ("jmxdp.yaml:7: policy[1].mid: ..."); Validate, which may see values that
// came from flags, names the key only. docs/config.md describes every key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jmxdp/jmxdp/userspace/handoff"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/pins"
	"github.com/jmxdp/jmxdp/userspace/retention"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// Config is the whole configuration of `jmxdp run`.
//
// The *Set fields say whether the file named the key (a flag that overrides
// one of these fields sets it too). A start applies the values either way,
// defaults included, never what pinned maps hold; the editing commands use
// the *Set fields to know whether the file has the key.
type Config struct {
	// Interface is the NIC to attach to (flag --iface). It has no default:
	// Validate refuses an empty one.
	Interface string
	// Ports are the UDP destination ports that carry Jmirror.
	Ports    []uint16
	PortsSet bool
	// DefaultAction applies to streams that no policy rule names.
	DefaultAction    vocab.Action
	DefaultActionSet bool
	// Policy holds per-stream actions: an exact (mid, sid) rule beats a rule
	// for every sid of the mid.
	Policy    []vocab.PolicyRule
	PolicySet bool
	// ForwardLookupInterface is the interface the forward action's fib
	// lookups are made from (docs/forward.md); "" means the ingress.
	ForwardLookupInterface string
	// Allowlist are the prefixes routers may send from; empty allows any.
	Allowlist    []netip.Prefix
	AllowlistSet bool

	Output     Output
	Capture    Capture
	Reassembly Reassembly
	Metrics    Metrics
	// Sink: files (the default) or NATS JetStream (sink.go).
	Sink Sink
}

// Output is where and how captured streams are written.
type Output struct {
	Dir          string
	RotateSize   int64         // bytes; 0 = never rotate by size
	RotateAge    time.Duration // 0 = never rotate by age
	MaxOpenFiles int           // default: from RLIMIT_NOFILE (writer.DefaultMaxOpen)
	// FlushInterval bounds how long a packet waits in its stream's buffer.
	FlushInterval time.Duration
	// BufferSize is the largest buffer of one stream, BufferMemory the
	// bound on all of them.
	BufferSize     int64
	BufferMemory   int64
	PacketComments bool // a router= comment on every packet
	// AllowUntrustedDir writes into a Dir that another user owns or can
	// write, where links could be planted (refused otherwise).
	AllowUntrustedDir bool
	// MaxBytes and MaxAge bound the completed files (0 = no bound):
	// beyond them the oldest are deleted, of each stream or of all
	// (Retention: "all" or "stream").
	MaxBytes  int64
	MaxAge    time.Duration
	Retention string
	// OnComplete is a command (argv, no shell) run for each completed
	// file; nil = none. At most OnCompleteWorkers at once, each for at
	// most OnCompleteTimeout.
	OnComplete        []string
	OnCompleteWorkers int
	OnCompleteTimeout time.Duration
	// Group is the group (name or number) given read access to the
	// files (0640) and directories (0750); "" keeps them root-only
	// (0600, 0700). CheckOutputDir resolves it.
	Group string
}

// Capture is how frames are taken off the NIC.
type Capture struct {
	Queues         []uint32 // RX queues to open sockets on; nil = all
	XDPMode        string   // auto, driver or generic
	ZeroCopy       bool     // AF_XDP zero-copy where the driver offers it
	FramesPerQueue int      // UMEM frames per socket, a power of two
	// FrameSize is the UMEM frame (chunk) size: 2048 or 4096. A frame
	// larger than FrameSize-256 bytes takes several (multi-buffer).
	FrameSize   int
	QueueMemory int64 // bytes of frames waiting for the writers
	// MaxStreamMemory bounds the writers' per-stream state (about
	// writer.StreamBytes a stream, buffers aside): beyond it the least
	// recently seen streams are completed and forgotten.
	MaxStreamMemory int64
	MaxStreams      uint32 // entries of the kernel's stream table
	Writers         int    // writer goroutines; 0 = one per queue, at most one per CPU
	PinDir          string // maps and link are pinned under PinDir/Interface
	KeepAttached    bool   // leave the program attached on exit
}

// Reassembly bounds the reassembly of fragmented outer IPv4 datagrams.
type Reassembly struct {
	MaxDatagrams int
	MaxMemory    int64
	Timeout      time.Duration
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	Addr string // host:port; "" disables
	// TopStreams: per-stream series for this many (mid, sid) streams, those
	// with the most bytes; 0 = none. At most MaxTopStreams.
	TopStreams int
	// HideIDs leaves mid and sid out of every label (no per-intercept or
	// per-stream series, totals only) and out of the logs, which name a
	// stream by a hash instead (userspace/logid). HideIDsSet says the
	// file set it; otherwise ChooseHideIDs decides.
	HideIDs    bool
	HideIDsSet bool
	// WebConfig is an exporter-toolkit web configuration file (TLS,
	// client certificates, basic auth) for the endpoint; "" serves plain
	// HTTP to anyone. A relative path in the file is relative to the
	// file's directory.
	WebConfig string
}

// Defaults that other packages and the docs refer to.
const (
	DefaultPort       = jmirror.DefaultPort
	DefaultOutputDir  = "/var/lib/jmxdp/streams"
	DefaultPinDir     = pins.DefaultBase
	DefaultMetrics    = "127.0.0.1:9877"
	DefaultTopStreams = 20
	// DefaultMaxStreamMemory: about 670k streams of state.
	DefaultMaxStreamMemory = 512 << 20
	minStreamMemory        = 1 << 20
	MaxTopStreams          = 1000
	MinFramesPerQueue      = 64
	// minBufferSize is output.buffer_size's floor (a larger packet gets a
	// buffer of its own size).
	minBufferSize = 8 << 10
	// maxWriters bounds capture.writers.
	maxWriters        = 256
	MaxFramesPerQueue = 65536
)

// maxHandoffWorkers bounds output.on_complete_workers.
const maxHandoffWorkers = 1024

// Default returns the configuration used for every key the file and the
// flags leave out. No *Set field is true.
func Default() Config {
	return Config{
		Ports:         []uint16{DefaultPort},
		DefaultAction: vocab.ActionCapture,
		Output: Output{
			Dir:           DefaultOutputDir,
			RotateSize:    256 << 20,
			RotateAge:     15 * time.Minute,
			MaxOpenFiles:  writer.DefaultMaxOpen(),
			FlushInterval: time.Second,
			BufferSize:    writer.DefaultBufferSize,
			BufferMemory:  writer.DefaultBufferMemory,

			// No retention limit and no hand-off unless set.
			Retention:         retention.All.String(),
			OnCompleteWorkers: handoff.DefaultWorkers,
			OnCompleteTimeout: handoff.DefaultTimeout,
		},
		Capture: Capture{
			XDPMode:         "auto",
			ZeroCopy:        true,
			FramesPerQueue:  16384,
			FrameSize:       2048,
			QueueMemory:     64 << 20,
			MaxStreamMemory: DefaultMaxStreamMemory,
			MaxStreams:      1 << 20,
			PinDir:          DefaultPinDir,
		},
		Reassembly: Reassembly{
			MaxDatagrams: 4096,
			MaxMemory:    64 << 20,
			Timeout:      30 * time.Second,
		},
		Metrics: Metrics{Addr: DefaultMetrics, TopStreams: DefaultTopStreams},
		Sink:    DefaultSink(),
	}
}

// Error is one problem with the configuration: where it is and what is
// wrong. Parse and Validate return one or several, joined by errors.Join;
// errors.As finds the first.
type Error struct {
	File string // "" for values that did not come from a file
	Line int    // 1-based; 0 when unknown
	Key  string // e.g. "policy[1].mid"; "" for the document as a whole
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads the file at path over Default().
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Default(), fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data, path)
	if err == nil && c.Metrics.WebConfig != "" && !filepath.IsAbs(c.Metrics.WebConfig) {
		// As Prometheus does with the paths in its file.
		c.Metrics.WebConfig = filepath.Join(filepath.Dir(path), c.Metrics.WebConfig)
	}
	return c, err
}

// yamlLine splits yaml.v3's syntax errors ("yaml: line 3: msg"), which are
// plain strings, so that they read like ours.
var yamlLine = regexp.MustCompile(`(?s)^yaml: (?:line (\d+): )?(.*)$`)

func syntaxError(name string, err error) error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: name, Msg: err.Error()}
	}
	line, _ := strconv.Atoi(m[1])
	return &Error{File: name, Line: line, Msg: m[2]}
}

// Parse reads a configuration file's contents over Default(). name is used
// in messages. An empty document (or one of comments only) is all defaults.
// Parse does not require the interface, which may come from --iface: call
// Validate after applying the flags. On error it returns Default() and
// every problem it found, each a *Error.
func Parse(data []byte, name string) (Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err == io.EOF {
		return c, nil
	} else if err != nil {
		return c, syntaxError(name, err)
	}
	// A second document would be silently ignored by Decode.
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return c, &Error{File: name, Line: extra.Line, Msg: "a second YAML document (---); the file holds one"}
	} else if err != io.EOF {
		return c, syntaxError(name, err)
	}

	d := decoder{file: name}
	d.document(&doc, &c)
	if len(d.errs) > 0 {
		return Default(), errors.Join(d.errs...)
	}
	// The decoder checks every value where it stands; this is a backstop so
	// that Parse never accepts what Validate refuses.
	if errs := c.check(false); len(errs) > 0 {
		for _, e := range errs {
			e.File = name
		}
		return Default(), joinErrors(errs)
	}
	return c, nil
}

// Validate checks everything that can be checked without touching the
// system: call it after flags have overridden the file. It requires the
// interface. Messages name the key (e.g. "capture.frames_per_queue") but no
// line, since the value may have come from a flag.
func (c *Config) Validate() error {
	return joinErrors(c.check(true))
}

func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

// check is Validate's work; requireIface is false for Parse, where the
// interface may still come from a flag.
func (c *Config) check(requireIface bool) []*Error {
	var errs []*Error
	bad := func(key string, err error) {
		if err != nil {
			errs = append(errs, &Error{Key: key, Msg: err.Error()})
		}
	}

	if c.Interface == "" {
		if requireIface {
			bad("interface", errors.New("not set: give --iface or interface: in the configuration file"))
		}
	} else {
		bad("interface", checkIfName(c.Interface))
	}

	if len(c.Ports) == 0 {
		bad("ports", errEmptyPorts)
	}
	seenPort := map[uint16]int{}
	for i, p := range c.Ports {
		key := fmt.Sprintf("ports[%d]", i)
		if j, dup := seenPort[p]; dup {
			bad(key, fmt.Errorf("duplicate port %d (same as ports[%d])", p, j))
			continue
		}
		seenPort[p] = i
		bad(key, checkPort(int64(p)))
	}

	bad("default_action", vocab.Settings{DefaultAction: c.DefaultAction}.Validate())

	seenRule := map[ruleKey]int{}
	for i, r := range c.Policy {
		key := fmt.Sprintf("policy[%d]", i)
		if err := r.Validate(); err != nil {
			bad(key, err)
			continue
		}
		k := keyOf(r)
		if j, dup := seenRule[k]; dup {
			bad(key, fmt.Errorf("duplicate rule for %s (same as policy[%d])", k, j))
			continue
		}
		seenRule[k] = i
	}

	seenPrefix := map[netip.Prefix]int{}
	for i, p := range c.Allowlist {
		key := fmt.Sprintf("allowlist[%d]", i)
		if j, dup := seenPrefix[p]; dup {
			bad(key, fmt.Errorf("duplicate prefix %s (same as allowlist[%d])", p, j))
			continue
		}
		seenPrefix[p] = i
		bad(key, CheckPrefix(p))
	}

	o := &c.Output
	bad("output.dir", checkNotEmpty(o.Dir))
	bad("output.rotate_size", checkRange(o.RotateSize, 0, maxInt64))
	bad("output.rotate_age", checkDuration(o.RotateAge, 0))
	bad("output.max_open_files", checkRange(int64(o.MaxOpenFiles), 1, maxInt32))
	bad("output.flush_interval", checkDuration(o.FlushInterval, time.Millisecond))
	bad("output.buffer_size", checkRange(o.BufferSize, minBufferSize, pcapng.MaxPacketLen*4))
	bad("output.buffer_memory", checkRange(o.BufferMemory, o.BufferSize, maxInt64))
	bad("output.max_bytes", checkRange(o.MaxBytes, 0, maxInt64))
	bad("output.max_age", checkDuration(o.MaxAge, 0))
	bad("output.retention", checkScope(o.Retention))
	if o.OnComplete != nil {
		bad("output.on_complete", checkArgv(o.OnComplete))
	}
	bad("output.on_complete_workers", checkRange(int64(o.OnCompleteWorkers), 1, maxHandoffWorkers))
	bad("output.on_complete_timeout", checkDuration(o.OnCompleteTimeout, time.Millisecond))

	cp := &c.Capture
	if cp.Queues != nil && len(cp.Queues) == 0 {
		bad("capture.queues", errEmptyQueues)
	}
	seenQueue := map[uint32]int{}
	for i, q := range cp.Queues {
		if j, dup := seenQueue[q]; dup {
			bad(fmt.Sprintf("capture.queues[%d]", i), fmt.Errorf("duplicate queue %d (same as capture.queues[%d])", q, j))
			continue
		}
		seenQueue[q] = i
	}
	bad("capture.xdp_mode", checkXDPMode(cp.XDPMode))
	bad("capture.frames_per_queue", checkFrames(int64(cp.FramesPerQueue)))
	bad("capture.frame_size", checkFrameSize(int64(cp.FrameSize)))
	bad("capture.queue_memory", checkRange(cp.QueueMemory, 1, maxInt64))
	bad("capture.max_stream_memory", checkRange(cp.MaxStreamMemory, minStreamMemory, maxInt64))
	bad("capture.max_streams", checkRange(int64(cp.MaxStreams), 1, maxUint32))
	bad("capture.writers", checkRange(int64(cp.Writers), 0, maxWriters))
	bad("capture.pin_dir", checkAbsPath(cp.PinDir))

	r := &c.Reassembly
	bad("reassembly.max_datagrams", checkRange(int64(r.MaxDatagrams), 1, maxInt32))
	bad("reassembly.max_memory", checkRange(r.MaxMemory, 1, maxInt64))
	bad("reassembly.timeout", checkDuration(r.Timeout, 1))

	bad("metrics.addr", checkAddr(c.Metrics.Addr))
	bad("metrics.top_streams", checkTopStreams(int64(c.Metrics.TopStreams)))
	c.Sink.check(bad)
	return errs
}

// CheckOutputDir makes sure files can be written in Output.Dir, creating it
// and any missing parents with mode 0700 (the streams are intercepted
// traffic), or 2750 and output.group's group. It refuses an unknown group,
// a path that is not a directory and a directory in
// which a file cannot be created, which it finds out by creating and
// removing one: permission bits alone say nothing for root, and nothing
// about read-only mounts.
func (c *Config) CheckOutputDir() error {
	dir := c.Output.Dir
	fail := func(format string, args ...any) error {
		return &Error{Key: "output.dir", Msg: fmt.Sprintf(format, args...)}
	}
	if dir == "" {
		return fail("empty path")
	}
	gid, err := c.Output.GID()
	if err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := pcapng.MkdirAllGroup(dir, gid); err != nil {
			return fail("cannot create %s: %v", dir, err)
		}
	case err != nil:
		return fail("%v", err)
	case !fi.IsDir():
		return fail("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".jmxdp-probe-*")
	if err != nil {
		return fail("cannot create files in %s: %v", dir, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fail("cannot remove the probe file %s: %v", name, err)
	}
	return nil
}
