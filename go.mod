module github.com/jmxdp/jmxdp

go 1.26.0

require github.com/gopacket/gopacket v1.7.7

require (
	github.com/cilium/ebpf v0.22.0 // indirect
	golang.org/x/net v0.55.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

tool github.com/cilium/ebpf/cmd/bpf2go
