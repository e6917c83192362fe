package bpf

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/cilium/ebpf"
)

// bpf2go generates with the lowercase identifier jmxdp, so that what it
// makes stays inside this package; what maps and loader need of it is named
// here, once, without the generator's prefixes.

// LoadSpec returns the embedded program's collection spec.
func LoadSpec() (*ebpf.CollectionSpec, error) { return loadJmxdp() }

// The loaded object: its programs, maps and variables.
type (
	Objects   = jmxdpObjects
	Maps      = jmxdpMaps
	Programs  = jmxdpPrograms
	Variables = jmxdpVariables
)

// ProgJmxdp is the program's name in the object.
const ProgJmxdp = jmxdpProgJmxdp

// The maps' keys and values, and the AF_XDP metadata, as the C declares
// them (bpf/include/structs.h).
type (
	StreamKey      = jmxdpJmStreamKey
	StreamValue    = jmxdpJmStreamValue
	PolicyKey      = jmxdpJmPolicyKey
	PolicyValue    = jmxdpJmPolicyValue
	Settings       = jmxdpJmSettings
	AllowKey       = jmxdpJmAllowKey
	Addr           = jmxdpJmAddr
	FragKey        = jmxdpJmFragKey
	FragValue      = jmxdpJmFragValue
	Frag6Key       = jmxdpJmFrag6Key
	PairKey        = jmxdpJmPairKey
	Pair6Key       = jmxdpJmPair6Key
	PairValue      = jmxdpJmPairValue
	Counters       = jmxdpJmCounters
	UntrustedValue = jmxdpJmUntrustedValue
	CandidateValue = jmxdpJmCandidateValue
	FwdStreamValue = jmxdpJmFwdStreamValue
	FwdSrcKey      = jmxdpJmFwdSrcKey
	FwdSettings    = jmxdpJmFwdSettings
	XskMeta        = jmxdpJmXskMeta
	StreamSlot     = jmxdpJmStreamSlot
	RouterTotal    = jmxdpJmRouterTotal
)

// Policy scopes (enum jm_policy_scope).
const (
	ScopeExact = uint32(jmxdpJmPolicyScopeJM_SCOPE_EXACT)
	ScopeMID   = uint32(jmxdpJmPolicyScopeJM_SCOPE_MID)
)

// struct jm_xsk_meta's flags (enum jm_meta_flag) and magic.
const (
	MetaOuterV6  = uint8(jmxdpJmMetaFlagJM_META_OUTER_V6)
	MetaFirstFrg = uint8(jmxdpJmMetaFlagJM_META_FIRST_FRAG)
	MetaLaterFrg = uint8(jmxdpJmMetaFlagJM_META_LATER_FRAG)
	MetaHeld     = uint8(jmxdpJmMetaFlagJM_META_HELD)
	MetaForward  = uint8(jmxdpJmMetaFlagJM_META_FORWARD)
	MetaMagic    = uint32(jmxdpJmMetaMagicJM_META_MAGIC)
)

// ObjectSHA256 is the SHA-256 of the BPF object embedded in the binary
// (jmxdp_bpfel.o as bpf2go committed it), so that `jmxdp version` says
// which program a build loads.
func ObjectSHA256() string {
	sum := sha256.Sum256(_JmxdpBytes)
	return hex.EncodeToString(sum[:])
}

// MapSet is the object's maps (the struct bpf2go embeds unexported).
func (o *Objects) MapSet() *Maps { return &o.jmxdpMaps }
