package natsink

import (
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

// BenchmarkSinkCPU is the CPU a packet costs the process (every goroutine:
// the publisher and the NATS client included, the servers not) in the
// file sink and in the NATS sink, on the same packets: 64 streams of
// 200-byte packets, with the sink's Tick every 1000 packets.
//
//	go test -run '^$' -bench SinkCPU -benchtime 200000x ./userspace/natsink
func BenchmarkSinkCPU(b *testing.B) {
	pkts := make([][]byte, 64)
	streams := make([]writer.Key, 64)
	for i := range pkts {
		streams[i] = writer.Key{MID: 1, SID: uint32(i)}
		pkts[i] = packet(streams[i], 160)
	}
	run := func(b *testing.B, sink capture.Sink, done func()) {
		start := cpuNow()
		b.ResetTimer()
		for i := range b.N {
			j := i % len(streams)
			sink.WriteAt(streams[j], uint64(time.Now().UnixNano()), routerA, pcapng.LinkRawIP, pkts[j])
			if i%1000 == 0 {
				sink.SetClock(time.Now())
				sink.Tick()
			}
		}
		done()
		b.StopTimer()
		b.ReportMetric(float64(cpuNow()-start)/float64(b.N), "cpu-ns/pkt")
	}
	b.Run("file", func(b *testing.B) {
		m, err := writer.New(writer.Config{Dir: filepath.Join(b.TempDir(), "out")})
		if err != nil {
			b.Fatal(err)
		}
		run(b, m, func() { m.Close() })
	})
	for _, nodes := range []int{1, 3} {
		b.Run(map[int]string{1: "nats-1node", 3: "nats-3node-R3"}[nodes], func(b *testing.B) {
			c := natstest.Start(b, nodes)
			s, err := New(Config{URLs: c.URLs(), SpoolDir: filepath.Join(b.TempDir(), "spool"), Replicas: nodes, MaxBytes: 1 << 30}, 1)
			if err != nil {
				b.Fatal(err)
			}
			run(b, s.Shards()[0], func() { s.Close() })
			st := s.Stats()
			if st.PacketsAcked != uint64(b.N) {
				b.Fatalf("%d of %d packets stored (%+v)", st.PacketsAcked, b.N, st)
			}
		})
	}
}
