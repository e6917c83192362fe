package jmirror

import "time"

// Reassembler puts outer IP fragments back together; *reasm.Reassembler
// is one. Add takes an IP packet and returns the datagram it completes.
type Reassembler interface {
	Add(now time.Time, pkt []byte) (datagram []byte, complete bool, err error)
}

// Unwrapped is what one frame comes to on the way to its mirrored packet.
type Unwrapped struct {
	// Header and Class are the frame's own decode (a fragment's, for a
	// fragment).
	Header Header
	Class  Class
	// Fragment: the frame is an outer IP fragment and went to the
	// reassembler; Complete: it completed a datagram.
	Fragment, Complete bool
	// OK: there is a mirrored packet to write. Frame holds it (the frame
	// itself, or the datagram its fragment completed behind the frame's
	// link-layer header) and Packet is Frame's decode.
	OK     bool
	Frame  []byte
	Packet Header
}

// Payload is the mirrored packet, when OK.
func (u *Unwrapped) Payload() []byte { return u.Packet.Payload(u.Frame) }

// Unwrap is the one path from a captured frame to its mirrored packet,
// shared by the live capture and decode --out: decode the frame; an outer
// fragment goes to r (at now), and a datagram it completes is put behind
// the frame's link-layer header and decoded again. The rebuilt frame is
// the only allocation, once per reassembled datagram; a reassembler error
// is its own to count, and leaves Complete false.
func Unwrap(frame []byte, decoded func(port uint16) bool, r Reassembler, now time.Time) (u Unwrapped) {
	u.Header, u.Class = Decode(frame, decoded)
	if !u.Header.FirstFragment && !u.Header.LaterFragment {
		if u.OK = u.Class == ClassJmirror; u.OK {
			u.Frame, u.Packet = frame, u.Header
		}
		return u
	}
	u.Fragment = true
	off := u.Header.IPOffset
	dgram, complete, err := r.Add(now, frame[off:])
	if err != nil || !complete {
		return u
	}
	u.Complete = true
	u.Frame = make([]byte, off+len(dgram))
	copy(u.Frame, frame[:off])
	copy(u.Frame[off:], dgram)
	var class Class
	u.Packet, class = Decode(u.Frame, decoded)
	u.OK = class == ClassJmirror
	return u
}
