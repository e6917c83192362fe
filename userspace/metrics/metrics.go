// Package metrics exports jmxdp's counters to Prometheus.
//
// The Collector follows cloudflare/tubular's and ebpf_exporter's model: it
// does no work per packet. At scrape time it reads the BPF maps (the per-CPU
// global counters, summed; the stream table and the other hash maps in
// batches) and the userspace pipeline's totals, and emits const metrics.
// A map that cannot be read is counted in jmxdp_scrape_errors_total{source}
// and its families are left out of that scrape; the rest is still served.
//
// # Cardinality
//
// Every label has a bounded set of values, whatever the traffic:
//
//   - class, action, outcome, reason, trigger, map, source: fixed lists;
//   - queue: one per AF_XDP socket (at most the NIC's RX queues, and
//     jm_xsks holds 256);
//   - router: the Options.MaxRouters routers with the most packets, the
//     rest summed in router="other" (jm_untrusted likewise, separately);
//   - mid (jmxdp_intercept_*): the Options.MaxIntercepts intercepts with the
//     most bytes, the rest summed in mid="other";
//   - mid, sid (jmxdp_stream_*): the Options.TopStreams (mid, sid) streams
//     with the most bytes, and as many with the most writer drops; no
//     "other" (the totals are in jmxdp_jmirror_bytes_total and the
//     intercept families).
//
// With Options.HideIDs no series carries a mid or sid label at all: the
// per-intercept and per-stream families are not emitted; totals are.
//
// Counters derived from the stream table (per intercept, stream and
// router) are sums over its entries and their cache slots (maps.EachStream
// reads them so that none goes down). Per router they include the counts
// the table refused or retired (maps.RouterTotals), so they never go down;
// per intercept and stream they can, when a stream is retired idle or a
// series moves between a named value and "other", which rate() reads as a
// counter reset. The kernel's
// global counters (jmxdp_frames_total and the others read from jm_stats)
// never go down while the maps stay pinned.
package metrics

