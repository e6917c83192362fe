package bpf

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"
)

// The hash is the committed object's, byte for byte.
func TestObjectSHA256(t *testing.T) {
	data, err := os.ReadFile("jmxdp_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got, want := ObjectSHA256(), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("ObjectSHA256 %s, want %s", got, want)
	}
}
