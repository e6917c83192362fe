package writer

import (
	"testing"
	"time"
)

// A reload's new rotation limits apply from the next Tick: a file opened
// with age rotation off completes once the new RotateAge passes, and a
// new RotateSize rotates the next file by size.
func TestSetRotation(t *testing.T) {
	dir := outDir(t)
	clk := newClock()
	m := newManager(t, Config{Dir: dir, Now: clk.Now}) // no rotation
	a := Key{1, 1}
	ts := clk.Now()
	write(t, m, a, ts, 0, 100)
	clk.Advance(2 * time.Minute)
	m.Tick()
	if n := len(completed(t, dir, a)); n != 0 {
		t.Fatalf("%d completed files before any rotation was set", n)
	}
	if err := m.SetRotation(0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := len(completed(t, dir, a)); n != 0 {
		t.Fatalf("SetRotation applied before Tick: %d completed", n)
	}
	m.Tick() // the open file is 2 min old: past the new limit
	if n := len(completed(t, dir, a)); n != 1 {
		t.Fatalf("after SetRotation(age 1m) and Tick: %d completed files, want 1", n)
	}
	if st := m.Stats(); st.RotationsAge != 1 {
		t.Errorf("RotationsAge %d, want 1", st.RotationsAge)
	}
	// By size now, age off: a file past 1 KiB completes at once.
	if err := m.SetRotation(1024, 0); err != nil {
		t.Fatal(err)
	}
	m.Tick()
	for i := 1; i <= 30; i++ {
		write(t, m, a, ts, i, 100)
	}
	clk.Advance(time.Hour)
	m.Tick()
	st := m.Stats()
	if st.RotationsSize == 0 {
		t.Errorf("no size rotation after SetRotation(1024, 0): %+v", st)
	}
	if st.RotationsAge != 1 {
		t.Errorf("age rotation still on after SetRotation(_, 0): %d", st.RotationsAge)
	}
	if err := m.SetRotation(-1, 0); err == nil {
		t.Error("negative size accepted")
	}
}
