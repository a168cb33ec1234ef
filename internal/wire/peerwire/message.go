package peerwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
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
// A read deadline that passes while a message arrives loses nothing:
// ReadMessage returns ErrTimeout and the next call goes on with the same
// message. A message that fits the read buffer (every message but blocks
// and large bitfields) is buffered whole before it is decoded; a larger one
// is gathered in a buffer of its size (resumed where a timeout left it),
// then decoded. So a watch can lend its connection, or a probe give it
// back, in the middle of any message.
func (c *Conn) ReadMessage() (Message, error) {
	switch {
	case c.skip.left > 0:
		return c.skipRest()
	case c.large != nil && c.large.buf != nil:
		return c.readLarge()
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
	whole := 4 + int(length)
	if whole > c.br.Size() {
		if !known(typ) {
			c.skip = skipped{left: whole, size: whole, typ: typ}
			return c.skipRest()
		}
		if c.large == nil {
			c.large = &largeMsg{}
		}
		c.large.buf, c.large.got = make([]byte, whole), 0
		return c.readLarge()
	}
	if _, err := c.br.Peek(whole); err != nil {
		return Message{}, c.readErr(err)
	}
	if !known(typ) {
		_, _ = c.br.Discard(whole) // buffered: cannot fail
		return Message{Message: pp.Message{Type: typ}, Unknown: true, Size: whole}, nil
	}
	var m pp.Message
	if err := c.dec.Decode(&m); err != nil {
		return Message{}, newErr(ErrProtocol, fmt.Errorf("decode %v: %w", typ, err))
	}
	return Message{Message: m, Size: whole}, nil
}

// skipped is an unknown message larger than the read buffer being
// discarded: left bytes to go of size, of type typ.
type skipped struct {
	left, size int
	typ        pp.MessageType
}

// skipRest discards the rest of c.skip.
func (c *Conn) skipRest() (Message, error) {
	n, err := c.br.Discard(c.skip.left)
	c.skip.left -= n
	if err != nil {
		return Message{}, c.readErr(err)
	}
	return Message{Message: pp.Message{Type: c.skip.typ}, Unknown: true, Size: c.skip.size}, nil
}

// largeMsg gathers a message larger than the read buffer: buf (nil
// between messages), got bytes of it read; rd and br decode it once whole.
type largeMsg struct {
	buf []byte
	got int
	rd  bytes.Reader
	br  *bufio.Reader
}

// readLarge reads the rest of c.large, then decodes it. A block (nearly
// every large message: a probe reads them by the thousand) keeps the
// buffer as its payload, as peer_protocol's decoder would have allocated
// one; other messages are decoded from it.
func (c *Conn) readLarge() (Message, error) {
	l := c.large
	n, err := io.ReadFull(c.br, l.buf[l.got:])
	l.got += n
	if err != nil {
		return Message{}, c.readErr(err)
	}
	buf := l.buf
	l.buf = nil
	typ := pp.MessageType(buf[4])
	if typ == pp.Piece { // length, type, index, begin, data; whole > readBufSize
		m := pp.Message{Type: pp.Piece, Index: pp.Integer(binary.BigEndian.Uint32(buf[5:])),
			Begin: pp.Integer(binary.BigEndian.Uint32(buf[9:])), Piece: buf[13:]}
		return Message{Message: m, Size: len(buf)}, nil
	}
	l.rd.Reset(buf)
	if l.br == nil {
		// Small: the decoder's reads of a payload go past it, straight
		// to the buffer.
		l.br = bufio.NewReaderSize(&l.rd, 16)
	} else {
		l.br.Reset(&l.rd)
	}
	dec := pp.Decoder{R: l.br, MaxLength: c.dec.MaxLength}
	var m pp.Message
	if err := dec.Decode(&m); err != nil {
		return Message{}, newErr(ErrProtocol, fmt.Errorf("decode %v: %w", typ, err))
	}
	return Message{Message: m, Size: len(buf)}, nil
}

func (c *Conn) readErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF || isDrop(err) {
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
