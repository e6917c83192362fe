package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/userspace/pins"
)

// AttachPinned attaches the program to ifname with its link pinned at path,
// so that it stays attached if this process dies. When a link is already
// pinned there (an earlier run, perhaps one that exited with the program
// left attached), AttachPinned takes it over and swaps this program in
// atomically: the interface is never without jmxdp, so counting never
// stops across a restart or an upgrade. It returns the mode the program
// runs in and whether an existing link was reused. A pinned link that no
// longer works (its interface was deleted, say) is replaced.
func (p *Program) AttachPinned(ifname string, mode Mode, path string) (Mode, bool, error) {
	if p.att != nil {
		return "", false, fmt.Errorf("already attached to %s", p.att.iface)
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return "", false, fmt.Errorf("interface %q: %w", ifname, err)
	}
	if l, err := p.takeOver(ifc, path); err != nil {
		p.log.Warn("pinned XDP link from an earlier run is unusable: replacing it", "path", path, "reason", err)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", false, fmt.Errorf("remove stale pinned link %s: %w", path, err)
		}
	} else if l != nil {
		got, err := LinkMode(ifc.Index)
		if err != nil {
			l.Close()
			return "", false, err
		}
		if mode != ModeAuto && mode != "" && got != mode {
			p.log.Warn("keeping the pinned attachment's mode: changing it would detach jmxdp for a moment; run `jmxdp detach` first to change it",
				"iface", ifname, "pinned_mode", got, "requested", mode)
		}
		p.att = &attachment{link: l, iface: ifname, mode: got, pinPath: path}
		p.log.Info("took over the pinned attachment: program replaced in place", "iface", ifname, "mode", got, "link", path)
		return got, true, nil
	}
	got, err := p.Attach(ifname, mode)
	if err != nil {
		return "", false, err
	}
	if err := p.PinLink(path); err != nil {
		p.Detach()
		return "", false, err
	}
	return got, false, nil
}

// takeOver loads the link pinned at path, checks it is an XDP link on ifc
// and points it at this program. No pin: (nil, nil).
func (p *Program) takeOver(ifc *net.Interface, path string) (link.Link, error) {
	l, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := l.Info()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("link info: %w", err)
	}
	xdp := info.XDP()
	if xdp == nil {
		l.Close()
		return nil, fmt.Errorf("not an XDP link (type %v)", info.Type)
	}
	if int(xdp.Ifindex) != ifc.Index {
		l.Close()
		return nil, fmt.Errorf("attached to ifindex %d, not %s (ifindex %d)", xdp.Ifindex, ifc.Name, ifc.Index)
	}
	if err := l.Update(p.objs.Jmxdp); err != nil {
		l.Close()
		return nil, fmt.Errorf("replace its program: %w", err)
	}
	return l, nil
}

// DetachPinned detaches the program whose link is pinned at path and
// removes the pin. Nothing pinned there is not an error.
func DetachPinned(path string) (bool, error) {
	l, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open pinned link %s: %w", path, err)
	}
	defer l.Close()
	if err := l.Unpin(); err != nil {
		return false, fmt.Errorf("unpin %s: %w", path, err)
	}
	// Closing the last reference detaches the program.
	return true, nil
}

// XDP_ATTACHED_* from linux/if_link.h, which x/sys/unix does not name.
const (
	xdpAttachedNone = 0
	xdpAttachedDrv  = 1
	xdpAttachedSKB  = 2
	xdpAttachedHW   = 3
	xdpAttachedMany = 4
)

