package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/jmxdp/jmxdp/userspace/instance"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The JSON of `jmxdp stats`, one document per sample: docs/cli.md.

// jsonObject is a JSON object whose keys keep their order.
type jsonObject []jsonField

type jsonField struct {
	key string
	val any
}

func (o jsonObject) MarshalJSON() ([]byte, error) {
	if o == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.key)
		v, err := json.Marshal(f.val)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

type statsSettingsJSON struct {
	Ports             []uint16 `json:"ports"`
	DefaultAction     string   `json:"default_action"`
	PolicyRules       int      `json:"policy_rules"`
	AllowlistPrefixes int      `json:"allowlist_prefixes"`
	AllowlistEnabled  bool     `json:"allowlist_enabled"`
}

type innerJSON struct {
	IPv4    uint64 `json:"ipv4"`
	IPv6    uint64 `json:"ipv6"`
	PPP     uint64 `json:"ppp"`
	Unknown uint64 `json:"unknown"`
	Empty   uint64 `json:"empty"`
}

type statsStreamJSON struct {
	Router             string    `json:"router"`
	MID                uint32    `json:"mid"`
	SID                uint32    `json:"sid"`
	Packets            uint64    `json:"packets"`
	Bytes              uint64    `json:"bytes"`
	Inner              innerJSON `json:"inner"`
	LastSeenAgoSeconds float64   `json:"last_seen_ago_seconds"`
	PacketsPerSec      *float64  `json:"packets_per_sec"`
	BitsPerSec         *float64  `json:"bits_per_sec"`
}

type statsUntrustedJSON struct {
	Addr               string   `json:"addr"`
	Packets            uint64   `json:"packets"`
	LastSeenAgoSeconds float64  `json:"last_seen_ago_seconds"`
	PacketsPerSec      *float64 `json:"packets_per_sec"`
}

// statsJSON is one sample in JSON: docs/cli.md describes it.
type statsJSON struct {
	Time            time.Time            `json:"time"`
	Iface           string               `json:"iface"`
	PinDir          string               `json:"pin_dir"`
	Attached        bool                 `json:"attached"`
	Settings        statsSettingsJSON    `json:"settings"`
	IntervalSeconds *float64             `json:"interval_seconds"`
	Totals          jsonObject           `json:"totals"`
	Rates           jsonObject           `json:"rates"`
	StreamsTotal    int                  `json:"streams_total"`
	Streams         []statsStreamJSON    `json:"streams"`
	UntrustedTotal  int                  `json:"untrusted_total"`
	Untrusted       []statsUntrustedJSON `json:"untrusted"`
	CandidatePorts  []statsCandidateJSON `json:"candidate_ports"`
	ForwardRules    []ruleJSON           `json:"forward_rules"`
	ForwardStreams  []statsForwardJSON   `json:"forward_streams"`
}

// statsForwardJSON is one forwarded stream's forward counters; userspace
// counts, by reason, the frames handed to userspace to send.
type statsForwardJSON struct {
	Router    string            `json:"router"`
	MID       uint32            `json:"mid"`
	SID       uint32            `json:"sid"`
	Packets   uint64            `json:"packets"`
	Bytes     uint64            `json:"bytes"`
	Userspace map[string]uint64 `json:"userspace"`
	// Socket: what the daemon's sender did with those, by reason.
	Socket *statsSocketJSON `json:"socket,omitempty"`
}

type statsSocketJSON struct {
	Sent   map[string]uint64 `json:"sent"`
	Bytes  map[string]uint64 `json:"bytes"`
	Failed map[string]uint64 `json:"failed"`
}

func forwardJSON(s *instance.Sample) []statsForwardJSON {
	out := []statsForwardJSON{}
	for k, v := range s.ForwardStreams {
		j := statsForwardJSON{Router: k.Router.String(), MID: k.MID, SID: k.SID, Packets: v.Packets, Bytes: v.Bytes, Userspace: map[string]uint64{}}
		for r, n := range v.Userspace {
			if n > 0 {
				j.Userspace[vocab.FwdReason(r).String()] = n
			}
		}
		if f, ok := s.Socket[k]; ok {
			j.Socket = &statsSocketJSON{Sent: f.Sent, Bytes: f.Bytes, Failed: f.Failed}
		}
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b statsForwardJSON) int {
		return cmp.Or(cmp.Compare(a.MID, b.MID), cmp.Compare(a.SID, b.SID), strings.Compare(a.Router, b.Router))
	})
	return out
}

