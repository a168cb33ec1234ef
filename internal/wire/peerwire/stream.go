package peerwire

import (
	"bytes"
	"net"
	"time"
)

// streamConn is a net.Conn that reads a fixed byte string and swallows
// writes, so parsers can be fed arbitrary input without sockets.
type streamConn struct {
	r *bytes.Reader
}

func (s *streamConn) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	return n, err
}
func (s *streamConn) Write(p []byte) (int, error)      { return len(p), nil }
func (s *streamConn) Close() error                     { return nil }
func (s *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (s *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }
func (s *streamConn) SetDeadline(time.Time) error      { return nil }
func (s *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (s *streamConn) SetWriteDeadline(time.Time) error { return nil }

// NewStreamConn returns a Conn that reads data as the peer's messages (as
// if after a handshake) and discards what is written to it: fuzz targets and
// replay tests drive message-handling code with it, no socket needed.
func NewStreamConn(data []byte, maxMessage int) *Conn {
	sc := &streamConn{r: bytes.NewReader(data)}
	return newConn(sc, sc, MethodPlaintext, maxMessage)
}
