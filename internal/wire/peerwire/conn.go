// Package peerwire speaks the BitTorrent peer wire protocol with one peer:
// TCP connect with deadlines, Message Stream Encryption (MSE/PE) under an
// encryption policy with plaintext fallback, the BitTorrent handshake with
// the extension protocol (BEP 10), Fast extension (BEP 6) and DHT bits, the
// extension handshake, and bounded message framing. Incoming connections are
// accepted in both plaintext and MSE.
//
// Message framing and bencode come from github.com/anacrolix/torrent
// (peer_protocol, bencode), MSE from internal/wire/mse; this package adds
// the connection policy, deadlines, size caps and error classification an
// auditor facing hostile peers needs.
package peerwire

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/wire/mse"
)

// Policy is the encryption policy for outgoing connections.
type Policy string

// The encryption policies.
const (
	// PolicyAuto offers MSE with RC4 or plaintext and falls back to a plain
	// handshake when the peer drops MSE (like libtorrent's "enabled").
	PolicyAuto Policy = "auto"
	// PolicyRequire accepts only an MSE handshake that selects RC4.
	PolicyRequire Policy = "require"
	// PolicyPlaintext never encrypts.
	PolicyPlaintext Policy = "plaintext"
)

// ParsePolicy checks a policy name from the command line.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyAuto, PolicyRequire, PolicyPlaintext:
		return p, nil
	}
	return "", fmt.Errorf("unknown encryption policy %q (want auto, require or plaintext)", s)
}

// Method is the encryption a connection ended up with.
type Method string

// The connection methods.
const (
	MethodRC4          Method = "rc4"           // MSE handshake, RC4 stream
	MethodPlaintext    Method = "plaintext"     // plain BitTorrent handshake
	MethodMSEPlaintext Method = "mse-plaintext" // MSE handshake, then plaintext
)

// DefaultMaxMessage caps the length prefix of messages we accept: a 16 KiB
// block plus headroom, or a bitfield of 1M pieces. Anything longer is a
// protocol error, never an allocation.
const DefaultMaxMessage = 1 << 17

// Config says who we are and which torrent we talk about.
type Config struct {
	InfoHash infohash.T
	PeerID   [20]byte
	Policy   Policy
	// Reserved handshake bits we send; zero value means DefaultReserved(),
	// without the DHT bit when Private.
	Reserved pp.PeerExtensionBits
	// Private: the torrent is private (BEP 27), so we advertise no DHT
	// support in the handshake.
	Private bool
	// MaxMessage caps incoming message length; 0 means DefaultMaxMessage.
	MaxMessage int
	// MSETimeout bounds the MSE attempt under PolicyAuto, connection
	// included (default DefaultMSETimeout, and at most half the time the
	// dial's context has left): a peer silent during MSE then still gets
	// the plaintext try.
	MSETimeout time.Duration
	Network
}

// DefaultReserved advertises the extension protocol, the Fast extension and
// DHT support.
func DefaultReserved() pp.PeerExtensionBits {
	return pp.NewPeerExtensionBytes(pp.ExtensionBitLtep, pp.ExtensionBitFast, pp.ExtensionBitDht)
}

func (c Config) reserved() pp.PeerExtensionBits { return reservedBits(c.Reserved, c.Private) }

// reservedBits is set, or DefaultReserved without the DHT bit for a
// private torrent (BEP 27) when set is zero.
func reservedBits(set pp.PeerExtensionBits, private bool) pp.PeerExtensionBits {
	if set == (pp.PeerExtensionBits{}) {
		r := DefaultReserved()
		if private {
			r.SetBit(pp.ExtensionBitDht, false)
		}
		return r
	}
	return set
}

func (c Config) maxMessage() int {
	if c.MaxMessage <= 0 {
		return DefaultMaxMessage
	}
	return c.MaxMessage
}

// Conn is an established, handshaken connection to one peer. Reads happen on
// one goroutine (the owner); writes are serialised by a mutex so a writer
// goroutine may coexist with the reader.
type Conn struct {
	raw     net.Conn
	rw      io.ReadWriter // raw, or the MSE stream over it
	br      *bufio.Reader
	dec     pp.Decoder
	writeMu sync.Mutex
	maxMsg  int
	Remote  netip.AddrPort
	Method  Method
	// Transport is what the connection runs over (TCP unless uTP).
	Transport Transport
	InfoHash  infohash.T
	PeerID    [20]byte
	Reserved  pp.PeerExtensionBits
	// Incoming is true for connections the peer opened.
	Incoming bool
	// HandshakeDuration runs from the start of the TCP connect (or accept)
	// to the peer's BitTorrent handshake.
	HandshakeDuration time.Duration

	wire *wireCounter
	// A message larger than the read buffer (ReadMessage gathers it, and
	// resumes it after a timeout): nil until the first one comes, so an
	// idle watch pays a pointer for it. skip is an unknown one being
	// discarded.
	large *largeMsg
	skip  skipped
}