import (
	"cmp"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/capture"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/forward"
	"github.com/jmxdp/jmxdp/userspace/handoff"
	"github.com/jmxdp/jmxdp/userspace/reasm"
	"github.com/jmxdp/jmxdp/userspace/retention"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// Source is what the Collector reads.
type Source struct {
	Maps *maps.Maps // required for the kernel families (nil leaves them out)
	// Iface and Ifindex name the interface the program is attached to, for
	// jmxdp_program_attached. Ifindex 0 looks Iface up at every scrape (the
	// interface may be recreated); with neither, the family is not emitted.
	Iface   string
	Ifindex int
	// Capture returns the AF_XDP pipeline's stats; nil: no capture running.
	Capture func() capture.Stats
	// Writer returns the file writers' totals; nil: no writers.
	Writer func() writer.Stats
	// WriterStreams returns the writers' per-stream counters, for the
	// streams with the most drops; nil: none.
	WriterStreams func() []writer.StreamStats
	// Retention returns the retention counters, Handoff the on_complete
	// ones; nil leaves their families out. The daemon gives both, at 0
	// when the feature is off.
	Retention func() retention.Stats
	Handoff   func() handoff.Stats
	// Forward returns the userspace forward sender's counters (frames the
	// program handed over, docs/forward.md); nil leaves the family out.
	Forward func() forward.SenderStats
}

// Options tune what the Collector exports.
type Options struct {
	// TopStreams: per-stream series (jmxdp_stream_*{mid,sid}) for the N
	// (mid, sid) streams with the most bytes, and for the N with the most
	// writer drops. 0 means DefaultTopStreams; negative means none.
	TopStreams int
	// HideIDs drops every mid and sid label: no per-intercept or
	// per-stream series. Totals stay.
	HideIDs bool
	// MaxRouters: per-router series for at most this many routers by
	// packets, the rest summed in router="other". 0 means
	// DefaultMaxRouters; negative means every router is "other".
	MaxRouters int
	// MaxIntercepts: per-intercept series for at most this many mids by
	// bytes, the rest summed in mid="other". 0 means
	// DefaultMaxIntercepts; negative means every mid is "other".
	MaxIntercepts int
	// Version and Revision label jmxdp_build_info.
	Version, Revision string
	// ActiveWindow: a stream is active if it sent within this window.
	// 0 means DefaultActiveWindow.
	ActiveWindow time.Duration
}

// Defaults of Options.
const (
	DefaultTopStreams    = 20
	DefaultMaxRouters    = 64
	DefaultMaxIntercepts = 1000
	DefaultActiveWindow  = 5 * time.Minute
)

// Other is the label value that sums the routers or intercepts beyond the
// per-label bounds.
const Other = "other"

// FromConfig returns the Options the configuration file asks for. The
// file's top_streams: 0 means no per-stream series, which Options spells
// as a negative TopStreams (0 there is the default).
func FromConfig(m config.Metrics) Options {
	o := Options{TopStreams: m.TopStreams, HideIDs: m.HideIDs}
	if o.TopStreams == 0 {
		o.TopStreams = -1
	}
	return o
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	def(&o.TopStreams, DefaultTopStreams)
	def(&o.MaxRouters, DefaultMaxRouters)
	def(&o.MaxIntercepts, DefaultMaxIntercepts)
	if o.ActiveWindow <= 0 {
		o.ActiveWindow = DefaultActiveWindow
	}
	return o
}

// family is one metric family the Collector can export.
type family struct {
	name   string
	typ    prometheus.ValueType
	desc   *prometheus.Desc
	labels []string
}

var families []*family

func newFamily(name string, typ prometheus.ValueType, help string, labels ...string) *family {
	f := &family{name: name, typ: typ, desc: prometheus.NewDesc(name, help, labels, nil), labels: labels}
	families = append(families, f)
	return f
}

const (
	counter = prometheus.CounterValue
	gauge   = prometheus.GaugeValue
)

// The families, in the order of docs/metrics.md.
var (
	// Kernel: jm_stats.
	famFrames = newFamily("jmxdp_frames_total", counter,
		"Frames the XDP program saw, by the one class each landed in (docs/datapath.md): not_jmirror, jmirror, malformed_short, malformed_truncated, untrusted, frag_tracked, frag_unmatched. Their sum is every frame.",
		"class")
	famJmirrorBytes = newFamily("jmxdp_jmirror_bytes_total", counter,
		"Bytes of the mirrored packets of Jmirror datagrams (UDP length - 16), a fragmented datagram counted once.")
	famActions = newFamily("jmxdp_policy_actions_total", counter,
		"Jmirror frames given each policy action: capture (redirect to AF_XDP), count (drop), pass (to the host stack) or forward (re-originated to a collector, docs/forward.md). Every fragment of a datagram counts.",
		"action")
	famCaptureFailures = newFamily("jmxdp_capture_failures_total", counter,
		"Frames to capture that found no AF_XDP socket on their RX queue and were passed to the host stack instead.")
	famStreamInserts = newFamily("jmxdp_stream_table_inserts_total", counter,
		"Entries inserted in the kernel's stream table (jm_streams). Minus jmxdp_map_entries{map=\"jm_streams\"}, the idle streams userspace retired into their router's total.")
	famStreamFull = newFamily("jmxdp_stream_table_full_packets_total", counter,
		"Jmirror packets whose stream found the stream table full: folded into their router's total (jmxdp_router_packets_total), not into a stream.")
	famStreamLost = newFamily("jmxdp_stream_table_lost_packets_total", counter,
		"Jmirror packets whose stream found the stream table full and their router's overflow total full as well (more than 65536 routers): counted only here. Should stay 0.")
	famVersionNonzero = newFamily("jmxdp_version_nonzero_total", counter,
		"Jmirror datagrams whose 2-bit header version is not 0 (still decoded).")
	famFragments = newFamily("jmxdp_fragments_total", counter,
		"Outer IPv4 and IPv6 fragments in the kernel's fragment tracking: first (a fragmented Jmirror datagram's first fragment, recorded for the rest), tracked (a later fragment matched to its datagram's stream), unmatched (a later fragment matching nothing, passed).",
		"outcome")
	famForwardSent = newFamily("jmxdp_forward_sent_total", counter,
		"Frames of forwarded streams the XDP program re-encapsulated and sent to their target (docs/forward.md).")
	famForwardUserspace = newFamily("jmxdp_forward_userspace_total", counter,
		"Frames of forwarded streams the XDP program handed to userspace to send from a socket, by reason: neigh_miss, no_route, too_big, frag_family, no_source, unsupported (docs/forward.md).",
		"reason")
	famForwardSocket = newFamily("jmxdp_forward_socket_total", counter,
		"What userspace did with the forwarded streams' frames the program handed it (docs/forward.md): datagrams sent from a socket, failed (no rule any more, no route, a socket error), fragments taken, and datagrams they were reassembled into.",
		"outcome")
	famUntrustedMapped = newFamily("jmxdp_untrusted_mapped_total", counter, "Jmirror datagrams over IPv6 from a source that embeds an IPv4 address (::ffff:0:0/96 or ::/96), which is never a router: dropped, and also in jmxdp_frames_total{class=\"untrusted\"}.")

	// Kernel: jm_streams, summed at scrape time.
	famInterceptPackets = newFamily("jmxdp_intercept_packets_total", counter,
		"Jmirror packets of an intercept (mid, decimal), summed over its sessions and routers in the stream table. Bounded: the intercepts with the most bytes, the rest in mid=\"other\".",
		"mid")
	famInterceptBytes = newFamily("jmxdp_intercept_bytes_total", counter,
		"Mirrored bytes of an intercept (mid, decimal), summed over its sessions and routers in the stream table. Bounded like jmxdp_intercept_packets_total.",
		"mid")
	famInterceptLastSeen = newFamily("jmxdp_intercept_last_seen_timestamp_seconds", gauge,
		"When an intercept last sent a packet (Unix time, jiffy resolution), for the intercepts of jmxdp_intercept_bytes_total except \"other\".",
		"mid")
	famIntercepts = newFamily("jmxdp_intercepts", gauge,
		"Distinct intercepts (mids) in the stream table.")
	famStreamPackets = newFamily("jmxdp_stream_packets_total", counter,
		"Jmirror packets of a (mid, sid) stream, summed over routers, for the top streams by bytes.",
		"mid", "sid")
	famStreamBytes = newFamily("jmxdp_stream_bytes_total", counter,
		"Mirrored bytes of a (mid, sid) stream, summed over routers, for the top streams by bytes.",
		"mid", "sid")
	famStreamLastSeen = newFamily("jmxdp_stream_last_seen_timestamp_seconds", gauge,
		"When a (mid, sid) stream last sent a packet (Unix time, jiffy resolution), for the top streams by bytes.",
		"mid", "sid")
	famStreams = newFamily("jmxdp_streams", gauge,
		"Entries in the kernel's stream table: one per (router, mid, sid).")
	famStreamsActive = newFamily("jmxdp_streams_active", gauge,
		"Entries in the kernel's stream table that saw a packet within the active window.")
	famRouterPackets = newFamily("jmxdp_router_packets_total", counter,
		"Jmirror packets from a router (outer source address), summed over its streams, plus those of its streams that found the table full or were retired idle (jm_router_overflow, jm_router_retired): never lost to the table's size. Bounded: the routers with the most packets, the rest in router=\"other\".",
		"router")
	famRouterBytes = newFamily("jmxdp_router_bytes_total", counter,
		"Mirrored bytes from a router, summed over its streams; same routers as jmxdp_router_packets_total.",
		"router")
	famRouters = newFamily("jmxdp_routers", gauge,
		"Distinct routers in the stream table or its per-router totals.")

	// Kernel: jm_untrusted.
	famUntrustedPackets = newFamily("jmxdp_untrusted_packets_total", counter,
		"Frames dropped because their source is outside the allowlist, by source (jm_untrusted). Bounded: the sources with the most packets, the rest in router=\"other\".",
		"router")
	// The unlabelled totals of the two families above and below: a
	// labelled series appears only with its first packet, so increase()
	// never sees a one-off burst from a new source or port; these exist
	// at 0 from the start and never go down (kernel counters in jm_stats,
	// not sums over an LRU map). `_all_total`: a family cannot have series
	// with and without the label, and the shared stem keeps each total
	// next to its breakdown.
	famUntrustedAll = newFamily("jmxdp_untrusted_packets_all_total", counter,
		"Frames dropped because their source is outside the allowlist, from every source (the kernel's counter; the same frames as jmxdp_frames_total{class=\"untrusted\"}). Exists at 0 from the start: alert on it, not on the per-router series.")
	famUntrustedRouters = newFamily("jmxdp_untrusted_routers", gauge,
		"Sources outside the allowlist that sent Jmirror (entries in jm_untrusted).")

	// Kernel: jm_candidates (port discovery).
	famCandidatePackets = newFamily("jmxdp_candidate_port_packets_total", counter,
		"Jmirror-looking packets to a UDP port jmxdp does not decode (jm_candidates): a router probably sends to a port missing from the configuration. Bounded: the ports with the most packets, the rest in port=\"other\".",
		"port")
	famCandidateAll = newFamily("jmxdp_candidate_port_packets_all_total", counter,
		"Jmirror-looking packets to a UDP port jmxdp does not decode, on every such port (the kernel's counter). Exists at 0 from the start: alert on it, not on the per-port series.")
	famCandidatePorts = newFamily("jmxdp_candidate_ports", gauge,
		"UDP ports not decoded on which Jmirror-looking traffic was seen.")

	// Maps.
	famMapEntries = newFamily("jmxdp_map_entries", gauge,
		"Entries in a BPF map.", "map")
	famMapMaxEntries = newFamily("jmxdp_map_max_entries", gauge,
		"Capacity of a BPF map (max_entries).", "map")
	famMapFill = newFamily("jmxdp_map_fill_ratio", gauge,
		"Entries / capacity of a BPF map. An LRU map (jm_frags, jm_untrusted) at 1 evicts; jm_streams, jm_policy and jm_allowlist at 1 refuse more entries (jm_streams's refused streams count in their router's total).",
		"map")

	// AF_XDP pipeline.
	famXSKFrames = newFamily("jmxdp_xsk_frames_total", counter,
		"Frames taken off an AF_XDP socket's RX ring.", "queue")
	famXSKBytes = newFamily("jmxdp_xsk_bytes_total", counter,
		"Bytes of the frames taken off an AF_XDP socket's RX ring.", "queue")
	famXSKRxDropped = newFamily("jmxdp_xsk_rx_dropped_total", counter,
		"Frames the kernel dropped on an AF_XDP socket for other reasons than a full ring (XDP_STATISTICS rx_dropped).", "queue")
	famXSKRingFull = newFamily("jmxdp_xsk_rx_ring_full_total", counter,
		"Frames the kernel dropped because the socket's RX ring was full: the ring loop is too slow (XDP_STATISTICS rx_ring_full).", "queue")
	famXSKFillEmpty = newFamily("jmxdp_xsk_fill_ring_empty_total", counter,
		"Times the kernel found the socket's fill ring empty (XDP_STATISTICS rx_fill_ring_empty_descs).", "queue")
	famXSKInvalid = newFamily("jmxdp_xsk_rx_invalid_descs_total", counter,
		"Fill ring descriptors the kernel rejected (XDP_STATISTICS rx_invalid_descs).", "queue")
	famXSKChains = newFamily("jmxdp_xsk_multibuffer_frames_total", counter,
		"Frames larger than a UMEM frame, which arrive as chains of descriptors (XDP_USE_SG), by outcome: joined into one packet, or dropped for a chain longer than 18 buffers.", "queue", "outcome")
	famQueueDrops = newFamily("jmxdp_capture_queue_drops_total", counter,
		"Frames dropped after the RX ring because the batch pool (capture.queue_memory) was empty: decoding or writing is too slow.", "queue")
	famXSKInfo = newFamily("jmxdp_xsk_info", gauge,
		"An AF_XDP socket per captured RX queue, with its mode (zerocopy or copy); always 1.", "queue", "mode")
	famCaptureUnexpected = newFamily("jmxdp_capture_unexpected_frames_total", counter,
		"Frames that reached the AF_XDP sockets but are not Jmirror by the userspace decoder (should stay 0).")
	famCaptureNoTimestamp = newFamily("jmxdp_capture_frames_without_timestamp_total", counter,
		"Captured frames without the program's metadata (the driver has no XDP metadata): decoded in userspace and stamped when userspace saw them.")

	// Reassembly.
	famReasmFragments = newFamily("jmxdp_reassembly_fragments_total", counter,
		"Well-formed outer IPv4 fragments received by userspace reassembly.")
	famReasmDatagrams = newFamily("jmxdp_reassembly_datagrams_total", counter,
		"Outcomes of userspace reassembly: reassembled; dropped by timeout, evicted (max_datagrams or max_memory), overlap (inconsistent fragments), too_big (over 65535 bytes); malformed counts refused packets.",
		"outcome")
	famReasmPending = newFamily("jmxdp_reassembly_pending_datagrams", gauge,
		"Datagrams waiting for fragments now.")
	famReasmPendingBytes = newFamily("jmxdp_reassembly_pending_bytes", gauge,
		"Memory held for datagrams waiting for fragments now, in bytes.")
	famReasmDuplicates = newFamily("jmxdp_reassembly_duplicate_fragments_total", counter,
		"Fragments userspace reassembly discarded as exact copies (of data a pending datagram has, or of a datagram completed within the timeout): never written twice.")
	famReasmHeld = newFamily("jmxdp_reassembly_held_fragments_total", counter,
		"Later fragments the program sent ahead of their first fragment (frag_held), by outcome: held (taken), released (reassembled with their first), expired (no first within the timeout), evicted (max_datagrams or max_memory).",
		"outcome")

	// Writers.
	famWriterPackets = newFamily("jmxdp_writer_packets_total", counter,
		"Packets written to stream files.")
	famWriterBytes = newFamily("jmxdp_writer_bytes_total", counter,
		"Bytes of packet data written to stream files (without pcapng framing).")
	famWriterBuffered = newFamily("jmxdp_writer_buffered_packets", gauge,
		"Packets accepted by the writers but not yet in a file.")
	famWriterDrops = newFamily("jmxdp_writer_drops_total", counter,
		"Packets that never reached a file, by reason: disk (write failed or retry pending), queue (batch pool empty), reassembly (fragments never completed), invalid, closed, other.",
		"reason")
	famWriterCreated = newFamily("jmxdp_writer_files_created_total", counter,
		"Stream files created (as .pcapng.part).")
	famWriterCompleted = newFamily("jmxdp_writer_files_completed_total", counter,
		"Stream files completed (renamed from .part to .pcapng).")
	famWriterRemoved = newFamily("jmxdp_writer_files_removed_total", counter,
		"Stream files deleted because every packet in them was lost to faults.")
	famWriterRotations = newFamily("jmxdp_writer_rotations_total", counter,
		"Files completed by rotation, by trigger: size (output.rotate_size) or age (output.rotate_age).",
		"trigger")
	famWriterEvictions = newFamily("jmxdp_writer_evictions_total", counter,
		"Files closed to stay under output.max_open_files (reopened to append when their stream sends again).")
	famWriterStreamEvictions = newFamily("jmxdp_writer_stream_evictions_total", counter,
		"Streams the writers forgot, their files completed, to stay under capture.max_stream_memory.")
	famWriterFlushes = newFamily("jmxdp_writer_flushes_total", counter,
		"Stream buffers written to their files, by why: full (or the file closed), age (older than output.flush_interval), memory (output.buffer_memory reached).", "why")
	famWriterBufferBytes = newFamily("jmxdp_writer_buffer_bytes", gauge,
		"Memory the streams' write buffers hold now (bounded by output.buffer_memory).")
	famWriterOpen = newFamily("jmxdp_writer_open_files", gauge,
		"Stream files open now.")
	famWriterStreams = newFamily("jmxdp_writer_streams", gauge,
		"Streams the writers remember.")
	famWriterFaults = newFamily("jmxdp_writer_faults", gauge,
		"Write fault conditions (kinds of error, such as no space left on device) not yet cleared by a successful write.")
	famWriterRecovered = newFamily("jmxdp_writer_recovered_files_total", counter,
		"Unfinished (.part) files of an earlier run completed by the background recovery.")
	famWriterRecoveryPending = newFamily("jmxdp_writer_recovery_pending_files", gauge,
		"Unfinished (.part) files of an earlier run the background recovery has yet to complete (0 once it is over).")
	famStreamWriterDrops = newFamily("jmxdp_stream_writer_drops_total", counter,
		"Packets of a (mid, sid) stream that never reached a file, for the streams with the most drops (those with none are left out).",
		"mid", "sid")

	// The program and the exporter.
	famBuildInfo = newFamily("jmxdp_build_info", gauge,
		"jmxdp's build; always 1.", "version", "revision", "goversion")
	famAttached = newFamily("jmxdp_program_attached", gauge,
		"1 when an XDP program is attached to the interface, with mode driver, generic, offload or multi; 0 with mode=\"\" when none is (the program was detached).",
		"iface", "mode")
	famScrapeErrors = newFamily("jmxdp_scrape_errors_total", counter,
		"Reads that failed while collecting metrics, by source (a BPF map, or link for the attachment); that source's families are missing from the scrape.",
		"source")
	famScrapeDuration = newFamily("jmxdp_scrape_duration_seconds", gauge,
		"How long the last collection took, in seconds (it reads the whole stream table).")
)

// Sources of scrape errors.
const (
	srcCounters   = "jm_stats"
	srcStreams    = "jm_streams"
	srcUntrusted  = "jm_untrusted"
	srcFrags      = "jm_frags"
	srcPolicy     = "jm_policy"
	srcAllowlist  = "jm_allowlist"
	srcCandidates = "jm_candidates"
	srcLink       = "link"
)

var errorSources = []string{srcCounters, srcStreams, srcUntrusted, srcFrags, srcPolicy, srcAllowlist, srcCandidates, srcLink}

// maxCandidatePorts bounds jmxdp_candidate_port_packets_total's series.
const maxCandidatePorts = 20

// frameClasses are the counters of jm_stats that partition the frames.
var frameClasses = []vocab.Stat{
	vocab.StatNotJmirror, vocab.StatJmirror, vocab.StatMalformedShort, vocab.StatMalformedTruncated,
	vocab.StatUntrusted, vocab.StatFragTracked, vocab.StatFragUnmatched,
	vocab.StatFragDuplicate, vocab.StatFragHeld, vocab.StatIPv6ExtLong,
}

// Names lists every metric family name the Collector can export.
func Names() []string {
	out := make([]string, len(families))
	for i, f := range families {
		out[i] = f.name
	}
	return out
}

// Family describes a metric family the Collector can export, for tests
// that check what a scrape, a dashboard or a rule file does with it.
type Family struct {
	Name    string
	Counter bool     // else a gauge
	Labels  []string // label names; none for a single series
}

// Families lists every metric family the Collector can export, in the
// order of docs/metrics.md.
func Families() []Family {
	out := make([]Family, len(families))
	for i, f := range families {
		out[i] = Family{Name: f.name, Counter: f.typ == counter, Labels: slices.Clone(f.labels)}
	}
	return out
}

// Collector is a prometheus.Collector over a Source.
type Collector struct {
	src  Source
	opts Options
	// maxEntries are the compiled-in sizes of the maps other than
	// jm_streams (whose size is a load option: StreamCapacity). The loader
	// loads exactly these and replaces pinned maps of another size.
	maxEntries map[string]uint32

	mu     sync.Mutex // one collection at a time: each reads every map
	errors map[string]uint64
	// recs is collectStreams' buffer, kept between scrapes (under mu) so
	// that a scrape of a large table does not allocate it again.
	recs []streamRec
}

// NewCollector returns a Collector reading src.
func NewCollector(src Source, opts Options) *Collector {
	c := &Collector{src: src, opts: opts.withDefaults(), maxEntries: map[string]uint32{}, errors: map[string]uint64{}}
	if caps, err := maps.Capacities(); err == nil {
		for _, name := range []string{srcUntrusted, srcFrags, srcPolicy, srcAllowlist} {
			if n, ok := caps[name]; ok {
				c.maxEntries[name] = n
			}
		}
	}
	return c
}

// Describe sends every family's descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range families {
		ch <- f.desc
	}
}

