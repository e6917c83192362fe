//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * jmxdp: classify every frame on the NIC, count Juniper Jmirror streams in
 * the kernel and apply each stream's policy. Everything that is not Jmirror
 * leaves with XDP_PASS, untouched. docs/datapath.md describes the rules; the
 * Go decoder in userspace/jmirror implements the same ones.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parsing_helpers.h"
#include "clock.h"
#include "stats.h"
#include "policy.h"
#include "forward.h"
#include "discover.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Linux 6.18: make the first len bytes of a multi-buffer frame linear.
 * Weak: on an older kernel it resolves to 0 and the pull is skipped. */
extern int bpf_xdp_pull_data(struct xdp_md *xdp, __u32 len) __ksym __weak;

/* Set by the loader (loader.Options.ForceHeaderCopy): never pull, so that
 * the copy path older kernels take runs, and is tested, on this one. */
volatile const __u32 jm_force_header_copy = 0;

/* What the program learnt of one frame, filled as parsing goes (Katran's
 * packet_description): the IP layer sets where the outer header starts and
 * ends, its family and the router (key.router); the Jmirror layer the rest
 * of the stream key and the mirrored packet. */
struct jm_packet {
	struct jm_stream_key key;
	__u64 l3_off; /* where the outer IP header starts */
	__u64 ip_end; /* end of the IP packet (or fragment) per its header */
	__u32 inner_len;
	__u32 inner_kind;
	__u32 version;
	__u32 outer_v4;
};

static __always_inline int pass_not_jmirror(struct jm_counters *c)
{
	stat_add(c, JM_STAT_NOT_JMIRROR, 1);
	return XDP_PASS;
}

static __always_inline __u64 min_u64(__u64 a, __u64 b)
{
	return a < b ? a : b;
}

static __always_inline void addr_from_v4(__u8 *dst, __be32 v4)
{
	__builtin_memset(dst, 0, JM_ADDR_LEN);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &v4, sizeof(v4));
}

/*
 * An IPv6 address that embeds an IPv4 one: IPv4-mapped (::ffff:0:0/96) or
 * IPv4-compatible (::/96, which holds :: and ::1 too). Neither may be a
 * source on the wire (RFC 4291 2.5.5, RFC 6890), and a mapped one is, byte
 * for byte, the key of the IPv4 router it names: accepting it would let
 * anyone who can send IPv6 pass as that router.
 */
static __always_inline int v4_embedded(const __u8 *a)
{
	__u32 w[3];

	__builtin_memcpy(w, a, sizeof(w));
	return w[0] == 0 && w[1] == 0 &&
	       (w[2] == 0 || w[2] == bpf_htonl(0xffff));
}

/* Such a source is counted on its own and in the untrusted total, but not
 * in jm_untrusted by address: there a mapped one would read back as the
 * IPv4 router. */
static __always_inline int drop_v4_embedded(struct jm_counters *c)
{
	stat_add(c, JM_STAT_UNTRUSTED_MAPPED, 1);
	stat_add(c, JM_STAT_UNTRUSTED, 1);
	return XDP_DROP;
}

static __always_inline int drop_untrusted(struct jm_counters *c,
					  const __u8 *router)
{
	struct jm_untrusted_value *v, nv = {};
	struct jm_addr key;
	__u64 now = bpf_ktime_get_coarse_ns();

	stat_add(c, JM_STAT_UNTRUSTED, 1);
	__builtin_memcpy(key.addr, router, JM_ADDR_LEN);
	v = bpf_map_lookup_elem(&jm_untrusted, &key);
	if (v) {
		__sync_fetch_and_add(&v->packets, 1);
		v->last_seen_ns = now;
	} else {
		nv.packets = 1;
		nv.last_seen_ns = now;
		bpf_map_update_elem(&jm_untrusted, &key, &nv, BPF_ANY);
	}
	return XDP_DROP;
}

/* Write what the parse found, and the receive time, in front of a frame
 * headed for AF_XDP. A driver without metadata support refuses the
 * adjustment; userspace then parses the frame itself and uses its own
 * clock. Invalidates every packet pointer: call it last. */
static __always_inline void stamp_meta(struct xdp_md *ctx,
				       const struct jm_xsk_meta *info)
{
	struct jm_xsk_meta *meta;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*meta)))
		return;
	meta = (void *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > (void *)(long)ctx->data)
		return;
	*meta = *info;
	meta->rx_ns = bpf_ktime_get_ns();
	meta->magic = JM_META_MAGIC;
}

/* The capture action: info is the metadata for userspace, built by the
 * caller only for captured frames. */
static __always_inline int capture(struct xdp_md *ctx, struct jm_counters *c,
				   const struct jm_xsk_meta *info)
{
	int ret;

	stat_add(c, JM_STAT_ACTION_CAPTURE, 1);
	stamp_meta(ctx, info);
	/* Falls back to XDP_PASS when no socket serves this queue. */
	ret = bpf_redirect_map(&jm_xsks, ctx->rx_queue_index, XDP_PASS);
	if (ret != XDP_REDIRECT)
		stat_add(c, JM_STAT_CAPTURE_FAILED, 1);
	return ret;
}

/* The other actions. */
static __always_inline int apply_action(struct jm_counters *c, __u32 action)
{
	switch (action) {
	case JM_ACTION_COUNT:
		stat_add(c, JM_STAT_ACTION_COUNT, 1);
		return XDP_DROP;
	default:
		stat_add(c, JM_STAT_ACTION_PASS, 1);
		return XDP_PASS;
	}
}

/* Kind of the mirrored packet from its first bytes. In a first fragment the
 * bytes may lie beyond this frame: then it is unknown. */
