/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types shared between the XDP program and Go. bpf2go generates the Go side
 * (-type), so field order and sizes here are the ABI of the pinned maps:
 * append fields, never reorder them.
 */
#ifndef JMXDP_STRUCTS_H
#define JMXDP_STRUCTS_H

#include <linux/types.h>
#include "consts.h"

/* What happens to the frames of a stream. Zero is the default: capture. */
enum jm_action {
	JM_ACTION_CAPTURE = 0, /* count, then redirect to AF_XDP */
	JM_ACTION_COUNT = 1,   /* count, then drop */
	JM_ACTION_PASS = 2,    /* count, then hand to the kernel stack */
	JM_ACTION_UNTRUSTED = 3, /* internal: fragments of an untrusted datagram */
	/* internal: fragments of a datagram whose first fragment was not
	 * Jmirror (or malformed), from a pair whose early fragments are held:
	 * its later fragments pass as unmatched, never held. */
	JM_ACTION_NOT_JMIRROR = 4,
	/* count, then re-originate to the rule's target (docs/forward.md) */
	JM_ACTION_FORWARD = 5,
	/* internal, in jm_frags/jm_frags6 only: a later fragment came before
	 * its first and was held in userspace (JM_META_HELD). Its first
	 * fragment, if forwarded, then sends the datagram to userspace. */
	JM_ACTION_EARLY = 6,
	/* internal, in jm_frags/jm_frags6 only: a forwarded datagram with
	 * fragments held in userspace; all its frames go to userspace, which
	 * reassembles it and sends it from a socket (forward_frag_early). */
	JM_ACTION_FORWARD_USER = 7,
};

/* Kind of the mirrored packet, from its first bytes. */
enum jm_inner {
	JM_INNER_IPV4 = 0,
	JM_INNER_IPV6 = 1,
	JM_INNER_PPP = 2,
	JM_INNER_UNKNOWN = 3,
	JM_INNER_EMPTY = 4,
	JM_INNER_MAX = 5,
};

/* Global per-CPU counters, by reason. Frames fall into exactly one of
 * NOT_JMIRROR, JMIRROR, MALFORMED_*, UNTRUSTED, FRAG_TRACKED, FRAG_UNMATCHED,
 * FRAG_DUPLICATE, FRAG_HELD, IPV6_EXT_LONG. Append only: pinned jm_stats of an older size
 * are migrated by index. */
enum jm_stat {
	JM_STAT_FRAMES = 0,
	JM_STAT_NOT_JMIRROR = 1,
	JM_STAT_JMIRROR = 2,          /* datagrams counted into a stream */
	JM_STAT_JMIRROR_BYTES = 3,    /* mirrored-packet bytes of those */
	JM_STAT_MALFORMED_SHORT = 4,  /* UDP payload < 8 bytes */
	JM_STAT_MALFORMED_TRUNCATED = 5, /* UDP length beyond the frame */
	JM_STAT_FRAG_FIRST = 6,       /* Jmirror datagrams that came fragmented */
	JM_STAT_FRAG_TRACKED = 7,     /* later fragments matched to a stream */
	JM_STAT_FRAG_UNMATCHED = 8,   /* later fragments matching nothing: passed */
	JM_STAT_UNTRUSTED = 9,        /* frames from sources not in the allowlist */
	JM_STAT_ACTION_CAPTURE = 10,  /* frames given each action */
	JM_STAT_ACTION_COUNT = 11,
	JM_STAT_ACTION_PASS = 12,
	JM_STAT_CAPTURE_FAILED = 13,  /* no AF_XDP socket on the queue: passed */
	JM_STAT_STREAM_NEW = 14,      /* entries inserted in the stream table */
	JM_STAT_VERSION_NONZERO = 15, /* Jmirror datagrams with V != 0 */
	JM_STAT_CANDIDATE = 16,       /* not_jmirror frames that look like Jmirror on a port not decoded */
	/* Outer IPv6 from an address that embeds IPv4 (::ffff:0:0/96, ::/96):
	 * dropped, and also counted in UNTRUSTED. */
	JM_STAT_UNTRUSTED_MAPPED = 17,
	/* A copy of a first fragment already counted (same fragment key, same
	 * stream, length and fingerprint, within JM_FRAG_WINDOW_NS): given its
	 * datagram's action, not counted again. */
	JM_STAT_FRAG_DUPLICATE = 18,
	/* A later fragment before its first, from a pair that recently sent
	 * only captured fragmented Jmirror: redirected for userspace to hold. */
	JM_STAT_FRAG_HELD = 19,
	/* Outer IPv6 whose extension-header chain is still going after
	 * JM_IPV6_MAX_EXT headers: passed, not walked further. */
	JM_STAT_IPV6_EXT_LONG = 20,
	/* The forward action (docs/forward.md): frames given it, those sent
	 * by the program, and those handed to userspace, by reason. */
	JM_STAT_ACTION_FORWARD = 21,
	JM_STAT_FWD_SENT = 22,
	JM_STAT_FWD_NEIGH_MISS = 23,  /* fib lookup: no neighbour entry */
	JM_STAT_FWD_NO_ROUTE = 24,    /* fib lookup: no usable route */
	JM_STAT_FWD_TOO_BIG = 25,     /* larger than the egress MTU once re-encapsulated */
	JM_STAT_FWD_FRAG_FAMILY = 26, /* a fragment whose outer family changes */
	JM_STAT_FWD_NO_SOURCE = 27,   /* no source address or devmap entry for the egress */
	JM_STAT_FWD_UNSUPPORTED = 28, /* a shape the program does not rewrite */
	JM_STAT_FWD_USERSPACE = 29,   /* frames redirected to AF_XDP for a socket to send */
	JM_STAT_FWD_FRAG_EARLY = 30,  /* a forwarded datagram's fragments sent to userspace: some came before the first */
	/* A stream's counts that found jm_streams full: folded into its
	 * router's jm_router_overflow total (frames, and flushed cache slots
	 * counted by their packets). */
	JM_STAT_STREAM_FULL = 31,
	/* ... and jm_router_overflow full as well: the packets, counted here
	 * only (jmxdp_stream_table_lost_packets_total). */
	JM_STAT_STREAM_LOST = 32,
	JM_STAT_MAX = 33,
};

