// Package bench holds the BPF objects of the bench wing, never attached in
// production: the baselines jmxdp's cost is measured against (baseline.c:
// xdp_pass, xdp_tx_swap, xdp_count_floor) and the per-stream counter
// variants of issue 17 (countbench.c). Run `make generate` (clang-19) after
// changing the C.
package bench

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel Baseline baseline.c -- -I../include

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -type jm_stream_key -type cb_value -type cb_slot -type cb_total Countbench countbench.c -- -I../include
