package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// NewRegistry returns a registry holding cs and the Go runtime and process
// collectors (go_*, process_*), ready for NewServer.
func NewRegistry(cs ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	all := append([]prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, cs...)
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics collector: %w", err)
		}
	}
	return reg, nil
}

// Server is the HTTP endpoint: /metrics, /healthz and /readyz.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	once sync.Once
	err  error
}

// ServerOption adjusts NewServer.
type ServerOption func(*serverOptions)

type serverOptions struct {
	webConfig string
	log       *slog.Logger
}

// WithWebConfig serves through an exporter-toolkit web configuration file
// (TLS, client certificates, basic auth, HTTP headers; the format every
// Prometheus exporter reads for --web.config.file). "" serves plain HTTP.
// The toolkit reads the file again for every connection and request, so
// a changed password or certificate applies without a restart.
func WithWebConfig(path string) ServerOption {
	return func(o *serverOptions) { o.webConfig = path }
}

// WithLogger receives the toolkit's lines (TLS on or off, failed
// authentication); nil discards them.
func WithLogger(l *slog.Logger) ServerOption {
	return func(o *serverOptions) { o.log = l }
}

// CheckWebConfig reads a web configuration file as NewServer would, with
// its certificates, keys and password hashes: a start with a bad one fails
// before anything else is done. "" is no file, which is fine.
func CheckWebConfig(path string) error {
	if path == "" {
		return nil
	}
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("metrics web config %s: %w", path, err)
	}
	return nil
}

// NewServer listens on addr (host:port; port 0 picks one) and serves, until
// Close, over TLS and behind authentication when WithWebConfig says so:
//
//   - /metrics: the registry's metrics (promhttp; a collector's error is
//     served as far as it goes, not as a failed scrape);
//   - /healthz: 200 while the server runs;
//   - /readyz: 200 when ready returns nil (or ready is nil), else 503 with
//     the error's text.
//
// It fails when it cannot listen, e.g. when the port is taken, and on a
// web configuration that CheckWebConfig refuses.
func NewServer(addr string, reg *prometheus.Registry, ready func() error, opts ...ServerOption) (*Server, error) {
	if reg == nil {
		return nil, errors.New("metrics server: no registry")
	}
	o := serverOptions{}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if err := CheckWebConfig(o.webConfig); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil {
			if err := ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, err.Error())
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "jmxdp: /metrics /healthz /readyz")
	})
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			// TLS handshake failures (scanners, plain HTTP to HTTPS).
			ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelDebug),
		},
		done: make(chan struct{}),
	}
	noSocket := false
	flags := &web.FlagConfig{
		WebListenAddresses: &[]string{ln.Addr().String()},
		WebSystemdSocket:   &noSocket,
		WebConfigFile:      &o.webConfig,
	}
	go func() {
		defer close(s.done)
		if err := web.Serve(ln, s.srv, flags, o.log); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s, nil
}

// Addr is the address the server listens on (with the port it picked).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server: it waits up to 5 seconds for scrapes in
// progress, then closes their connections.
func (s *Server) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, s.srv.Close())
		}
		<-s.done
		s.err = errors.Join(err, s.err)
	})
	return s.err
}

// SetOptions replaces the options that the next scrape uses (a reload of
// the config file). A scrape in progress finishes with the old ones.
func (c *Collector) SetOptions(o Options) {
	c.mu.Lock()
	c.opts = o.withDefaults()
	c.mu.Unlock()
}
