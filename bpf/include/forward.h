/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The forward action (issue 16, docs/forward.md): a frame of a forwarded
 * stream loses its outer headers, whatever their shape (Ethernet, VLAN
 * tags, IPv4 options, IPv6 extension headers), and leaves with fresh
 * Ethernet + IP (the target's family) + UDP headers addressed to the
 * rule's target. What follows the UDP header (the Jmirror header and the
 * mirrored packet) or, in a later fragment, the fragment's payload, is
 * left byte for byte as it came. A frame the program cannot send goes to
 * userspace over AF_XDP, counted by reason, never dropped silently.
 */
#ifndef JMXDP_FORWARD_H
#define JMXDP_FORWARD_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parsing_helpers.h"
#include "stats.h"

/* Which part of a datagram a frame is. */
enum jm_fwd_part {
	JM_FWD_WHOLE = 0,
	JM_FWD_FIRST = 1, /* first fragment: carries the UDP header */
	JM_FWD_LATER = 2, /* later fragment: payload only */
};

/* What the parse learnt that the rewrite needs. Offsets from ctx->data. */
struct jm_fwd_req {
	struct jm_stream_key key;
	__u32 payload_off; /* the bytes kept: the UDP header, or a later fragment's payload */
	__u32 payload_len; /* a whole datagram: the UDP length; a fragment: set from ip_end */
	__u32 ip_end;      /* end of the outer IP packet */
	__u32 l3_off;
	__u32 inner_len;   /* for userspace's metadata */
	__u32 inner_off;
	__u32 ip6_frag_id; /* outer IPv6 fragment header, read by forward_frame */
	__u16 ip6_off_flags; /* host order */
	__u8 ip6_frag_next;
	__u8 outer_v4;
	__u8 part;         /* enum jm_fwd_part */
	__u8 inner_kind;
	__u8 early;        /* fragments of the datagram are held in userspace */
};

/* Actions a policy value may hold; anything else is treated as pass. */
/* Written so that the verifier follows one range, [capture, forward], past
 * it: "a <= pass || a == forward" made two disjoint ones, [capture, pass]
 * and forward, and every state after it doubled (jmxdp then passed the
 * verifier's 1M-instruction limit). The internal actions in between are
 * pass, as any value past forward. */
static __always_inline __u32 jm_action_sane(__u32 a)
{
	if (a > JM_ACTION_FORWARD || a == JM_ACTION_UNTRUSTED ||
	    a == JM_ACTION_NOT_JMIRROR)
		return JM_ACTION_PASS;
	return a;
}

/* The stream's forward counters, created on first use. */
static __always_inline struct jm_fwd_stream_value *
fwd_stream(const struct jm_stream_key *key)
{
	struct jm_fwd_stream_value *v;
	struct jm_fwd_scratch *scratch;
	__u32 zero = 0;

	v = bpf_map_lookup_elem(&jm_fwd_streams, key);
	if (v)
		return v;
	/* The zeroed value comes from the scratch, not the stack. */
	scratch = bpf_map_lookup_elem(&jm_fwd_scratch, &zero);
	if (!scratch)
		return NULL;
	__builtin_memset(scratch->zero, 0, sizeof(scratch->zero));
	bpf_map_update_elem(&jm_fwd_streams, key, scratch->zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&jm_fwd_streams, key);
}

/*
 * Hand the frame, untouched, to the AF_XDP socket of its queue with the
 * metadata capture gives it and JM_META_FORWARD: userspace sends its UDP
 * payload to the target from a socket (the kernel routes, resolves the
 * neighbour and fragments). With no socket on the queue it falls back to
 * XDP_PASS, counted capture_failed. A global function, verified once
 * rather than at each of forward_frame's exits. reason is an enum
 * jm_fwd_reason; its global counter is the jm_stat in the same place.
 */
