package maps

import (
	"fmt"

	"github.com/jmxdp/jmxdp/bpf"
)

// Capacities are the embedded program's maps' sizes (max_entries) by map
// name, as the object declares them; the loader may size the stream table
// otherwise (Maps.StreamCapacity says what it did).
func Capacities() (map[string]uint32, error) {
	spec, err := bpf.LoadSpec()
	if err != nil {
		return nil, fmt.Errorf("read the embedded BPF object: %w", err)
	}
	out := make(map[string]uint32, len(spec.Maps))
	for name, ms := range spec.Maps {
		out[name] = ms.MaxEntries
	}
	return out, nil
}
