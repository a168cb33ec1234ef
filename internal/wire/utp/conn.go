package utp

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// maxPayload is the payload of a full data packet: 1,420 bytes with the
// header, within an IPv6 path of MTU 1,500 and most tunnels.
const maxPayload = 1400

// Errors a connection ends with, besides the caller's own deadlines
// (os.ErrDeadlineExceeded) and Close (net.ErrClosed).
var (
	// ErrReset: the peer reset the connection (ST_RESET).
	ErrReset = fmt.Errorf("utp: connection reset by peer: %w", syscall.ECONNRESET)
	// ErrRefused: the peer answered our SYN with a reset.
	ErrRefused = fmt.Errorf("utp: connection refused: %w", syscall.ECONNREFUSED)
	// ErrTimeout: the peer stopped acknowledging what we sent (or never
	// answered our SYN).
	ErrTimeout = &timeoutError{}
)

type timeoutError struct{}

func (*timeoutError) Error() string   { return "utp: peer stopped answering" }
func (*timeoutError) Timeout() bool   { return true }
func (*timeoutError) Temporary() bool { return true }
func (*timeoutError) Unwrap() error   { return os.ErrDeadlineExceeded }

type connState uint8

const (
	stateSynSent connState = iota
	stateConnected
	stateDead
)

const (
	// maxTimeouts: consecutive retransmission timeouts after which the
	// peer is taken for gone (about 30 s with the doubling RTO).
	maxTimeouts = 5
	// maxAhead bounds how far past a gap packets are kept.
	maxAhead = 2048
	// sendBuffer bounds bytes written and not yet sent.
	sendBuffer = 256 << 10
	// finLinger bounds how long a closed connection waits for its FIN to
	// be acknowledged.
	finLinger = 5 * time.Second
)

// outPacket is a packet sent and not yet acknowledged.
type outPacket struct {
	typ     Type
	seq     uint16
	payload []byte
	sentAt  time.Time
	sends   int
	acked   bool // selectively acknowledged
	lost    bool // to be resent; not counted in flight
}

// Conn is one uTP connection: a net.Conn. The socket's read loop hands it
// packets and its timers retransmit; the state both touch is under mu, and
// no goroutine belongs to a connection.
type Conn struct {
	s              *Socket
	remote         netip.AddrPort
	recvID, sendID uint16
	incoming       bool

	mu         sync.Mutex
	state      connState
	err        error // why the connection died
	userClosed bool

	// Receive side.
	ackNr      uint16 // last sequence number received in order
	recv       []byte // in-order bytes not yet read: recv[recvOff:]
	recvOff    int
	ooo        map[uint16][]byte // data received past a gap
	oooBytes   int
	finSeq     uint16
	gotFin     bool
	eof        bool
	replyMicro uint32 // timestamp_difference we echo
	lastWnd    uint32 // window last advertised

	// Send side.
	seqNr         uint16 // next sequence number
	synSeq        uint16
	inflight      []*outPacket
	inflightBytes int // bytes sent, not acknowledged, not lost
	lost          int // packets in inflight marked lost
	recoverSeq    uint16
	unsent        []byte
	peerWnd       uint32
	cc            ledbat
	rtt           rttEstimator
	rto           time.Duration
	timeouts      int
	dupAcks       int
	lastAck       uint16
	rtoTimer      *time.Timer
	lingerTimer   *time.Timer
	wantFin       bool
	finSent       bool

	readable, writable chan struct{} // poked when there is something to do
	connected          chan struct{} // closed when the SYN is answered
	closed             chan struct{} // closed by Close
	done               chan struct{} // closed when the connection died
	rd, wd             deadline
}

