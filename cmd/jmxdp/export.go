package main

import (
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/natexport"
	"github.com/jmxdp/jmxdp/userspace/natsink"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

func newExportCmd() *cobra.Command {
	var (
		urls, out, durable, stream, rotateSize, creds, nkey, user, pwFile, ca, cert, key string
		filters                                                                          []string
		rotateAge, idleExit, ackWait                                                     time.Duration
		packetComments                                                                   bool
		metricsAddr                                                                      string
	)
	cmd := &cobra.Command{
		Use:   "export --nats URLS --out DIR [--durable NAME] [--filter MID[.SID] ...] [--idle-exit D]",
		Short: "Write the streams a NATS JetStream stream holds to per-stream pcapng files",
		Long: `export is a durable JetStream consumer of the stream jmxdp run --sink fills: it
writes the per-stream pcapng files run would write (same layout, rotation,
.part then rename, modes), acks a message only once its packets are in the
file, and across a kill and restart writes no packet twice and loses none
(a per-stream state file under DIR/.jmxdp-export). --filter takes MID, MID.SID
or a subject; exporters with disjoint filters (their own --durable and --out)
share the load. See docs/scale-out.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := config.ParseSize(rotateSize)
			if err != nil {
				return err
			}
			var subjects []string
			for _, f := range filters {
				s, err := natexport.FilterSubject(f)
				if err != nil {
					return err
				}
				subjects = append(subjects, s)
			}
			e, err := natexport.New(natexport.Config{
				URLs:    urls,
				Auth:    natsink.Auth{CredsFile: creds, NKeyFile: nkey, User: user, PasswordFile: pwFile, CAFile: ca, CertFile: cert, KeyFile: key},
				Stream:  stream,
				Durable: durable,
				Filters: subjects,
				Writer: writer.Config{Dir: out, RotateSize: size, RotateAge: rotateAge, PacketComments: packetComments,
					MaxOpen: writer.DefaultMaxOpen()},
				IdleExit: idleExit,
				AckWait:  ackWait,
				Logger:   slog.Default(),
			})
			if err != nil {
				return err
			}
			if metricsAddr != "" {
				reg, err := metrics.NewRegistry(natexport.NewCollector(e))
				if err != nil {
					return err
				}
				srv, err := metrics.NewServer(metricsAddr, reg, func() error { return nil }, metrics.WithLogger(slog.Default()))
				if err != nil {
					return fmt.Errorf("export: metrics endpoint: %w", err)
				}
				defer srv.Close()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return e.Run(ctx)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&urls, "nats", "", "NATS servers: nats://H:P[,nats://H:P...]")
	fl.StringVarP(&out, "out", "o", "", "output directory for the pcapng files")
	fl.StringVar(&durable, "durable", natexport.DefaultDurable, "durable consumer name")
	fl.StringVar(&stream, "stream", natsink.DefaultStream, "JetStream stream")
	fl.StringSliceVar(&filters, "filter", nil, "only these streams: MID, MID.SID or a jmxdp.* subject (repeatable)")
	fl.DurationVar(&idleExit, "idle-exit", 0, "exit 0 once nothing new has arrived for this long (0: run until signalled)")
	fl.DurationVar(&ackWait, "ack-wait", 30*time.Second, "a message not acked by then is redelivered")
	fl.StringVar(&rotateSize, "rotate-size", "256MiB", "start a new file once one reaches this size (0: never)")
	fl.DurationVar(&rotateAge, "rotate-age", 15*time.Minute, "start a new file once one is this old (0: never)")
	fl.BoolVar(&packetComments, "packet-comments", false, "a router= comment on every packet")
	fl.StringVar(&metricsAddr, "metrics-addr", "", `host:port for /metrics: jmxdp_export_*, the lag included ("": none)`)
	fl.StringVar(&creds, "creds", "", "NATS credentials file")
	fl.StringVar(&nkey, "nkey", "", "NKey seed file")
	fl.StringVar(&user, "user", "", "user name")
	fl.StringVar(&pwFile, "password-file", "", "file holding the user's password")
	fl.StringVar(&ca, "tls-ca", "", "CA certificates for the servers")
	fl.StringVar(&cert, "tls-cert", "", "client certificate (with --tls-key)")
	fl.StringVar(&key, "tls-key", "", "client certificate key")
	cmd.MarkFlagRequired("nats")
	cmd.MarkFlagRequired("out")
	return cmd
}
