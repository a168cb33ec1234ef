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
// small message is half arrived consumes nothing, and the next read gets
// the whole message; one that passes inside a block tears the stream.
func TestReadDeadlineBetweenMessages(t *testing.T) {
	t.Run("small message", func(t *testing.T) {
		c, peer := tcpPair(t)
		have, _ := pp.Message{Type: pp.Have, Index: 77}.MarshalBinary()
		peer.Write(have[:6])
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.ReadMessage(); !errors.Is(err, ErrTimeout) {
			t.Fatalf("err %v, want a timeout", err)
		}
		peer.Write(have[6:])
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, err := c.ReadMessage()
		if err != nil || m.Type != pp.Have || m.Index != 77 {
			t.Fatalf("after the timeout: %+v, %v", m, err)
		}
	})
	t.Run("block", func(t *testing.T) {
		c, peer := tcpPair(t)
		block := make([]byte, 4+9+16<<10)
		binary.BigEndian.PutUint32(block, uint32(len(block)-4))
		block[4] = byte(pp.Piece)
		peer.Write(block[:8000])
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.ReadMessage(); !errors.Is(err, ErrTimeout) {
			t.Fatalf("err %v, want a timeout", err)
		}
		peer.Write(block[8000:])
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.ReadMessage(); !errors.Is(err, ErrProtocol) {
			t.Fatalf("a torn stream read on: %v", err)
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
