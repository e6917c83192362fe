package natsink

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/capture"
	"github.com/jmxdp/jmxdp/userspace/natstest"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRate paces BenchmarkSinkCPU's packets (packets a second) as the
// capture section's traffic is paced: the batches a linger closes are
// then as small as on the wire, which an unpaced loop would hide.
const benchRate = 200_000

// BenchmarkSinkCPU is the CPU a packet costs the process (every goroutine:
// the publisher and the NATS client included, the servers not) in the
// file sink and in the NATS sink, on the same packets: 200-byte packets
// spread over 64, 3000 or 100k streams, paced at benchRate, with the sink's
// SetClock every 1000 packets (5 ms) and Tick every 100 ms, as the
// capture calls them.
//
// The figures are per packet written to the sink; %stored says how many
// the stream has at the end.
//
//	go test -run '^$' -bench SinkCPU -benchtime 1000000x ./userspace/natsink
func BenchmarkSinkCPU(b *testing.B) {
	for _, n := range []int{64, 3000, 100_000} {
		pkts := make([][]byte, n)
		streams := make([]writer.Key, n)
		for i := range pkts {
			streams[i] = writer.Key{MID: 1, SID: uint32(i)}
			pkts[i] = packet(streams[i], 160)
		}
		run := func(b *testing.B, sink capture.Sink, done func()) {
			start, t0 := cpuNow(), time.Now()
			b.ResetTimer()
			for i := range b.N {
				if i%1000 == 0 {
					if d := time.Until(t0.Add(time.Duration(i) * time.Second / benchRate)); d > 0 {
						time.Sleep(d)
					}
					sink.SetClock(time.Now())
				}
				if i%(benchRate/10) == 0 {
					sink.Tick() // every 100 ms, as the capture does
				}
				j := i % len(streams)
				sink.WriteAt(streams[j], uint64(time.Now().UnixNano()), routerA, pcapng.LinkRawIP, pkts[j])
			}
			done()
			b.StopTimer()
			b.ReportMetric(float64(cpuNow()-start)/float64(b.N), "cpu-ns/pkt")
		}
		b.Run(fmt.Sprintf("streams=%d/file", n), func(b *testing.B) {
			m, err := writer.New(writer.Config{Dir: filepath.Join(b.TempDir(), "out")})
			if err != nil {
				b.Fatal(err)
			}
			run(b, m, func() { m.Close() })
		})
		for _, nodes := range []int{1, 3} {
			b.Run(fmt.Sprintf("streams=%d/%s", n, map[int]string{1: "nats-1node", 3: "nats-3node-R3"}[nodes]), func(b *testing.B) {
				c := natstest.Start(b, nodes)
				s, err := New(Config{URLs: c.URLs(), SpoolDir: filepath.Join(b.TempDir(), "spool"), Replicas: nodes, MaxBytes: 1 << 30}, 1)
				if err != nil {
					b.Fatal(err)
				}
				run(b, s.Shards()[0], func() { s.Close() })
				st := s.Stats()
				// Up to 3000 streams the sink must store everything; at
				// 100k (a packet or two a message, more messages than the
				// servers take beside this process) it spools, and what is
				// left at the stop timeout is reported, not a failure.
				if st.PacketsAcked != uint64(b.N) && n <= 3000 {
					b.Fatalf("%d of %d packets stored (%+v)", st.PacketsAcked, b.N, st)
				}
				b.ReportMetric(float64(st.PacketsAcked)/float64(b.N)*100, "%stored")
				b.ReportMetric(float64(st.Published)/float64(b.N)*1000, "msgs/kpkt")
				b.ReportMetric(float64(st.Spooled)/float64(st.Published)*100, "%spooled")
				b.ReportMetric(float64(st.Overflows), "overflows")
			})
		}
	}
}
