//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Variants of the per-stream counter (issue 17), for the benchmark and its
 * tests only: a BPF object of its own, never attached, so that jmxdp's
 * production object carries none of its maps. Each program is the count
 * floor (no parsing: a stream key copied from the frame's first bytes, one
 * datagram of the frame's length counted into its stream) with one way of
 * counting, so that the ways can be measured side by side in one run
 * (loader.CountBench, userspace/bench's counter_variants rows):
 *
 *   cb_lru_atomic_coarse  jmxdp's counter before issue 17: shared LRU hash, atomic adds,
 *                         bpf_ktime_get_coarse_ns on every frame
 *   cb_lru_atomic_ktime   the same with bpf_ktime_get_ns
 *   cb_lru_atomic_lazy    the same, last-seen written once per
 *                         CB_SEEN_EVERY packets of the stream
 *   cb_lru_atomic_jiffies the same, the coarse clock read only when
 *                         jiffies (inlined by the verifier) moved on
 *   cb_lru_percpu_lazy    LRU_PERCPU_HASH: plain adds to this CPU's value
 *   cb_hash_percpu_fold   PERCPU_HASH (no LRU): a stream that finds the
 *                         table full is folded into its router's total
 *   cb_cache_fold         a per-CPU direct-mapped cache of streams in front
 *                         of cb_hash_percpu_fold's table: a hit is an
 *                         inlined array lookup and plain adds; the slot's
 *                         previous stream is flushed into the table (or
 *                         its router's total) when another takes it;
 *                         the sketch jmxdp's production cache grew from
 *                         (bpf/jmxdp.c count_stream: plus a seq, the
 *                         policy word, a shared table), not a copy of it
 *
 * The LRU variants lose the counts of an entry the kernel evicts (it says
 * nothing when it does); the two fold variants lose nothing: every packet
 * is in the table, a cache slot or a router total (cb_router_total, and
 * cb_lost when even that is full).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "clock.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Last-seen of the lazy variants: written when a stream's packet count
 * (before this packet) is a multiple of CB_SEEN_EVERY, so at most
 * CB_SEEN_EVERY - 1 packets stale. A power of two. */
#define CB_SEEN_EVERY 64
#define CB_SEEN_MASK (CB_SEEN_EVERY - 1)
/* Default sizes; the loader overrides them (loader.CountBenchOptions). */
#define CB_MAX_STREAMS 4096
#define CB_CACHE_SLOTS 1024
#define CB_MAX_ROUTERS 1024
/* Multiplicative hash of the key's words for the cache index. */
#define CB_HASH_MUL 0x9e3779b1U

/* The shared value: jm_stream_value's counters, trimmed to the floor. */
struct cb_value {
	__u64 packets;
	__u64 bytes;
	__u64 first_seen_ns;
	__u64 last_seen_ns;
};

/* One stream held in a cache slot: its key and what it counted since it
 * took the slot (not yet in the table). valid is 0 for an empty slot. */
struct cb_slot {
	struct jm_stream_key key;
	__u32 valid;
	__u32 pad;
	__u64 packets;
	__u64 bytes;
	__u64 first_seen_ns;
	__u64 last_seen_ns;
};

struct cb_total {
	__u64 packets;
	__u64 bytes;
};

/* Index mask of cb_cache (slots - 1), set by the loader. */
volatile const __u32 cb_cache_mask = CB_CACHE_SLOTS - 1;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CB_MAX_STREAMS);
	__type(key, struct jm_stream_key);
	__type(value, struct cb_value);
} cb_lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, CB_MAX_STREAMS);
	__type(key, struct jm_stream_key);
	__type(value, struct cb_value);
} cb_lru_percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, CB_MAX_STREAMS);
	__type(key, struct jm_stream_key);
	__type(value, struct cb_value);
} cb_percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CB_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct cb_slot);
} cb_cache SEC(".maps");

/* Counts of streams that found cb_percpu full, per router. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, CB_MAX_ROUTERS);
	__type(key, struct jm_addr);
	__type(value, struct cb_total);
} cb_router_total SEC(".maps");

/* What found cb_router_total full too: an array, never full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cb_total);
} cb_lost SEC(".maps");

static __always_inline int frame_key(struct xdp_md *ctx,
				     struct jm_stream_key *key, __u64 *len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + sizeof(*key) > data_end)
		return -1;
	__builtin_memcpy(key, data, sizeof(*key));
	*len = data_end - data;
	return 0;
}

/* The coarse clock once per jiffy per CPU, as jmxdp reads it (clock.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct jm_clock);
} cb_clock SEC(".maps");

static __always_inline __u64 coarse_now(void)
{
	return coarse_now_in(&cb_clock);
}

/* Clocks of count_lru_atomic. */
#define CB_CLOCK_COARSE 0
#define CB_CLOCK_KTIME 1
#define CB_CLOCK_JIFFIES 2

