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

/* IPv6 fixed header; extension headers are not walked (routers send none). */
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