/* A router address: IPv6, or IPv4-mapped. An IPv6 source that is itself
 * IPv4-mapped is never a router (see v4_embedded), so the two never meet. */
struct jm_addr {
	__u8 addr[JM_ADDR_LEN];
};

/* A stream as one router sends it: (router, mid, sid). */
struct jm_stream_key {
	__u8 router[JM_ADDR_LEN]; /* IPv6, or IPv4-mapped */
	__u32 mid;
	__u32 sid;
};

struct jm_stream_value {
	/* Was the packet count. A stream's packets are the sum of inner[]:
	 * one atomic add per frame fewer. Kept so the layout stays. */
	__u64 reserved;
	__u64 bytes; /* mirrored-packet bytes: UDP length - 16 */
	__u64 first_seen_ns; /* CLOCK_MONOTONIC_COARSE: jiffy resolution */
	__u64 last_seen_ns;
	__u64 inner[JM_INNER_MAX]; /* packets by kind; their sum is the packets */
	/* The stream's action as last looked up, so that most frames skip the
	 * policy lookups: JM_POLICY_CACHE_VALID | action in the low word, the
	 * jm_policy_gen it was looked up under in the high word. Written in one
	 * store, so a reader never sees half of it. 0: nothing cached. */
	__u64 policy_cache;
};

/*
 * One slot of jm_stream_cache: a stream hot on this CPU and what it counted
 * since it took the slot, not yet in its jm_streams entry. seq is bumped
 * (atomically: a full barrier) before and after the slot is flushed into the
 * table and retaken, so it is odd while that runs and a reader that sees the
 * same even seq before and after reading the table knows the table holds
 * none of the counts it read from the slot. First, so that a reader's copy
 * reads it before the rest. valid is 0 for an empty slot.
 */
struct jm_stream_slot {
	__u32 seq;
	__u32 valid;
	struct jm_stream_key key;
	__u64 bytes;
	__u64 inner[JM_INNER_MAX];
	__u64 first_seen_ns; /* of the first frame counted here; 0: none yet */
	__u64 last_seen_ns;
	/* The stream's action, as jm_stream_value.policy_cache: the slot's
	 * hits use this one, not the table's. */
	__u64 policy_cache;
};

/* A router's folded counts (jm_router_overflow per CPU, jm_router_retired). */
struct jm_router_total {
	__u64 bytes;
	__u64 inner[JM_INNER_MAX];
};

/* jm_count_scratch: a stream's first counts and a router total being
 * built, off the stack (jm_count_stream's frame and the caller's must fit
 * in 512 bytes). */