_Static_assert(JM_STAT_FWD_NEIGH_MISS - 1 + JM_FWD_REASON_UNSUPPORTED ==
		       JM_STAT_FWD_UNSUPPORTED,
	       "enum jm_fwd_reason and the JM_STAT_FWD_* counters line up");

__noinline int fwd_user(struct xdp_md *ctx, struct jm_counters *c,
			struct jm_fwd_req *r, __u32 reason)
{
	struct jm_fwd_stream_value *v;
	struct jm_xsk_meta *meta;
	__u32 stat;
	int ret;

	if (!r)
		return XDP_PASS;
	if (reason == JM_FWD_REASON_NONE || reason >= JM_FWD_REASON_MAX)
		reason = JM_FWD_REASON_UNSUPPORTED;
	v = fwd_stream(&r->key);
	/* The reasons before FRAG_EARLY line up with the JM_STAT_FWD_*
	 * counters; FRAG_EARLY's was appended after JM_STAT_FWD_USERSPACE. */
	stat = JM_STAT_FWD_NEIGH_MISS - 1 + reason;
	if (reason == JM_FWD_REASON_FRAG_EARLY)
		stat = JM_STAT_FWD_FRAG_EARLY;
	/* Keep clang from folding the bounds checks (stat_add's, the one
	 * below) into what it knows of reason: the verifier needs them on
	 * the index registers. */
	asm volatile("" : "+r"(stat), "+r"(reason));
	stat_add(c, stat, 1);
	stat_add(c, JM_STAT_FWD_USERSPACE, 1);
	if (v && reason < JM_FWD_REASON_MAX)
		__sync_fetch_and_add(&v->reason[reason], 1);
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*meta)) == 0) {
		meta = (void *)(long)ctx->data_meta;
		if ((void *)(meta + 1) <= (void *)(long)ctx->data) {
			meta->rx_ns = bpf_ktime_get_ns();
			meta->mid = r->key.mid;
			meta->sid = r->key.sid;
			meta->inner_len = r->inner_len;
			meta->inner_off = r->inner_off;
			meta->l3_off = r->l3_off;
			meta->inner_kind = r->inner_kind;
			meta->flags = JM_META_FORWARD |
				      (r->outer_v4 ? 0 : JM_META_OUTER_V6) |
				      (r->part == JM_FWD_FIRST ? JM_META_FIRST_FRAG : 0) |
				      (r->part == JM_FWD_LATER ? JM_META_LATER_FRAG : 0);
			meta->reserved = reason;
			meta->magic = JM_META_MAGIC;
		}
	}
	ret = bpf_redirect_map(&jm_xsks, ctx->rx_queue_index, XDP_PASS);
	if (ret != XDP_REDIRECT)
		stat_add(c, JM_STAT_CAPTURE_FAILED, 1);
	return ret;
}

#define fwd_to_user(ctx, c, r, reason, stat) \
	fwd_user((ctx), (c), (r), (reason))

/* The forward target of (mid, sid): the exact rule, else the mid's. */
static __always_inline int fwd_target(__u32 mid, __u32 sid,
				      struct jm_policy_value *out)
{
	struct jm_policy_key pk = { .mid = mid, .sid = sid,
				    .scope = JM_SCOPE_EXACT };
	struct jm_policy_value *pv;

	pv = bpf_map_lookup_elem(&jm_policy, &pk);
	if (!pv || pv->action != JM_ACTION_FORWARD) {
		pk.sid = 0;
		pk.scope = JM_SCOPE_MID;
		pv = bpf_map_lookup_elem(&jm_policy, &pk);
	}
	if (!pv || pv->action != JM_ACTION_FORWARD)
		return -1;
	*out = *pv;
	return 0;
}

static __always_inline __u32 fwd_fib_ifindex(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct jm_fwd_settings *s = bpf_map_lookup_elem(&jm_fwd_cfg, &zero);

	if (s && s->fib_ifindex)
		return s->fib_ifindex;
	return ctx->ingress_ifindex;
}