func emit(ch chan<- prometheus.Metric, f *family, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(f.desc, f.typ, v, labels...)
}

// Collect reads the maps and the pipeline and sends the metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	fail := func(source string) { c.errors[source]++ }

	if c.src.Maps != nil {
		if ctr, err := c.src.Maps.Counters(); err != nil {
			fail(srcCounters)
		} else {
			c.collectCounters(ch, &ctr)
		}
		if err := c.collectStreams(ch); err != nil {
			fail(srcStreams)
		}
		c.collectMaps(ch, fail)
	}
	if c.src.Capture != nil {
		c.collectCapture(ch, c.src.Capture())
	}
	if c.src.Writer != nil {
		c.collectWriter(ch, c.src.Writer())
	}
	if c.src.WriterStreams != nil && !c.opts.HideIDs && c.opts.TopStreams > 0 {
		c.collectWriterStreams(ch, c.src.WriterStreams())
	}
	if c.src.Retention != nil {
		c.collectRetention(ch, c.src.Retention())
	}
	if c.src.Handoff != nil {
		c.collectHandoff(ch, c.src.Handoff())
	}
	if c.src.Forward != nil {
		f := c.src.Forward()
		emit(ch, famForwardSocket, float64(f.Sent), "sent")
		emit(ch, famForwardSocket, float64(f.Failed), "failed")
		emit(ch, famForwardSocket, float64(f.Reassembled), "reassembled")
		emit(ch, famForwardSocket, float64(f.Fragments), "fragments")
	}
	emit(ch, famBuildInfo, 1, c.opts.Version, c.opts.Revision, runtime.Version())
	c.collectAttached(ch, fail)
	for _, s := range errorSources {
		emit(ch, famScrapeErrors, float64(c.errors[s]), s)
	}
	emit(ch, famScrapeDuration, time.Since(start).Seconds())
}

