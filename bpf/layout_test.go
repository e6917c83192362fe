package bpf

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyMapsAndLoaderImportTheObject: the rest of the tree speaks
// userspace/vocab, so that a package that only needs jmxdp's words does not
// embed the program (docs/architecture.md). Tests count too.
func TestOnlyMapsAndLoaderImportTheObject(t *testing.T) {
	const self = "github.com/jmxdp/jmxdp/bpf"
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to list the packages with: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}} {{join .TestImports \" \"}} {{join .XTestImports \" \"}}", "github.com/jmxdp/jmxdp/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := map[string]bool{self: true, "github.com/jmxdp/jmxdp/maps": true, "github.com/jmxdp/jmxdp/loader": true}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		n++
		for _, imp := range f[1:] {
			if imp == self && !allowed[f[0]] {
				t.Errorf("%s imports %s: only maps and loader may", f[0], self)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d packages listed", n)
	}
}
