package bpf

import (
	"crypto/sha256"
	"encoding/hex"
)

// ObjectSHA256 is the SHA-256 of the BPF object embedded in the binary
// (jmxdp_bpfel.o as bpf2go committed it), so that `jmxdp version` says
// which program a build loads.
func ObjectSHA256() string {
	sum := sha256.Sum256(_JmxdpBytes)
	return hex.EncodeToString(sum[:])
}
