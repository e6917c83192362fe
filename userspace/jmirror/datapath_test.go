package jmirror_test

import (
	"testing"

	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/jmirror/fixtures"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The datapath tables (userspace/jmirror/fixtures) against the Go engine,
// without root; loader runs the same tables against the kernel program.

func TestDatapath(t *testing.T)    { runTable(t, fixtures.Datapath()) }
func TestIPv6Shapes(t *testing.T)  { runTable(t, fixtures.IPv6Shapes()) }
func TestJumboFrames(t *testing.T) { runTable(t, fixtures.Jumbo()) }

func runTable(t *testing.T, cases []fixtures.Case) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			const who = "Go engine"
			eng := jmirror.NewEngine(c.Config.Engine(), nil)
			c.Run(t, who, func(f []byte) (vocab.Verdict, error) { return eng.Process(f).Verdict, nil })
			c.CheckCounters(t, who, eng.Counters())
			fixtures.CheckStreams(t, who, eng.Streams(), c.Streams)
		})
	}
}