struct jm_count_scratch {
	struct jm_stream_value nv;
	struct jm_router_total nt;
};

enum jm_policy_scope {
	JM_SCOPE_EXACT = 0, /* (mid, sid) */
	JM_SCOPE_MID = 1,   /* (mid, any sid); sid is 0 */
};

struct jm_policy_key {
	__u32 mid;
	__u32 sid;
	__u32 scope;
};

struct jm_policy_value {
	__u32 action;
	/* Appended (issue 16): the forward action's target. A value of the
	 * older 4-byte layout migrates with zeros, which no other action reads. */
	__u16 fwd_port;   /* host order; 0: the stream's own port */
	__u8 fwd_family;  /* JM_FWD_FAMILY_V4 or JM_FWD_FAMILY_V6 */
	__u8 fwd_pad;
	__u8 fwd_addr[JM_ADDR_LEN]; /* IPv6, or IPv4-mapped */
};

struct jm_settings {
	__u32 default_action;
	__u32 allowlist_enabled; /* non-zero when the allowlist has entries */
};

/* LPM trie key: prefixlen counts bits of addr, IPv4 as IPv4-mapped. */
struct jm_allow_key {
	__u32 prefixlen;
	__u8 addr[JM_ADDR_LEN];
};

/* Outer IPv4 fragment identity, as the kernel's defragmenter keys it. */
struct jm_frag_key {
	__u32 saddr;
	__u32 daddr;
	__u16 id;
	__u8 proto;
	__u8 pad;
};

struct jm_frag_value {
	__u32 mid;
	__u32 sid;
	__u32 action;
	__u32 pad;
	/* Appended (issue 19): what tells a copy of the first fragment from
	 * another datagram reusing the IP id. 0 in entries migrated from an
	 * older layout: never a duplicate. */
	__u32 inner_len;
	__u32 reserved;
	__u64 first_ns;    /* CLOCK_MONOTONIC_COARSE of the first copy */
	__u64 fingerprint; /* of the mirrored packet's first bytes */
};

/* Outer IPv6 fragment identity, as RFC 8200 and the kernel's defragmenter
 * key it: no protocol (only the first fragment's next header counts). */
struct jm_frag6_key {
	__u8 saddr[JM_ADDR_LEN];
	__u8 daddr[JM_ADDR_LEN];
	__u32 id;
};

/* A router -> collector pair of outer IPv4 addresses that sends fragmented
 * Jmirror, and when it last did with each kind of action. */
struct jm_pair_key {
	__u32 saddr;
	__u32 daddr;
};

struct jm_pair_value {
	__u64 capture_ns; /* last first fragment captured */
	__u64 other_ns;   /* last first fragment counted or passed */
};

/* The same pair over outer IPv6 (jm_frag_pairs6; value jm_pair_value). */
struct jm_pair6_key {
	__u8 saddr[JM_ADDR_LEN];
	__u8 daddr[JM_ADDR_LEN];
};

/* The per-CPU counters: one lookup per frame, indexed by enum jm_stat. */
struct jm_counters {
	__u64 count[JM_STAT_MAX];
};

struct jm_untrusted_value {
	__u64 packets;
	__u64 last_seen_ns;
};

/* Jmirror-looking datagrams on a port jmxdp does not decode, per port. */
struct jm_candidate_value {
	__u64 packets;
	__u64 bytes; /* what would be mirrored-packet bytes: UDP length - 16 */
};

/* XDP metadata in front of a captured frame, for the AF_XDP reader: what
 * the program learnt parsing it, so that userspace never parses the frame
 * again, and the receive time, taken in the kernel before any queueing, so
 * that files carry when the frame arrived and not when userspace got round
 * to it. bpf_xdp_adjust_meta takes at most 32 bytes: this is all of them. */
/* struct jm_xsk_meta.flags. Enums, not defines, so that bpf2go hands them
 * to Go and userspace reads the metadata with the program's own words. */
enum jm_meta_flag {
	JM_META_OUTER_V6 = 0x1,   /* the outer header is IPv6 (else IPv4) */
	JM_META_FIRST_FRAG = 0x2, /* first fragment of an outer IPv4 or IPv6 datagram */
	JM_META_LATER_FRAG = 0x4, /* a later fragment: only mid and sid are set */
	/* A later fragment whose first fragment has not been seen (held): mid
	 * and sid are 0, userspace keeps it until its first fragment arrives. */
	JM_META_HELD = 0x8,
	/* A frame of a forwarded stream that the program could not send
	 * (jm_xsk_meta.reserved says why, enum jm_fwd_reason): userspace sends
	 * its UDP payload to the target from a socket. */
	JM_META_FORWARD = 0x80,
};