func newConn(s *Socket, remote netip.AddrPort, recvID, sendID uint16, incoming bool) *Conn {
	return &Conn{
		s: s, remote: remote, recvID: recvID, sendID: sendID, incoming: incoming,
		ooo: map[uint16][]byte{}, peerWnd: maxPayload, cc: newLedbat(), rto: initialRTO,
		readable: make(chan struct{}, 1), writable: make(chan struct{}, 1),
		connected: make(chan struct{}), closed: make(chan struct{}), done: make(chan struct{}),
		rd: newDeadline(), wd: newDeadline(),
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// room is the receive buffer left: what we advertise as our window.
func (c *Conn) room() int {
	return max(0, c.s.opts.RecvBuffer-(len(c.recv)-c.recvOff)-c.oooBytes)
}

// handle processes one packet from the peer. Called by the socket's read
// loop only.
func (c *Conn) handle(h Header, payload []byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateDead {
		return
	}
	c.replyMicro = c.s.micros(now) - h.Timestamp
	switch h.Type {
	case TypeReset:
		if c.state == stateSynSent {
			c.die(ErrRefused)
		} else {
			c.die(ErrReset)
		}
		return
	case TypeSyn:
		if c.incoming {
			c.sendState() // our answer was lost: say it again
		}
		return
	}
	if c.state == stateSynSent {
		if h.Type != TypeState || h.Ack != c.synSeq {
			return
		}
		// The answer's sequence number is the one its first data packet
		// will carry (ST_STATE consumes none).
		c.state, c.ackNr = stateConnected, h.Seq-1
		close(c.connected)
	}
	c.peerWnd = h.Wnd
	c.onAck(h, now)
	switch h.Type {
	case TypeData:
		c.deliver(h.Seq, payload)
		c.sendState()
	case TypeFin:
		if !c.gotFin {
			c.gotFin, c.finSeq = true, h.Seq
			c.advance()
		}
		c.sendState()
	}
	c.flush(now)
	if c.userClosed && c.finSent && len(c.inflight) == 0 {
		c.die(nil) // our FIN is acknowledged
	}
}

// onAck drops what the peer acknowledged, cumulatively and selectively,
// and marks lost what it skipped: a packet is lost when three sent after
// it were acknowledged (BEP 29's selective ack rule, and three duplicate
// acks without one).
func (c *Conn) onAck(h Header, now time.Time) {
	if !seqLess(h.Ack, c.seqNr) {
		return // acks what we never sent
	}
	acked := 0
	take := func(p *outPacket) {
		if p.acked {
			return
		}
		p.acked = true
		acked += len(p.payload)
		if p.lost {
			c.lost--
		} else {
			c.inflightBytes -= len(p.payload)
		}
		if p.sends == 1 {
			c.rtt.sample(now.Sub(p.sentAt))
		}
	}
	for len(c.inflight) > 0 && !seqLess(h.Ack, c.inflight[0].seq) {
		take(c.inflight[0])
		c.inflight[0] = nil
		c.inflight = c.inflight[1:]
	}
	// inflight holds consecutive sequence numbers from inflight[0].seq.
	for i, b := range h.SACK {
		for bit := range 8 {
			if b&(1<<bit) == 0 || len(c.inflight) == 0 {
				continue
			}
			if j := int(h.Ack + 2 + uint16(i*8+bit) - c.inflight[0].seq); j < len(c.inflight) {
				take(c.inflight[j])
			}
		}
	}
	if acked > 0 {
		c.timeouts, c.dupAcks = 0, 0
		c.rto = c.rtt.rto()
		c.cc.onAck(acked, h.TimestampDiff, now)
		poke(c.writable)
	} else if h.Type == TypeState && h.Ack == c.lastAck && len(c.inflight) > 0 {
		c.dupAcks++
	}
	c.lastAck = h.Ack
	lost := false
	if len(h.SACK) > 0 {
		after := 0
		for i := len(c.inflight) - 1; i >= 0; i-- {
			switch p := c.inflight[i]; {
			case p.acked:
				after++
			case after >= 3 && !p.lost:
				c.markLost(p)
				lost = true
			}
		}
	}
	if c.dupAcks == 3 && len(c.inflight) > 0 && !c.inflight[0].acked && !c.inflight[0].lost {
		c.markLost(c.inflight[0])
		lost = true
	}
	if lost && (len(c.inflight) == 0 || !seqLess(c.inflight[0].seq, c.recoverSeq)) {
		// One halving per window of data.
		c.cc.onLoss()
		c.recoverSeq = c.seqNr
	}
	switch {
	case len(c.inflight) == 0:
		if c.rtoTimer != nil {
			c.rtoTimer.Stop()
		}
	case acked > 0:
		c.armRTO()
	}
}

// markLost takes p out of the bytes in flight, to be resent by flush.
func (c *Conn) markLost(p *outPacket) {
	p.lost = true
	c.lost++
	c.inflightBytes -= len(p.payload)
}

// deliver takes a data packet in order or keeps it past a gap, as room
// allows; a packet that does not fit is dropped and resent by the peer.
func (c *Conn) deliver(seq uint16, payload []byte) {
	next := c.ackNr + 1
	if c.gotFin && !seqLess(seq, c.finSeq) {
		return
	}
	switch {
	case seq == next:
		if c.room() < len(payload) {
			return
		}
		c.appendRecv(payload)
		c.ackNr = seq
		c.advance()
	case seqLess(next, seq) && seq-next < maxAhead:
		if _, dup := c.ooo[seq]; dup || c.room() < len(payload) {
			return
		}
		c.ooo[seq] = append([]byte(nil), payload...)
		c.oooBytes += len(payload)
	}
}

// advance moves past packets kept beyond a gap that is now filled, and
// past the peer's FIN once everything before it is in.
func (c *Conn) advance() {
	for {
		p, ok := c.ooo[c.ackNr+1]
		if !ok {
			break
		}
		delete(c.ooo, c.ackNr+1)
		c.oooBytes -= len(p)
		c.appendRecv(p)
		c.ackNr++
	}
	if c.gotFin && c.ackNr+1 == c.finSeq {
		c.ackNr, c.eof = c.finSeq, true
		clear(c.ooo)
		c.oooBytes = 0
	}
	poke(c.readable)
}

func (c *Conn) appendRecv(p []byte) {
	if c.recvOff > 0 && c.recvOff >= len(c.recv)/2 {
		n := copy(c.recv, c.recv[c.recvOff:])
		c.recv, c.recvOff = c.recv[:n], 0
	}
	c.recv = append(c.recv, p...)
}

// header is the header of our next packet of type t.
func (c *Conn) header(t Type, seq uint16, now time.Time) Header {
	wnd := uint32(c.room())
	c.lastWnd = wnd
	id := c.sendID
	if t == TypeSyn {
		id = c.recvID
	}
	return Header{Type: t, ConnID: id, Timestamp: c.s.micros(now), TimestampDiff: c.replyMicro, Wnd: wnd, Seq: seq, Ack: c.ackNr}
}

// sendState acknowledges, with a selective ack of what is kept past a gap.
func (c *Conn) sendState() {
	now := time.Now()
	h := c.header(TypeState, c.seqNr, now)
	if len(c.ooo) > 0 {
		var mask [maxSACKLen]byte
		last := 0
		for seq := range c.ooo {
			i := int(seq - c.ackNr - 2)
			if i >= 0 && i < maxSACKLen*8 {
				mask[i/8] |= 1 << (i % 8)
				last = max(last, i)
			}
		}
		n := (last/32 + 1) * 4
		h.SACK = mask[:n]
	}
	c.s.send(c.remote, h, nil)
}

// transmit sends (or resends) p.
func (c *Conn) transmit(p *outPacket, now time.Time) {
	h := c.header(p.typ, p.seq, now)
	p.sentAt = now
	p.sends++
	c.s.send(c.remote, h, p.payload)
}

// queue sends a new packet that consumes a sequence number.
func (c *Conn) queue(t Type, payload []byte, now time.Time) {
	p := &outPacket{typ: t, seq: c.seqNr, payload: payload}
	c.seqNr++
	c.inflight = append(c.inflight, p)
	c.inflightBytes += len(payload)
	c.transmit(p, now)
	if len(c.inflight) == 1 {
		c.armRTO()
	}
}

// flush resends lost packets and sends new ones as the congestion window
// and the peer's window allow, then our FIN once everything written is
// out.
func (c *Conn) flush(now time.Time) {
	if c.state != stateConnected {
		return
	}
	window := int(min(c.cc.cwnd, float64(c.peerWnd)))
	fits := func(n int) bool { return c.inflightBytes == 0 || c.inflightBytes+n <= window }
	for i := 0; c.lost > 0 && i < len(c.inflight); i++ {
		p := c.inflight[i]
		if !p.lost || p.acked {
			continue
		}
		if !fits(len(p.payload)) {
			return
		}
		p.lost = false
		c.lost--
		c.inflightBytes += len(p.payload)
		c.transmit(p, now)
		if i == 0 {
			c.armRTO()
		}
	}
	for len(c.unsent) > 0 {
		n := min(len(c.unsent), maxPayload)
		if !fits(n) {
			break
		}
		payload := append([]byte(nil), c.unsent[:n]...)
		c.unsent = c.unsent[n:]
		c.queue(TypeData, payload, now)
	}
	if len(c.unsent) == 0 {
		c.unsent = nil
		if c.wantFin && !c.finSent {
			c.finSent = true
			c.queue(TypeFin, nil, now)
		}
	}
	if len(c.unsent) < sendBuffer {
		poke(c.writable)
	}
}

func (c *Conn) armRTO() {
	if c.rtoTimer == nil {
		c.rtoTimer = time.AfterFunc(c.rto, c.onTimeout)
		return
	}
	c.rtoTimer.Reset(c.rto)
}

// onTimeout takes everything in flight for lost and resends from the
// oldest with the smallest window and a doubled timeout; it gives the peer
// up after maxTimeouts in a row.
func (c *Conn) onTimeout() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateDead || len(c.inflight) == 0 {
		return
	}
	c.timeouts++
	if c.timeouts > maxTimeouts {
		c.die(ErrTimeout)
		return
	}
	c.rto = min(2*c.rto, maxRTO)
	now := time.Now()
	if c.state == stateSynSent {
		c.transmit(c.inflight[0], now)
		c.armRTO()
		return
	}
	c.cc.onTimeout()
	for _, p := range c.inflight {
		if !p.acked && !p.lost {
			c.markLost(p)
		}
	}
	c.recoverSeq = c.seqNr
	c.flush(now)
	c.armRTO()
}

// die ends the connection; err is what Read and Write return from now on
// (nil: they return net.ErrClosed or io.EOF).
func (c *Conn) die(err error) {
	if c.state == stateDead {
		return
	}
	c.state, c.err = stateDead, err
	if c.rtoTimer != nil {
		c.rtoTimer.Stop()
	}
	if c.lingerTimer != nil {
		c.lingerTimer.Stop()
	}
	close(c.done)
	c.s.remove(c)
}

// Read reads what the peer sent, in order; io.EOF after its FIN.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		c.mu.Lock()
		if c.userClosed {
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
		if avail := len(c.recv) - c.recvOff; avail > 0 {
			n := copy(p, c.recv[c.recvOff:])
			c.recvOff += n
			if c.recvOff == len(c.recv) {
				c.recv, c.recvOff = c.recv[:0], 0
			}
			// A window we shrank below two packets opens again: say so,
			// or the peer waits for its timeout.
			if c.state == stateConnected && c.lastWnd < 2*maxPayload && c.room() >= c.s.opts.RecvBuffer/2 {
				c.sendState()
			}
			c.mu.Unlock()
			return n, nil
		}
		if c.eof {
			c.mu.Unlock()
			return 0, io.EOF
		}
		if c.state == stateDead {
			err := c.err
			c.mu.Unlock()
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
		c.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		select {
		case <-c.readable:
		case <-c.done:
		case <-c.closed:
		case <-c.rd.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// Write queues p for sending, waiting while the send buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	written := 0
	for {
		c.mu.Lock()
		switch {
		case c.userClosed:
			c.mu.Unlock()
			return written, net.ErrClosed
		case c.state == stateDead:
			err := c.err
			c.mu.Unlock()
			if err == nil {
				err = fmt.Errorf("utp: write after the connection ended: %w", syscall.EPIPE)
			}
			return written, err
		}
		if n := min(len(p)-written, sendBuffer-len(c.unsent)); n > 0 {
			c.unsent = append(c.unsent, p[written:written+n]...)
			written += n
			c.flush(time.Now())
		}
		c.mu.Unlock()
		if written == len(p) {
			return written, nil
		}
		select {
		case <-c.writable:
		case <-c.done:
		case <-c.closed:
		case <-c.wd.wait():
			return written, os.ErrDeadlineExceeded
		}
	}
}

// Close sends our FIN after what was written and forgets the connection
// once the FIN is acknowledged (or after a few seconds). Read and Write
// return net.ErrClosed from now on.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.userClosed {
		return nil
	}
	c.userClosed = true
	close(c.closed)
	if c.state != stateConnected {
		c.die(nil)
		return nil
	}
	c.wantFin = true
	c.flush(time.Now())
	c.lingerTimer = time.AfterFunc(finLinger, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.die(nil)
	})
	return nil
}

// LocalAddr is the socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.s.pc.LocalAddr() }

// RemoteAddr is the peer's UDP address.
func (c *Conn) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(c.remote) }

// RemoteAddrPort is the peer's UDP address.
func (c *Conn) RemoteAddrPort() netip.AddrPort { return c.remote }

func (c *Conn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

func (c *Conn) SetReadDeadline(t time.Time) error  { c.rd.set(t); return nil }
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wd.set(t); return nil }

// deadline is a settable deadline whose channel closes when it passes (as
// net.Pipe's).
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

func newDeadline() deadline { return deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for it to close cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

var _ net.Conn = (*Conn)(nil)
