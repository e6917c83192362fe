/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Bounds-checked header parsers over a cursor, in the style of xdp-tools'
 * parsing_helpers.h: each parse_* checks the header lies before data_end,
 * advances the cursor past it and returns the next protocol (or -1).
 */
#ifndef JMXDP_PARSING_HELPERS_H
#define JMXDP_PARSING_HELPERS_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"

struct hdr_cursor {
	void *pos;
};

/*
 * Where the headers are parsed from: the frame's linear part (packet
 * pointers), or a copy of the frame's first bytes in a per-CPU scratch
 * buffer (map value pointers) when they are not linear. data is offset 0
 * of the frame either way, so offsets taken from it are frame offsets.
 */
struct jm_view {
	void *data;
	void *data_end;
};

/*
 * The verifier bounds a map value access by the pointer's offset range,
 * not by comparisons with data_end: a cursor into the scratch copy that
 * moved by a header length read from the frame is brought back into a
 * range it can see. pos <= data_end <= data + JM_PULL_LEN at run time, so
 * the mask changes nothing then.
 */
static __always_inline void *scratch_clamp(void *data, void *pos)
{
	__u64 off = (__u64)(pos - data);

	return data + (off & JM_SCRATCH_MASK);
}

struct vlan_hdr {
	__be16 h_vlan_TCI;
	__be16 h_vlan_encapsulated_proto;
};

struct jmirror_hdr {
	__be32 word0; /* V | intercept id */
	__be32 sid;
};

static __always_inline int proto_is_vlan(__u16 h_proto)
{
	return h_proto == bpf_htons(ETH_P_8021Q) ||
	       h_proto == bpf_htons(ETH_P_8021AD);
}

/* Returns the EtherType (network order) after up to JM_MAX_VLAN_DEPTH tags. */
static __always_inline int parse_ethhdr_vlan(struct hdr_cursor *nh,
					     void *data_end,
					     struct ethhdr **ethhdr)
{
	struct ethhdr *eth = nh->pos;
	struct vlan_hdr *vlh;
	__u16 h_proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return -1;
	nh->pos = eth + 1;
	*ethhdr = eth;
	h_proto = eth->h_proto;

#pragma unroll
	for (i = 0; i < JM_MAX_VLAN_DEPTH; i++) {
		if (!proto_is_vlan(h_proto))
			break;
		vlh = nh->pos;
		if ((void *)(vlh + 1) > data_end)
			return -1;
		h_proto = vlh->h_vlan_encapsulated_proto;
		nh->pos = vlh + 1;
	}
	return h_proto;
}

/* IPv4 with any header length (IHL 5..15). Returns the IP protocol. */
static __always_inline int parse_iphdr(struct hdr_cursor *nh, void *data_end,
				       struct iphdr **iphdr)
{
	struct iphdr *iph = nh->pos;
	int hdrsize;

	if ((void *)(iph + 1) > data_end)
		return -1;
	if (iph->version != JM_IP_VERSION_4 || iph->ihl < JM_IPV4_MIN_IHL)
		return -1;
	hdrsize = iph->ihl * 4;
	if (nh->pos + hdrsize > data_end)
		return -1;
	nh->pos += hdrsize;
	*iphdr = iph;
	return iph->protocol;
}

/* IPv6 fixed header. Returns the next header; the extension headers are
 * walked by parse_ip6_ext. */
static __always_inline int parse_ip6hdr(struct hdr_cursor *nh, void *data_end,
					struct ipv6hdr **ip6hdr)
{
	struct ipv6hdr *ip6h = nh->pos;

	if ((void *)(ip6h + 1) > data_end)
		return -1;
	if (ip6h->version != JM_IP_VERSION_6)
		return -1;
	nh->pos = ip6h + 1;
	*ip6hdr = ip6h;
	return ip6h->nexthdr;
}

/* The fragment header of an outer IPv6 packet, if it has one. */
struct ip6_frag_info {
	__u32 id;        /* network order, as on the wire */
	__u16 off_flags; /* host order: JM_IP6_OFFSET_MASK | JM_IP6_MF */
	__u8 present;
	__u8 next;       /* the header after it */
};

#define JM_IP6_EXT_NOT_JMIRROR (-1)
#define JM_IP6_EXT_TOO_LONG (-2)