func (c *Collector) collectCounters(ch chan<- prometheus.Metric, ctr *vocab.Counters) {
	v := func(s vocab.Stat) float64 { return float64(ctr[s]) }
	for _, s := range frameClasses {
		emit(ch, famFrames, v(s), s.String())
	}
	emit(ch, famJmirrorBytes, v(vocab.StatJmirrorBytes))
	for _, a := range []vocab.Action{vocab.ActionCapture, vocab.ActionCount, vocab.ActionPass, vocab.ActionForward} {
		emit(ch, famActions, v(vocab.ActionStat(a)), a.String())
	}
	emit(ch, famForwardSent, v(vocab.StatFwdSent))
	for _, r := range []struct {
		s      vocab.Stat
		reason vocab.FwdReason
	}{{vocab.StatFwdNeighMiss, vocab.FwdNeighMiss}, {vocab.StatFwdNoRoute, vocab.FwdNoRoute}, {vocab.StatFwdTooBig, vocab.FwdTooBig},
		{vocab.StatFwdFragFamily, vocab.FwdFragFamily}, {vocab.StatFwdNoSource, vocab.FwdNoSource}, {vocab.StatFwdUnsupported, vocab.FwdUnsupported},
		{vocab.StatFwdFragEarly, vocab.FwdFragEarly}} {
		emit(ch, famForwardUserspace, v(r.s), r.reason.String())
	}
	emit(ch, famCaptureFailures, v(vocab.StatCaptureFailed))
	emit(ch, famStreamInserts, v(vocab.StatStreamNew))
	emit(ch, famStreamFull, v(vocab.StatStreamFull))
	emit(ch, famStreamLost, v(vocab.StatStreamLost))
	emit(ch, famVersionNonzero, v(vocab.StatVersionNonzero))
	emit(ch, famUntrustedMapped, v(vocab.StatUntrustedMapped))
	emit(ch, famFragments, v(vocab.StatFragFirst), "first")
	emit(ch, famFragments, v(vocab.StatFragTracked), "tracked")
	emit(ch, famFragments, v(vocab.StatFragUnmatched), "unmatched")
	emit(ch, famFragments, v(vocab.StatFragDuplicate), "duplicate")
	emit(ch, famFragments, v(vocab.StatFragHeld), "held")
	emit(ch, famUntrustedAll, v(vocab.StatUntrusted))
	emit(ch, famCandidateAll, v(vocab.StatCandidate))
}