static __always_inline __u32 classify_inner(const __u8 *inner, void *data_end,
					    __u32 inner_len)
{
	if (inner_len == 0)
		return JM_INNER_EMPTY;
	if ((void *)(inner + 1) > data_end)
		return JM_INNER_UNKNOWN;
	if (inner[0] >> 4 == JM_IP_VERSION_4)
		return JM_INNER_IPV4;
	if (inner[0] >> 4 == JM_IP_VERSION_6)
		return JM_INNER_IPV6;
	if (inner_len >= 2 && (void *)(inner + 2) <= data_end &&
	    inner[0] == JM_PPP_ADDRESS && inner[1] == JM_PPP_CONTROL)
		return JM_INNER_PPP;
	return JM_INNER_UNKNOWN;
}

/* The coarse clock, once per jiffy per CPU (clock.h). */
static __always_inline __u64 coarse_now(void)
{
	return coarse_now_in(&jm_clock);
}

/* This CPU's jm_count_scratch (maps.h). */
static __always_inline struct jm_count_scratch *count_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&jm_count_scratch, &zero);
}

/* Fold counts that found jm_streams full into the router's overflow total
 * (this CPU's value), never lost: when even that map is full, the packets
 * are counted in JM_STAT_STREAM_LOST. */
static __always_inline void fold_router(struct jm_counters *c,
					const struct jm_stream_key *key,
					const struct jm_stream_value *nv)
{
	struct jm_count_scratch *sc = count_scratch();
	struct jm_router_total *t;
	struct jm_addr r;
	__u64 packets = 0;

#pragma unroll
	for (int i = 0; i < JM_INNER_MAX; i++)
		packets += nv->inner[i];
	stat_add(c, JM_STAT_STREAM_FULL, packets);
	__builtin_memcpy(r.addr, key->router, JM_ADDR_LEN);
	t = bpf_map_lookup_elem(&jm_router_overflow, &r);
	if (!t) {
		if (!sc) { /* cannot happen: an array of one */
			stat_add(c, JM_STAT_STREAM_LOST, packets);
			return;
		}
		sc->nt.bytes = nv->bytes;
		__builtin_memcpy(sc->nt.inner, nv->inner, sizeof(sc->nt.inner));
		/* A per-CPU insert: this CPU's value is nt, the others 0. */
		if (bpf_map_update_elem(&jm_router_overflow, &r, &sc->nt,
					BPF_NOEXIST) == 0)
			return;
		t = bpf_map_lookup_elem(&jm_router_overflow, &r);
		if (!t) {
			stat_add(c, JM_STAT_STREAM_LOST, packets);
			return;
		}
	}
	t->bytes += nv->bytes;
#pragma unroll
	for (int i = 0; i < JM_INNER_MAX; i++)
		t->inner[i] += nv->inner[i];
}

/* Insert a stream's first counts nv into jm_streams. 0: inserted; 1:
 * another CPU inserted it first (add to that entry); -1: the table is full
 * and nv went to the router's total. */
static __always_inline int insert_stream(struct jm_counters *c,
					 const struct jm_stream_key *key,
					 const struct jm_stream_value *nv)
{
	int err = bpf_map_update_elem(&jm_streams, key, nv, BPF_NOEXIST);

	if (err == 0) {
		stat_add(c, JM_STAT_STREAM_NEW, 1);
		return 0;
	}
	if (err == -JM_EEXIST)
		return 1;
	fold_router(c, key, nv);
	return -1;
}

/* A slot's stream hashes the key's six 32-bit words (maps.slotIndex). */
static __always_inline __u32 slot_index(const struct jm_stream_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 h = 0;

#pragma unroll
	for (int i = 0; i < JM_STREAM_KEY_WORDS; i++)
		h = (h ^ w[i]) * JM_STREAM_HASH_MUL;
	return (h ^ (h >> 16)) & JM_STREAM_SLOT_MASK;
}

