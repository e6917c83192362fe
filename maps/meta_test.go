package maps_test

import (
	"testing"
	"unsafe"

	"github.com/jmxdp/jmxdp/maps"
)

// TestReadXskMeta reads back what a struct jm_xsk_meta's bytes hold, and
// refuses bytes of the wrong length or without the program's magic.
func TestReadXskMeta(t *testing.T) {
	b := make([]byte, maps.XskMetaLen)
	if _, ok := maps.ReadXskMeta(b); ok {
		t.Error("zeroed bytes (no magic) read as metadata")
	}
	want := maps.XskMeta{RxNs: 1, Mid: 2, Sid: 3, InnerLen: 4, InnerOff: 5, L3Off: 6, InnerKind: 7, Flags: maps.MetaHeld, Magic: maps.MetaMagic}
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&want)), maps.XskMetaLen))
	if got, ok := maps.ReadXskMeta(b); !ok || got != want {
		t.Errorf("ReadXskMeta = %+v, %v; want %+v", got, ok, want)
	}
	if _, ok := maps.ReadXskMeta(b[1:]); ok {
		t.Errorf("%d bytes read as metadata", len(b)-1)
	}
	if _, ok := maps.ReadXskMeta(append(b, 0)); ok {
		t.Errorf("%d bytes read as metadata", len(b)+1)
	}
}
