/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The coarse clock read once per jiffy (docs/datapath.md, "Counter cost"). */
#ifndef JMXDP_CLOCK_H
#define JMXDP_CLOCK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"

/*
 * CLOCK_MONOTONIC_COARSE, read through clock_map, a per-CPU array of one
 * struct jm_clock: the clock moves on only at a tick, so within a jiffy
 * (bpf_jiffies64, which the verifier inlines into a load) it is the value
 * read last, and the helper call runs once per jiffy per CPU rather than
 * once per frame. Its resolution stays a jiffy; it may lag the helper by
 * at most one tick where jiffies moved on before the timekeeper did.
 */
static __always_inline __u64 coarse_now_in(void *clock_map)
{
	__u32 zero = 0;
	struct jm_clock *clk = bpf_map_lookup_elem(clock_map, &zero);
	__u64 j = bpf_jiffies64();

	if (!clk)
		return bpf_ktime_get_coarse_ns();
	if (clk->jiffies != j) {
		clk->ns = bpf_ktime_get_coarse_ns();
		clk->jiffies = j;
	}
	return clk->ns;
}

#endif /* JMXDP_CLOCK_H */