static __always_inline __u64 clock_now(int clock)
{
	if (clock == CB_CLOCK_KTIME)
		return bpf_ktime_get_ns();
	if (clock == CB_CLOCK_JIFFIES)
		return coarse_now();
	return bpf_ktime_get_coarse_ns();
}

/* Atomic adds into the shared LRU; now is called for last-seen only when
 * lazy says so (0: every packet). */
static __always_inline int count_lru_atomic(struct xdp_md *ctx, int clock,
					    int lazy)
{
	struct jm_stream_key key;
	struct cb_value *v, nv = {};
	__u64 len, old, now;

	if (frame_key(ctx, &key, &len) < 0)
		return XDP_PASS;
	v = bpf_map_lookup_elem(&cb_lru, &key);
	if (!v) {
		now = clock_now(clock);
		nv.packets = 1;
		nv.bytes = len;
		nv.first_seen_ns = now;
		nv.last_seen_ns = now;
		if (bpf_map_update_elem(&cb_lru, &key, &nv, BPF_NOEXIST) == 0)
			return XDP_DROP;
		v = bpf_map_lookup_elem(&cb_lru, &key);
		if (!v)
			return XDP_DROP;
	}
	__sync_fetch_and_add(&v->bytes, len);
	if (lazy) {
		old = __sync_fetch_and_add(&v->packets, 1);
		if ((old & CB_SEEN_MASK) == 0)
			v->last_seen_ns = bpf_ktime_get_coarse_ns();
		return XDP_DROP;
	}
	__sync_fetch_and_add(&v->packets, 1);
	v->last_seen_ns = clock_now(clock);
	return XDP_DROP;
}

SEC("xdp")
int cb_lru_atomic_coarse(struct xdp_md *ctx)
{
	return count_lru_atomic(ctx, CB_CLOCK_COARSE, 0);
}

SEC("xdp")
int cb_lru_atomic_ktime(struct xdp_md *ctx)
{
	return count_lru_atomic(ctx, CB_CLOCK_KTIME, 0);
}

SEC("xdp")
int cb_lru_atomic_jiffies(struct xdp_md *ctx)
{
	return count_lru_atomic(ctx, CB_CLOCK_JIFFIES, 0);
}

SEC("xdp")
int cb_lru_atomic_lazy(struct xdp_md *ctx)
{
	return count_lru_atomic(ctx, CB_CLOCK_COARSE, 1);
}

/* Plain adds into this CPU's value of a per-CPU map; last-seen lazy. The
 * packet count is per CPU, so last-seen is written once per CB_SEEN_EVERY
 * of the stream's packets on this CPU. */
static __always_inline void add_percpu(struct cb_value *v, __u64 packets,
				       __u64 bytes, __u64 last)
{
	if ((v->packets & CB_SEEN_MASK) == 0 || packets > 1)
		v->last_seen_ns = last ? last : bpf_ktime_get_coarse_ns();
	v->packets += packets;
	v->bytes += bytes;
}

/* Fold a stream's counts into its router's total, never lost. */
static __always_inline void fold_router(const struct jm_stream_key *key,
					__u64 packets, __u64 bytes)
{
	struct cb_total *t, nt = {};
	struct jm_addr r;
	__u32 zero = 0;

	__builtin_memcpy(r.addr, key->router, JM_ADDR_LEN);
	t = bpf_map_lookup_elem(&cb_router_total, &r);
	if (!t) {
		nt.packets = packets;
		nt.bytes = bytes;
		/* PERCPU_HASH insert: this CPU's value is nt, the others 0. */
		if (bpf_map_update_elem(&cb_router_total, &r, &nt,
					BPF_NOEXIST) == 0)
			return;
		t = bpf_map_lookup_elem(&cb_router_total, &r);
		if (!t)
			t = bpf_map_lookup_elem(&cb_lost, &zero);
		if (!t)
			return; /* cannot happen: an array of 1 */
	}
	t->packets += packets;
	t->bytes += bytes;
}