static __always_inline __u16 csum_fold32(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

static __always_inline __u16 ipv4_csum(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u64 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < JM_IPV4_NOOPT_LEN / 2; i++)
		sum += w[i];
	return ~csum_fold32(sum);
}

/*
 * The ones'-complement sum (32-bit, unfolded) of len bytes at offset off
 * of the frame, its fragments included, added to seed: copied
 * JM_FWD_CSUM_CHUNK bytes at a time into a per-CPU scratch buffer
 * (bpf_xdp_load_bytes), the last piece padded with zeros to a multiple of
 * 4 for bpf_csum_diff. A constant trip count. A global function, verified
 * once on its own. Returns 0 and sets *out, or -1.
 */
__noinline int fwd_csum(struct xdp_md *ctx, __u32 off, __u32 len, __u32 seed,
			__u32 *out)
{
	__u32 zero = 0, pos = 0, n, n4;
	struct jm_fwd_scratch *buf = bpf_map_lookup_elem(&jm_fwd_scratch, &zero);
	int i;

	if (!buf || !out)
		return -1;
	for (i = 0; i < JM_FWD_CSUM_CHUNKS; i++) {
		if (pos >= len)
			break;
		n = len - pos;
		if (n > JM_FWD_CSUM_CHUNK)
			n = JM_FWD_CSUM_CHUNK;
		/* 1..JM_FWD_CSUM_CHUNK, in a form the verifier sees. */
		n = ((n - 1) & (JM_FWD_CSUM_CHUNK - 1)) + 1;
		if (bpf_xdp_load_bytes(ctx, off + pos, buf->b, n))
			return -1;
		/* Zero the pad: a 1-3 byte tail sums as if followed by 0s. */
		buf->b[n & JM_FWD_CSUM_CHUNK_MASK] = 0;
		buf->b[(n + 1) & JM_FWD_CSUM_CHUNK_MASK] = 0;
		buf->b[(n + 2) & JM_FWD_CSUM_CHUNK_MASK] = 0;
		n4 = ((n + 3) & ~3U) & JM_FWD_CSUM_CHUNK_MASK;
		seed = bpf_csum_diff(NULL, 0, (void *)buf->b, n4, seed);
		pos += n;
	}
	if (pos < len)
		return -1;
	*out = seed;
	return 0;
}

/* The IPv6 pseudo-header (RFC 8200 8.1). */
struct jm_ip6_pseudo {
	__u8 saddr[JM_ADDR_LEN];
	__u8 daddr[JM_ADDR_LEN];
	__be32 len;
	__be32 next;
};

/* The addresses and ports a rewritten IPv6 first fragment's checksum
 * covers, for the incremental update (its data lies in later fragments). */
struct jm_csum_fields {
	__u8 saddr[JM_ADDR_LEN];
	__u8 daddr[JM_ADDR_LEN];
	__be16 sport;
	__be16 dport;
};

/* forward_frame's working state, in the per-CPU scratch (jm_fwd_scratch). */
struct jm_fwd_work {
	struct bpf_fib_lookup fib;
	struct jm_csum_fields oldf;
	struct jm_csum_fields newf;
	struct jm_ip6_pseudo ph;
	struct jm_policy_value t;
	struct jm_addr src;
};

_Static_assert(sizeof(struct jm_fwd_work) <= JM_FWD_WORK_LEN,
	       "jm_fwd_work outgrew jm_fwd_scratch.work");

static __always_inline void fwd_count_sent(struct jm_counters *c,
					   const struct jm_fwd_req *r)
{
	struct jm_fwd_stream_value *v = fwd_stream(&r->key);

	stat_add(c, JM_STAT_FWD_SENT, 1);
	if (v) {
		__sync_fetch_and_add(&v->packets, 1);
		__sync_fetch_and_add(&v->bytes, r->payload_len);
	}
}

