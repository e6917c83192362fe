/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The global counters (jm_stats, per CPU): jmxdp.c and forward.h add to
 * them through the one helper. */
#ifndef JMXDP_STATS_H
#define JMXDP_STATS_H

static __always_inline struct jm_counters *counters(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&jm_stats, &zero);
}

static __always_inline void stat_add(struct jm_counters *c, __u32 stat,
				     __u64 n)
{
	if (c && stat < JM_STAT_MAX)
		c->count[stat] += n;
}

#endif /* JMXDP_STATS_H */
