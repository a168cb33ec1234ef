package peerwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	pp "github.com/anacrolix/torrent/peer_protocol"
)

// Message is one decoded peer message. Known types are decoded by
// peer_protocol; for types that package does not know, Type is set, Unknown
// is true and the payload is skipped (peers may send extensions we do not
// speak; that is not an error).
type Message struct {
	pp.Message
	Unknown bool
	// Size is the message's length on the wire, length prefix included.
	Size int
}

// known lists the message types peer_protocol decodes.
func known(t pp.MessageType) bool {
	switch t {
	case pp.Choke, pp.Unchoke, pp.Interested, pp.NotInterested, pp.Have, pp.Bitfield,
		pp.Request, pp.Piece, pp.Cancel, pp.Port,
		pp.Suggest, pp.HaveAll, pp.HaveNone, pp.Reject, pp.AllowedFast,
		pp.Extended, pp.HashRequest, pp.Hashes, pp.HashReject:
		return true
	}
	return false
}

// ReadMessage reads the next message. The length prefix is checked against
// the cap before anything is allocated; a keep-alive comes back as a Message
// with Keepalive set. Errors wrap ErrProtocol, ErrClosed or ErrTimeout.
//
// A message that fits the read buffer (every message but blocks and large
// bitfields) is buffered whole before it is decoded, so a read deadline
// that passes while it arrives consumes nothing: ReadMessage returns
// ErrTimeout and the next call reads the message. A deadline that passes
// inside a larger message returns ErrTimeout too, and the connection is
// then unusable (later calls return ErrProtocol).
func (c *Conn) ReadMessage() (Message, error) {
	if c.torn {
		return Message{}, newErr(ErrProtocol, errTorn)
	}
	// Frame by hand with Peek so an oversized or unknown message is
	// classified before peer_protocol's decoder allocates or gives up
	// mid-stream (it returns an error for unknown types without consuming
	// their payload).
	head, err := c.br.Peek(4)
	if err != nil {
		return Message{}, c.readErr(err)
	}
	length := binary.BigEndian.Uint32(head)
	if length == 0 {
		_, _ = c.br.Discard(4)
		return Message{Message: pp.Message{Keepalive: true}, Size: 4}, nil
	}
	if length > uint32(c.maxMsg) {
		return Message{}, newErr(ErrProtocol, fmt.Errorf("message length %d exceeds cap %d", length, c.maxMsg))
	}
	head, err = c.br.Peek(5)
	if err != nil {
		return Message{}, c.readErr(err)
	}
	typ := pp.MessageType(head[4])
	if whole := 4 + int(length); whole <= c.br.Size() {
		if _, err := c.br.Peek(whole); err != nil {
			return Message{}, c.readErr(err)
		}
	}
	if !known(typ) {
		if n, err := c.br.Discard(4 + int(length)); err != nil {
			c.torn = n > 0
			return Message{}, c.readErr(err)
		}
		return Message{Message: pp.Message{Type: typ}, Unknown: true, Size: 4 + int(length)}, nil
	}
	var m pp.Message
	if err := c.dec.Decode(&m); err != nil {
		if isTimeout(err) {
			c.torn = true
			return Message{}, newErr(ErrTimeout, err)
		}
		if isDrop(err) {
			return Message{}, newErr(ErrClosed, err)
		}
		return Message{}, newErr(ErrProtocol, fmt.Errorf("decode %v: %w", typ, err))
	}
	return Message{Message: m, Size: 4 + int(length)}, nil
}

var errTorn = errors.New("an earlier read timed out inside a message")

func (c *Conn) readErr(err error) error {
	if err == io.EOF || isDrop(err) {
		return newErr(ErrClosed, err)
	}
	return classify(err, ErrProtocol)
}

// WriteMessages marshals and sends msgs in one write.
func (c *Conn) WriteMessages(msgs ...pp.Message) error {
	var buf []byte
	for _, m := range msgs {
		b, err := m.MarshalBinary()
		if err != nil {
			return fmt.Errorf("marshal %v: %w", m.Type, err)
		}
		buf = append(buf, b...)
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if _, err := c.rw.Write(buf); err != nil {
		return classify(err, ErrClosed)
	}
	return nil
}
