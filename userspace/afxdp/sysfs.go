package afxdp

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RxQueues returns how many RX queues ifname has, counting the rx-*
// entries of /sys/class/net/IFNAME/queues. An AF_XDP socket serves one
// queue, so a capture needs one socket per queue.
func RxQueues(ifname string) (int, error) {
	if ifname == "" || ifname == "." || ifname == ".." || strings.ContainsRune(ifname, '/') {
		return 0, fmt.Errorf("afxdp: invalid interface name %q", ifname)
	}
	dir := filepath.Join("/sys/class/net", ifname, "queues")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("afxdp: RX queues of %s: %w", ifname, err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "rx-") {
			n++
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("afxdp: %s lists no RX queues in %s", ifname, dir)
	}
	return n, nil
}