/*
 * bpf_fib_lookup, or its answer of earlier in the same jiffy on this CPU
 * for the same target, port and lookup interface, when the frame is no
 * longer than the one looked up (so the MTU check holds too). A route or
 * neighbour change is seen a jiffy late at most, as the stack's own
 * caches see theirs. Only a success is kept.
 */
static __always_inline int fwd_fib(struct xdp_md *ctx,
				   struct jm_fwd_fib_cache *fc,
				   struct bpf_fib_lookup *fib, __be16 port)
{
	__u64 j = bpf_jiffies64();
	int ret;

	/* ipv4_dst shares its first word with ipv6_dst, and the rest of an
	 * IPv4 lookup's is zero (forward_frame zeroes the parameters). */
	if (fc->jiffies == j && fc->family == fib->family &&
	    fc->fib_ifindex == fib->ifindex && fc->port == port &&
	    fib->tot_len <= fc->tot_len &&
	    fc->dst[0] == fib->ipv6_dst[0] && fc->dst[1] == fib->ipv6_dst[1] &&
	    fc->dst[2] == fib->ipv6_dst[2] && fc->dst[3] == fib->ipv6_dst[3]) {
		__builtin_memcpy(fib->dmac, fc->dmac, ETH_ALEN);
		__builtin_memcpy(fib->smac, fc->smac, ETH_ALEN);
		fib->ifindex = fc->egress;
		return BPF_FIB_LKUP_RET_SUCCESS;
	}
	fc->jiffies = 0;
	fc->fib_ifindex = fib->ifindex;
	fc->tot_len = fib->tot_len;
	fc->dst[0] = fib->ipv6_dst[0];
	fc->dst[1] = fib->ipv6_dst[1];
	fc->dst[2] = fib->ipv6_dst[2];
	fc->dst[3] = fib->ipv6_dst[3];
	ret = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (ret != BPF_FIB_LKUP_RET_SUCCESS)
		return ret;
	fc->egress = fib->ifindex;
	fc->port = port;
	fc->family = fib->family;
	__builtin_memcpy(fc->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(fc->smac, fib->smac, ETH_ALEN);
	fc->jiffies = j;
	return ret;
}

/*
 * Forward one frame of a forwarded stream (docs/forward.md). Nothing in the
 * frame changes until every check has passed: a frame that goes to
 * userspace goes as it came. A global BPF function: the verifier checks
 * it once, on its own, rather than again on every path of jmxdp() that
 * reaches one of its three calls, and its stack (the fib lookup's
 * parameters, the checksum fields) is its own frame. Its pointer arguments
 * may be NULL as far as the verifier knows.
 */
__noinline int forward_frame(struct xdp_md *ctx, struct jm_counters *c,
			     struct jm_fwd_req *r)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct jm_fwd_src_key sk;
	struct jm_addr *srcp;
	struct jm_fwd_scratch *scratch;
	struct jm_fwd_work *w;
	__u32 zero = 0;
	struct ethhdr *eth;
	struct udphdr *udph;
	__be16 v4_id = 0, v4_frag = 0, port = 0, old_check = 0;
	__u32 egress, hdr_len, ip_len, want, cur;
	__u32 part;
	int to_v6, delta, ret;

