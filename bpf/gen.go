// Package bpf holds the jmxdp XDP program and the Go bindings bpf2go
// generates for it. Run `make generate` (clang-19) after changing the C.
package bpf

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -type jm_stream_key -type jm_stream_value -type jm_stream_slot -type jm_router_total -type jm_policy_key -type jm_policy_value -type jm_settings -type jm_allow_key -type jm_addr -type jm_frag_key -type jm_frag_value -type jm_frag6_key -type jm_pair_key -type jm_pair6_key -type jm_pair_value -type jm_counters -type jm_untrusted_value -type jm_candidate_value -type jm_fwd_stream_value -type jm_fwd_src_key -type jm_fwd_settings jmxdp jmxdp.c -- -I./include