/* Count into cb_percpu (or the router's total when it is full). */
static __always_inline void count_percpu(const struct jm_stream_key *key,
					 __u64 packets, __u64 bytes,
					 __u64 first, __u64 last)
{
	struct cb_value *v, nv = {};

	v = bpf_map_lookup_elem(&cb_percpu, key);
	if (v) {
		add_percpu(v, packets, bytes, last);
		return;
	}
	nv.packets = packets;
	nv.bytes = bytes;
	nv.first_seen_ns = first ? first : bpf_ktime_get_coarse_ns();
	nv.last_seen_ns = last ? last : nv.first_seen_ns;
	if (bpf_map_update_elem(&cb_percpu, key, &nv, BPF_NOEXIST) == 0)
		return;
	/* Inserted by another CPU meanwhile (this CPU's value is 0), or
	 * the table is full. */
	v = bpf_map_lookup_elem(&cb_percpu, key);
	if (v) {
		add_percpu(v, packets, bytes, nv.last_seen_ns);
		return;
	}
	fold_router(key, packets, bytes);
}

SEC("xdp")
int cb_lru_percpu_lazy(struct xdp_md *ctx)
{
	struct jm_stream_key key;
	struct cb_value *v, nv = {};
	__u64 len;

	if (frame_key(ctx, &key, &len) < 0)
		return XDP_PASS;
	v = bpf_map_lookup_elem(&cb_lru_percpu, &key);
	if (v) {
		add_percpu(v, 1, len, 0);
		return XDP_DROP;
	}
	nv.packets = 1;
	nv.bytes = len;
	nv.first_seen_ns = bpf_ktime_get_coarse_ns();
	nv.last_seen_ns = nv.first_seen_ns;
	if (bpf_map_update_elem(&cb_lru_percpu, &key, &nv, BPF_NOEXIST) == 0)
		return XDP_DROP;
	v = bpf_map_lookup_elem(&cb_lru_percpu, &key);
	if (v)
		add_percpu(v, 1, len, nv.last_seen_ns);
	return XDP_DROP;
}

SEC("xdp")
int cb_hash_percpu_fold(struct xdp_md *ctx)
{
	struct jm_stream_key key;
	__u64 len;

	if (frame_key(ctx, &key, &len) < 0)
		return XDP_PASS;
	count_percpu(&key, 1, len, 0, 0);
	return XDP_DROP;
}

static __always_inline __u32 key_hash(const struct jm_stream_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 h = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*k) / sizeof(__u32)); i++)
		h = (h ^ w[i]) * CB_HASH_MUL;
	return h ^ (h >> 16);
}

static __always_inline int key_eq(const struct jm_stream_key *a,
				  const struct jm_stream_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2];
}

SEC("xdp")
int cb_cache_fold(struct xdp_md *ctx)
{
	struct jm_stream_key key;
	struct cb_slot *s;
	__u32 idx;
	__u64 len;

	if (frame_key(ctx, &key, &len) < 0)
		return XDP_PASS;
	idx = key_hash(&key) & cb_cache_mask;
	s = bpf_map_lookup_elem(&cb_cache, &idx);
	if (!s)
		return XDP_PASS; /* cannot happen: idx is masked */
	if (s->valid && key_eq(&s->key, &key)) {
		if ((s->packets & CB_SEEN_MASK) == 0)
			s->last_seen_ns = bpf_ktime_get_coarse_ns();
		s->packets++;
		s->bytes += len;
		return XDP_DROP;
	}
	/* Another stream's slot, or empty: flush what it holds, then take
	 * it. The flush and the take run on this CPU with its slot, so no
	 * other program sees the slot half-written. */
	if (s->valid && s->packets)
		count_percpu(&s->key, s->packets, s->bytes, s->first_seen_ns,
			     s->last_seen_ns);
	__builtin_memcpy(&s->key, &key, sizeof(key));
	s->valid = 1;
	s->packets = 1;
	s->bytes = len;
	s->first_seen_ns = bpf_ktime_get_coarse_ns();
	s->last_seen_ns = s->first_seen_ns;
	return XDP_DROP;
}

/* Anchor the types in BTF for bpf2go. */
const struct cb_value cb_value_unused __attribute__((unused));
const struct cb_slot cb_slot_unused __attribute__((unused));
const struct cb_total cb_total_unused __attribute__((unused));
