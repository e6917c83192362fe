package config

import (
	"strings"
	"testing"
	"time"
)

// The sink section as an operator writes it: NATS with a few keys set, the
// rest at their defaults.
func TestSinkKeys(t *testing.T) {
	c, err := Parse([]byte("interface: eth0\nsink:\n  url: nats://10.0.0.1:4222,nats://10.0.0.2:4222\n  replicas: 3\n  linger: 20ms\n  spool_max: 2GiB\n  user: jmxdp\n  password_file: /etc/jmxdp/nats.pw\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s := c.Sink
	if !s.NATS() || s.URL != "nats://10.0.0.1:4222,nats://10.0.0.2:4222" || s.Replicas != 3 || s.Linger != 20*time.Millisecond ||
		s.SpoolMax != 2<<30 || s.User != "jmxdp" || s.BatchPackets != 256 || s.Stream != "JMXDP" {
		t.Fatalf("sink %+v", s)
	}
	if Default().Sink.NATS() {
		t.Fatal("the default sink is not files")
	}
}

// Bad sink values are refused with the key named.
func TestSinkRefusals(t *testing.T) {
	for _, tc := range []struct{ in, key, want string }{
		{"url: http://x:1", "sink.url", "not a nats://"},
		{"url: nats://", "sink.url", "not a nats://"},
		{"replicas: 7", "sink.replicas", "above"},
		{"batch_bytes: 1MiB", "sink.batch_bytes", "above"},
		{"spool_dir: spool", "sink.spool_dir", "absolute"},
		{"linger: 0s", "sink.linger", "positive"},
		{"tls_cert: /c.pem", "sink.tls_cert", "tls_key"},
		{"password_file: /pw", "sink.password_file", "sink.user"},
		{"stream: a.b", "sink.stream", "stream name"},
		{"bogus: 1", "sink.bogus", "unknown key"},
	} {
		c, err := Parse([]byte("interface: eth0\nsink:\n  "+tc.in+"\n"), "t.yaml")
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s and %q", tc.in, err, tc.key, tc.want)
		}
	}
}
