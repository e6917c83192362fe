package metrics

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestTop(t *testing.T) {
	items := func(ws ...uint64) []ranked[int] {
		var out []ranked[int]
		for i, w := range ws {
			out = append(out, ranked[int]{i, tally{packets: w, bytes: 10 * w}})
		}
		return out
	}
	keys := func(rs []ranked[int]) []int {
		var out []int
		for _, r := range rs {
			out = append(out, r.key)
		}
		return out
	}
	for _, tc := range []struct {
		n       int
		weights []uint64
		want    []int
		rest    uint64
		folded  int
	}{
		{3, []uint64{5, 1, 9, 7, 3}, []int{2, 3, 0}, 4, 2},
		{3, []uint64{5, 1}, []int{0, 1}, 0, 0},
		{0, []uint64{5, 1}, nil, 6, 2},
		{2, nil, nil, 0, 0},
		// Ties go to the smaller key, whatever the order of arrival.
		{2, []uint64{4, 4, 4, 4}, []int{0, 1}, 8, 2},
		{1, []uint64{1, 3, 3}, []int{1}, 4, 2},
	} {
		top := newTop(tc.n, byPackets, cmp.Compare[int])
		in := items(tc.weights...)
		for _, i := range rand.Perm(len(in)) {
			top.add(in[i])
		}
		named, rest, folded := top.result()
		if !slices.Equal(keys(named), tc.want) || rest.packets != tc.rest || rest.bytes != 10*tc.rest || folded != tc.folded {
			t.Errorf("top %d of %v: %v, rest %d, %d folded; want %v, rest %d, %d folded",
				tc.n, tc.weights, keys(named), rest.packets, folded, tc.want, tc.rest, tc.folded)
		}
		if top.count != len(tc.weights) {
			t.Errorf("count %d", top.count)
		}
	}
}

// TestTopMatchesSort: the heap picks what a full sort would.
func TestTopMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		n, m := r.IntN(20), r.IntN(200)
		var all []ranked[int]
		top := newTop(n, byBytes, cmp.Compare[int])
		for i := 0; i < m; i++ {
			it := ranked[int]{i, tally{bytes: uint64(r.IntN(10))}}
			all = append(all, it)
			top.add(it)
		}
		slices.SortFunc(all, func(a, b ranked[int]) int {
			return cmp.Or(cmp.Compare(b.bytes, a.bytes), cmp.Compare(a.key, b.key))
		})
		named, _, _ := top.result()
		if want := all[:min(n, m)]; !slices.Equal(named, want) {
			t.Fatalf("round %d: top %d of %d: %v, want %v", round, n, m, named, want)
		}
	}
}
