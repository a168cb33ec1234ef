package utp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Type is a uTP packet type (BEP 29).
type Type uint8

const (
	TypeData  Type = 0 // payload; consumes a sequence number
	TypeFin   Type = 1 // end of the sender's stream; consumes a sequence number
	TypeState Type = 2 // an ack (and window update); consumes none
	TypeReset Type = 3 // the connection is gone
	TypeSyn   Type = 4 // opens a connection; consumes a sequence number
)

func (t Type) String() string {
	switch t {
	case TypeData:
		return "ST_DATA"
	case TypeFin:
		return "ST_FIN"
	case TypeState:
		return "ST_STATE"
	case TypeReset:
		return "ST_RESET"
	case TypeSyn:
		return "ST_SYN"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

const (
	version    = 1
	headerLen  = 20
	extSACK    = 1 // selective acknowledgement extension
	maxSACKLen = 32
)

// Header is a uTP packet header with the one extension we act on.
type Header struct {
	Type Type
	// ConnID is the receiver's connection id (for a SYN: the id the
	// sender will receive on).
	ConnID uint16
	// Timestamp is the sender's clock in microseconds when sent;
	// TimestampDiff the sender's clock minus the timestamp of the last
	// packet it received from us: the one-way delay of our packets plus
	// the clocks' offset, which LEDBAT needs only differences of.
	Timestamp, TimestampDiff uint32
	// Wnd is the sender's free receive buffer in bytes.
	Wnd      uint32
	Seq, Ack uint16
	// SACK, when present, is the selective ack bitmask: bit i (LSB first
	// within each byte) says packet Ack+2+i was received.
	SACK []byte
}

// Errors of Parse, each wrapped with the detail.
var (
	ErrShortPacket = errors.New("utp: short packet")
	ErrVersion     = errors.New("utp: unknown version")
	ErrPacketType  = errors.New("utp: unknown packet type")
	ErrExtension   = errors.New("utp: malformed extension")
)

// Parse reads one packet. The header's SACK and the payload alias b.
// Unknown extensions are skipped; a malformed one is an error.
func Parse(b []byte) (h Header, payload []byte, err error) {
	if len(b) < headerLen {
		return h, nil, fmt.Errorf("%w: %d bytes", ErrShortPacket, len(b))
	}
	if v := b[0] & 0x0f; v != version {
		return h, nil, fmt.Errorf("%w %d", ErrVersion, v)
	}
	h.Type = Type(b[0] >> 4)
	if h.Type > TypeSyn {
		return h, nil, fmt.Errorf("%w %d", ErrPacketType, h.Type)
	}
	h.ConnID = binary.BigEndian.Uint16(b[2:])
	h.Timestamp = binary.BigEndian.Uint32(b[4:])
	h.TimestampDiff = binary.BigEndian.Uint32(b[8:])
	h.Wnd = binary.BigEndian.Uint32(b[12:])
	h.Seq = binary.BigEndian.Uint16(b[16:])
	h.Ack = binary.BigEndian.Uint16(b[18:])
	ext, off := b[1], headerLen
	// Each extension takes at least two bytes, so the walk ends.
	for ext != 0 {
		if len(b)-off < 2 {
			return h, nil, fmt.Errorf("%w: extension %d header cut short", ErrExtension, ext)
		}
		next, n := b[off], int(b[off+1])
		if len(b)-off-2 < n {
			return h, nil, fmt.Errorf("%w: extension %d says %d bytes, %d left", ErrExtension, ext, n, len(b)-off-2)
		}
		data := b[off+2 : off+2+n]
		if ext == extSACK {
			if n == 0 || n%4 != 0 {
				return h, nil, fmt.Errorf("%w: selective ack of %d bytes (a positive multiple of 4)", ErrExtension, n)
			}
			h.SACK = data
		}
		ext, off = next, off+2+n
	}
	return h, b[off:], nil
}

// Append appends the packet header (and the SACK extension, if any) to dst.
func (h *Header) Append(dst []byte) []byte {
	ext := byte(0)
	if len(h.SACK) > 0 {
		ext = extSACK
	}
	dst = append(dst, byte(h.Type)<<4|version, ext)
	dst = binary.BigEndian.AppendUint16(dst, h.ConnID)
	dst = binary.BigEndian.AppendUint32(dst, h.Timestamp)
	dst = binary.BigEndian.AppendUint32(dst, h.TimestampDiff)
	dst = binary.BigEndian.AppendUint32(dst, h.Wnd)
	dst = binary.BigEndian.AppendUint16(dst, h.Seq)
	dst = binary.BigEndian.AppendUint16(dst, h.Ack)
	if ext != 0 {
		dst = append(dst, 0, byte(len(h.SACK)))
		dst = append(dst, h.SACK...)
	}
	return dst
}

// seqLess reports whether sequence number a comes before b, modulo 2^16.
func seqLess(a, b uint16) bool { return int16(a-b) < 0 }
