package metrics_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// webFiles is a web configuration with a self-signed certificate for
// 127.0.0.1 and one basic-auth user.
type webFiles struct {
	dir, config, ca string
	user, password  string
	pool            *x509.CertPool
}

func pemFile(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newWebFiles(t *testing.T) *webFiles {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "jmxdp test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	w := &webFiles{dir: dir, config: filepath.Join(dir, "web.yml"), ca: filepath.Join(dir, "cert.pem"),
		user: "prometheus", password: "s3cret-scrape"}
	pemFile(t, w.ca, "CERTIFICATE", der)
	pemFile(t, filepath.Join(dir, "key.pem"), "EC PRIVATE KEY", keyDER)
	hash, err := bcrypt.GenerateFromPassword([]byte(w.password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// Relative paths: the toolkit takes them from the file's directory.
	cfg := fmt.Sprintf("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  %s: %s\n", w.user, hash)
	if err := os.WriteFile(w.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	w.pool = x509.NewCertPool()
	w.pool.AddCert(cert)
	return w
}

func newTestServer(t *testing.T, opts ...metrics.ServerOption) *metrics.Server {
	t.Helper()
	reg, err := metrics.NewRegistry(metrics.NewCollector(metrics.Source{Capture: fakeCapture, Writer: fakeWriter}, metrics.Options{Version: "test"}))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := metrics.NewServer("127.0.0.1:0", reg, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// TestServerTLSBasicAuth: with a web config of TLS and basic auth, a
// client without credentials gets 401, with wrong ones 401, with the
// right ones the metrics over TLS; plain HTTP is refused.
func TestServerTLSBasicAuth(t *testing.T) {
	w := newWebFiles(t)
	srv := newTestServer(t, metrics.WithWebConfig(w.config))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.pool}}, Timeout: 10 * time.Second}
	get := func(path, user, pass string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+srv.Addr()+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	for _, c := range []struct{ path, user, pass string }{
		{"/metrics", "", ""}, {"/metrics", w.user, "wrong"}, {"/metrics", "nobody", w.password}, {"/readyz", "", ""},
	} {
		if resp, body := get(c.path, c.user, c.pass); resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "jmxdp_") {
			t.Errorf("%s as %q/%q: %d %q", c.path, c.user, c.pass, resp.StatusCode, body)
		}
	}
	resp, body := get("/metrics", w.user, w.password)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "jmxdp_writer_packets_total 1000") {
		t.Fatalf("/metrics with credentials: %d\n%.300s", resp.StatusCode, body)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("not served over TLS 1.2+: %+v", resp.TLS)
	}
	if r, err := http.Get("http://" + srv.Addr() + "/metrics"); err == nil {
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode == http.StatusOK && strings.Contains(string(b), "jmxdp_") {
			t.Error("plain HTTP served the metrics")
		}
	}
}

// TestServerBadWebConfig: a web config that cannot work is a clear error
// before anything listens.
func TestServerBadWebConfig(t *testing.T) {
	w := newWebFiles(t)
	write := func(name, text string) string {
		p := filepath.Join(w.dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(w.dir, "missing.yml"):                                                     "no such file or directory",
		write("syntax.yml", "tls_server_config: [\n"):                                           "yaml",
		write("unknown.yml", "tls_server_config:\n  certfile: x\n"):                             "field certfile not found",
		write("nocert.yml", "tls_server_config:\n  cert_file: none.pem\n  key_file: key.pem\n"): "none.pem",
		write("badhash.yml", "basic_auth_users:\n  alice: plaintext\n"):                         "hash",
	} {
		if err := metrics.CheckWebConfig(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckWebConfig(%s): %v, want the path and %q", filepath.Base(path), err, want)
		}
		srv, err := metrics.NewServer("127.0.0.1:0", reg, nil, metrics.WithWebConfig(path))
		if err == nil {
			srv.Close()
			t.Errorf("NewServer started with %s", filepath.Base(path))
		}
	}
	if err := metrics.CheckWebConfig(""); err != nil {
		t.Errorf("no web config: %v", err)
	}
	if err := metrics.CheckWebConfig(w.config); err != nil {
		t.Errorf("a good web config: %v", err)
	}
}

// TestPrometheusScrapesTLSBasicAuth: a real Prometheus scrapes the
// endpoint over TLS with basic auth, as a deployment would configure it.
func TestPrometheusScrapesTLSBasicAuth(t *testing.T) {
	bin := testenv.Tool(t, "prometheus")
	w := newWebFiles(t)
	srv := newTestServer(t, metrics.WithWebConfig(w.config))
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(w.password), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: jmxdp
    scheme: https
    tls_config:
      ca_file: %q
    basic_auth:
      username: %q
      password_file: %q
    static_configs:
      - targets: [%q]
`, w.ca, w.user, pwFile, srv.Addr())
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	query := func(q string) (string, bool) {
		resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return "", false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) != 1 {
			return "", false
		}
		v, _ := r.Data.Result[0].Value[1].(string)
		return v, true
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		up, ok1 := query(`up{job="jmxdp"}`)
		packets, ok2 := query(`jmxdp_writer_packets_total{job="jmxdp"}`)
		if ok1 && ok2 && up == "1" && packets == "1000" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus did not scrape over TLS with basic auth: up %q, packets %q", up, packets)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