static __always_inline int key_eq(const struct jm_stream_key *a,
				  const struct jm_stream_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	__u32 d = 0;

#pragma unroll
	for (int i = 0; i < JM_STREAM_KEY_WORDS; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

/* Move what slot s counted into its stream's entry: atomic adds, as any
 * CPU's. An entry userspace retired (or never had room) is inserted anew
 * from the slot's counts, or folded into the router's total when full. */
static __always_inline void flush_slot(struct jm_counters *c,
				       struct jm_stream_slot *s)
{
	struct jm_count_scratch *sc = count_scratch();
	struct jm_stream_value *v, *nv;

	v = bpf_map_lookup_elem(&jm_streams, &s->key);
	if (!v) {
		if (!sc) /* cannot happen: an array of one */
			return;
		nv = &sc->nv;
		__builtin_memset(nv, 0, sizeof(*nv));
		nv->bytes = s->bytes;
		__builtin_memcpy(nv->inner, s->inner, sizeof(nv->inner));
		nv->first_seen_ns = s->first_seen_ns;
		nv->last_seen_ns = s->last_seen_ns;
		nv->policy_cache = s->policy_cache;
		if (insert_stream(c, &s->key, nv) != 1)
			return;
		v = bpf_map_lookup_elem(&jm_streams, &s->key);
		if (!v) {
			fold_router(c, &s->key, nv);
			return;
		}
	}
	__sync_fetch_and_add(&v->bytes, s->bytes);
#pragma unroll
	for (int i = 0; i < JM_INNER_MAX; i++)
		if (s->inner[i])
			__sync_fetch_and_add(&v->inner[i], s->inner[i]);
	if ((__s64)(s->last_seen_ns - v->last_seen_ns) > 0)
		v->last_seen_ns = s->last_seen_ns;
}

/* Give slot s to key: flush what it holds for its stream first. seq is odd
 * throughout, so a reader knows to read the slot and the table again. A
 * slot is taken only from a stream that has not counted in it this jiffy
 * (now, the per-jiffy clock): two hot streams that share a slot do not
 * take it from each other on every frame (the newcomer counts in the table
 * meanwhile), so seq moves at most once a jiffy per slot and a reader's
 * few microseconds between its reads of a slot rarely see it move. */
static __always_inline void take_slot(struct jm_counters *c,
				      struct jm_stream_slot *s,
				      const struct jm_stream_key *key,
				      __u64 policy, __u64 now)
{
	if (s->valid && s->last_seen_ns == now)
		return;
	__sync_fetch_and_add(&s->seq, 1);
	if (s->valid && s->first_seen_ns)
		flush_slot(c, s);
	__builtin_memcpy(&s->key, key, sizeof(*key));
	s->valid = 1;
	s->bytes = 0;
	__builtin_memset(s->inner, 0, sizeof(s->inner));
	s->first_seen_ns = 0;
	s->last_seen_ns = now; /* held this jiffy; counts none yet */
	s->policy_cache = policy;
	__sync_fetch_and_add(&s->seq, 1);
}

/* The action a stream's policy word (*word, in its entry or its cache
 * slot) holds when it was cached under gen; otherwise looked up and cached
 * there under gen. */
static __always_inline __u32 cached_action(__u64 *word,
					   const struct jm_stream_key *key,
					   __u32 gen)
{
	__u64 cached = *word;
	__u32 action;

	if ((cached & JM_POLICY_CACHE_VALID) &&
	    (__u32)(cached >> JM_POLICY_CACHE_GEN_SHIFT) == gen) {
		action = cached & JM_POLICY_CACHE_ACTION_MASK;
		return jm_action_sane(action);
	}
	action = lookup_action(key->mid, key->sid);
	*word = policy_cache_word(gen, action);
	return action;
}

/* Count the datagram into jm_streams and return the stream's action. */
static __always_inline __u32 count_in_table(struct jm_counters *c,
					    struct jm_packet *p, __u32 kind,
					    __u32 gen, __u64 now)
{
	struct jm_count_scratch *sc = count_scratch();
	struct jm_stream_value *v, *nv;
	__u32 action;

	v = bpf_map_lookup_elem(&jm_streams, &p->key);
	if (!v) {
		action = lookup_action(p->key.mid, p->key.sid);
		if (!sc) /* cannot happen: an array of one */
			return action;
		nv = &sc->nv;
		__builtin_memset(nv, 0, sizeof(*nv));
		nv->bytes = p->inner_len;
		nv->first_seen_ns = now;
		nv->last_seen_ns = now;
		nv->inner[kind] = 1;
		nv->policy_cache = policy_cache_word(gen, action);
		if (insert_stream(c, &p->key, nv) != 1)
			return action;
		/* Another CPU inserted it first: add to its entry. */
		v = bpf_map_lookup_elem(&jm_streams, &p->key);
		if (!v) {
			fold_router(c, &p->key, nv);
			return action;
		}
	}
	__sync_fetch_and_add(&v->bytes, p->inner_len);
	__sync_fetch_and_add(&v->inner[kind], 1);
	v->last_seen_ns = now;
	return cached_action(&v->policy_cache, &p->key, gen);
}

/*
 * Count the datagram into its stream and return the stream's action. A
 * stream that holds this CPU's cache slot counts there, with plain adds,
 * and takes its action from the slot; any other takes the slot after
 * counting into the table (its first frame is in the table, so a stream
 * is in jm_streams once it has counted at all, unless the table is full).
 * The action is cached under the policy generation read first, before
 * any policy lookup: a rule written after that read comes with a new
 * generation, so a stale cached action is used at most by frames that
 * raced the change, never after it. The slot caches the action the table
 * path returned, valid under the same generation.
 */
static __always_inline __u32 count_stream(struct jm_counters *c,
					  struct jm_packet *p)
{
	struct jm_stream_slot *s;
	__u32 kind = p->inner_kind;
	__u32 gen = policy_gen();
	__u64 now = coarse_now();
	__u32 idx = slot_index(&p->key);
	__u32 action;

	if (kind >= JM_INNER_MAX)
		kind = JM_INNER_UNKNOWN;

	s = bpf_map_lookup_elem(&jm_stream_cache, &idx);
	if (s && s->valid && key_eq(&s->key, &p->key)) {
		s->bytes += p->inner_len;
		s->inner[kind]++;
		if (!s->first_seen_ns)
			s->first_seen_ns = now;
		s->last_seen_ns = now;
		return cached_action(&s->policy_cache, &p->key, gen);
	}
	action = count_in_table(c, p, kind, gen, now);
	if (s)
		take_slot(c, s, &p->key, policy_cache_word(gen, action), now);
	return action;
}

/*
 * count_stream as a global function: the verifier checks it once, on its
 * own, rather than once for every state the parse reaches it in (the cache,
 * the flush and the full-table paths multiplied jmxdp past the 1M
 * instruction limit inlined). The caller sees only its return value, which
 * it passes through jm_action_sane. The default action is read only by a
 * policy lookup that finds no rule (lookup_action), not per frame.
 */
__noinline int jm_count_stream(struct jm_packet *p)
{
	if (!p)
		return JM_ACTION_PASS;
	return count_stream(counters(), p);
}

/* t lies within JM_FRAG_WINDOW_NS before now. Signed: a time another CPU
 * wrote a jiffy ahead of this one's clock is recent, not 584 years old. */
static __always_inline int recent(__u64 now, __u64 t)
{
	return t && (__s64)(now - t) < (__s64)JM_FRAG_WINDOW_NS;
}

/*
 * Does the pair (router -> collector) send fragmented Jmirror that is all
 * captured lately? Only then is a later fragment that arrives before its
 * first held (redirected to userspace) rather than passed: a pair with a
 * counted or passed stream would have its host-bound fragments taken, and
 * other sources' fragments are never taken at all. pairs is jm_frag_pairs
 * (IPv4 key) or jm_frag_pairs6 (IPv6 key).
 */
static __always_inline int pair_holds_in(void *pairs, const void *pk,
					 __u64 now)
{
	struct jm_pair_value *pv = bpf_map_lookup_elem(pairs, pk);

	return pv && recent(now, pv->capture_ns) && !recent(now, pv->other_ns);
}

static __always_inline int pair_holds(__u32 saddr, __u32 daddr, __u64 now)
{
	struct jm_pair_key pk = { .saddr = saddr, .daddr = daddr };

	return pair_holds_in(&jm_frag_pairs, &pk, now);
}

static __always_inline int pair_holds6(const __u8 *saddr, const __u8 *daddr,
				       __u64 now)
{
	struct jm_pair6_key pk;

	__builtin_memcpy(pk.saddr, saddr, JM_ADDR_LEN);
	__builtin_memcpy(pk.daddr, daddr, JM_ADDR_LEN);
	return pair_holds_in(&jm_frag_pairs6, &pk, now);
}

/* A Jmirror first fragment was counted with action: remember its pair.
 * Forwarded datagrams are taken from the host as captured ones are, so
 * they count as captured here: a pair that sends only captured and
 * forwarded Jmirror has its early fragments held too (issue 16). */
static __always_inline void note_pair_in(void *pairs, const void *pk,
					 __u32 action, __u64 now)
{
	struct jm_pair_value *pv, nv = {};
	int taken = action == JM_ACTION_CAPTURE ||
		    action == JM_ACTION_FORWARD ||
		    action == JM_ACTION_FORWARD_USER;

	pv = bpf_map_lookup_elem(pairs, pk);
	if (pv) {
		if (taken)
			pv->capture_ns = now;
		else
			pv->other_ns = now;
		return;
	}
	if (taken)
		nv.capture_ns = now;
	else
		nv.other_ns = now;
	bpf_map_update_elem(pairs, pk, &nv, BPF_ANY);
}

static __always_inline void note_pair(const struct jm_frag_key *fk,
				      const struct jm_frag6_key *fk6,
				      __u32 action, __u64 now)
{
	struct jm_pair_key pk;
	struct jm_pair6_key pk6;

	if (fk6) {
		__builtin_memcpy(pk6.saddr, fk6->saddr, JM_ADDR_LEN);
		__builtin_memcpy(pk6.daddr, fk6->daddr, JM_ADDR_LEN);
		note_pair_in(&jm_frag_pairs6, &pk6, action, now);
	} else if (fk) {
		pk.saddr = fk->saddr;
		pk.daddr = fk->daddr;
		note_pair_in(&jm_frag_pairs, &pk, action, now);
	}
}

/*
 * A later fragment before its first was held in userspace: leave the mark
 * (JM_ACTION_EARLY) under its datagram's key, so that a forwarded first
 * fragment sends the datagram to userspace, where the held fragments are
 * (handle_udp). BPF_NOEXIST: a first fragment's record that came in the
 * meantime stays. A captured first fragment overwrites the mark as any
 * record; an LRU map ages out the ones no first fragment follows.
 */
static __always_inline void note_early(struct jm_frag_key *fk,
				       struct jm_frag6_key *fk6)
{
	struct jm_frag_value fv = { .action = JM_ACTION_EARLY,
				    .first_ns = coarse_now() };

	if (fk6)
		bpf_map_update_elem(&jm_frags6, fk6, &fv, BPF_NOEXIST);
	else if (fk)
		bpf_map_update_elem(&jm_frags, fk, &fv, BPF_NOEXIST);
}

/* Later fragments carry no UDP header: they follow their first fragment. */
static __always_inline int handle_later_fragment(struct xdp_md *ctx,
						 struct jm_counters *c,
						 const struct jm_view *v,
						 struct iphdr *iph)
{
	struct jm_frag_key fk = { .saddr = iph->saddr, .daddr = iph->daddr,
				  .id = iph->id, .proto = iph->protocol };
	struct jm_frag_value *fv;
	__u8 router[JM_ADDR_LEN];
	__u32 action, mid, sid;

	fv = bpf_map_lookup_elem(&jm_frags, &fk);
	if (!fv || fv->action == JM_ACTION_EARLY) {
		/* Its first fragment has not come (or was evicted). XDP cannot
		 * hold a frame: from a pair that sends only captured or
		 * forwarded Jmirror, userspace holds it until the first comes or
		 * the window ends, and the mark left under its key tells a
		 * forwarded first fragment to follow it (note_early); anything
		 * else goes to the host untouched. */
		if (fk.proto == IPPROTO_UDP &&
		    pair_holds(fk.saddr, fk.daddr, coarse_now())) {
			struct jm_xsk_meta info = {
				.l3_off = (void *)iph - v->data,
				.flags = JM_META_LATER_FRAG | JM_META_HELD,
			};

			if (!fv)
				note_early(&fk, NULL);
			stat_add(c, JM_STAT_FRAG_HELD, 1);
			return capture(ctx, c, &info);
		}
		stat_add(c, JM_STAT_FRAG_UNMATCHED, 1);
		return XDP_PASS;
	}
	/* Copies, not the map value pointer (see load_settings). */
	action = fv->action;
	mid = fv->mid;
	sid = fv->sid;
	if (action == JM_ACTION_UNTRUSTED) {
		addr_from_v4(router, iph->saddr);
		return drop_untrusted(c, router);
	}
	if (action == JM_ACTION_NOT_JMIRROR) {
		stat_add(c, JM_STAT_FRAG_UNMATCHED, 1);
		return XDP_PASS;
	}
	stat_add(c, JM_STAT_FRAG_TRACKED, 1);
	if (action == JM_ACTION_CAPTURE) {
		struct jm_xsk_meta info = {
			.mid = mid,
			.sid = sid,
			.l3_off = (void *)iph - v->data,
			.flags = JM_META_LATER_FRAG,
		};

		return capture(ctx, c, &info);
	}
	if (action == JM_ACTION_FORWARD || action == JM_ACTION_FORWARD_USER) {
		__u32 ihl = iph->ihl * 4;
		struct jm_fwd_req r = {
			.key.mid = mid,
			.key.sid = sid,
			.l3_off = (void *)iph - v->data,
			.outer_v4 = 1,
			.part = JM_FWD_LATER,
			.early = action == JM_ACTION_FORWARD_USER,
		};

		addr_from_v4(r.key.router, iph->saddr);
		r.payload_off = r.l3_off + ihl;
		r.ip_end = r.l3_off + bpf_ntohs(iph->tot_len);
		return forward_frame(ctx, c, &r);
	}
	return apply_action(c, action);
}

/*
 * A first fragment that turns out not to be Jmirror (or malformed) must
 * not leave a stale record for an earlier datagram that reused its IP id.
 * From a pair whose early fragments are held it leaves a record that says
 * so instead, so that its later fragments pass and are not held.
 */
static __always_inline void forget_fragment(struct jm_frag_key *fk)
{
	struct jm_frag_value fv = { .action = JM_ACTION_NOT_JMIRROR };

	if (!fk)
		return;
	if (fk->proto == IPPROTO_UDP &&
	    pair_holds(fk->saddr, fk->daddr, coarse_now()))
		bpf_map_update_elem(&jm_frags, fk, &fv, BPF_ANY);
	else
		bpf_map_delete_elem(&jm_frags, fk);
}

static __always_inline void record_untrusted(struct jm_frag_key *fk,
					     struct jm_frag6_key *fk6)
{
	struct jm_frag_value fv = { .action = JM_ACTION_UNTRUSTED };

	if (fk)
		bpf_map_update_elem(&jm_frags, fk, &fv, BPF_ANY);
	if (fk6)
		bpf_map_update_elem(&jm_frags6, fk6, &fv, BPF_ANY);
}

/* forget_fragment for outer IPv6. No protocol is asked: an IPv6 later
 * fragment carries none (only the first fragment's chain names UDP). */
static __always_inline void forget_fragment6(struct jm_frag6_key *fk6)
{
	struct jm_frag_value fv = { .action = JM_ACTION_NOT_JMIRROR };

	if (!fk6)
		return;
	if (pair_holds6(fk6->saddr, fk6->daddr, coarse_now()))
		bpf_map_update_elem(&jm_frags6, fk6, &fv, BPF_ANY);
	else
		bpf_map_delete_elem(&jm_frags6, fk6);
}

/*
 * The fingerprint of a first fragment: FNV-1a over the first JM_FP_WORDS
 * 8-byte words of the mirrored packet that lie both in the frame and in
 * the first avail bytes (the IP packet's end and the mirrored packet's
 * length). Bounded: a constant trip count, unrolled, every load checked
 * against data_end. Loads are native (little-endian) order; the Go engine
 * reads them little-endian too.
 */
static __always_inline __u64 fingerprint(const __u8 *inner, void *data_end,
					 __u64 avail)
{
	__u64 h = JM_FP_SEED;
	__u64 w;
	int i;

#pragma unroll
	for (i = 0; i < JM_FP_WORDS; i++) {
		const __u8 *q = inner + i * 8;

		if ((void *)(q + 8) > data_end || (__u64)(i + 1) * 8 > avail)
			break;
		__builtin_memcpy(&w, q, sizeof(w));
		h = (h ^ w) * JM_FP_PRIME;
	}
	return h;
}

/* A copy of the first fragment recorded under its key: same stream,
 * length and fingerprint, within the window of the first copy. */
static __always_inline int first_copy(struct jm_frag_key *fk,
				      struct jm_frag6_key *fk6,
				      const struct jm_packet *p, __u64 fp,
				      __u64 now, __u32 *action)
{
	struct jm_frag_value *fv;

	if (fk6)
		fv = bpf_map_lookup_elem(&jm_frags6, fk6);
	else
		fv = bpf_map_lookup_elem(&jm_frags, fk);

	if (!fv || jm_action_sane(fv->action) != fv->action ||
	    fv->mid != p->key.mid ||
	    fv->sid != p->key.sid || fv->inner_len != p->inner_len ||
	    fv->fingerprint != fp || !recent(now, fv->first_ns))
		return 0;
	*action = fv->action;
	return 1;
}

/*
 * Record a first fragment's datagram under its key (fv: the record). A
 * forwarded one whose key holds the mark of a later fragment held in
 * userspace before it (note_early), or the record of a copy of it that
 * found one, is recorded JM_ACTION_FORWARD_USER: its frames all go to
 * userspace, where the held fragments are. Returns 1 then. A global
 * function, verified once: the caller never branches on its answer (it
 * only hands it to forward_frame), so no state of the caller's doubles.
 */
__noinline int record_fragment(struct jm_frag_key *fk,
			       struct jm_frag6_key *fk6,
			       struct jm_frag_value *fv)
{
	struct jm_frag_value *old = NULL;

	if (!fv)
		return 0;
	if (fv->action == JM_ACTION_FORWARD) {
		if (fk6)
			old = bpf_map_lookup_elem(&jm_frags6, fk6);
		else if (fk)
			old = bpf_map_lookup_elem(&jm_frags, fk);
		if (old && (old->action == JM_ACTION_EARLY ||
			    old->action == JM_ACTION_FORWARD_USER) &&
		    recent(fv->first_ns, old->first_ns))
			fv->action = JM_ACTION_FORWARD_USER;
	}
	if (fk6)
		bpf_map_update_elem(&jm_frags6, fk6, fv, BPF_ANY);
	else if (fk)
		bpf_map_update_elem(&jm_frags, fk, fv, BPF_ANY);
	return fv->action == JM_ACTION_FORWARD_USER;
}

/*
 * UDP and Jmirror, with what the IP layer put in p. fk (outer IPv4) or fk6
 * (outer IPv6) is set for a first fragment. They stay out of p: a pointer
 * kept in the stack would not survive the global functions p is passed to.
 */
static __always_inline int handle_udp(struct xdp_md *ctx, struct jm_counters *c,
				      const struct jm_view *v,
				      struct hdr_cursor *nh, struct jm_packet *p,
				      struct jm_frag_key *fk,
				      struct jm_frag6_key *fk6)
{
	/* Read before any call: once inlined it is the caller's constant, so
	 * the verifier walks each family's path alone (read from p after a
	 * global function, which may write p, it would walk both). */
	const int outer_v4 = p->outer_v4;
	int first = fk || fk6;
	void *data = v->data;
	void *data_end = v->data_end;
	struct jm_settings cfg;
	struct jmirror_hdr *jh;
	struct udphdr *udph;
	__u32 *port_flags;
	__u64 udp_off, limit, now = 0, fp = 0;
	__u32 port, word0, action;
	int udp_len, early = 0;

	udp_len = parse_udphdr(nh, data_end, &udph);
	if (udp_len < 0)
		goto not_jmirror;
	port = bpf_ntohs(udph->dest);
	/* The frame may be padded past the IP packet: trust neither alone.
	 * A multi-buffer frame's length is all its buffers', not the linear
	 * part's: a jumbo datagram is whole even when data_end comes early. */
	udp_off = (void *)udph - data;
	limit = bpf_xdp_get_buff_len(ctx);
	if (p->ip_end < limit)
		limit = p->ip_end;
	port_flags = bpf_map_lookup_elem(&jm_ports, &port);
	if (!port_flags || !(*port_flags & JM_PORT_DECODE)) {
		if (!first && jmirror_lookalike(udph, udp_len, udp_off, limit,
					     data_end, outer_v4))
			note_candidate(c, port, udp_len);
		goto not_jmirror;
	}

	/* Before the allowlist, and whether or not there is one: never a
	 * router, whatever the allowlist names. */
	if (!outer_v4 && v4_embedded(p->key.router))
		return drop_v4_embedded(c);

	cfg = load_settings();
	if (!source_trusted(&cfg, p->key.router)) {
		record_untrusted(fk, fk6);
		return drop_untrusted(c, p->key.router);
	}

	if (udp_len < JM_MIN_UDP_LEN) {
		stat_add(c, JM_STAT_MALFORMED_SHORT, 1);
		forget_fragment(fk);
		forget_fragment6(fk6);
		return XDP_PASS;
	}
	if ((first ? udp_off + JM_MIN_UDP_LEN : udp_off + udp_len) > limit ||
	    parse_jmirrorhdr(nh, data_end, &jh) < 0) {
		stat_add(c, JM_STAT_MALFORMED_TRUNCATED, 1);
		forget_fragment(fk);
		forget_fragment6(fk6);
		return XDP_PASS;
	}

	word0 = bpf_ntohl(jh->word0);
	p->key.mid = word0 & JM_MID_MASK;
	p->key.sid = bpf_ntohl(jh->sid);
	p->version = word0 >> JM_VERSION_SHIFT;
	p->inner_len = udp_len - JM_MIN_UDP_LEN;
	p->inner_kind = classify_inner(nh->pos, data_end, p->inner_len);

	if (first) {
		now = coarse_now();
		fp = fingerprint(nh->pos, data_end,
				 min_u64(limit - (nh->pos - data), p->inner_len));
		if (first_copy(fk, fk6, p, fp, now, &action)) {
			/* Counted already: follows its datagram like a
			 * later fragment, not counted again. */
			stat_add(c, JM_STAT_FRAG_DUPLICATE, 1);
			goto act;
		}
	}
	action = jm_action_sane(jm_count_stream(p));
	stat_add(c, JM_STAT_JMIRROR, 1);
	stat_add(c, JM_STAT_JMIRROR_BYTES, p->inner_len);
	if (p->version)
		stat_add(c, JM_STAT_VERSION_NONZERO, 1);
	if (first) {
		stat_add(c, JM_STAT_FRAG_FIRST, 1);
		struct jm_frag_value fv = {
			.mid = p->key.mid,
			.sid = p->key.sid,
			.action = action,
			.inner_len = p->inner_len,
			.first_ns = now,
			.fingerprint = fp,
		};

		/* Fragments of it wait in userspace: so does the rest. */
		early = record_fragment(fk, fk6, &fv);
		note_pair(fk, fk6, action, now);
	}
act:
	if (action == JM_ACTION_FORWARD) {
		/* No branches here: every path to act reaches this. */
		struct jm_fwd_req r = {
			.key = p->key,
			.payload_off = udp_off,
			.payload_len = udp_len,
			.ip_end = p->ip_end,
			.l3_off = p->l3_off,
			.inner_len = p->inner_len,
			.inner_off = nh->pos - data,
			.outer_v4 = outer_v4,
			.part = first, /* JM_FWD_FIRST or JM_FWD_WHOLE */
			.inner_kind = p->inner_kind,
			.early = early,
		};

		return forward_frame(ctx, c, &r);
	}
	if (action == JM_ACTION_CAPTURE) {
		struct jm_xsk_meta info = {
			.mid = p->key.mid,
			.sid = p->key.sid,
			.inner_len = p->inner_len,
			.inner_off = nh->pos - data,
			.l3_off = p->l3_off,
			.inner_kind = p->inner_kind,
			.flags = (outer_v4 ? 0 : JM_META_OUTER_V6) |
				 (first ? JM_META_FIRST_FRAG : 0),
		};

		return capture(ctx, c, &info);
	}
	return apply_action(c, action);

not_jmirror:
	forget_fragment(fk);
	forget_fragment6(fk6);
	return pass_not_jmirror(c);
}

static __always_inline int handle_ipv4(struct xdp_md *ctx,
				       struct jm_counters *c,
				       const struct jm_view *v,
				       struct hdr_cursor *nh)
{
	void *data = v->data;
	void *data_end = v->data_end;
	struct jm_frag_key fk;
	struct jm_packet p = { .outer_v4 = 1 };
	struct iphdr *iph;
	__u16 frag;
	int proto;

	proto = parse_iphdr(nh, data_end, &iph);
	if (proto < 0)
		return pass_not_jmirror(c);
	frag = bpf_ntohs(iph->frag_off);
	if (frag & JM_IP_OFFSET_MASK)
		return handle_later_fragment(ctx, c, v, iph);

	fk.saddr = iph->saddr;
	fk.daddr = iph->daddr;
	fk.id = iph->id;
	fk.proto = iph->protocol;
	fk.pad = 0;
	if (proto != IPPROTO_UDP) {
		if (frag & JM_IP_MF)
			forget_fragment(&fk);
		return pass_not_jmirror(c);
	}
	p.l3_off = (void *)iph - data;
	p.ip_end = p.l3_off + bpf_ntohs(iph->tot_len);
	addr_from_v4(p.key.router, iph->saddr);
	return handle_udp(ctx, c, v, nh, &p, (frag & JM_IP_MF) ? &fk : NULL,
			  NULL);
}

/* A later outer IPv6 fragment (offset > 0): it follows its first fragment
 * by (source, destination, id), and one before its first is held when its
 * pair's are, as handle_later_fragment does for IPv4. */
static __always_inline int handle_later_fragment6(struct xdp_md *ctx,
						  struct jm_counters *c,
						  const struct jm_view *v,
						  struct ipv6hdr *ip6h,
						  const struct ip6_frag_info *fi,
						  __u64 payload_off)
{
	struct jm_frag6_key fk;
	struct jm_frag_value *fv;
	__u8 router[JM_ADDR_LEN];
	__u32 action, mid, sid;

	__builtin_memcpy(fk.saddr, &ip6h->saddr, JM_ADDR_LEN);
	__builtin_memcpy(fk.daddr, &ip6h->daddr, JM_ADDR_LEN);
	fk.id = fi->id;
	fv = bpf_map_lookup_elem(&jm_frags6, &fk);
	if (!fv || fv->action == JM_ACTION_EARLY) {
		if (pair_holds6(fk.saddr, fk.daddr, coarse_now())) {
			struct jm_xsk_meta info = {
				.l3_off = (void *)ip6h - v->data,
				.flags = JM_META_LATER_FRAG | JM_META_HELD |
					 JM_META_OUTER_V6,
			};

			if (!fv)
				note_early(NULL, &fk);
			stat_add(c, JM_STAT_FRAG_HELD, 1);
			return capture(ctx, c, &info);
		}
		stat_add(c, JM_STAT_FRAG_UNMATCHED, 1);
		return XDP_PASS;
	}
	action = fv->action;
	mid = fv->mid;
	sid = fv->sid;
	if (action == JM_ACTION_UNTRUSTED) {
		__builtin_memcpy(router, fk.saddr, JM_ADDR_LEN);
		return drop_untrusted(c, router);
	}
	if (action == JM_ACTION_FORWARD_USER) {
		stat_add(c, JM_STAT_FRAG_TRACKED, 1);
		goto forward;
	}
	if (jm_action_sane(action) != action) {
		stat_add(c, JM_STAT_FRAG_UNMATCHED, 1);
		return XDP_PASS;
	}
	stat_add(c, JM_STAT_FRAG_TRACKED, 1);
	if (action == JM_ACTION_CAPTURE) {
		struct jm_xsk_meta info = {
			.mid = mid,
			.sid = sid,
			.l3_off = (void *)ip6h - v->data,
			.flags = JM_META_LATER_FRAG | JM_META_OUTER_V6,
		};

		return capture(ctx, c, &info);
	}
	if (action == JM_ACTION_FORWARD) {
forward:;
		__u64 l3_off = (void *)ip6h - v->data;
		__u64 ip_end = l3_off + JM_IPV6_HDR_LEN +
			       bpf_ntohs(ip6h->payload_len);
		struct jm_fwd_req r = {
			.key.mid = mid,
			.key.sid = sid,
			.l3_off = l3_off,
			.payload_off = payload_off,
			.ip_end = ip_end,
			.part = JM_FWD_LATER,
			.early = action == JM_ACTION_FORWARD_USER,
		};

		__builtin_memcpy(r.key.router, fk.saddr, JM_ADDR_LEN);
		return forward_frame(ctx, c, &r);
	}
	return apply_action(c, action);
}

static __always_inline int handle_ipv6(struct xdp_md *ctx,
				       struct jm_counters *c,
				       const struct jm_view *v, int scratch,
				       struct hdr_cursor *nh)
{
	void *data = v->data;
	void *data_end = v->data_end;
	struct ip6_frag_info fi = {};
	struct jm_frag6_key fk;
	struct jm_packet p = { .outer_v4 = 0 };
	struct ipv6hdr *ip6h;
	int proto;

	proto = parse_ip6hdr(nh, data_end, &ip6h);
	if (proto < 0)
		return pass_not_jmirror(c);
	proto = parse_ip6_ext(nh, v, scratch, proto, &fi);
	if (proto == JM_IP6_EXT_TOO_LONG) {
		stat_add(c, JM_STAT_IPV6_EXT_LONG, 1);
		return XDP_PASS;
	}
	if (fi.present && (fi.off_flags & JM_IP6_OFFSET_MASK))
		return handle_later_fragment6(ctx, c, v, ip6h, &fi,
					      nh->pos - data);
	/* Only a first fragment (M set) is tracked: offset 0 without M is an
	 * atomic fragment (RFC 6946), a whole datagram. */
	fi.present = fi.present && (fi.off_flags & JM_IP6_MF);
	if (fi.present) {
		__builtin_memcpy(fk.saddr, &ip6h->saddr, JM_ADDR_LEN);
		__builtin_memcpy(fk.daddr, &ip6h->daddr, JM_ADDR_LEN);
		fk.id = fi.id;
	}
	if (proto != IPPROTO_UDP) {
		if (fi.present)
			forget_fragment6(&fk);
		return pass_not_jmirror(c);
	}
	p.l3_off = (void *)ip6h - data;
	p.ip_end = ((void *)(ip6h + 1) - data) + bpf_ntohs(ip6h->payload_len);
	__builtin_memcpy(p.key.router, &ip6h->saddr, JM_ADDR_LEN);
	return handle_udp(ctx, c, v, nh, &p, NULL, fi.present ? &fk : NULL);
}

/*
 * The headers are parsed from the linear part when they lie there: when a
 * multi-buffer frame's linear part is shorter than JM_PULL_LEN (a driver
 * that splits headers from payload, or generic mode on a paged skb), its
 * first JM_PULL_LEN bytes are pulled into it (bpf_xdp_pull_data, Linux
 * 6.18). Returns 0 when that is not possible (an older kernel, a pull that
 * fails, or the loader forcing the copy): the caller copies them instead.
 */
static __always_inline int headers_linear(struct xdp_md *ctx)
{
	__u64 linear = ctx->data_end - ctx->data;
	__u64 len = bpf_xdp_get_buff_len(ctx);

	if (linear >= JM_PULL_LEN || len <= linear)
		return 1;
	return !jm_force_header_copy && bpf_xdp_pull_data &&
	       bpf_xdp_pull_data(ctx, min_u64(len, JM_PULL_LEN)) == 0;
}

/* Ethernet, VLANs, then the outer IP header, from v (scratch: v is the
 * scratch copy; a constant, so that each path is compiled for its own
 * kind of pointer). */
static __always_inline int parse_frame(struct xdp_md *ctx,
				       struct jm_counters *c,
				       const struct jm_view *v, int scratch)
{
	struct hdr_cursor nh = { .pos = v->data };
	struct ethhdr *eth;
	int proto;

	proto = parse_ethhdr_vlan(&nh, v->data_end, &eth);
	if (proto == bpf_htons(ETH_P_IP))
		return handle_ipv4(ctx, c, v, &nh);
	if (proto == bpf_htons(ETH_P_IPV6))
		return handle_ipv6(ctx, c, v, scratch, &nh);
	return pass_not_jmirror(c);
}

/*
 * Headers that are not linear and cannot be made so: the frame's first
 * JM_PULL_LEN bytes (fewer in a shorter frame), from whatever buffers hold
 * them, are copied with bpf_xdp_load_bytes into this CPU's scratch buffer
 * and parsed there by the same code. Offsets found are frame offsets, as
 * the copy starts at the frame's first byte; the frame itself is not
 * changed. What lies past the copy counts as cut, as past the linear part.
 */
static __always_inline int parse_copy(struct xdp_md *ctx,
				      struct jm_counters *c)
{
	struct jm_scratch *s;
	struct jm_view v;
	__u32 zero = 0;
	__u64 n = min_u64(bpf_xdp_get_buff_len(ctx), JM_PULL_LEN);

	/* Keep clang from folding the bounds into a form the verifier
	 * cannot read: it needs n in [1, JM_PULL_LEN] as a register. */
	asm volatile("" : "+r"(n));
	if (n < 1 || n > JM_PULL_LEN)
		return pass_not_jmirror(c);
	s = bpf_map_lookup_elem(&jm_scratch, &zero);
	if (!s || bpf_xdp_load_bytes(ctx, 0, s->buf, n))
		return pass_not_jmirror(c);
	v.data = s->buf;
	v.data_end = s->buf + n;
	return parse_frame(ctx, c, &v, 1);
}

/* Frags-aware (BPF_F_XDP_HAS_FRAGS): a driver refuses a jumbo MTU under a
 * program that is not, and one that is sees the whole frame. The headers
 * are read from the linear part, or from a copy (docs/datapath.md, "Frame
 * sizes"). */
SEC("xdp.frags")
int jmxdp(struct xdp_md *ctx)
{
	struct jm_counters *c = counters();
	struct jm_view v;

	stat_add(c, JM_STAT_FRAMES, 1);
	if (!headers_linear(ctx))
		return parse_copy(ctx, c);
	v.data = (void *)(long)ctx->data;
	v.data_end = (void *)(long)ctx->data_end;
	return parse_frame(ctx, c, &v, 0);
}

/* Anchor the enums in BTF so bpf2go emits Go constants for them. */
const enum jm_action jm_action_unused __attribute__((unused));
const enum jm_inner jm_inner_unused __attribute__((unused));
const enum jm_stat jm_stat_unused __attribute__((unused));
const enum jm_policy_scope jm_policy_scope_unused __attribute__((unused));
const enum jm_fwd_reason jm_fwd_reason_unused __attribute__((unused));
/* Only ever reached through a pointer cast, so anchor it for bpf2go too. */
const struct jm_xsk_meta jm_xsk_meta_unused __attribute__((unused));
const enum jm_meta_flag jm_meta_flag_unused __attribute__((unused));
const enum jm_meta_magic jm_meta_magic_unused __attribute__((unused));
