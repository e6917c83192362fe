package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/spf13/cobra"
)

// version and revision are set at link time by `make build` and the
// Dockerfile (-ldflags "-X main.version=... -X main.revision=..."): git
// describe and the commit. A plain `go build` leaves them empty, and
// currentBuild falls back on what Go stamped into the binary.
var (
	version  string
	revision string
)

// buildInfo is what `jmxdp version` prints and jmxdp_build_info reports.
type buildInfo struct {
	Version   string
	Revision  string
	GoVersion string
	Platform  string
	// BPFObject is the SHA-256 of the embedded XDP program's object.
	BPFObject string
}

func currentBuild() buildInfo {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		info = nil
	}
	b := resolveBuild(version, revision, info)
	b.GoVersion = runtime.Version()
	b.Platform = runtime.GOOS + "/" + runtime.GOARCH
	b.BPFObject = loader.ObjectSHA256()
	return b
}

// resolveBuild prefers the link-time values; without them it takes the
// module version and the VCS settings of info (nil: none), which `go
// build` records in a git checkout (-buildvcs=auto): vcs.revision, and
// vcs.modified for uncommitted changes.
func resolveBuild(ldVersion, ldRevision string, info *debug.BuildInfo) buildInfo {
	b := buildInfo{Version: ldVersion, Revision: ldRevision}
	if info == nil {
		if b.Version == "" {
			b.Version = "dev"
		}
		return b
	}
	var modified bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if b.Revision == "" {
				b.Revision = s.Value
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if b.Version == "" {
		// Go 1.24 and later derive a pseudo-version from the VCS
		// ("v0.0.0-20251203101500-38acab6f12e4+dirty"); "(devel)" is a build
		// without VCS information.
		b.Version = "dev"
		if v := info.Main.Version; v != "" && v != "(devel)" {
			b.Version = v
		}
		if modified && !strings.Contains(b.Version, "dirty") {
			b.Version += "+dirty"
		}
	}
	return b
}

// buildVersion is what jmxdp_build_info reports: the version and revision.
func buildVersion() (version, revision string) {
	b := currentBuild()
	return b.Version, b.Revision
}

// short is the one line of --version.
func (b buildInfo) short() string {
	rev := b.Revision
	if rev == "" {
		rev = "unknown"
	}
	return fmt.Sprintf("%s (revision %s, %s, %s)", b.Version, rev, b.GoVersion, b.Platform)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, revision, Go version and the BPF object's hash",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := currentBuild()
			rev := b.Revision
			if rev == "" {
				rev = "unknown (built outside a git checkout, without make build)"
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "jmxdp %s\n", b.Version)
			fmt.Fprintf(w, "revision:   %s\n", rev)
			fmt.Fprintf(w, "go:         %s %s\n", b.GoVersion, b.Platform)
			fmt.Fprintf(w, "bpf object: sha256:%s\n", b.BPFObject)
			return nil
		},
	}
}
