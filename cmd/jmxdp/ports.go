package main

import (
	"fmt"
	"strconv"
	"strings"
)

// portList is the --port flag of run and decode: UDP ports, repeatable or
// comma-separated (--port 30030,30031 --port 40000), each checked to be
// 1-65535 as it is parsed. With allowAuto it also takes "auto" (decode:
// every port where Jmirror-looking traffic is found).
type portList struct {
	ports     []uint16
	auto      bool
	allowAuto bool
}

// String is "" until a port is given, so that the help prints no pflag
// default: the usage says what the default is (the config file's ports).
func (p *portList) String() string {
	var parts []string
	for _, port := range p.ports {
		parts = append(parts, strconv.Itoa(int(port)))
	}
	if p.auto {
		parts = append(parts, "auto")
	}
	return strings.Join(parts, ",")
}

func (p *portList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "auto" && p.allowAuto {
			p.auto = true
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			if p.allowAuto {
				return fmt.Errorf("%q is not a UDP port (1-65535) or auto", f)
			}
			return fmt.Errorf("%q is not a UDP port (1-65535)", f)
		}
		p.ports = append(p.ports, uint16(n))
	}
	return nil
}

func (p *portList) Type() string { return "ports" }