// readBufSize holds the small messages (HAVE, choke, an extension
// handshake, PEX, a bitfield of up to 4,000 pieces) that idle watches
// receive. Larger messages (blocks) are gathered in a buffer of their own
// (ReadMessage): a bigger read buffer would buy no throughput and cost
// memory on each of the auditor's many connections.
const readBufSize = 512

func newConn(raw net.Conn, rw io.ReadWriter, method Method, maxMsg int) *Conn {
	c := &Conn{raw: raw, maxMsg: maxMsg, Method: method, rw: rw, Transport: TransportTCP}
	if cc, ok := raw.(*countingConn); ok {
		// Counted on the socket since before the handshakes (MSE's key
		// exchange and padding included).
		c.wire = cc.n
	} else {
		c.wire = &wireCounter{}
		c.rw = countingRW{rw: rw, n: c.wire}
	}
	c.br = bufio.NewReaderSize(c.rw, readBufSize)
	c.dec = pp.Decoder{R: c.br, MaxLength: pp.Integer(maxMsg)}
	if _, udp := raw.RemoteAddr().(*net.UDPAddr); udp {
		c.Transport = TransportUTP // the one stream protocol over UDP
	}
	if ap, err := netip.ParseAddrPort(raw.RemoteAddr().String()); err == nil {
		c.Remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return c
}

// SupportsExtended reports whether the peer set the BEP 10 bit.
func (c *Conn) SupportsExtended() bool { return c.Reserved.SupportsExtended() }

// SupportsFast reports whether both sides set the BEP 6 bit (the Fast
// extension applies only when both do).
func (c *Conn) SupportsFast() bool { return c.Reserved.SupportsFast() }

// SetDeadline sets the read and write deadline of the underlying socket.
func (c *Conn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// KeepAlive turns TCP keep-alive on for a connection that is to last (a
// watch): a peer that vanishes without a word (a crash, a NAT mapping
// expired) then ends the connection within about three minutes instead of
// at TCP's retransmission timeout, so it is not counted present meanwhile.
// Dial and Listen leave it off: a probe lasts seconds, and the system calls
// are a measurable part of it. It does nothing on a connection that is not
// TCP.
func (c *Conn) KeepAlive() error {
	raw := c.raw
	if cc, ok := raw.(*countingConn); ok {
		raw = cc.Conn
	}
	tc, ok := raw.(*net.TCPConn)
	if !ok {
		return nil
	}
	return tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true}) // Go's defaults: 15 s idle, 15 s apart, 9 probes
}

// SetReadDeadline sets the deadline of reads only. A read that reaches it
// between messages returns ErrTimeout and the connection stays usable, so
// one goroutine can both read and keep time (see ReadMessage).
func (c *Conn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline of writes only.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// Close closes the connection.
func (c *Conn) Close() error { return c.raw.Close() }

// RemoteAddr is the address of the other end.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// Bytes returns the bytes read and written on the socket so far, including
// protocol overhead: the MSE key exchange and padding, the handshakes, and
// message framing (before decryption). An MSE attempt that failed before a
// plaintext retry (PolicyAuto) is not included.
func (c *Conn) Bytes() (in, out int64) {
	return c.wire.in.Load(), c.wire.out.Load()
}

// wireCounter counts a connection's bytes.
type wireCounter struct{ in, out atomic.Int64 }

// countingConn counts what passes through a socket.
type countingConn struct {
	net.Conn
	n *wireCounter
}

func newCountingConn(raw net.Conn) *countingConn {
	return &countingConn{Conn: raw, n: &wireCounter{}}
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.out.Add(int64(n))
	return n, err
}

// countingRW counts bytes that pass through a stream that is not a counted
// socket (NewStreamConn).
type countingRW struct {
	rw io.ReadWriter
	n  *wireCounter
}

func (w countingRW) Read(p []byte) (int, error) {
	n, err := w.rw.Read(p)
	w.n.in.Add(int64(n))
	return n, err
}

func (w countingRW) Write(p []byte) (int, error) {
	n, err := w.rw.Write(p)
	w.n.out.Add(int64(n))
	return n, err
}

// withDeadline bounds the socket by ctx's deadline and closes it if ctx is
// cancelled early; the returned func undoes both, after which no late
// interrupt touches the socket its next owner reads.
func withDeadline(ctx context.Context, conn net.Conn) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	unhook := Interrupt(ctx, conn)
	return func() {
		unhook()
		_ = conn.SetDeadline(time.Time{})
	}
}

// cryptoProvides is what an MSE initiator offers under each policy.
func cryptoProvides(p Policy) mse.Method {
	if p == PolicyRequire {
		return mse.RC4
	}
	return mse.RC4 | mse.Plaintext
}
