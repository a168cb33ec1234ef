// Package holepunch reads and writes the messages of the ut_holepunch
// extension (BEP 55): rendezvous (introduce me to this peer), connect
// (connect to this peer now: it connects to you) and error.
//
// The message is anacrolix/torrent's utHolepunch.Msg, and so is its
// encoding (err_code always written, as BEP 55 lays it out). Parse is
// ours: libtorrent, the relay most swarms offer, writes err_code only in
// error messages, which anacrolix's UnmarshalBinary refuses.
package holepunch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	utHolepunch "github.com/anacrolix/torrent/peer_protocol/ut-holepunch"
)

// ExtensionName is the extension's name in BEP 10 handshakes.
const ExtensionName = utHolepunch.ExtensionName

// Msg is one ut_holepunch message, ErrCode its error's code.
type (
	Msg     = utHolepunch.Msg
	ErrCode = utHolepunch.ErrCode
)

// Message types and error codes.
const (
	Rendezvous = utHolepunch.Rendezvous
	Connect    = utHolepunch.Connect
	Error      = utHolepunch.Error

	NoSuchPeer   = utHolepunch.NoSuchPeer
	NotConnected = utHolepunch.NotConnected
	NoSupport    = utHolepunch.NoSupport
	NoSelf       = utHolepunch.NoSelf
)

// ErrMalformed is the error of every message Parse refuses.
var ErrMalformed = errors.New("malformed ut_holepunch message")

// Parse reads a message: type, address type, address and port, then an
// err_code that may be left out.
func Parse(b []byte) (Msg, error) {
	var m Msg
	if len(b) < 2 {
		return m, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	m.MsgType = utHolepunch.MsgType(b[0])
	if m.MsgType > Error {
		return m, fmt.Errorf("%w: message type %d", ErrMalformed, b[0])
	}
	var n int
	switch utHolepunch.AddrType(b[1]) {
	case utHolepunch.Ipv4:
		n = 4
	case utHolepunch.Ipv6:
		n = 16
	default:
		return m, fmt.Errorf("%w: address type %d", ErrMalformed, b[1])
	}
	b = b[2:]
	if len(b) < n+2 {
		return m, fmt.Errorf("%w: %d bytes for a %d-byte address and a port", ErrMalformed, len(b), n)
	}
	addr, _ := netip.AddrFromSlice(b[:n])
	m.AddrPort = netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[n:]))
	switch rest := b[n+2:]; len(rest) {
	case 0:
	case 4:
		m.ErrCode = utHolepunch.ErrCode(binary.BigEndian.Uint32(rest))
	default:
		return m, fmt.Errorf("%w: %d bytes after the port (an err_code has 4)", ErrMalformed, len(rest))
	}
	return m, nil
}

// Marshal writes m (err_code included).
func Marshal(m Msg) ([]byte, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("ut_holepunch %s: %w", m.MsgType, err)
	}
	return b, nil
}
