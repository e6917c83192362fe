package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/user"
	"strconv"
	"strings"
)

// Who may see intercept ids and captured data: output.group,
// metrics.hide_ids and metrics.web_config.

// checkGroupSyntax refuses what cannot name a group; whether the group
// exists is GID's question.
func checkGroupSyntax(s string) error {
	switch {
	case s == "":
		return nil // none
	case strings.ContainsAny(s, ": \t\n\r"):
		return fmt.Errorf("%q is not a group name or number", s)
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return checkGID(n)
	} else if s[0] >= '0' && s[0] <= '9' && strings.Trim(s, "0123456789") == "" {
		return fmt.Errorf("group %s is out of range", s)
	}
	return nil
}

func checkGID(n uint64) error {
	switch {
	case n == 0:
		return errors.New("group 0 (root) already owns the files: leave output.group out for root-only files")
	case n >= 1<<32-1:
		return fmt.Errorf("group %d is out of range", n)
	}
	return nil
}

// GID resolves output.group: 0 when unset, else the group's number. A
// number is taken as it is (a container may know no names); a name must
// exist in the system's group database.
func (o Output) GID() (uint32, error) {
	if o.Group == "" {
		return 0, nil
	}
	if err := checkGroupSyntax(o.Group); err != nil {
		return 0, &Error{Key: "output.group", Msg: err.Error()}
	}
	if n, err := strconv.ParseUint(o.Group, 10, 32); err == nil {
		return uint32(n), nil
	}
	g, err := user.LookupGroup(o.Group)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return 0, &Error{Key: "output.group", Msg: fmt.Sprintf("unknown group %q (not in the system's group database; a number is taken as it is)", o.Group)}
		}
		return 0, &Error{Key: "output.group", Msg: fmt.Sprintf("look up group %q: %v", o.Group, err)}
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	if err == nil {
		err = checkGID(n)
	}
	if err != nil {
		return 0, &Error{Key: "output.group", Msg: fmt.Sprintf("group %q: %v", o.Group, err)}
	}
	return uint32(n), nil
}

// IsLoopback reports whether a metrics address listens on loopback only:
// a loopback IP or "localhost". Every other host, "" (every address)
// included, is reachable from elsewhere, or may be.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// HideIDsChoice is what ChooseHideIDs decided, and why: the daemon logs
// it once at start.
type HideIDsChoice struct {
	Hide bool
	// Exposed: the endpoint is reachable beyond loopback without a web
	// config, so anyone who reaches it reads what it serves.
	Exposed bool
	// Warn: hide_ids: false was set although the endpoint is exposed.
	Warn bool
	Why  string
}

// ChooseHideIDs decides metrics.hide_ids: the file's value when it sets
// one; otherwise on exactly when the endpoint is exposed (addr not
// loopback and no web_config). An endpoint that is off exposes nothing.
func (m Metrics) ChooseHideIDs() HideIDsChoice {
	exposed := m.Addr != "" && !IsLoopback(m.Addr) && m.WebConfig == ""
	c := HideIDsChoice{Exposed: exposed}
	switch {
	case m.HideIDsSet && m.HideIDs:
		c.Hide, c.Why = true, "metrics.hide_ids: true in the configuration"
	case m.HideIDsSet && exposed:
		c.Warn = true
		c.Why = fmt.Sprintf("metrics.hide_ids: false in the configuration: mid and sid labels are served without TLS or authentication on %s, to anyone who reaches it; set metrics.web_config or bind to 127.0.0.1", m.Addr)
	case m.HideIDsSet:
		c.Why = "metrics.hide_ids: false in the configuration"
	case exposed:
		c.Hide = true
		c.Why = fmt.Sprintf("metrics.addr %s is not loopback and there is no metrics.web_config: ids hidden (set metrics.web_config, or hide_ids: false to show them anyway)", m.Addr)
	case m.Addr == "":
		c.Why = "the metrics endpoint is off"
	case m.WebConfig != "":
		c.Why = "the metrics endpoint uses metrics.web_config"
	default:
		c.Why = fmt.Sprintf("metrics.addr %s is loopback", m.Addr)
	}
	return c
}
