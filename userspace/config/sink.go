package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Sink is where captured packets go: files under output.dir (URL "", the
// default) or a NATS JetStream cluster (URL nats://host:port,...). The
// other keys apply to NATS only (docs/scale-out.md).
type Sink struct {
	URL string
	// Stream is created if missing with Replicas, MaxBytes, MaxAge and
	// DuplicateWindow; an existing stream keeps its settings.
	Stream          string
	Replicas        int
	MaxBytes        int64
	MaxAge          time.Duration
	DuplicateWindow time.Duration
	// A batch (one message) closes at BatchPackets, BatchBytes or Linger.
	BatchPackets int
	BatchBytes   int64
	Linger       time.Duration
	MaxInFlight  int
	AckTimeout   time.Duration
	// SpoolDir and SpoolMax: the bounded local spool for what the
	// cluster does not take.
	SpoolDir    string
	SpoolMax    int64
	StopTimeout time.Duration
	// Authentication and TLS, as nats.go offers them.
	CredsFile, NKeyFile, User, PasswordFile string
	TLSCA, TLSCert, TLSKey                  string
}

// DefaultSpoolDir is sink.spool_dir's default.
const DefaultSpoolDir = "/var/spool/jmxdp"

// Limits of the sink keys. A batch stays below NATS's default
// max_payload (1 MiB) with its largest packet (256 KiB) on top.
const (
	maxReplicas   = 5
	maxBatchBytes = 512 << 10
	maxBatchPkts  = 1 << 16
)

var sinkKeys = []string{"url", "stream", "replicas", "max_bytes", "max_age", "duplicate_window",
	"batch_packets", "batch_bytes", "linger", "max_in_flight", "ack_timeout", "spool_dir", "spool_max",
	"stop_timeout", "creds_file", "nkey_file", "user", "password_file", "tls_ca", "tls_cert", "tls_key"}

// DefaultSink is the sink section's defaults: files.
func DefaultSink() Sink {
	return Sink{
		Stream:          "JMXDP",
		Replicas:        1,
		MaxBytes:        8 << 30,
		MaxAge:          7 * 24 * time.Hour,
		DuplicateWindow: 2 * time.Minute,
		BatchPackets:    256,
		BatchBytes:      64 << 10,
		Linger:          time.Second,
		MaxInFlight:     256,
		AckTimeout:      5 * time.Second,
		SpoolDir:        DefaultSpoolDir,
		SpoolMax:        1 << 30,
		StopTimeout:     10 * time.Second,
	}
}

// NATS says whether packets go to NATS rather than to files.
func (s Sink) NATS() bool { return s.URL != "" }

// checkSinkURL accepts "" (files) or comma-separated nats:// or tls://
// URLs with a host.
func checkSinkURL(s string) error {
	if s == "" {
		return nil
	}
	for _, u := range strings.Split(s, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || (p.Scheme != "nats" && p.Scheme != "tls") || p.Host == "" {
			return fmt.Errorf("%q is not a nats://host:port (or tls://) URL", u)
		}
	}
	return nil
}

func (s *Sink) check(bad func(string, error)) {
	bad("sink.url", checkSinkURL(s.URL))
	if s.Stream == "" || strings.ContainsAny(s.Stream, ".*> \t") {
		bad("sink.stream", fmt.Errorf("%q is not a stream name (no dots, wildcards or spaces)", s.Stream))
	}
	bad("sink.replicas", checkRange(int64(s.Replicas), 1, maxReplicas))
	bad("sink.max_bytes", checkRange(s.MaxBytes, 1<<20, maxInt64))
	bad("sink.max_age", checkDuration(s.MaxAge, time.Second))
	bad("sink.duplicate_window", checkDuration(s.DuplicateWindow, time.Second))
	bad("sink.batch_packets", checkRange(int64(s.BatchPackets), 1, maxBatchPkts))
	bad("sink.batch_bytes", checkRange(s.BatchBytes, 1<<10, maxBatchBytes))
	bad("sink.linger", checkDuration(s.Linger, time.Millisecond))
	bad("sink.max_in_flight", checkRange(int64(s.MaxInFlight), 1, 1<<16))
	bad("sink.ack_timeout", checkDuration(s.AckTimeout, 10*time.Millisecond))
	bad("sink.spool_dir", checkAbsPath(s.SpoolDir))
	bad("sink.spool_max", checkRange(s.SpoolMax, 1<<20, maxInt64))
	bad("sink.stop_timeout", checkDuration(s.StopTimeout, 0))
	if (s.TLSCert == "") != (s.TLSKey == "") {
		bad("sink.tls_cert", errors.New("tls_cert and tls_key go together"))
	}
	if s.PasswordFile != "" && s.User == "" {
		bad("sink.password_file", errors.New("a password needs sink.user"))
	}
}

func (d *decoder) sink(n *yaml.Node, path string, s *Sink) {
	d.fields(n, path, sinkKeys, func(key, path string, v *yaml.Node) {
		str := func(dst *string, check func(string) error) { set(dst)(d.str(v, path, check)) }
		switch key {
		case "url":
			str(&s.URL, checkSinkURL)
		case "stream":
			str(&s.Stream, nil)
		case "replicas":
			setInt(&s.Replicas)(d.integer(v, path, false, func(i int64) error { return checkRange(i, 1, maxReplicas) }))
		case "max_bytes":
			set(&s.MaxBytes)(d.size(v, path, 1<<20))
		case "max_age":
			set(&s.MaxAge)(d.duration(v, path, time.Second))
		case "duplicate_window":
			set(&s.DuplicateWindow)(d.duration(v, path, time.Second))
		case "batch_packets":
			setInt(&s.BatchPackets)(d.integer(v, path, false, func(i int64) error { return checkRange(i, 1, maxBatchPkts) }))
		case "batch_bytes":
			set(&s.BatchBytes)(d.size(v, path, 1<<10))
		case "linger":
			set(&s.Linger)(d.duration(v, path, time.Millisecond))
		case "max_in_flight":
			setInt(&s.MaxInFlight)(d.integer(v, path, false, func(i int64) error { return checkRange(i, 1, 1<<16) }))
		case "ack_timeout":
			set(&s.AckTimeout)(d.duration(v, path, 10*time.Millisecond))
		case "spool_dir":
			str(&s.SpoolDir, checkAbsPath)
		case "spool_max":
			set(&s.SpoolMax)(d.size(v, path, 1<<20))
		case "stop_timeout":
			set(&s.StopTimeout)(d.duration(v, path, 0))
		case "creds_file":
			str(&s.CredsFile, nil)
		case "nkey_file":
			str(&s.NKeyFile, nil)
		case "user":
			str(&s.User, nil)
		case "password_file":
			str(&s.PasswordFile, nil)
		case "tls_ca":
			str(&s.TLSCA, nil)
		case "tls_cert":
			str(&s.TLSCert, nil)
		case "tls_key":
			str(&s.TLSKey, nil)
		}
	})
}

func (s Sink) render(top *mapping) {
	m := newMapping()
	m.add("url", str(s.URL))
	m.add("stream", str(s.Stream))
	m.add("replicas", integer(int64(s.Replicas)))
	m.add("max_bytes", size(s.MaxBytes))
	m.add("max_age", duration(s.MaxAge))
	m.add("duplicate_window", duration(s.DuplicateWindow))
	m.add("batch_packets", integer(int64(s.BatchPackets)))
	m.add("batch_bytes", size(s.BatchBytes))
	m.add("linger", duration(s.Linger))
	m.add("max_in_flight", integer(int64(s.MaxInFlight)))
	m.add("ack_timeout", duration(s.AckTimeout))
	m.add("spool_dir", str(s.SpoolDir))
	m.add("spool_max", size(s.SpoolMax))
	m.add("stop_timeout", duration(s.StopTimeout))
	m.add("creds_file", str(s.CredsFile))
	m.add("nkey_file", str(s.NKeyFile))
	m.add("user", str(s.User))
	m.add("password_file", str(s.PasswordFile))
	m.add("tls_ca", str(s.TLSCA))
	m.add("tls_cert", str(s.TLSCert))
	m.add("tls_key", str(s.TLSKey))
	top.add("sink", m.n)
}
