/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The maps of the jmxdp XDP program. Names are what bpffs pins show. */
#ifndef JMXDP_MAPS_H
#define JMXDP_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"

/*
 * Per-stream counters. One shared hash with atomic adds rather than a
 * per-CPU map: 1M streams of 96-byte key+value cost 160 MiB once, where a
 * per-CPU value would cost 72 B x 64 CPUs x 1M = 4.6 GiB on a 64-core host.
 * A plain hash, not an LRU: the LRU evicts without a word, losing the
 * entry's counts; this one refuses a new stream when full, whose counts go
 * to its router's jm_router_overflow total, and userspace retires idle
 * streams into jm_router_retired so that there is room (docs/datapath.md,
 * "Eviction"). Hot streams count into jm_stream_cache first.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, JM_MAX_STREAMS);
	__type(key, struct jm_stream_key);
	__type(value, struct jm_stream_value);
} jm_streams SEC(".maps");

/* The per-CPU direct-mapped cache of hot streams in front of jm_streams
 * (struct jm_stream_slot): a hit is plain adds to this CPU's slot. State:
 * pinned with the table, and readers add the slots to the table. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, JM_STREAM_SLOTS);
	__type(key, __u32);
	__type(value, struct jm_stream_slot);
} jm_stream_cache SEC(".maps");

/* count_stream's values under construction (struct jm_count_scratch), per
 * CPU. Not state: never pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct jm_count_scratch);
} jm_count_scratch SEC(".maps");

/* Counts of streams that found jm_streams full, per router and per CPU.
 * Only ever added to. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, JM_MAX_ROUTERS);
	__type(key, struct jm_addr);
	__type(value, struct jm_router_total);
} jm_router_overflow SEC(".maps");

/* Counts of streams userspace removed from jm_streams (idle), per router:
 * written by userspace only, the program never reads it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, JM_MAX_ROUTERS);
	__type(key, struct jm_addr);
	__type(value, struct jm_router_total);
} jm_router_retired SEC(".maps");

/* Per-stream policy: exact (mid, sid) entries and (mid, any sid) entries. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, JM_MAX_POLICIES);
	__type(key, struct jm_policy_key);
	__type(value, struct jm_policy_value);
} jm_policy SEC(".maps");

/* UDP destination ports, indexed by port: an array lookup is inlined by the
 * verifier, cheaper than a hash on every UDP frame. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, JM_NUM_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} jm_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct jm_settings);
} jm_config SEC(".maps");

/* The policy generation: userspace writes a fresh value after every change
 * to jm_policy or jm_config, which retires every action cached in the
 * stream table (jm_stream_value.policy_cache) at once. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} jm_policy_gen SEC(".maps");

/* Trusted router prefixes; consulted only when jm_config says it is in use. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, JM_MAX_ALLOWLIST);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct jm_allow_key);
	__type(value, __u32);
} jm_allowlist SEC(".maps");

/* First fragments record their stream and action for the later ones. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, JM_MAX_FRAGS);
	__type(key, struct jm_frag_key);
	__type(value, struct jm_frag_value);
} jm_frags SEC(".maps");

/* The same for outer IPv6 fragments (a key of its own: 16-byte addresses
 * and a 32-bit id), so that jm_frags keeps its layout. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, JM_MAX_FRAGS);
	__type(key, struct jm_frag6_key);
	__type(value, struct jm_frag_value);
} jm_frags6 SEC(".maps");

/* Pairs that recently sent fragmented Jmirror: a later fragment that
 * arrives before its first is held (redirected) only when its pair is
 * here and sent only captured datagrams lately, so that other hosts'
 * fragments are never taken from the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, JM_MAX_FRAG_PAIRS);
	__type(key, struct jm_pair_key);
	__type(value, struct jm_pair_value);
} jm_frag_pairs SEC(".maps");

/* The same for outer IPv6 pairs: their early later fragments are held on
 * the same terms (a map of its own, so that jm_frag_pairs keeps its
 * layout). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, JM_MAX_FRAG_PAIRS);
	__type(key, struct jm_pair6_key);
	__type(value, struct jm_pair_value);
} jm_frag_pairs6 SEC(".maps");

/* Sources refused by the allowlist, so operators can see who is sending. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, JM_MAX_UNTRUSTED);
	__type(key, struct jm_addr);
	__type(value, struct jm_untrusted_value);
} jm_untrusted SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct jm_counters);
} jm_stats SEC(".maps");

/* Port discovery: Jmirror-looking traffic per UDP destination port that is
 * not decoded. An array: bounded, and a port is never evicted. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, JM_NUM_PORTS);
	__type(key, __u32);
	__type(value, struct jm_candidate_value);
} jm_candidates SEC(".maps");

/* Scratch space for headers that are not in the linear part (jm_scratch
 * in jmxdp.c): per CPU, so a frame's copy is its own. Not state: never
 * pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct jm_scratch);
} jm_scratch SEC(".maps");

/* The coarse clock as this CPU last read it, and the jiffy it read it in
 * (coarse_now_in in clock.h): per CPU, so that no cache line is written by
 * every CPU. Not state: never pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct jm_clock);
} jm_clock SEC(".maps");

/* AF_XDP sockets, one per RX queue. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, JM_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} jm_xsks SEC(".maps");

/* The forward action (docs/forward.md): per-stream counters, the egress
 * interfaces frames may be redirected to, their source addresses, and the
 * fib lookup's settings. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, JM_MAX_FWD_STREAMS);
	__type(key, struct jm_stream_key);
	__type(value, struct jm_fwd_stream_value);
} jm_fwd_streams SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, JM_MAX_FWD_DEVS);
	__type(key, __u32);
	__type(value, __u32);
} jm_fwd_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, JM_MAX_FWD_SRC);
	__type(key, struct jm_fwd_src_key);
	__type(value, struct jm_addr);
} jm_fwd_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct jm_fwd_settings);
} jm_fwd_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct jm_fwd_scratch);
} jm_fwd_scratch SEC(".maps");

#endif /* JMXDP_MAPS_H */
