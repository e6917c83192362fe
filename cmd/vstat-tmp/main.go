package main

import (
	"fmt"
	"regexp"

	"github.com/cilium/ebpf"
	"github.com/jmxdp/jmxdp/bpf"
)

func main() {
	spec, err := bpf.LoadSpec()
	if err != nil {
		panic(err)
	}
	for name, ps := range spec.Programs {
		if name != "jmxdp" {
			delete(spec.Programs, name)
		}
		_ = ps
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
	if err != nil {
		panic(err)
	}
	defer coll.Close()
	re := regexp.MustCompile(`processed \d+ insns.*`)
	for n, p := range coll.Programs {
		fmt.Println(n, re.FindString(p.VerifierLog))
	}
}
