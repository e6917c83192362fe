package loader_test

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// verifierBudget is the share of the kernel's 1M-instruction limit the
// program may take: a change that takes it past this is one merge away from
// a program that no longer loads (issue 16 and 17 together went past the
// limit once), and a kernel that explores more states gets the rest.
const verifierBudget = 750_000

// TestVerifierHeadroom loads jmxdp with the verifier's statistics and logs
// how many instructions it processed (docs/datapath.md quotes it):
//
//	go test -run TestVerifierHeadroom -v ./loader
func TestVerifierHeadroom(t *testing.T) {
	testenv.RequireRoot(t)
	spec, err := bpf.LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	for name := range spec.Programs {
		if name != bpf.ProgJmxdp {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
	if err != nil {
		testenv.SkipOrFail(t, "load jmxdp: "+err.Error())
	}
	defer coll.Close()
	m := regexp.MustCompile(`processed (\d+) insns`).FindStringSubmatch(coll.Programs[bpf.ProgJmxdp].VerifierLog)
	if m == nil {
		t.Fatalf("no instruction count in the verifier's log:\n%s", coll.Programs[bpf.ProgJmxdp].VerifierLog)
	}
	n, _ := strconv.Atoi(m[1])
	t.Logf("jmxdp: the verifier processed %d instructions (budget %d, limit 1000000)", n, verifierBudget)
	if n > verifierBudget {
		t.Errorf("jmxdp takes %d verifier instructions, over the budget of %d", n, verifierBudget)
	}
}
