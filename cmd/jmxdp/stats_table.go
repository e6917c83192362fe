package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jmxdp/jmxdp/userspace/instance"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The table of `jmxdp stats`, and with --watch its rates.

// pps formats a packet rate.
func pps(v float64) string { return fmt.Sprintf("%.1f/s", v) }

// bps formats a bit rate with an SI prefix.
func bps(v float64) string {
	for _, u := range []struct {
		div  float64
		unit string
	}{{1e9, "Gbit/s"}, {1e6, "Mbit/s"}, {1e3, "kbit/s"}} {
		if v >= u.div {
			return fmt.Sprintf("%.2f %s", v/u.div, u.unit)
		}
	}
	return fmt.Sprintf("%.0f bit/s", v)
}

func agoString(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms ago", d.Milliseconds())
	case d < time.Hour:
		return fmt.Sprintf("%.1fs ago", d.Seconds())
	}
	return d.Truncate(time.Second).String() + " ago"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func writeStatsTable(w io.Writer, o statsOpts, dir string, s *instance.Sample, r *instance.Rates) {
	state := "attached"
	if !s.Attached {
		state = "not attached: counters are frozen"
	}
	fmt.Fprintf(w, "jmxdp on %s: maps pinned in %s (%s)\n", o.iface, dir, state)
	allow := "off (any source)"
	if s.Settings.AllowlistEnabled {
		allow = plural(s.Allow, "prefix", "prefixes")
	}
	ports := make([]string, len(s.Ports))
	for i, p := range s.Ports {
		ports[i] = fmt.Sprint(p)
	}
	fmt.Fprintf(w, "ports %s; default action %s; %s; allowlist %s\n",
		strings.Join(ports, ","), s.Settings.DefaultAction, plural(s.Rules, "policy rule", "policy rules"), allow)
	if r != nil {
		fmt.Fprintf(w, "sampled %s; rates over the last %.2fs\n", s.At.Format(time.DateTime), r.Interval)
	} else {
		fmt.Fprintf(w, "sampled %s\n", s.At.Format(time.DateTime))
	}

	fmt.Fprintln(w)
	head := []string{"COUNTER", "TOTAL"}
	if r != nil {
		head = append(head, "RATE")
	}
	rows := [][]string{head}
	for _, e := range statsOrder {
		name := e.stat.String()
		if e.indent {
			name = "  " + name
		}
		row := []string{name, fmt.Sprint(s.Counters[e.stat])}
		if r != nil {
			rate := pps(r.Counters[e.stat])
			if e.stat == vocab.StatJmirrorBytes {
				rate = bps(r.Counters[e.stat] * 8)
			}
			row = append(row, rate)
		}
		rows = append(rows, row)
	}
	writeAligned(w, rows, "lrr")
	fmt.Fprintf(w, "streams: %d in a table of %d (%d evicted)\n", len(s.Streams), s.Capacity, s.Evicted())

	top := s.TopStreams(r, o.top, o.flt)
	by := "bytes"
	if r != nil {
		by = "bit rate"
	}
	if o.flt != nil {
		fmt.Fprintf(w, "\nSTREAMS: %d of %d matching %s, by %s\n", len(top), len(s.MatchingStreams(o.flt)), o.flt, by)
	} else {
		fmt.Fprintf(w, "\nSTREAMS: %d of %d, by %s\n", len(top), len(s.Streams), by)
	}
	head = []string{"ROUTER", "MID", "SID", "PACKETS", "BYTES"}
	align := "lrrrr"
	if r != nil {
		head, align = append(head, "PKT/S", "BIT/S"), align+"rr"
	}
	rows = [][]string{append(head, "INNER", "LAST SEEN")}
	align += "lr"
	for _, st := range top {
		var kinds []string
		for k, n := range st.Inner {
			if n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s:%d", vocab.Inner(k), n))
			}
		}
		row := []string{st.Router.String(), fmt.Sprintf("%d (0x%x)", st.MID, st.MID), fmt.Sprintf("%d (0x%x)", st.SID, st.SID),
			fmt.Sprint(st.Packets), fmt.Sprint(st.Bytes)}
		if r != nil {
			v := r.Streams[st.StreamKey]
			row = append(row, pps(v.Packets), bps(v.Bits))
		}
		rows = append(rows, append(row, strings.Join(kinds, " "), agoString(s.Ago(st.LastSeen))))
	}
	writeAligned(w, rows, align)

	if len(s.Forward) > 0 {
		fmt.Fprintf(w, "\nFORWARD: %s\n", plural(len(s.Forward), "rule", "rules"))
		for _, r := range s.Forward {
			fmt.Fprintf(w, "  %s\n", describeRule(toRuleJSON(r)))
		}
		rows := [][]string{{"ROUTER", "MID", "SID", "FORWARDED", "BYTES", "TO USERSPACE", "SOCKET SENT", "SOCKET FAILED"}}
		for _, f := range forwardJSON(s) {
			var sent, failed map[string]uint64
			if f.Socket != nil {
				sent, failed = f.Socket.Sent, f.Socket.Failed
			}
			rows = append(rows, []string{f.Router, fmt.Sprint(f.MID), fmt.Sprint(f.SID), fmt.Sprint(f.Packets), fmt.Sprint(f.Bytes),
				reasonList(f.Userspace), reasonList(sent), reasonList(failed)})
		}
		writeAligned(w, rows, "lrrrrlll")
	}

	if len(s.Untrusted) > 0 {
		ut := s.TopUntrusted(r, o.top)
		fmt.Fprintf(w, "\nUNTRUSTED SOURCES (dropped: not in the allowlist): %d of %d\n", len(ut), len(s.Untrusted))
		head, align = []string{"ADDRESS", "PACKETS"}, "lr"
		if r != nil {
			head, align = append(head, "PKT/S"), align+"r"
		}
		rows = [][]string{append(head, "LAST SEEN")}
		align += "r"
		for _, u := range ut {
			row := []string{u.Addr.String(), fmt.Sprint(u.Packets)}
			if r != nil {
				row = append(row, pps(r.Untrusted[u.Addr]))
			}
			rows = append(rows, append(row, agoString(s.Ago(u.LastSeen))))
		}
		writeAligned(w, rows, align)
	}
	if len(s.Candidates) > 0 {
		fmt.Fprintf(w, "\nCANDIDATE PORTS: Jmirror-looking traffic to ports not decoded (passed to the host; add them to ports:)\n")
		rows = [][]string{{"PORT", "PACKETS", "BYTES"}}
		for _, c := range s.Candidates {
			rows = append(rows, []string{fmt.Sprint(c.Port), fmt.Sprint(c.Packets), fmt.Sprint(c.Bytes)})
		}
		writeAligned(w, rows, "rrr")
	}
}

// writeAligned prints rows as columns two spaces apart, each left ('l')
// or right ('r') aligned as align says.
func writeAligned(w io.Writer, rows [][]string, align string) {
	width := make([]int, len(align))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len(c))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len(c))
			if align[i] == 'r' {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// reasonList renders counts by reason as "reason:n ...", sorted.
func reasonList(m map[string]uint64) string {
	var out []string
	for r, n := range m {
		out = append(out, fmt.Sprintf("%s:%d", r, n))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}
