//go:build linux

// Package seccomp reads a seccomp profile in the JSON of the OCI runtime
// spec (what a Kubernetes Localhost profile is, and what runc, crun and
// containerd read) and installs it as a filter on the calling process, as
// the container runtime does before it executes the container's program.
// jmxdp's tests use it to run the daemon under the profile the DaemonSet
// ships (deploy/kubernetes/jmxdp-seccomp.json).
//
// Only what that profile uses is supported: a default action of
// SCMP_ACT_ERRNO (with defaultErrnoRet) or SCMP_ACT_KILL*, and rules that
// allow calls by name, without argument conditions. Anything else is
// refused rather than approximated.
package seccomp

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Profile is a seccomp profile (runtime-spec "LinuxSeccomp").
type Profile struct {
	DefaultAction   string   `json:"defaultAction"`
	DefaultErrnoRet *uint32  `json:"defaultErrnoRet"`
	Architectures   []string `json:"architectures"`
	Syscalls        []Rule   `json:"syscalls"`
}

// Rule is one entry of a profile's syscalls.
type Rule struct {
	Names  []string          `json:"names"`
	Action string            `json:"action"`
	Args   []json.RawMessage `json:"args"`
}

// Load reads a profile and checks that this package can install it.
func Load(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	var p Profile
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("seccomp profile %s: %w", path, err)
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("seccomp profile %s: %w", path, err)
	}
	return &p, nil
}

func (p *Profile) check() error {
	switch p.DefaultAction {
	case "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD":
	default:
		return fmt.Errorf("defaultAction %q: only an allowlist (SCMP_ACT_ERRNO or SCMP_ACT_KILL*) is supported", p.DefaultAction)
	}
	for i, r := range p.Syscalls {
		if r.Action != "SCMP_ACT_ALLOW" {
			return fmt.Errorf("syscalls[%d]: action %q: only SCMP_ACT_ALLOW is supported", i, r.Action)
		}
		if len(r.Args) > 0 {
			return fmt.Errorf("syscalls[%d]: argument conditions are not supported", i)
		}
	}
	return nil
}

// Names are the calls the profile allows, sorted, each once.
func (p *Profile) Names() []string {
	var out []string
	for _, r := range p.Syscalls {
		out = append(out, r.Names...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Without returns a copy of the profile that does not allow names.
func (p *Profile) Without(names ...string) *Profile {
	q := *p
	q.Syscalls = nil
	for _, r := range p.Syscalls {
		r.Names = slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool { return slices.Contains(names, n) })
		q.Syscalls = append(q.Syscalls, r)
	}
	return &q
}

// Filter compiles the profile to a classic BPF program for this
// architecture: another architecture's calls kill the process, x32 calls
// and those the profile does not allow get the default action. It fails
// on a name it has no number for, and where it has no table.
func (p *Profile) Filter() ([]unix.SockFilter, error) {
	if numbers == nil {
		return nil, fmt.Errorf("seccomp: no call numbers for %s", runtime.GOARCH)
	}
	def := uint32(unix.SECCOMP_RET_KILL_PROCESS)
	if p.DefaultAction == "SCMP_ACT_ERRNO" {
		errno := uint32(unix.EPERM)
		if p.DefaultErrnoRet != nil {
			errno = *p.DefaultErrnoRet
		}
		def = unix.SECCOMP_RET_ERRNO | errno&unix.SECCOMP_RET_DATA
	} else if p.DefaultAction == "SCMP_ACT_KILL_THREAD" || p.DefaultAction == "SCMP_ACT_KILL" {
		def = unix.SECCOMP_RET_KILL_THREAD
	}
	var nrs []uint32
	for _, n := range p.Names() {
		nr, ok := numbers[n]
		if !ok {
			return nil, fmt.Errorf("seccomp: no %s call number for %q", runtime.GOARCH, n)
		}
		nrs = append(nrs, nr)
	}
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
		// Offsets in struct seccomp_data.
		offNr   = 0
		offArch = 4
	)
	prog := []unix.SockFilter{
		{Code: ld, K: offArch},
		{Code: jeq, Jt: 1, K: arch},
		{Code: ret, K: unix.SECCOMP_RET_KILL_PROCESS},
		{Code: ld, K: offNr},
	}
	if x32 != 0 {
		prog = append(prog, unix.SockFilter{Code: jge, Jf: 1, K: x32}, unix.SockFilter{Code: ret, K: def})
	}
	// One test a call, each followed by its ALLOW: every jump is short,
	// whatever the number of calls.
	for _, nr := range nrs {
		prog = append(prog, unix.SockFilter{Code: jeq, Jf: 1, K: nr}, unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW})
	}
	prog = append(prog, unix.SockFilter{Code: ret, K: def})
	if len(prog) > 4096 { // BPF_MAXINSNS
		return nil, errors.New("seccomp: filter too long")
	}
	return prog, nil
}

// Install sets no_new_privs and installs the profile's filter on every
// thread of the process (TSYNC). It cannot be undone: call it in a process
// made for it, before it executes the program to confine.
func (p *Profile) Install() error {
	prog, err := p.Filter()
	if err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("seccomp: install filter: %w", errno)
	}
	return nil
}