// LinkMode reports how an XDP program is attached to the interface with
// ifindex, as rtnetlink tells it: ModeDriver, ModeGeneric, "offload",
// "multi", or "" when nothing is attached.
func LinkMode(ifindex int) (Mode, error) {
	tab, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return "", fmt.Errorf("rtnetlink dump links: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(tab)
	if err != nil {
		return "", fmt.Errorf("rtnetlink: %w", err)
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		if int(int32(binary.NativeEndian.Uint32(m.Data[4:8]))) != ifindex {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return "", fmt.Errorf("rtnetlink link attributes: %w", err)
		}
		for _, a := range attrs {
			if a.Attr.Type&^unix.NLA_F_NESTED != unix.IFLA_XDP {
				continue
			}
			switch nestedU8(a.Value, unix.IFLA_XDP_ATTACHED) {
			case xdpAttachedNone:
				return "", nil
			case xdpAttachedDrv:
				return ModeDriver, nil
			case xdpAttachedSKB:
				return ModeGeneric, nil
			case xdpAttachedHW:
				return "offload", nil
			case xdpAttachedMany:
				return "multi", nil
			}
		}
		return "", nil
	}
	return "", fmt.Errorf("no interface with index %d", ifindex)
}

// nestedU8 finds attribute typ in a nested attribute list and returns its
// first byte (0 when absent).
func nestedU8(b []byte, typ uint16) uint8 {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		t := binary.NativeEndian.Uint16(b[2:4])
		if l < unix.SizeofRtAttr || l > len(b) {
			return 0
		}
		if t == typ && l > unix.SizeofRtAttr {
			return b[unix.SizeofRtAttr]
		}
		b = b[min((l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1), len(b)):]
	}
	return 0
}

// PurgePinned removes what jmxdp pins in dir: its maps, by name, and the
// link. Nothing else: no recursive delete, nothing outside dir (dir itself
// is resolved first and must be a directory on bpffs), and dir is removed
// only if that leaves it empty. It returns the names removed; none is not
// an error.
func PurgePinned(dir string) ([]string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pin directory %s: %w", dir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(real, &st); err != nil {
		return nil, fmt.Errorf("pin directory %s: %w", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return nil, fmt.Errorf("pin directory %s is not on bpffs: refusing to remove anything there", dir)
	}
	names, err := pinNames()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, name := range names {
		err := os.Remove(pins.Map(real, name))
		switch {
		case err == nil:
			removed = append(removed, name)
		case errors.Is(err, os.ErrNotExist):
		default:
			return removed, fmt.Errorf("remove pinned %s: %w", name, err)
		}
	}
	if err := os.Remove(real); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return removed, fmt.Errorf("remove pin directory %s: %w", dir, err)
	}
	return removed, nil
}

// PinSnapshot is what a pin directory held before a start: a failed start
// removes what it created (its maps, the link, the directories) and keeps
// what was there, an earlier instance's counters and policy.
type PinSnapshot struct {
	dir     string
	had     map[string]bool // names of jmxdp's objects already pinned
	created []string        // directories that did not exist, deepest last
}

// SnapshotPins records which of jmxdp's objects are pinned in dir and
// which of dir's directories exist.
func SnapshotPins(dir string) (PinSnapshot, error) {
	s := PinSnapshot{dir: dir, had: map[string]bool{}}
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return s, fmt.Errorf("pin directory %s: %w", dir, err)
		}
		s.created = append([]string{d}, s.created...)
		if d == filepath.Dir(d) {
			break
		}
	}
	names, err := pinNames()
	if err != nil {
		return s, err
	}
	for _, name := range names {
		if _, err := os.Lstat(pins.Map(dir, name)); err == nil {
			s.had[name] = true
		}
	}
	return s, nil
}

// Undo removes the objects pinned in the directory since the snapshot,
// by name, then the directories the snapshot did not find, if empty. It
// returns the names it removed.
func (s PinSnapshot) Undo() ([]string, error) {
	if s.dir == "" {
		return nil, nil
	}
	names, err := pinNames()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, name := range names {
		if s.had[name] {
			continue
		}
		switch err := os.Remove(pins.Map(s.dir, name)); {
		case err == nil:
			removed = append(removed, name)
		case !errors.Is(err, os.ErrNotExist):
			errs = append(errs, fmt.Errorf("remove pinned %s: %w", name, err))
		}
	}
	for i := len(s.created) - 1; i >= 0; i-- {
		if err := os.Remove(s.created[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			break // not empty: someone else's now
		}
	}
	return removed, errors.Join(errs...)
}

// pinNames are the names jmxdp pins: its maps and the link.
func pinNames() ([]string, error) {
	spec, err := bpf.LoadSpec()
	if err != nil {
		return nil, fmt.Errorf("read embedded BPF object: %w", err)
	}
	names := []string{pins.LinkName}
	for name := range spec.Maps {
		if name != "" && name[0] != '.' && !scratchMaps[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}