// clock converts CLOCK_MONOTONIC_COARSE readings, as the stream table holds
// them, to wall time.
type clock struct {
	mono time.Duration
	wall time.Time
}

// readClock reads both clocks; mono is 0 if the monotonic one fails.
func readClock() clock {
	var ts unix.Timespec
	wall := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return clock{wall: wall}
	}
	return clock{mono: time.Duration(ts.Nano()), wall: wall}
}

// age is how long ago a reading was (never negative).
func (c clock) age(mono time.Duration) time.Duration { return max(c.mono-mono, 0) }

func (c clock) unix(mono time.Duration) float64 {
	return float64(c.wall.Add(-c.age(mono)).UnixNano()) / 1e9
}

// streamRec is what collectStreams keeps of a stream table entry, a third
// of a vocab.Stream: its (mid, sid) as one sortable word, and its counts.
type streamRec struct {
	id uint64 // mid<<32 | sid
	tally
}

// collectStreams sums the stream table per intercept, per (mid, sid) and
// per router. The table is read in batches (maps.EachStream), never copied
// whole: per router sums go to a map (routers are few), and each entry is
// kept as a small record that is then sorted by (mid, sid), so that the
// entries of an intercept or a stream are adjacent: each sum is finished
// when its run ends and offered to a bounded top-N. Nothing is emitted if
// the table cannot be read.
func (c *Collector) collectStreams(ch chan<- prometheus.Metric) error {
	routers := map[netip.Addr]*tally{}
	recs := c.recs[:0]
	totals, err := c.src.Maps.EachStreamAndRouters(func(s vocab.Stream) {
		if len(recs) == cap(recs) {
			// Double: append's slower growth for large slices would
			// allocate five times the final size on a first scrape.
			recs = slices.Grow(recs, max(len(recs), 4096))
		}
		t := tally{packets: s.Packets, bytes: s.Bytes, lastSeen: s.LastSeen}
		recs = append(recs, streamRec{id: uint64(s.MID)<<32 | uint64(s.SID), tally: t})
		r := routers[s.Router]
		if r == nil {
			r = new(tally)
			routers[s.Router] = r
		}
		r.merge(t)
	})
	// Keep the buffer for the next scrape, unless the table shrank a lot.
	if cap(recs) <= 4*len(recs)+1024 {
		c.recs = recs[:0]
	} else {
		c.recs = nil
	}
	if err != nil {
		return err
	}
	// What the table could not hold, or no longer holds, still counts
	// for its router: the router series never go down.
	for addr, t := range totals {
		sum := t.Sum()
		r := routers[addr]
		if r == nil {
			r = new(tally)
			routers[addr] = r
		}
		r.packets += sum.Packets
		r.bytes += sum.Bytes
	}
	slices.SortFunc(recs, func(a, b streamRec) int { return cmp.Compare(a.id, b.id) })
	// Read after the table: every last_seen is then in the past.
	clk := readClock()
	nMids, nStreams := c.opts.MaxIntercepts, c.opts.TopStreams
	if c.opts.HideIDs {
		nMids, nStreams = 0, 0 // still counted, never named
	}
	mids := newTop[uint32](nMids, byBytes, cmp.Compare[uint32])
	sids := newTop[streamID](nStreams, byBytes, cmpStreamID)
	active := 0
	var mid ranked[uint32]
	var sid ranked[streamID]
	for i := range recs {
		s := &recs[i]
		if clk.mono != 0 && clk.age(s.lastSeen) <= c.opts.ActiveWindow {
			active++
		}
		if m := uint32(s.id >> 32); i == 0 || m != mid.key {
			if i > 0 {
				mids.add(mid)
			}
			mid = ranked[uint32]{key: m}
		}
		mid.merge(s.tally)
		if id := (streamID{uint32(s.id >> 32), uint32(s.id)}); i == 0 || id != sid.key {
			if i > 0 {
				sids.add(sid)
			}
			sid = ranked[streamID]{key: id}
		}
		sid.merge(s.tally)
	}
	if len(recs) > 0 {
		mids.add(mid)
		sids.add(sid)
	}
	emit(ch, famStreams, float64(len(recs)))
	emit(ch, famStreamsActive, float64(active))
	emit(ch, famIntercepts, float64(mids.count))
	emit(ch, famRouters, float64(len(routers)))
	c.emitMap(ch, srcStreams, len(recs), c.src.Maps.StreamCapacity())

	if !c.opts.HideIDs {
		named, rest, folded := mids.result()
		for _, m := range named {
			mid := strconv.FormatUint(uint64(m.key), 10)
			emit(ch, famInterceptPackets, float64(m.packets), mid)
			emit(ch, famInterceptBytes, float64(m.bytes), mid)
			if clk.mono != 0 {
				emit(ch, famInterceptLastSeen, clk.unix(m.lastSeen), mid)
			}
		}
		if folded > 0 {
			emit(ch, famInterceptPackets, float64(rest.packets), Other)
			emit(ch, famInterceptBytes, float64(rest.bytes), Other)
		}
		streams, _, _ := sids.result()
		for _, s := range streams {
			mid, sid := strconv.FormatUint(uint64(s.key.mid), 10), strconv.FormatUint(uint64(s.key.sid), 10)
			emit(ch, famStreamPackets, float64(s.packets), mid, sid)
			emit(ch, famStreamBytes, float64(s.bytes), mid, sid)
			if clk.mono != 0 {
				emit(ch, famStreamLastSeen, clk.unix(s.lastSeen), mid, sid)
			}
		}
	}

	top := newTop[netip.Addr](c.opts.MaxRouters, byPackets, netip.Addr.Compare)
	for addr, t := range routers {
		top.add(ranked[netip.Addr]{addr, *t})
	}
	named, rest, folded := top.result()
	for _, r := range named {
		emit(ch, famRouterPackets, float64(r.packets), r.key.String())
		emit(ch, famRouterBytes, float64(r.bytes), r.key.String())
	}
	if folded > 0 {
		emit(ch, famRouterPackets, float64(rest.packets), Other)
		emit(ch, famRouterBytes, float64(rest.bytes), Other)
	}
	return nil
}

