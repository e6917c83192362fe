package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cilium/ebpf"
	"github.com/jmxdp/jmxdp/userspace/pins"
)

// migratePins prepares the maps pinned in dir for reuse by spec. A pinned
// map that matches its spec is left for the loader to reuse. One that does
// not (an older jmxdp, or a changed max_streams) is migrated when its
// entries can be read as the new layout (same type and key size, values
// the same size or grown at the end, which is how jmxdp extends a value),
// and otherwise replaced. Either way a warning names the map and what
// changed: counters are never reset silently.
func migratePins(spec *ebpf.CollectionSpec, dir string, log *slog.Logger) error {
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		path := pins.Map(dir, name)
		old, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open pinned map %s: %w", path, err)
		}
		err = migrateMap(ms, old, path, log)
		old.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func migrateMap(ms *ebpf.MapSpec, old *ebpf.Map, path string, log *slog.Logger) error {
	diff := ms.Compatible(old)
	if diff == nil {
		return nil
	}
	if !errors.Is(diff, ebpf.ErrMapIncompatible) {
		return fmt.Errorf("check pinned map %s: %w", path, diff)
	}
	fresh := ms.Copy()
	fresh.Pinning = ebpf.PinNone
	m, err := ebpf.NewMap(fresh)
	if err != nil {
		return fmt.Errorf("create map %s to replace the pinned one: %w", ms.Name, err)
	}
	defer m.Close()

	copied, dropped, why := 0, 0, ""
	if canMigrate(ms, old) {
		copied, dropped, err = copyEntries(old, m, ms)
		if err != nil {
			why = err.Error()
		}
	} else {
		why = "its keys or values cannot be read in the new layout"
	}
	// Swap the pin: bpffs has no atomic replace, and programs that hold the
	// old map (a pinned link) keep it until they are swapped too.
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("unpin incompatible map %s: %w", path, err)
	}
	if err := m.Pin(path); err != nil {
		return fmt.Errorf("pin migrated map %s: %w", path, err)
	}
	if why == "" {
		log.Warn("pinned map from an earlier run has a different layout: migrated its entries",
			"map", ms.Name, "change", diff.Error(), "entries", copied, "dropped", dropped)
		return nil
	}
	log.Warn("pinned map from an earlier run has a different layout and cannot be migrated: replaced, its contents start from zero",
		"map", ms.Name, "change", diff.Error(), "reason", why, "entries_copied_before_failure", copied)
	return nil
}

// canMigrate reports whether old's entries read as ms's: jmxdp only ever
// grows a value by appending fields, which start at zero.
func canMigrate(ms *ebpf.MapSpec, old *ebpf.Map) bool {
	if !sameEntries(old.Type(), ms.Type) || old.KeySize() != ms.KeySize || old.ValueSize() > ms.ValueSize {
		return false
	}
	switch ms.Type {
	case ebpf.Hash, ebpf.LRUHash, ebpf.Array, ebpf.LPMTrie, ebpf.PerCPUArray, ebpf.PerCPUHash, ebpf.LRUCPUHash:
		return true
	}
	// XSKMAP and friends hold file descriptors: nothing to carry over.
	return false
}

// sameEntries reports whether entries of a map of type from read as those
// of one of type to: the same type, or an LRU hash becoming a plain hash
// (jm_streams, issue 17: the table refuses rather than evicts).
func sameEntries(from, to ebpf.MapType) bool {
	return from == to || from == ebpf.LRUHash && to == ebpf.Hash
}

// copyEntries copies old's entries into m, zero-extending values. A smaller
// m keeps what fits: an LRU evicts its oldest, other maps refuse the rest,
// which are counted as dropped.
func copyEntries(old, m *ebpf.Map, ms *ebpf.MapSpec) (copied, dropped int, err error) {
	perCPU := ms.Type == ebpf.PerCPUArray || ms.Type == ebpf.PerCPUHash || ms.Type == ebpf.LRUCPUHash
	key := make([]byte, old.KeySize())
	if !perCPU {
		val := make([]byte, old.ValueSize())
		it := old.Iterate()
		for it.Next(&key, &val) {
			nv := make([]byte, ms.ValueSize)
			copy(nv, val)
			if err := m.Put(key, nv); err != nil {
				dropped++
				continue
			}
			copied++
		}
		return copied, dropped, it.Err()
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return 0, 0, err
	}
	vals := make([][]byte, ncpu)
	for i := range vals {
		vals[i] = make([]byte, old.ValueSize())
	}
	it := old.Iterate()
	for it.Next(&key, &vals) {
		nv := make([][]byte, ncpu)
		for i := range nv {
			nv[i] = make([]byte, ms.ValueSize)
			copy(nv[i], vals[i])
		}
		if err := m.Put(key, nv); err != nil {
			dropped++
			continue
		}
		copied++
	}
	return copied, dropped, it.Err()
}
