package loader

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	benchbpf "github.com/jmxdp/jmxdp/bpf/bench"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Baselines are the programs jmxdp's cost is measured against, from the
// bench wing's own object (bpf/bench/baseline.c): never in the production
// object, never attached.
type Baselines struct {
	objs benchbpf.BaselineObjects
}

// LoadBaselines loads the baselines; maxStreams sizes xdp_count_floor's
// stream table (0: the program's default), as Options.MaxStreams sizes
// jmxdp's.
func LoadBaselines(maxStreams uint32) (*Baselines, error) {
	spec, err := benchbpf.LoadBaseline()
	if err != nil {
		return nil, fmt.Errorf("read the baselines' object: %w", err)
	}
	if maxStreams > 0 {
		spec.Maps["bl_streams"].MaxEntries = maxStreams
	}
	b := &Baselines{}
	if err := spec.LoadAndAssign(&b.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load the baselines (verifier): %+v", verr)
		}
		return nil, fmt.Errorf("load the baselines: %w", err)
	}
	return b, nil
}

// Pass is Benchmark for xdp_pass, the trivial program jmxdp's cost is
// measured against.
func (b *Baselines) Pass(frame []byte, repeat int) (vocab.Verdict, time.Duration, error) {
	return benchmark(b.objs.XdpPass, frame, repeat)
}

// CountFloor is Benchmark for xdp_count_floor: only the stream-table
// lookup, atomic adds and timestamp of counting, on a key made of the
// frame's first bytes, into a table of its own.
func (b *Baselines) CountFloor(frame []byte, repeat int) (vocab.Verdict, time.Duration, error) {
	return benchmark(b.objs.XdpCountFloor, frame, repeat)
}

// TxSwap is Benchmark for xdp_tx_swap: swap the MAC addresses and XDP_TX,
// the least a forwarder costs.
func (b *Baselines) TxSwap(frame []byte, repeat int) (vocab.Verdict, time.Duration, error) {
	return benchmark(b.objs.XdpTxSwap, frame, repeat)
}

// Close releases the programs and the table.
func (b *Baselines) Close() error { return b.objs.Close() }