func (c *Collector) emitMap(ch chan<- prometheus.Metric, name string, entries int, capacity uint32) {
	emit(ch, famMapEntries, float64(entries), name)
	if capacity == 0 {
		return
	}
	emit(ch, famMapMaxEntries, float64(capacity), name)
	emit(ch, famMapFill, float64(entries)/float64(capacity), name)
}

// collectMaps reads the maps other than the stream table and the counters.
func (c *Collector) collectMaps(ch chan<- prometheus.Metric, fail func(string)) {
	m := c.src.Maps
	if untrusted, err := m.Untrusted(); err != nil {
		fail(srcUntrusted)
	} else {
		c.emitMap(ch, srcUntrusted, len(untrusted), c.maxEntries[srcUntrusted])
		emit(ch, famUntrustedRouters, float64(len(untrusted)))
		top := newTop[netip.Addr](c.opts.MaxRouters, byPackets, netip.Addr.Compare)
		for _, u := range untrusted {
			top.add(ranked[netip.Addr]{u.Addr, tally{packets: u.Packets}})
		}
		named, rest, folded := top.result()
		for _, r := range named {
			emit(ch, famUntrustedPackets, float64(r.packets), r.key.String())
		}
		if folded > 0 {
			emit(ch, famUntrustedPackets, float64(rest.packets), Other)
		}
	}
	if frags, err := m.Fragments(); err != nil {
		fail(srcFrags)
	} else {
		c.emitMap(ch, srcFrags, len(frags), c.maxEntries[srcFrags])
	}
	if rules, err := m.Policies(); err != nil {
		fail(srcPolicy)
	} else {
		c.emitMap(ch, srcPolicy, len(rules), c.maxEntries[srcPolicy])
	}
	if prefixes, err := m.Allowlist(); err != nil {
		fail(srcAllowlist)
	} else {
		c.emitMap(ch, srcAllowlist, len(prefixes), c.maxEntries[srcAllowlist])
	}
	if cands, err := m.Candidates(); err != nil {
		fail(srcCandidates)
	} else {
		emit(ch, famCandidatePorts, float64(len(cands)))
		top := newTop[uint16](maxCandidatePorts, byPackets, func(a, b uint16) int { return int(a) - int(b) })
		for _, cp := range cands {
			top.add(ranked[uint16]{cp.Port, tally{packets: cp.Packets, bytes: cp.Bytes}})
		}
		named, rest, folded := top.result()
		for _, r := range named {
			emit(ch, famCandidatePackets, float64(r.packets), strconv.Itoa(int(r.key)))
		}
		if folded > 0 {
			emit(ch, famCandidatePackets, float64(rest.packets), Other)
		}
	}
}