// statsCandidateJSON is a port not decoded that carried Jmirror-looking
// traffic (port discovery).
type statsCandidateJSON struct {
	Port    uint16 `json:"port"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

func evicted(s *instance.Sample) uint64 {
	n := uint64(len(s.Streams))
	if s.Counters[vocab.StatStreamNew] > n {
		return s.Counters[vocab.StatStreamNew] - n
	}
	return 0
}

func statsDocument(o statsOpts, dir string, s *instance.Sample, r *instance.Rates) statsJSON {
	doc := statsJSON{
		Time: s.At.UTC(), Iface: o.iface, PinDir: dir, Attached: s.Attached,
		Settings: statsSettingsJSON{
			Ports: s.Ports, DefaultAction: s.Settings.DefaultAction.String(), PolicyRules: s.Rules,
			AllowlistPrefixes: s.Allow, AllowlistEnabled: s.Settings.AllowlistEnabled,
		},
		StreamsTotal: len(s.Streams), Streams: []statsStreamJSON{},
		UntrustedTotal: len(s.Untrusted), Untrusted: []statsUntrustedJSON{},
		CandidatePorts: []statsCandidateJSON{},
	}
	for _, c := range s.Candidates {
		doc.CandidatePorts = append(doc.CandidatePorts, statsCandidateJSON{Port: c.Port, Packets: c.Packets, Bytes: c.Bytes})
	}
	if doc.Settings.Ports == nil {
		doc.Settings.Ports = []uint16{}
	}
	for _, e := range statsOrder {
		doc.Totals = append(doc.Totals, jsonField{e.stat.String(), s.Counters[e.stat]})
	}
	doc.Totals = append(doc.Totals,
		jsonField{"streams", len(s.Streams)}, jsonField{"stream_capacity", s.Capacity},
		jsonField{"evicted", s.Evicted()}, jsonField{"untrusted_sources", len(s.Untrusted)})
	if r != nil {
		dt := r.Interval
		doc.IntervalSeconds = &dt
		doc.Rates = jsonObject{}
		for _, e := range statsOrder {
			doc.Rates = append(doc.Rates, jsonField{e.stat.String(), r.Counters[e.stat]})
		}
		doc.Rates = append(doc.Rates, jsonField{"jmirror_bits", r.Counters[vocab.StatJmirrorBytes] * 8})
	}
	for _, st := range s.TopStreams(r, o.top, o.flt) {
		j := statsStreamJSON{
			Router: st.Router.String(), MID: st.MID, SID: st.SID, Packets: st.Packets, Bytes: st.Bytes,
			Inner: innerJSON{st.Inner[vocab.InnerIPv4], st.Inner[vocab.InnerIPv6], st.Inner[vocab.InnerPPP],
				st.Inner[vocab.InnerUnknown], st.Inner[vocab.InnerEmpty]},
			LastSeenAgoSeconds: s.Ago(st.LastSeen).Seconds(),
		}
		if r != nil {
			v := r.Streams[st.StreamKey]
			j.PacketsPerSec, j.BitsPerSec = &v.Packets, &v.Bits
		}
		doc.Streams = append(doc.Streams, j)
	}
	for _, u := range s.TopUntrusted(r, o.top) {
		j := statsUntrustedJSON{Addr: u.Addr.String(), Packets: u.Packets, LastSeenAgoSeconds: s.Ago(u.LastSeen).Seconds()}
		if r != nil {
			v := r.Untrusted[u.Addr]
			j.PacketsPerSec = &v
		}
		doc.Untrusted = append(doc.Untrusted, j)
	}
	doc.ForwardRules = []ruleJSON{}
	for _, r := range s.Forward {
		doc.ForwardRules = append(doc.ForwardRules, toRuleJSON(r))
	}
	doc.ForwardStreams = forwardJSON(s)
	return doc
}
