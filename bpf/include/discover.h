/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Port discovery (docs/datapath.md, "Port discovery"): UDP to a port jmxdp
 * does not decode that looks like what routers send is counted per port,
 * for `jmxdp stats` to suggest. Nothing here changes a frame's fate.
 */
#ifndef JMXDP_DISCOVER_H
#define JMXDP_DISCOVER_H

#include <linux/bpf.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "maps.h"
#include "parsing_helpers.h"
#include "stats.h"

/* PPP in HDLC-like framing (RFC 1662), as a mirrored packet may start. */
struct ppp_hdr {
	__u8 address;
	__u8 control;
	__be16 protocol;
};

/* GTP-U's first word, which an 8-byte Jmirror header could be mistaken
 * for: flags (version in the top 3 bits), message type, length. */
struct gtp_lookalike_hdr {
	__u8 flags;
	__u8 type;
	__be16 length;
};

/* An IPv4 header without options whose checksum holds. */
static __always_inline int ipv4_header_sound(const struct iphdr *iph,
					     __u32 inner_len)
{
	const __u8 *q = (const __u8 *)iph;
	__u32 sum = 0;
	int i;

	if (iph->ihl != JM_IPV4_MIN_IHL || bpf_ntohs(iph->tot_len) != inner_len)
		return 0;
#pragma unroll
	for (i = 0; i < (int)sizeof(*iph); i += 2)
		sum += (q[i] << 8) | q[i + 1];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == JM_CSUM_OK;
}

static __always_inline int ppp_protocol_known(__u16 proto)
{
	switch (proto) {
	case JM_PPP_IPV4:
	case JM_PPP_IPV6:
	case JM_PPP_LCP:
	case JM_PPP_IPCP:
	case JM_PPP_IPV6CP:
	case JM_PPP_PAP:
	case JM_PPP_CHAP:
		return 1;
	}
	return 0;
}

/*
 * Port discovery: does a UDP datagram to a port jmxdp does not decode look
 * like what routers send? All of: source port == destination port, a zero
 * checksum over IPv4, V bits 0, not GTP-U's shape, and a mirrored packet
 * whose own header agrees exactly with the UDP length (IPv4 without options
 * and a valid header checksum, IPv6 payload length) or a PPP frame with a
 * known protocol. docs/datapath.md says why each is there.
 */
static __always_inline int jmirror_lookalike(struct udphdr *udph, int udp_len,
					     __u64 udp_off, __u64 limit,
					     void *data_end, int outer_v4)
{
	struct jmirror_hdr *jh = (void *)(udph + 1);
	struct gtp_lookalike_hdr *gtp = (void *)jh;
	struct ppp_hdr *ppp = (void *)(jh + 1);
	const __u8 *q = (const __u8 *)(jh + 1);
	struct iphdr *ip4 = (void *)q;
	struct ipv6hdr *ip6 = (void *)q;
	__u32 inner_len;

	if (udph->source != udph->dest || (outer_v4 && udph->check != 0))
		return 0;
	if (udp_len < JM_MIN_UDP_LEN + (int)sizeof(*ppp) ||
	    udp_off + udp_len > limit)
		return 0;
	inner_len = udp_len - JM_MIN_UDP_LEN;
	/* The PPP header's 4 bytes hold every first field asked below. */
	if ((void *)(ppp + 1) > data_end)
		return 0;
	if (bpf_ntohl(jh->word0) >> JM_VERSION_SHIFT)
		return 0; /* V bits: always 0 from real routers */
	if ((gtp->flags >> JM_GTP_VERSION_SHIFT) == JM_GTP_VERSION_1 &&
	    gtp->type == JM_GTP_TYPE_GPDU && bpf_ntohs(gtp->length) == inner_len)
		return 0; /* GTP-U: 8-byte header, then an IP packet too */
	if (ppp->address == JM_PPP_ADDRESS && ppp->control == JM_PPP_CONTROL)
		return ppp_protocol_known(bpf_ntohs(ppp->protocol));
	if (ip4->version == JM_IP_VERSION_4) {
		if ((void *)(ip4 + 1) > data_end)
			return 0;
		return ipv4_header_sound(ip4, inner_len);
	}
	if (ip6->version == JM_IP_VERSION_6) {
		/* payload_len and hop_limit: the first 8 bytes. */
		if ((void *)&ip6->saddr > data_end)
			return 0;
		return bpf_ntohs(ip6->payload_len) + sizeof(*ip6) == inner_len &&
		       ip6->hop_limit != 0;
	}
	return 0;
}

static __always_inline void note_candidate(struct jm_counters *c, __u32 port,
					   int udp_len)
{
	struct jm_candidate_value *v = bpf_map_lookup_elem(&jm_candidates, &port);

	stat_add(c, JM_STAT_CANDIDATE, 1);
	if (v) {
		__sync_fetch_and_add(&v->packets, 1);
		__sync_fetch_and_add(&v->bytes, udp_len - JM_MIN_UDP_LEN);
	}
}

#endif /* JMXDP_DISCOVER_H */