func (c *Collector) collectCapture(ch chan<- prometheus.Metric, s capture.Stats) {
	for _, q := range s.Queues {
		queue := strconv.FormatUint(uint64(q.Queue), 10)
		emit(ch, famXSKInfo, 1, queue, q.Mode)
		emit(ch, famXSKFrames, float64(q.Frames), queue)
		emit(ch, famXSKBytes, float64(q.Bytes), queue)
		emit(ch, famQueueDrops, float64(q.Dropped), queue)
		emit(ch, famXSKChains, float64(q.Chains.Joined), queue, "joined")
		emit(ch, famXSKChains, float64(q.Chains.Dropped), queue, "dropped")
		if q.KernelOK {
			emit(ch, famXSKRxDropped, float64(q.Kernel.RxDropped), queue)
			emit(ch, famXSKRingFull, float64(q.Kernel.RxRingFull), queue)
			emit(ch, famXSKFillEmpty, float64(q.Kernel.RxFillRingEmptyDescs), queue)
			emit(ch, famXSKInvalid, float64(q.Kernel.RxInvalidDescs), queue)
		}
	}
	emit(ch, famCaptureUnexpected, float64(s.Unexpected))
	emit(ch, famCaptureNoTimestamp, float64(s.NoMetadata))
	c.collectReassembly(ch, s.Reassembly)
	for _, o := range []struct {
		outcome string
		v       uint64
	}{{"held", s.Held.Held}, {"released", s.Held.Released}, {"expired", s.Held.Expired}, {"evicted", s.Held.Evicted}} {
		emit(ch, famReasmHeld, float64(o.v), o.outcome)
	}
}

