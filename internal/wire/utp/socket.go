// Package utp speaks uTP, the Micro Transport Protocol of BEP 29: ordered,
// reliable byte streams over UDP under LEDBAT congestion control (RFC 6817).
// libtorrent-based clients (qBittorrent, Deluge) prefer it, some take peers
// over uTP only, and BEP 55 holepunching opens uTP connections.
//
// The package is ours because no Go uTP module is served to this project:
// the module proxy answers 403 for github.com/anacrolix/utp and for
// github.com/anacrolix/go-libutp (the cgo binding anacrolix/torrent uses).
//
// A Socket owns one UDP socket and every connection on it. Its read loop
// is the only reader: it parses each packet (Parse, fuzzed) and hands it
// to its connection. A Conn has no goroutine of its own; its retransmission
// timer runs only when it fires. Buffers are bounded: the receive window
// (Options.RecvBuffer, out-of-order packets included), the send buffer, the
// accept backlog.
package utp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune a Socket. Zero values take the defaults noted.
type Options struct {
	// Accept: take incoming connections (Socket.Accept). Without it an
	// incoming SYN is answered with a reset.
	Accept bool
	// Backlog bounds connections accepted and not yet taken (default 64).
	Backlog int
	// RecvBuffer is each connection's receive window in bytes (default
	// 1 MiB).
	RecvBuffer int
	// ConnectTimeout bounds the wait for the answer to our SYN (default
	// 3 s, libtorrent's utp_connect_timeout).
	ConnectTimeout time.Duration
}

func (o *Options) defaults() {
	if o.Backlog <= 0 {
		o.Backlog = 64
	}
	if o.RecvBuffer <= 0 {
		o.RecvBuffer = 1 << 20
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 3 * time.Second
	}
}

// Socket multiplexes uTP connections over one UDP socket.
type Socket struct {
	pc    *net.UDPConn
	opts  Options
	epoch time.Time

	mu     sync.Mutex
	conns  map[connKey]*Conn
	accept chan *Conn // nil unless Options.Accept
	closed bool

	done      chan struct{}
	loopDone  chan struct{}
	malformed atomic.Int64
	sendMu    sync.Mutex
	sendBuf   []byte
}

type connKey struct {
	addr netip.AddrPort
	id   uint16 // our receive id
}

// Listen opens a uTP socket on a UDP address ("udp", "127.0.0.1:0").
func Listen(network, address string, o Options) (*Socket, error) {
	ua, err := net.ResolveUDPAddr(network, address)
	if err != nil {
		return nil, fmt.Errorf("utp: %w", err)
	}
	pc, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, fmt.Errorf("utp: %w", err)
	}
	return NewSocket(pc, o), nil
}

// NewSocket runs uTP over pc, which the Socket owns from now on.
func NewSocket(pc *net.UDPConn, o Options) *Socket {
	o.defaults()
	s := &Socket{pc: pc, opts: o, epoch: time.Now(), conns: map[connKey]*Conn{}, done: make(chan struct{}), loopDone: make(chan struct{})}
	if o.Accept {
		s.accept = make(chan *Conn, o.Backlog)
	}
	go s.readLoop()
	return s
}

// Addr is the socket's local address.
func (s *Socket) Addr() net.Addr { return s.pc.LocalAddr() }

