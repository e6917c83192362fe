package natexport

import (
	"os"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/writer"
)

// The state file's two slots: the newest valid one is read back; a slot
// cut short (a torn write) leaves the state before it; a file of the
// first version (the state as JSON) is still read, and upgraded by the
// next write.
func TestStateSlots(t *testing.T) {
	dir := t.TempDir()
	k := writer.Key{MID: 3, SID: 4}
	st, err := loadState(dir, k)
	if err != nil || st != (state{}) {
		t.Fatalf("no file: %+v %v", st, err)
	}
	var gen uint64
	for i := uint64(1); i <= 5; i++ {
		if gen, err = saveState(dir, k, state{Seq: i, gen: gen}); err != nil {
			t.Fatal(err)
		}
		if got, err := loadState(dir, k); err != nil || got.Seq != i || got.gen != gen {
			t.Fatalf("after write %d: %+v %v", i, got, err)
		}
	}
	// Tear the newest slot (gen 5, slot 1): the state before it comes back.
	f, err := os.OpenFile(statePath(dir, k), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("torn"), int64(gen%2)*stateSlot+stateHeader+2)
	f.Close()
	if got, err := loadState(dir, k); err != nil || got.Seq != 4 {
		t.Fatalf("after a torn write: %+v %v, want seq 4", got, err)
	}
	// The first version's file.
	old := writer.Key{MID: 5, SID: 6}
	if err := os.WriteFile(statePath(dir, old), []byte(`{"seq":9,"pending":true,"pending_seq":10,"part":"/x/y.part","size":77,"newest":"n"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(dir, old)
	if err != nil || got.Seq != 9 || !got.Pending || got.PendingSeq != 10 || got.Part != "/x/y.part" || got.Size != 77 || got.Newest != "n" {
		t.Fatalf("first-version file: %+v %v", got, err)
	}
	if _, err := saveState(dir, old, state{Seq: 11, gen: got.gen}); err != nil {
		t.Fatal(err)
	}
	if got, err := loadState(dir, old); err != nil || got.Seq != 11 || got.Pending {
		t.Fatalf("upgraded: %+v %v", got, err)
	}
	// A file with nothing valid in it is an error, not a fresh start.
	bad := writer.Key{MID: 7, SID: 8}
	os.WriteFile(statePath(dir, bad), make([]byte, 2*stateSlot), 0o600)
	if _, err := loadState(dir, bad); err == nil {
		t.Fatal("a file of zeros read as a state")
	}
}