func (c *Collector) collectReassembly(ch chan<- prometheus.Metric, r reasm.Stats) {
	emit(ch, famReasmFragments, float64(r.Fragments))
	for _, o := range []struct {
		outcome string
		v       uint64
	}{
		{"reassembled", r.Reassembled}, {"timeout", r.Timeouts}, {"evicted", r.Evicted},
		{"overlap", r.Overlaps}, {"too_big", r.TooBig}, {"malformed", r.Malformed},
	} {
		emit(ch, famReasmDatagrams, float64(o.v), o.outcome)
	}
	emit(ch, famReasmPending, float64(r.Pending))
	emit(ch, famReasmPendingBytes, float64(r.PendingBytes))
	emit(ch, famReasmDuplicates, float64(r.Duplicates))
}

func (c *Collector) collectWriter(ch chan<- prometheus.Metric, s writer.Stats) {
	emit(ch, famWriterPackets, float64(s.Packets))
	emit(ch, famWriterBytes, float64(s.Bytes))
	emit(ch, famWriterBuffered, float64(s.Buffered))
	for r := writer.DropReason(0); r < writer.NumDropReasons; r++ {
		emit(ch, famWriterDrops, float64(s.Drops[r]), r.String())
	}
	emit(ch, famWriterCreated, float64(s.FilesCreated))
	emit(ch, famWriterCompleted, float64(s.FilesCompleted))
	emit(ch, famWriterRemoved, float64(s.FilesRemoved))
	emit(ch, famWriterRotations, float64(s.RotationsSize), "size")
	emit(ch, famWriterRotations, float64(s.RotationsAge), "age")
	emit(ch, famWriterEvictions, float64(s.Evictions))
	emit(ch, famWriterStreamEvictions, float64(s.StreamEvictions))
	emit(ch, famWriterFlushes, float64(s.Flushes-s.FlushesAge-s.FlushesMemory), "full")
	emit(ch, famWriterFlushes, float64(s.FlushesAge), "age")
	emit(ch, famWriterFlushes, float64(s.FlushesMemory), "memory")
	emit(ch, famWriterBufferBytes, float64(s.BufferBytes))
	emit(ch, famWriterOpen, float64(s.OpenFiles))
	emit(ch, famWriterStreams, float64(s.Streams))
	emit(ch, famWriterFaults, float64(s.Faults))
	emit(ch, famWriterRecovered, float64(s.RecoveredFiles))
	emit(ch, famWriterRecoveryPending, float64(s.RecoveryPending))
}

func (c *Collector) collectWriterStreams(ch chan<- prometheus.Metric, streams []writer.StreamStats) {
	top := newTop[streamID](c.opts.TopStreams, byPackets, cmpStreamID)
	for _, s := range streams {
		if s.Drops > 0 {
			top.add(ranked[streamID]{streamID{s.Key.MID, s.Key.SID}, tally{packets: s.Drops}})
		}
	}
	named, _, _ := top.result()
	for _, s := range named {
		emit(ch, famStreamWriterDrops, float64(s.packets),
			strconv.FormatUint(uint64(s.key.mid), 10), strconv.FormatUint(uint64(s.key.sid), 10))
	}
}

// collectAttached reports whether an XDP program is attached to the
// interface. rtnetlink tells whether one is and how, not which: jmxdp's
// pinned link is the only thing that attaches there in normal operation.
func (c *Collector) collectAttached(ch chan<- prometheus.Metric, fail func(string)) {
	if c.src.Iface == "" && c.src.Ifindex == 0 {
		return
	}
	name, index := c.src.Iface, c.src.Ifindex
	if index == 0 {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			emit(ch, famAttached, 0, name, "") // no such interface: nothing attached
			return
		}
		index = ifc.Index
	}
	if name == "" {
		name = strconv.Itoa(index)
	}
	mode, err := loader.LinkMode(index)
	if err != nil {
		fail(srcLink)
		return
	}
	if mode == "" {
		emit(ch, famAttached, 0, name, "")
		return
	}
	emit(ch, famAttached, 1, name, string(mode))
}