	if (!r)
		return XDP_PASS;
	scratch = bpf_map_lookup_elem(&jm_fwd_scratch, &zero);
	if (!scratch)
		return XDP_PASS;
	w = (struct jm_fwd_work *)scratch->work;
	__builtin_memset(w, 0, sizeof(*w));
	part = r->part;
	if (part != JM_FWD_WHOLE)
		r->payload_len = r->ip_end > r->payload_off ?
				 r->ip_end - r->payload_off : 0;
	stat_add(c, JM_STAT_ACTION_FORWARD, 1);
	if (fwd_target(r->key.mid, r->key.sid, &w->t) < 0) {
		/* The rule went between the lookup and now: pass. */
		stat_add(c, JM_STAT_ACTION_PASS, 1);
		return XDP_PASS;
	}
	/* A fragment came before its first and waits in userspace
	 * (JM_ACTION_FORWARD_USER): the datagram is whole only there. */
	if (r->early)
		return fwd_to_user(ctx, c, r, JM_FWD_REASON_FRAG_EARLY,
				   JM_STAT_FWD_FRAG_EARLY);
	to_v6 = w->t.fwd_family == JM_FWD_FAMILY_V6;
	if (part != JM_FWD_WHOLE && to_v6 == r->outer_v4)
		return fwd_to_user(ctx, c, r, JM_FWD_REASON_FRAG_FAMILY,
				   JM_STAT_FWD_FRAG_FAMILY);
	if ((__u64)r->payload_off + r->payload_len > bpf_xdp_get_buff_len(ctx) ||
	    r->payload_off > JM_PULL_LEN)
		return fwd_to_user(ctx, c, r, JM_FWD_REASON_UNSUPPORTED,
				   JM_STAT_FWD_UNSUPPORTED);
	/* Headers parsed from the scratch copy (not linear, and not
	 * pullable: docs/datapath.md, "Frame sizes"): the rewrite moves the
	 * linear part's start, which cannot pass its end, and reads the old
	 * headers there. Unless the kept bytes' first (up to a UDP header's
	 * worth) lie in it, the frame goes to userspace as it came. */
	if ((__u64)r->payload_off +
		    (r->payload_len < JM_UDP_HDR_LEN ? r->payload_len : JM_UDP_HDR_LEN) >
	    (__u64)(data_end - data))
		return fwd_to_user(ctx, c, r, JM_FWD_REASON_UNSUPPORTED,
				   JM_STAT_FWD_UNSUPPORTED);

	/* What the rewrite keeps from the old headers, read before they go. */
	if (r->outer_v4) {
		struct iphdr *iph = data + (r->l3_off & JM_FWD_OFF_MASK);

		if ((void *)(iph + 1) > data_end)
			return XDP_PASS;
		v4_id = iph->id;
		v4_frag = iph->frag_off;
	} else if (part != JM_FWD_WHOLE) {
		struct ipv6hdr *ip6h = data + (r->l3_off & JM_FWD_OFF_MASK);
		__u8 *fh = data + ((r->payload_off - JM_IPV6_FRAG_HDR_LEN) & JM_FWD_OFF_MASK);

		if ((void *)(ip6h + 1) > data_end ||
		    (void *)(fh + JM_IPV6_FRAG_HDR_LEN) > data_end)
			return XDP_PASS;
		/* The kept bytes must follow the fragment header at once (a
		 * later fragment's walk ends there; a first fragment's UDP
		 * header must too): the rewrite keeps one fragment header. */
		r->ip6_frag_next = fh[0];
		r->ip6_off_flags = (fh[2] << 8) | fh[3];
		__builtin_memcpy(&r->ip6_frag_id, fh + 4, 4);
		if (part == JM_FWD_FIRST &&
		    (fh[0] != IPPROTO_UDP || fh[1] != 0 ||
		     (r->ip6_off_flags & ~JM_IP6_MF) != 0))
			return fwd_to_user(ctx, c, r, JM_FWD_REASON_UNSUPPORTED,
					   JM_STAT_FWD_UNSUPPORTED);
		__builtin_memcpy(w->oldf.saddr, &ip6h->saddr, JM_ADDR_LEN);
		__builtin_memcpy(w->oldf.daddr, &ip6h->daddr, JM_ADDR_LEN);
	}
	if (part != JM_FWD_LATER) {
		udph = data + (r->payload_off & JM_FWD_OFF_MASK);
		if ((void *)(udph + 1) > data_end)
			return XDP_PASS;
		w->oldf.sport = udph->source;
		w->oldf.dport = udph->dest;
		old_check = udph->check;
		port = w->t.fwd_port ? bpf_htons(w->t.fwd_port) : udph->dest;
	} else if (w->t.fwd_port) {
		port = bpf_htons(w->t.fwd_port);
	}

