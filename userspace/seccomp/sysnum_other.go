//go:build linux && !amd64

package seccomp

// No call table here yet: Filter refuses, and the tests skip.
var numbers map[string]uint32

const (
	arch = 0
	x32  = 0
)
