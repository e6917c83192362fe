//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The baselines jmxdp is measured against (jmxdp bench, the Go benchmarks):
 * an object of its own, never attached, so that the production object
 * (bpf/jmxdp.c) holds only the production program.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* xdp_count_floor's stream table: jm_streams' type, key and value; the
 * loader sizes it as jmxdp's. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, JM_MAX_STREAMS);
	__type(key, struct jm_stream_key);
	__type(value, struct jm_stream_value);
} bl_streams SEC(".maps");

/* A trivial program, the baseline jmxdp's cost is measured against;
 * frags-aware too, so that it runs on jumbo frames. */
SEC("xdp.frags")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/*
 * The least a per-stream counter can cost (never attached): no parsing, a stream key copied from the
 * frame's first bytes, one stream-table lookup (inserting on a miss), the
 * two atomic adds and the timestamp count_stream makes. jmxdp's counted
 * frame costs this plus parsing, policy and counters.
 */
SEC("xdp")
int xdp_count_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct jm_stream_key key;
	struct jm_stream_value *v, nv = {};
	__u64 now = bpf_ktime_get_coarse_ns();

	if (data + sizeof(key) > data_end)
		return XDP_PASS;
	__builtin_memcpy(&key, data, sizeof(key));
	v = bpf_map_lookup_elem(&bl_streams, &key);
	if (!v) {
		nv.first_seen_ns = now;
		bpf_map_update_elem(&bl_streams, &key, &nv, BPF_NOEXIST);
		return XDP_DROP;
	}
	__sync_fetch_and_add(&v->bytes, data_end - data);
	__sync_fetch_and_add(&v->inner[JM_INNER_IPV4], 1);
	v->last_seen_ns = now;
	return XDP_DROP;
}

/*
 * The least a forwarder can cost, loaded next to jmxdp for the benchmark
 * only (never attached): swap the Ethernet addresses and send the frame
 * back out (XDP_TX), with no parsing, lookup or rewrite. jmxdp's forwarded
 * frame costs this plus parsing, policy, the fib lookup and re-encapsulation.
 */
SEC("xdp")
int xdp_tx_swap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}
