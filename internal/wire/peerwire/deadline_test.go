package peerwire

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
)

// tcpPair returns a Conn over one end of a loopback TCP connection and the
// raw other end.
func tcpPair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-acc
	t.Cleanup(func() { raw.Close(); peer.Close() })
	return newConn(raw, raw, MethodPlaintext, DefaultMaxMessage), peer
}

// TestReadDeadlineBetweenMessages: a read deadline that passes while a
// message is half arrived loses nothing, whatever its size: the next read
// gets the whole message, and the one after it the next message. A peer
// that hangs up inside a message closes the connection.
func TestReadDeadlineBetweenMessages(t *testing.T) {
	have, _ := pp.Message{Type: pp.Have, Index: 77}.MarshalBinary()
	payload := make([]byte, 16<<10)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	block, _ := pp.Message{Type: pp.Piece, Index: 3, Begin: 16 << 10, Piece: payload}.MarshalBinary()
	bools := make([]bool, 40000)
	for i := range bools {
		bools[i] = i%3 == 0
	}
	bigBitfield, _ := pp.Message{Type: pp.Bitfield, Bitfield: bools}.MarshalBinary()
	unknown := make([]byte, 4+1+3000)
	binary.BigEndian.PutUint32(unknown, uint32(len(unknown)-4))
	unknown[4] = 0xee
	for _, tc := range []struct {
		name  string
		msg   []byte
		cuts  []int // the peer pauses after these many bytes
		check func(Message) bool
	}{
		{"small message", have, []int{6}, func(m Message) bool { return m.Type == pp.Have && m.Index == 77 }},
		{"block", block, []int{3, 8000, 12000}, func(m Message) bool {
			return m.Type == pp.Piece && m.Index == 3 && m.Begin == 16<<10 && string(m.Piece) == string(payload)
		}},
		{"bitfield of 40,000 pieces", bigBitfield, []int{4000}, func(m Message) bool {
			return m.Type == pp.Bitfield && len(m.Bitfield) >= len(bools) && m.Bitfield[3] && !m.Bitfield[4]
		}},
		{"unknown message", unknown, []int{100, 2000}, func(m Message) bool { return m.Unknown && m.Type == 0xee && m.Size == len(unknown) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := tcpPair(t)
			from := 0
			for _, cut := range tc.cuts {
				peer.Write(tc.msg[from:cut])
				from = cut
				c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if _, err := c.ReadMessage(); !errors.Is(err, ErrTimeout) {
					t.Fatalf("after %d bytes: err %v, want a timeout", cut, err)
				}
			}
			peer.Write(tc.msg[from:])
			peer.Write(have)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			m, err := c.ReadMessage()
			if err != nil || !tc.check(m) {
				t.Fatalf("after the timeouts: %v, %v", m.Type, err)
			}
			if m, err := c.ReadMessage(); err != nil || m.Type != pp.Have || m.Index != 77 {
				t.Fatalf("the message after it: %+v, %v", m, err)
			}
		})
	}
	t.Run("hang-up inside a block", func(t *testing.T) {
		c, peer := tcpPair(t)
		peer.Write(block[:9000])
		peer.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.ReadMessage(); !errors.Is(err, ErrClosed) {
			t.Fatalf("err %v, want closed", err)
		}
	})
}

// TestKeepAlive: connections start without TCP keep-alive (Dial, Listen)
// and KeepAlive turns it on.
func TestKeepAlive(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	raw, err := (&net.Dialer{KeepAlive: -1}).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	in := <-acc
	defer in.Close()
	keepAlive := func(c net.Conn) int {
		sc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var serr error
		if err := sc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) }); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		return v
	}
	if keepAlive(raw) != 0 || keepAlive(in) != 0 {
		t.Fatalf("keep-alive on from the start: dialled %d, accepted %d", keepAlive(raw), keepAlive(in))
	}
	c := newConn(newCountingConn(in), in, MethodPlaintext, DefaultMaxMessage)
	if err := c.KeepAlive(); err != nil {
		t.Fatal(err)
	}
	if keepAlive(in) == 0 {
		t.Fatal("KeepAlive left it off")
	}
}
