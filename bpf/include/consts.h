/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Constants of the Jmirror wire format and sizes of the jmxdp maps. */
#ifndef JMXDP_CONSTS_H
#define JMXDP_CONSTS_H

/* The Jmirror header: V (2 bits) | intercept id (30 bits), session id (32 bits). */
#define JM_HDR_LEN 8
#define JM_MID_MASK 0x3fffffffU
#define JM_VERSION_SHIFT 30

/* A Jmirror datagram is at least a UDP header plus a Jmirror header. */
#define JM_UDP_HDR_LEN 8
#define JM_MIN_UDP_LEN (JM_UDP_HDR_LEN + JM_HDR_LEN)

/* 802.1Q and 802.1ad: up to two tags (QinQ). */
#define JM_MAX_VLAN_DEPTH 2

/* Outer IPv4 fragmentation fields (host order, after bpf_ntohs). */
#define JM_IP_MF 0x2000
#define JM_IP_OFFSET_MASK 0x1fff
#define JM_IPV4_MIN_IHL 5

/*
 * Outer IPv6 extension headers (docs/datapath.md, "Outer shapes"). At most
 * JM_IPV6_MAX_EXT are walked: a constant trip count the verifier sees
 * unrolled; RFC 8200's recommended order has at most 6 (hop-by-hop,
 * destination options, routing, fragment, AH, destination options). A
 * chain still going after that is counted ipv6_ext_too_long.
 */
#define JM_IPV6_MAX_EXT 8
#define JM_IPV6_HOPOPTS 0
#define JM_IPV6_ROUTING 43
#define JM_IPV6_FRAGMENT 44
#define JM_IPV6_ESP 50
#define JM_IPV6_AH 51
#define JM_IPV6_DSTOPTS 60
#define JM_IPV6_FRAG_HDR_LEN 8
/* Fragment header offset-and-flags word (host order): offset in 8-byte
 * units in the top 13 bits, M in bit 0. */
#define JM_IP6_OFFSET_MASK 0xfff8
#define JM_IP6_MF 0x0001

/* Bytes of a multi-buffer frame made linear before parsing when its linear
 * part is shorter (docs/datapath.md, "Frame sizes"): Ethernet, two VLAN
 * tags, IPv6 with a few extension headers, UDP, Jmirror and the 64 bytes
 * the fingerprint hashes. */
#define JM_PULL_LEN 512
/* Where the pull is not possible (a kernel before 6.18, a pull that
 * fails), the same JM_PULL_LEN bytes are copied with bpf_xdp_load_bytes
 * into a per-CPU scratch buffer and parsed there. The buffer is larger
 * than the copy: a cursor is masked with JM_SCRATCH_MASK (>= JM_PULL_LEN,
 * so that the mask never changes a valid one) and the longest read after
 * it (the fingerprint's 64 bytes past UDP and Jmirror) still lies within
 * JM_SCRATCH_LEN. */
#define JM_SCRATCH_MASK 1023
#define JM_SCRATCH_LEN 2048

/* PPP in HDLC-like framing (RFC 1662): address and control bytes. */
#define JM_PPP_ADDRESS 0xff
#define JM_PPP_CONTROL 0x03

/* First-nibble IP versions of a mirrored packet. */
#define JM_IP_VERSION_4 4
#define JM_IP_VERSION_6 6

/* IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d) in 16-byte keys. */
#define JM_ADDR_LEN 16

/* Map sizes. Userspace may override max_entries before loading. */
#define JM_MAX_STREAMS (1U << 20)
#define JM_MAX_POLICIES 65536
#define JM_MAX_ALLOWLIST 4096
#define JM_MAX_FRAGS 16384
#define JM_MAX_FRAG_PAIRS 4096
#define JM_MAX_QUEUES 256
#define JM_MAX_UNTRUSTED 4096
#define JM_NUM_PORTS 65536

/* Port discovery: what routers' Jmirror looks like (docs/datapath.md). */
#define JM_IPV4_NOOPT_LEN 20
#define JM_IPV6_HDR_LEN 40
#define JM_CSUM_OK 0xffff
#define JM_GTP_VERSION_1 1
#define JM_GTP_VERSION_SHIFT 5
#define JM_GTP_TYPE_GPDU 0xff
/* PPP protocols a mirrored PPP session carries (RFC 1661 and friends). */
#define JM_PPP_IPV4 0x0021
#define JM_PPP_IPV6 0x0057
#define JM_PPP_LCP 0xc021
#define JM_PPP_IPCP 0x8021
#define JM_PPP_IPV6CP 0x8057
#define JM_PPP_PAP 0xc023
#define JM_PPP_CHAP 0xc223

