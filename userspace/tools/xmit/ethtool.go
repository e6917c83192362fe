package xmit

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtool ioctl commands and string set (uapi linux/ethtool.h).
const (
	ethtoolGStrings = 0x1b // ETHTOOL_GSTRINGS
	ethtoolGStats   = 0x1d // ETHTOOL_GSTATS
	ethSSStats      = 1    // ETH_SS_STATS
	ethGStringLen   = 32   // ETH_GSTRING_LEN
)

// ifreqData is struct ifreq with ifr_data: the name, then a pointer in the
// 24-byte union.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// DeviceStats reads the driver's statistics of ifname, in the caller's
// network namespace: what `ethtool -S` prints, through the same ioctl, so
// no ethtool binary is needed.
func DeviceStats(ifname string) (map[string]uint64, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, ifname)
	if err != nil {
		return nil, fmt.Errorf("ethtool driver info of %s: %w", ifname, err)
	}
	n := int(info.N_stats)
	if n == 0 {
		return map[string]uint64{}, nil
	}
	ioctl := func(buf unsafe.Pointer) error {
		var ifr ifreqData
		copy(ifr.name[:], ifname)
		ifr.data = buf
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(&ifr)
		if errno != 0 {
			return errno
		}
		return nil
	}
	// struct ethtool_gstrings: cmd, string_set, len, then len names.
	strs := make([]byte, 12+n*ethGStringLen)
	*(*uint32)(unsafe.Pointer(&strs[0])) = ethtoolGStrings
	*(*uint32)(unsafe.Pointer(&strs[4])) = ethSSStats
	*(*uint32)(unsafe.Pointer(&strs[8])) = uint32(n)
	if err := ioctl(unsafe.Pointer(&strs[0])); err != nil {
		return nil, fmt.Errorf("ethtool statistic names of %s: %w", ifname, err)
	}
	// struct ethtool_stats: cmd, n_stats, then n u64 (8-aligned in a []uint64).
	vals := make([]uint64, 1+n)
	*(*uint32)(unsafe.Pointer(&vals[0])) = ethtoolGStats
	*(*uint32)(unsafe.Add(unsafe.Pointer(&vals[0]), 4)) = uint32(n)
	if err := ioctl(unsafe.Pointer(&vals[0])); err != nil {
		return nil, fmt.Errorf("ethtool statistics of %s: %w", ifname, err)
	}
	// The kernel reports how many it wrote; a driver whose count changed
	// in between is read no further than both counts.
	got := min(n, int(*(*uint32)(unsafe.Pointer(&strs[8]))), int(*(*uint32)(unsafe.Add(unsafe.Pointer(&vals[0]), 4))))
	out := make(map[string]uint64, got)
	for i := range got {
		name := strs[12+i*ethGStringLen : 12+(i+1)*ethGStringLen]
		if j := bytes.IndexByte(name, 0); j >= 0 {
			name = name[:j]
		}
		out[strings.TrimSpace(string(name))] += vals[1+i]
	}
	return out, nil
}

// XDPDrops is the number of frames the XDP program attached to ifname has
// dropped, as its driver counts them (summed over the per-queue counters
// named rx_queue_N_xdp_drops, as veth names them), in the caller's network
// namespace. A driver without such counters is an error.
func XDPDrops(ifname string) (uint64, error) {
	st, err := DeviceStats(ifname)
	if err != nil {
		return 0, err
	}
	var sum uint64
	found := false
	for k, v := range st {
		if strings.HasPrefix(k, "rx_queue_") && strings.HasSuffix(k, "_xdp_drops") {
			sum += v
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("driver of %s has no rx_queue_N_xdp_drops statistics", ifname)
	}
	return sum, nil
}
