/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The policy: the global switches, a stream's action (exact (mid, sid),
 * then (mid, any sid), then the default), the allowlist of routers, and
 * the word a stream's entry caches its action in (docs/datapath.md,
 * "Policy cache").
 */
#ifndef JMXDP_POLICY_H
#define JMXDP_POLICY_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"

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

/* The global switches, copied once per Jmirror frame. A copy, not the map
 * pointer: clang may otherwise merge it with a policy value pointer, which
 * the verifier refuses. */
static __always_inline struct jm_settings load_settings(void)
{
	struct jm_settings out = { .default_action = JM_ACTION_CAPTURE };
	__u32 zero = 0;
	struct jm_settings *cfg = bpf_map_lookup_elem(&jm_config, &zero);

	if (cfg)
		out = *cfg;
	return out;
}

/* Policy lookup: exact (mid, sid), then (mid, any sid), then the default,
 * read only when neither rule exists (most frames never get here: their
 * action is cached). Values userspace should never write are treated as
 * pass: never lose. */
static __always_inline __u32 lookup_action(__u32 mid, __u32 sid)
{
	struct jm_policy_key pk = { .mid = mid, .sid = sid,
				    .scope = JM_SCOPE_EXACT };
	struct jm_policy_value *pv;
	__u32 action;

	pv = bpf_map_lookup_elem(&jm_policy, &pk);
	if (!pv) {
		pk.sid = 0;
		pk.scope = JM_SCOPE_MID;
		pv = bpf_map_lookup_elem(&jm_policy, &pk);
	}
	action = pv ? pv->action : load_settings().default_action;
	return jm_action_sane(action);
}

/* Is router in the allowlist (or is there none)? */
static __always_inline int source_trusted(const struct jm_settings *cfg,
					  const __u8 *router)
{
	struct jm_allow_key key = { .prefixlen = JM_ADDR_LEN * 8 };

	if (!cfg->allowlist_enabled)
		return 1;
	__builtin_memcpy(key.addr, router, JM_ADDR_LEN);
	return bpf_map_lookup_elem(&jm_allowlist, &key) != NULL;
}

/* The policy generation: bumped by userspace at every policy change, so
 * that an action cached under an older one is looked up again. */
static __always_inline __u32 policy_gen(void)
{
	__u32 zero = 0;
	__u32 *gen = bpf_map_lookup_elem(&jm_policy_gen, &zero);

	return gen ? *gen : 0;
}

/* The cached action as one word: valid bit, action, generation. */
static __always_inline __u64 policy_cache_word(__u32 gen, __u32 action)
{
	return ((__u64)gen << JM_POLICY_CACHE_GEN_SHIFT) |
	       JM_POLICY_CACHE_VALID | action;
}

#endif /* JMXDP_POLICY_H */
