//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * jmxdp's fast traffic generator, in the manner of xdp-trafficgen: userspace
 * hands a template Jmirror frame to BPF_PROG_TEST_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES and a large repeat count; the kernel runs
 * jmxdp_xmit on a copy of it per repeat, and the program stamps the copy
 * with the next (mid, sid) of an N x M cycle and redirects it out of an
 * interface. No socket, no per-frame system call, no copy from userspace.
 *
 * Self-contained on purpose: it shares no header with jmxdp.c, so changes
 * to the datapath never change the generator.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The Jmirror header: V (2 bits) | intercept id (30 bits), session id. */
#define XMIT_MID_MASK 0x3fffffffU
/* Routers tag with 802.1Q, or 802.1ad + 802.1Q (QinQ): at most two tags. */
#define XMIT_MAX_VLAN_DEPTH 2
#define XMIT_IPV4_MIN_IHL 5
#define XMIT_IP_VERSION_4 4
#define XMIT_IP_VERSION_6 6

/*
 * Set by userspace before loading (rodata), so the per-frame path reads
 * constants the verifier can see, not a map.
 */
const volatile __u32 ifindex_out = 0;  /* the interface frames leave by */
const volatile __u32 base_mid = 0;     /* first intercept id */
const volatile __u32 base_sid = 0;     /* first session id */
const volatile __u32 intercepts = 1;   /* N: intercept ids base_mid.. */
const volatile __u32 sessions = 1;     /* M: session ids base_sid.. */
/* Session ids of CPU c start at base_sid + c * cpu_sid_stride: 0, every
 * CPU sends the same streams; M, each its own (as RSS keeps a flow on one
 * queue). */
const volatile __u32 cpu_sid_stride = 0;
/*
 * restore: each frame's first XMIT_RESTORE_LEN bytes are written back from
 * restore_hdr (the template's) before it is stamped. Live frames reuse
 * their pages, and the kernel resets only a frame's pointers, not its
 * bytes: a receiver that rewrites frames in place (jmxdp's forward action)
 * would otherwise be sent its own output again.
 */
#define XMIT_RESTORE_LEN 64
const volatile __u32 restore = 0;
/* 64-bit words, read one by one as volatile: a memcpy from a zero-initialised
 * const would be folded into zeros. */
const volatile __u64 restore_hdr[XMIT_RESTORE_LEN / 8] = {};

/*
 * Per-CPU state: BPF_PROG_TEST_RUN runs a call's frames on one CPU at a
 * time, so a per-CPU counter needs no atomics. Frame k handled on a CPU
 * gets stream k mod (N*M): intercept index (k mod N*M) / M, session index
 * (k mod N*M) mod M. Userspace derives the exact per-stream counts from
 * each CPU's sent count.
 */
struct xmit_state {
	__u64 sent;    /* frames stamped and handed to the redirect */
	__u64 bad;     /* frames with no Jmirror header where expected: dropped */
	__u32 mid_idx; /* the next frame's intercept index, < N */
	__u32 sid_idx; /* the next frame's session index, < M */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xmit_state);
} xmit_stats SEC(".maps");

struct vlan_hdr {
	__be16 h_vlan_TCI;
	__be16 h_vlan_encapsulated_proto;
};

struct jmirror_hdr {
	__be32 word0; /* V | intercept id */
	__be32 sid;
};

static __always_inline int proto_is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) ||
	       proto == bpf_htons(ETH_P_8021AD);
}

/*
 * The Jmirror header of a UDP datagram over IPv4 or IPv6 under up to two
 * VLAN tags, or NULL. Userspace only accepts templates this finds, so the
 * NULL path is a safety net, not a filter.
 */
static __always_inline struct jmirror_hdr *find_jmirror(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *pos = (void *)(long)ctx->data;
	struct ethhdr *eth = pos;
	struct jmirror_hdr *jh;
	__be16 proto;
	__u8 l4;
	int i;

	if ((void *)(eth + 1) > data_end)
		return NULL;
	proto = eth->h_proto;
	pos = eth + 1;
#pragma unroll
	for (i = 0; i < XMIT_MAX_VLAN_DEPTH; i++) {
		struct vlan_hdr *vlh = pos;

		if (!proto_is_vlan(proto))
			break;
		if ((void *)(vlh + 1) > data_end)
			return NULL;
		proto = vlh->h_vlan_encapsulated_proto;
		pos = vlh + 1;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = pos;

		if ((void *)(iph + 1) > data_end ||
		    iph->version != XMIT_IP_VERSION_4 ||
		    iph->ihl < XMIT_IPV4_MIN_IHL)
			return NULL;
		l4 = iph->protocol;
		/* IHL counts 32-bit words. */
		pos += iph->ihl * sizeof(__u32);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = pos;

		if ((void *)(ip6h + 1) > data_end ||
		    ip6h->version != XMIT_IP_VERSION_6)
			return NULL;
		l4 = ip6h->nexthdr;
		pos = ip6h + 1;
	} else {
		return NULL;
	}
	if (l4 != IPPROTO_UDP)
		return NULL;
	jh = pos + sizeof(struct udphdr);
	if ((void *)(jh + 1) > data_end)
		return NULL;
	return jh;
}

SEC("xdp")
int jmxdp_xmit(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct xmit_state *st = bpf_map_lookup_elem(&xmit_stats, &zero);
	struct jmirror_hdr *jh;
	__u32 mid;

	if (!st)
		return XDP_ABORTED;
	if (restore) {
		void *data = (void *)(long)ctx->data;

		if (data + XMIT_RESTORE_LEN > (void *)(long)ctx->data_end) {
			st->bad++;
			return XDP_DROP;
		}
#pragma unroll
		for (int i = 0; i < XMIT_RESTORE_LEN / 8; i++)
			((__u64 *)data)[i] = restore_hdr[i];
	}
	jh = find_jmirror(ctx);
	if (!jh) {
		st->bad++;
		return XDP_DROP;
	}
	/*
	 * Templates carry a zero outer UDP checksum (optional over IPv4, what
	 * routers send), so rewriting the ids needs no checksum update. The
	 * template's V bits are kept.
	 */
	mid = (base_mid + st->mid_idx) & XMIT_MID_MASK;
	jh->word0 = (jh->word0 & bpf_htonl(~XMIT_MID_MASK)) | bpf_htonl(mid);
	jh->sid = bpf_htonl(base_sid + st->sid_idx +
			    bpf_get_smp_processor_id() * cpu_sid_stride);

	/* Sessions vary fastest: N*M consecutive frames are N*M streams. */
	if (++st->sid_idx >= sessions) {
		st->sid_idx = 0;
		if (++st->mid_idx >= intercepts)
			st->mid_idx = 0;
	}
	st->sent++;
	/*
	 * In live-frames mode the test runner turns XDP_REDIRECT into a real
	 * transmit through the target's ndo_xdp_xmit (XDP_TX would do the same
	 * out of the ingress device); redirecting by ifindex needs no devmap.
	 */
	return bpf_redirect(ifindex_out, 0);
}

/*
 * The receiver baseline: the least an XDP program can do with a frame. The
 * driver counts its drops (veth: ethtool's rx_queue_N_xdp_drops), so it
 * counts nothing itself and costs exactly a program call.
 */
SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}