/* Marks struct jm_xsk_meta ("JMXD"): userspace tells metadata the program
 * wrote from stale bytes when a driver has no metadata support. */
enum jm_meta_magic {
	JM_META_MAGIC = 0x4a4d5844,
};

struct jm_xsk_meta {
	__u64 rx_ns;     /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u32 mid;       /* the stream, also for a later fragment */
	__u32 sid;
	__u32 inner_len; /* mirrored-packet bytes: UDP length - 16 (a fragmented datagram's whole) */
	__u16 inner_off; /* where the mirrored packet starts in the frame */
	__u16 l3_off;    /* where the outer IP header starts: the router is its source */
	__u8 inner_kind; /* enum jm_inner */
	__u8 flags;      /* JM_META_* */
	__u16 reserved;  /* 0 */
	__u32 magic;     /* JM_META_MAGIC: this program wrote the metadata */
};

/* jm_clock's value: a jiffy (bpf_jiffies64) and CLOCK_MONOTONIC_COARSE as
 * read in it. */
struct jm_clock {
	__u64 jiffies;
	__u64 ns;
};

/* The per-CPU buffer headers are copied into when they are not linear. */
struct jm_scratch {
	__u8 buf[JM_SCRATCH_LEN];
};

/* Why a forwarded frame went to userspace (jm_xsk_meta.reserved). */
enum jm_fwd_reason {
	JM_FWD_REASON_NONE = 0,
	JM_FWD_REASON_NEIGH_MISS = 1,
	JM_FWD_REASON_NO_ROUTE = 2,
	JM_FWD_REASON_TOO_BIG = 3,
	JM_FWD_REASON_FRAG_FAMILY = 4,
	JM_FWD_REASON_NO_SOURCE = 5,
	JM_FWD_REASON_UNSUPPORTED = 6,
	JM_FWD_REASON_FRAG_EARLY = 7,
	JM_FWD_REASON_MAX = 8,
};

/* Per-stream forward counters (jm_fwd_streams). */
struct jm_fwd_stream_value {
	__u64 packets; /* frames the program sent to the target */
	__u64 bytes;   /* their UDP payload bytes (Jmirror header + mirrored) */
	__u64 reason[JM_FWD_REASON_MAX]; /* frames handed to userspace, by reason */
};

/* The source address of a forwarded frame: the egress interface's own,
 * per family; the loader fills it for each target's egress. */
struct jm_fwd_src_key {
	__u32 ifindex;
	__u32 family; /* JM_FWD_FAMILY_* */
};

/* Per-CPU scratch of the forward code: the checksum's buffer (b) and what
 * forward_frame would otherwise hold on a stack it shares with jmxdp()
 * (512 bytes for the whole call chain). Opaque to Go. */
/* forward_frame's last successful fib lookup on this CPU, reused within
 * the jiffy it was made in for the same target, port and lookup interface
 * and a frame no longer than the one it was made for (docs/forward.md,
 * "Cost"). */
struct jm_fwd_fib_cache {
	__u64 jiffies;         /* bpf_jiffies64() at the lookup; 0: empty */
	__u32 dst[4];          /* the lookup's ipv6_dst (ipv4_dst, then zeros) */
	__u32 fib_ifindex;     /* the lookup's input interface */
	__u32 egress;          /* its output interface */
	__u16 tot_len;         /* the IP length looked up: shorter fits too */
	__u16 port;            /* the ports looked up (network order) */
	__u8 family;           /* JM_AF_INET or JM_AF_INET6 */
	__u8 dmac[6];
	__u8 smac[6];
	__u8 pad[3];
};

struct jm_fwd_scratch {
	__u8 b[JM_FWD_SCRATCH_LEN];
	__u8 work[JM_FWD_WORK_LEN];
	__u8 zero[sizeof(struct jm_fwd_stream_value)];
	struct jm_fwd_fib_cache fib_cache;
};

struct jm_fwd_settings {
	/* The interface bpf_fib_lookup looks up from: one whose forwarding
	 * sysctl is on (the kernel refuses lookups from others) and that
	 * receives nothing; 0: the ingress interface (docs/forward.md). */
	__u32 fib_ifindex;
	__u32 reserved;
};

#endif /* JMXDP_STRUCTS_H */