/*
 * Walk the extension headers after the fixed IPv6 header, at most
 * JM_IPV6_MAX_EXT of them, each bounds-checked against data_end before it
 * is read and before the cursor moves past it. Returns the protocol that
 * ends the chain (the cursor is at it), JM_IP6_EXT_NOT_JMIRROR for a chain
 * jmxdp does not accept (ESP, a malformed AH, hop-by-hop not first, two
 * fragment headers, a header cut by the frame) and JM_IP6_EXT_TOO_LONG when
 * the chain goes on after the bound. A later fragment (offset > 0) stops
 * the walk: what follows its fragment header is payload, not a header.
 * scratch: v is the scratch copy (a compile-time constant: each caller is
 * specialised).
 */
static __always_inline int parse_ip6_ext(struct hdr_cursor *nh,
					 const struct jm_view *v, int scratch,
					 int next, struct ip6_frag_info *fi)
{
	void *data_end = v->data_end;
	__u8 *h;
	__u32 len;
	int i;

	__builtin_memset(fi, 0, sizeof(*fi));
#pragma unroll
	for (i = 0; i < JM_IPV6_MAX_EXT; i++) {
		h = nh->pos;
		switch (next) {
		case JM_IPV6_HOPOPTS:
			if (i != 0)
				return JM_IP6_EXT_NOT_JMIRROR;
			/* fallthrough */
		case JM_IPV6_ROUTING:
		case JM_IPV6_DSTOPTS:
			if ((void *)(h + 2) > data_end)
				return JM_IP6_EXT_NOT_JMIRROR;
			len = ((__u32)h[1] + 1) * 8;
			break;
		case JM_IPV6_AH:
			/* RFC 4302: length in 4-byte words minus 2, at least
			 * the 12-byte fixed part, a multiple of 8 over IPv6. */
			if ((void *)(h + 2) > data_end)
				return JM_IP6_EXT_NOT_JMIRROR;
			len = ((__u32)h[1] + 2) * 4;
			if (h[1] < 1 || (len & 7))
				return JM_IP6_EXT_NOT_JMIRROR;
			break;
		case JM_IPV6_FRAGMENT:
			if (fi->present)
				return JM_IP6_EXT_NOT_JMIRROR;
			if ((void *)(h + JM_IPV6_FRAG_HDR_LEN) > data_end)
				return JM_IP6_EXT_NOT_JMIRROR;
			fi->present = 1;
			fi->next = h[0];
			fi->off_flags = (h[2] << 8) | h[3];
			__builtin_memcpy(&fi->id, h + 4, sizeof(fi->id));
			len = JM_IPV6_FRAG_HDR_LEN;
			break;
		default:
			/* UDP, ESP, no next header, anything else: the end. */
			return next;
		}
		if ((void *)h + len > data_end)
			return JM_IP6_EXT_NOT_JMIRROR;
		next = h[0];
		nh->pos = (void *)h + len;
		if (scratch)
			nh->pos = scratch_clamp(v->data, nh->pos);
		if (fi->present && (fi->off_flags & JM_IP6_OFFSET_MASK))
			return next;
	}
	switch (next) {
	case JM_IPV6_HOPOPTS:
	case JM_IPV6_ROUTING:
	case JM_IPV6_DSTOPTS:
	case JM_IPV6_AH:
	case JM_IPV6_FRAGMENT:
		return JM_IP6_EXT_TOO_LONG;
	}
	return next;
}

/* Returns the UDP length field (host order); the payload is not checked. */
static __always_inline int parse_udphdr(struct hdr_cursor *nh, void *data_end,
					struct udphdr **udphdr)
{
	struct udphdr *h = nh->pos;

	if ((void *)(h + 1) > data_end)
		return -1;
	nh->pos = h + 1;
	*udphdr = h;
	return bpf_ntohs(h->len);
}

static __always_inline int parse_jmirrorhdr(struct hdr_cursor *nh,
					    void *data_end,
					    struct jmirror_hdr **jmhdr)
{
	struct jmirror_hdr *jh = nh->pos;

	if ((void *)(jh + 1) > data_end)
		return -1;
	nh->pos = jh + 1;
	*jmhdr = jh;
	return 0;
}

#endif /* JMXDP_PARSING_HELPERS_H */
