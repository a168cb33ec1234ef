package peerwire

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/wire/mse"
)

// AcceptConfig describes how incoming connections are answered.
type AcceptConfig struct {
	PeerID [20]byte
	// Known reports whether we serve an info hash, and the torrents we serve
	// for MSE (the receiver finds the torrent from the req2/req3 hash).
	Known    func(infohash.T) bool
	InfoHash func(yield func(infohash.T) bool)
	// AllowPlaintext accepts plain handshakes; AllowMSEPlaintext lets MSE
	// select plaintext when the initiator offers it (RC4 is chosen otherwise).
	AllowPlaintext    bool
	AllowMSEPlaintext bool
	// RefuseMSE hangs up on MSE handshakes (a plaintext-only peer).
	RefuseMSE bool
	// Reserved handshake bits we answer with; zero value means
	// DefaultReserved(), without the DHT bit when Private (BEP 27).
	Reserved   pp.PeerExtensionBits
	Private    bool
	MaxMessage int
}

// Accept answers an incoming connection: it tells a plain handshake from an
// MSE one by its first bytes and completes the BitTorrent handshake for a
// torrent we know. ctx bounds the exchange. On error raw is closed.
func Accept(ctx context.Context, sock net.Conn, cfg AcceptConfig) (c *Conn, err error) {
	start := time.Now()
	raw := newCountingConn(sock)
	stop := withDeadline(ctx, raw)
	defer stop()
	defer func() {
		if err != nil {
			raw.Close()
			err = fmt.Errorf("accept %s: %w", raw.RemoteAddr(), err)
		}
	}()
	br := bufio.NewReaderSize(raw, 128)
	head, err := br.Peek(20)
	if err != nil {
		return nil, classify(err, ErrHandshake)
	}
	var stream io.ReadWriter = &bufferedConn{Reader: br, Writer: raw}
	max := cfg.MaxMessage
	if max <= 0 {
		max = DefaultMaxMessage
	}
	method := MethodPlaintext
	if bytes.Equal(head, []byte(pp.Protocol)) {
		if !cfg.AllowPlaintext {
			return nil, newErr(ErrHandshake, fmt.Errorf("plaintext handshake refused by policy"))
		}
	} else {
		if cfg.RefuseMSE {
			return nil, newErr(ErrHandshake, fmt.Errorf("MSE refused by policy"))
		}
		skeys := func(cb func([]byte) bool) {
			cfg.InfoHash(func(ih infohash.T) bool { return cb(ih[:]) })
		}
		selector := func(provided mse.Method) mse.Method {
			switch {
			case provided&mse.Plaintext != 0 && cfg.AllowMSEPlaintext:
				return mse.Plaintext
			case provided&mse.RC4 != 0:
				return mse.RC4
			}
			return 0
		}
		st, _, err := mse.Receive(stream, skeys, selector)
		if err != nil {
			return nil, classify(fmt.Errorf("MSE: %w", err), ErrHandshake)
		}
		stream, method = st, MethodRC4
		if st.Method() == mse.Plaintext {
			method = MethodMSEPlaintext
		}
	}
	reserved := reservedBits(cfg.Reserved, cfg.Private)
	// Read the peer's handshake before answering, so a peer asking for a
	// torrent we do not serve learns nothing from us. The connection's
	// reader then carries any messages the peer pipelined behind it.
	c = newConn(raw, stream, method, max)
	res, err := readHandshake(c.br)
	if err != nil {
		return nil, classify(err, ErrHandshake)
	}
	if !cfg.Known(res.InfoHash) {
		return nil, newErr(ErrHandshake, fmt.Errorf("unknown info hash %x", res.InfoHash))
	}
	if _, err := c.rw.Write(appendHandshake(make([]byte, 0, handshakeLen), reserved, res.InfoHash, cfg.PeerID)); err != nil {
		return nil, classify(err, ErrHandshake)
	}
	c.InfoHash, c.PeerID, c.Reserved, c.Incoming = res.InfoHash, res.PeerID, res.Reserved, true
	c.HandshakeDuration = time.Since(start)
	return c, nil
}

// Listen opens a TCP listener for incoming peer connections. TCP
// keep-alive is off on the connections it accepts, as on those Dial makes
// (the five system calls Go spends setting it up are a measurable part of
// a short probe); a connection that is to last turns it on (Conn.KeepAlive).
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// bufferedConn reads through the bufio.Reader that peeked the first bytes.
type bufferedConn struct {
	*bufio.Reader
	io.Writer
}