// AddrPort is the socket's local address.
func (s *Socket) AddrPort() netip.AddrPort { return s.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

// Malformed counts packets that did not parse (and were dropped).
func (s *Socket) Malformed() int64 { return s.malformed.Load() }

// Close ends every connection and the socket; it returns once the read
// loop has stopped.
func (s *Socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.loopDone
		return nil
	}
	s.closed = true
	conns := make([]*Conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	close(s.done)
	for _, c := range conns {
		c.mu.Lock()
		c.die(net.ErrClosed)
		c.mu.Unlock()
	}
	err := s.pc.Close()
	<-s.loopDone
	return err
}

func (s *Socket) micros(now time.Time) uint32 { return uint32(now.Sub(s.epoch).Microseconds()) }

// ErrNotListening: Accept on a socket made without Options.Accept.
var ErrNotListening = errors.New("utp: socket does not accept connections")

// Accept waits for the next incoming connection (net.Listener).
func (s *Socket) Accept() (net.Conn, error) {
	if s.accept == nil {
		return nil, ErrNotListening
	}
	select {
	case c := <-s.accept:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// DialContext connects to address ("host:port"; network is ignored, as
// uTP has one), in the shape of net.Dialer's.
func (s *Socket) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("utp dial %s: %w", address, err)
	}
	c, err := s.Dial(ctx, ap)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Dial opens a connection to addr: it sends our SYN until the peer
// answers, a reset comes (ErrRefused), ctx ends, or ConnectTimeout passes
// (ErrTimeout).
func (s *Socket) Dial(ctx context.Context, addr netip.AddrPort) (*Conn, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !addr.IsValid() || addr.Port() == 0 {
		return nil, fmt.Errorf("utp dial %s: not an address", addr)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("utp dial %s: %w", addr, net.ErrClosed)
	}
	var c *Conn
	for range 64 {
		id := uint16(rand.Uint32())
		if _, taken := s.conns[connKey{addr, id}]; !taken {
			c = newConn(s, addr, id, id+1, false)
			s.conns[connKey{addr, id}] = c
			break
		}
	}
	s.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("utp dial %s: no free connection id", addr)
	}
	c.mu.Lock()
	c.state = stateSynSent
	c.seqNr = uint16(rand.Uint32())
	c.synSeq = c.seqNr
	c.queue(TypeSyn, nil, time.Now())
	c.mu.Unlock()

	timer := time.NewTimer(s.opts.ConnectTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-c.connected:
		return c, nil
	case <-c.done:
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = ErrTimeout
	}
	c.mu.Lock()
	if err == nil {
		err = c.err
	}
	c.die(err)
	c.mu.Unlock()
	return nil, fmt.Errorf("utp dial %s: %w", addr, err)
}

// remove forgets a dead connection.
func (s *Socket) remove(c *Conn) {
	s.mu.Lock()
	if s.conns[connKey{c.remote, c.recvID}] == c {
		delete(s.conns, connKey{c.remote, c.recvID})
	}
	s.mu.Unlock()
}

// send writes one packet. Errors are not the connection's end: UDP loses
// packets, and the retransmission timer decides.
func (s *Socket) send(to netip.AddrPort, h Header, payload []byte) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	b := h.Append(s.sendBuf[:0])
	b = append(b, payload...)
	s.sendBuf = b
	s.pc.WriteToUDPAddrPort(b, to) //nolint:errcheck // a lost packet is resent
}

func (s *Socket) readLoop() {
	defer close(s.loopDone)
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP errors reported on the socket say nothing of ours.
			continue
		}
		s.handle(buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), time.Now())
	}
}

// handle dispatches one datagram.
func (s *Socket) handle(b []byte, from netip.AddrPort, now time.Time) {
	h, payload, err := Parse(b)
	if err != nil {
		s.malformed.Add(1)
		return
	}
	if h.Type == TypeSyn {
		s.handleSyn(h, from, now)
		return
	}
	s.mu.Lock()
	c := s.conns[connKey{from, h.ConnID}]
	if c == nil && h.Type == TypeReset {
		// A peer that forgot the connection echoes the id we sent with,
		// our receive id ±1 (BEP 29 ids differ by one).
		for _, id := range []uint16{h.ConnID - 1, h.ConnID + 1} {
			if o := s.conns[connKey{from, id}]; o != nil && o.sendID == h.ConnID {
				c = o
				break
			}
		}
	}
	s.mu.Unlock()
	if c == nil {
		if h.Type != TypeReset {
			s.send(from, Header{Type: TypeReset, ConnID: h.ConnID, Timestamp: s.micros(now), Ack: h.Seq}, nil)
		}
		return
	}
	c.handle(h, payload, now)
}

// handleSyn takes a new incoming connection (or answers a resent SYN).
func (s *Socket) handleSyn(h Header, from netip.AddrPort, now time.Time) {
	key := connKey{from, h.ConnID + 1}
	s.mu.Lock()
	if c := s.conns[key]; c != nil {
		s.mu.Unlock()
		c.handle(h, nil, now)
		return
	}
	if s.accept == nil || s.closed || len(s.accept) == cap(s.accept) {
		s.mu.Unlock()
		s.send(from, Header{Type: TypeReset, ConnID: h.ConnID, Timestamp: s.micros(now), Ack: h.Seq}, nil)
		return
	}
	c := newConn(s, from, h.ConnID+1, h.ConnID, true)
	c.state, c.ackNr, c.seqNr, c.peerWnd = stateConnected, h.Seq, uint16(rand.Uint32()), h.Wnd
	close(c.connected)
	s.conns[key] = c
	s.accept <- c // room checked above, under mu
	s.mu.Unlock()
	c.mu.Lock()
	c.replyMicro = s.micros(now) - h.Timestamp
	c.sendState()
	c.mu.Unlock()
}