/* Bit set in the ports map value for a port jmxdp decodes. */
#define JM_PORT_DECODE 1U

/*
 * Fragment tracking (docs/datapath.md, "Fragments out of order and
 * duplicated"). JM_FRAG_WINDOW_NS is how long a first fragment's record
 * makes a copy of it a duplicate, and how long a router -> collector pair
 * that sent captured fragmented Jmirror has its early later fragments held
 * for userspace: 30 s, the kernel's ipfrag_time and the default of
 * reassembly.timeout.
 */
#define JM_FRAG_WINDOW_NS (30ULL * 1000000000ULL)
/* A first fragment's fingerprint hashes the first JM_FP_WORDS 8-byte words
 * of the mirrored packet (its headers: inner IP id, TCP sequence, UDP
 * checksum...), those that lie in the frame and the mirrored packet. A
 * constant trip count: the verifier sees at most 8 iterations, unrolled. */
#define JM_FP_WORDS 8
#define JM_FP_SEED 0xcbf29ce484222325ULL  /* FNV-1a 64 offset basis */
#define JM_FP_PRIME 0x100000001b3ULL      /* FNV-1a 64 prime */

/* jm_stream_value.policy_cache: a valid mark and the action in the low
 * 32 bits, the policy generation in the high 32. */
#define JM_POLICY_CACHE_VALID 0x80000000U
#define JM_POLICY_CACHE_ACTION_MASK 0xffU
#define JM_POLICY_CACHE_GEN_SHIFT 32

/*
 * The per-CPU cache of hot streams in front of jm_streams (docs/datapath.md,
 * "Counter cost"): JM_STREAM_SLOTS direct-mapped slots per CPU (a power of
 * two), indexed by a multiplicative hash of the stream key's six words.
 * maps.slotIndex computes the same index in userspace.
 */
#define JM_STREAM_SLOTS 1024U
#define JM_STREAM_SLOT_MASK (JM_STREAM_SLOTS - 1)
#define JM_STREAM_HASH_MUL 0x9e3779b1U
#define JM_STREAM_KEY_WORDS 6
/* Routers whose streams found jm_streams full (jm_router_overflow), and
 * those whose idle streams userspace retired (jm_router_retired). */
#define JM_MAX_ROUTERS 65536
/* bpf_map_update_elem's BPF_NOEXIST refusal (-EEXIST), told apart from a
 * full table (-E2BIG). */
#define JM_EEXIST 17

/*
 * The forward action (issue 16, docs/forward.md). A forwarded frame leaves
 * with fresh Ethernet + IP + UDP headers in front of its Jmirror header (or,
 * for a later fragment, its fragment payload).
 */
#define JM_FWD_FAMILY_V4 4 /* jm_policy_value.fwd_family */
#define JM_FWD_FAMILY_V6 6
#define JM_ETH_HLEN 14
#define JM_IPV4_TTL 64
#define JM_IPV6_HOP_LIMIT 64
#define JM_IPV4_VERSION_IHL 0x45
#define JM_IPV6_VERSION_WORD 0x60000000U /* version 6, class and flow 0 */
#define JM_AF_INET 2   /* bpf_fib_lookup families */
#define JM_AF_INET6 10
/* The UDP checksum over IPv6 is summed JM_FWD_CSUM_CHUNK bytes at a time
 * (bpf_csum_diff takes at most 512, a multiple of 4): JM_FWD_CSUM_CHUNKS
 * of them cover a 9216-byte jumbo datagram. The scratch buffer has room
 * for the 3 pad bytes after a full chunk; the mask bounds their index. */
#define JM_FWD_CSUM_CHUNK 512
#define JM_FWD_CSUM_CHUNKS 18
#define JM_FWD_CSUM_CHUNK_MASK 0x3ff
#define JM_FWD_SCRATCH_LEN 1024
#define JM_FWD_WORK_LEN 256
/* Offsets the forward code reads headers at are below JM_PULL_LEN: masked
 * so that the verifier sees a bound on each packet pointer it builds. */
#define JM_FWD_OFF_MASK 0x3ff
#define JM_MAX_FWD_STREAMS 65536
#define JM_MAX_FWD_DEVS 64
#define JM_MAX_FWD_SRC 256

#endif /* JMXDP_CONSTS_H */