	if (to_v6) {
		hdr_len = JM_ETH_HLEN + JM_IPV6_HDR_LEN +
			  (part != JM_FWD_WHOLE ? JM_IPV6_FRAG_HDR_LEN : 0);
		ip_len = r->payload_len +
			 (part != JM_FWD_WHOLE ? JM_IPV6_FRAG_HDR_LEN : 0);
		w->fib.family = JM_AF_INET6;
		__builtin_memcpy(w->fib.ipv6_dst, w->t.fwd_addr, JM_ADDR_LEN);
		w->fib.tot_len = JM_IPV6_HDR_LEN + ip_len;
	} else {
		hdr_len = JM_ETH_HLEN + JM_IPV4_NOOPT_LEN;
		ip_len = JM_IPV4_NOOPT_LEN + r->payload_len;
		w->fib.family = JM_AF_INET;
		__builtin_memcpy(&w->fib.ipv4_dst, w->t.fwd_addr + 12, 4);
		w->fib.tot_len = ip_len;
	}
	w->fib.l4_protocol = IPPROTO_UDP;
	w->fib.sport = port;
	w->fib.dport = port;
	w->fib.ifindex = fwd_fib_ifindex(ctx);
	ret = fwd_fib(ctx, &scratch->fib_cache, &w->fib, port);
	switch (ret) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		break;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return fwd_to_user(ctx, c, r, JM_FWD_REASON_NEIGH_MISS,
				   JM_STAT_FWD_NEIGH_MISS);
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return fwd_to_user(ctx, c, r, JM_FWD_REASON_TOO_BIG,
				   JM_STAT_FWD_TOO_BIG);
	default:
		return fwd_to_user(ctx, c, r, JM_FWD_REASON_NO_ROUTE,
				   JM_STAT_FWD_NO_ROUTE);
	}
	egress = w->fib.ifindex;
	sk.ifindex = egress;
	sk.family = to_v6 ? JM_FWD_FAMILY_V6 : JM_FWD_FAMILY_V4;
	srcp = bpf_map_lookup_elem(&jm_fwd_src, &sk);
	if (!srcp || (egress != ctx->ingress_ifindex &&
		      !bpf_map_lookup_elem(&jm_fwd_devs, &egress)))
		return fwd_to_user(ctx, c, r, JM_FWD_REASON_NO_SOURCE,
				   JM_STAT_FWD_NO_SOURCE);
	w->src = *srcp;

	/* From here on the frame is rewritten. */
	delta = (int)r->payload_off - (int)hdr_len;
	if (bpf_xdp_adjust_head(ctx, delta))
		return fwd_to_user(ctx, c, r, JM_FWD_REASON_UNSUPPORTED,
				   JM_STAT_FWD_UNSUPPORTED);
	/* Padding after the old IP packet (a 60-byte minimum frame) goes. */
	want = hdr_len + r->payload_len;
	cur = bpf_xdp_get_buff_len(ctx);
	if (cur > want)
		bpf_xdp_adjust_tail(ctx, -(int)(cur - want));

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, w->fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, w->fib.smac, ETH_ALEN);

	if (!to_v6) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end)
			return XDP_DROP;
		eth->h_proto = bpf_htons(ETH_P_IP);
		*(__u8 *)iph = JM_IPV4_VERSION_IHL;
		iph->tos = 0;
		iph->tot_len = bpf_htons(ip_len);
		/* A fragment keeps its id, flags and offset: the target's
		 * kernel reassembles the same datagram. */
		iph->id = r->outer_v4 ? v4_id : 0;
		iph->frag_off = part != JM_FWD_WHOLE ? v4_frag : 0;
		iph->ttl = JM_IPV4_TTL;
		iph->protocol = IPPROTO_UDP;
		iph->check = 0;
		__builtin_memcpy(&iph->saddr, w->src.addr + 12, 4);
		__builtin_memcpy(&iph->daddr, w->t.fwd_addr + 12, 4);
		iph->check = ipv4_csum(iph);
		if (part != JM_FWD_LATER) {
			udph = (void *)(iph + 1);
			if ((void *)(udph + 1) > data_end)
				return XDP_DROP;
			udph->source = port;
			udph->dest = port;
			udph->check = 0; /* optional over IPv4 */
		}
	} else {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		if ((void *)(ip6h + 1) > data_end)
			return XDP_DROP;
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		*(__be32 *)ip6h = bpf_htonl(JM_IPV6_VERSION_WORD);
		ip6h->payload_len = bpf_htons(ip_len);
		ip6h->hop_limit = JM_IPV6_HOP_LIMIT;
		__builtin_memcpy(&ip6h->saddr, w->src.addr, JM_ADDR_LEN);
		__builtin_memcpy(&ip6h->daddr, w->t.fwd_addr, JM_ADDR_LEN);
		if (part == JM_FWD_WHOLE) {
			__u32 sum = 0;

			ip6h->nexthdr = IPPROTO_UDP;
			udph = (void *)(ip6h + 1);
			if ((void *)(udph + 1) > data_end)
				return XDP_DROP;
			udph->source = port;
			udph->dest = port;
			udph->check = 0;
			__builtin_memcpy(w->ph.saddr, w->src.addr, JM_ADDR_LEN);
			__builtin_memcpy(w->ph.daddr, w->t.fwd_addr, JM_ADDR_LEN);
			w->ph.len = bpf_htonl(r->payload_len);
			w->ph.next = bpf_htonl(IPPROTO_UDP);
			sum = bpf_csum_diff(NULL, 0, (void *)&w->ph, sizeof(w->ph), 0);
			if (fwd_csum(ctx, JM_ETH_HLEN + JM_IPV6_HDR_LEN,
				     r->payload_len, sum, &sum) < 0)
				return XDP_DROP;
			udph->check = ~csum_fold32(sum);
			if (!udph->check)
				udph->check = 0xffff; /* 0 is not allowed */
		} else {
			__u8 *fh = (void *)(ip6h + 1);
			__be16 off_flags = bpf_htons(r->ip6_off_flags);

			if ((void *)(fh + JM_IPV6_FRAG_HDR_LEN) > data_end)
				return XDP_DROP;
			ip6h->nexthdr = JM_IPV6_FRAGMENT;
			fh[0] = r->ip6_frag_next;
			fh[1] = 0;
			__builtin_memcpy(fh + 2, &off_flags, 2);
			__builtin_memcpy(fh + 4, &r->ip6_frag_id, 4);
			if (part == JM_FWD_FIRST) {
				__u64 sum;

				udph = (void *)(fh + JM_IPV6_FRAG_HDR_LEN);
				if ((void *)(udph + 1) > data_end)
					return XDP_DROP;
				/* The datagram's data lies in later fragments:
				 * update the router's checksum for the new
				 * addresses and ports (RFC 1624). */
				__builtin_memcpy(w->newf.saddr, w->src.addr, JM_ADDR_LEN);
				__builtin_memcpy(w->newf.daddr, w->t.fwd_addr, JM_ADDR_LEN);
				w->newf.sport = port;
				w->newf.dport = port;
				udph->source = port;
				udph->dest = port;
				sum = bpf_csum_diff((void *)&w->oldf, sizeof(w->oldf),
						    (void *)&w->newf, sizeof(w->newf),
						    (__u16)~old_check);
				udph->check = ~csum_fold32(sum);
				if (!udph->check)
					udph->check = 0xffff;
			}
		}
	}
	fwd_count_sent(c, r);
	if (egress == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect_map(&jm_fwd_devs, egress, XDP_DROP);
}

#endif /* JMXDP_FORWARD_H */
