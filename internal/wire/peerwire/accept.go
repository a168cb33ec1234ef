package peerwire

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/anacrolix/torrent/mse"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"
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
		selector := func(provided mse.CryptoMethod) mse.CryptoMethod {
			switch {
			case provided&mse.CryptoMethodPlaintext != 0 && cfg.AllowMSEPlaintext:
				return mse.CryptoMethodPlaintext
			case provided&mse.CryptoMethodRC4 != 0:
				return mse.CryptoMethodRC4
			}
			return 0
		}
		rw, chosen, err := mse.ReceiveHandshake(ctx, stream, skeys, selector)
		if err != nil {
			return nil, classify(fmt.Errorf("MSE: %w", err), ErrHandshake)
		}
		stream, method = rw, MethodRC4
		if chosen == mse.CryptoMethodPlaintext {
			method = MethodMSEPlaintext
		}
	}
	reserved := reservedBits(cfg.Reserved, cfg.Private)
	// Look at the info hash in the peer's handshake before answering, so a
	// peer asking for a torrent we do not serve learns nothing from us. The
	// same reader then carries any messages the peer pipelined behind it.
	peek := bufio.NewReaderSize(stream, 128)
	hs, err := peek.Peek(48)
	if err != nil {
		return nil, classify(err, ErrHandshake)
	}
	if !bytes.Equal(hs[:20], []byte(pp.Protocol)) {
		return nil, newErr(ErrHandshake, fmt.Errorf("unexpected protocol string %q", hs[:20]))
	}
	var ih infohash.T
	copy(ih[:], hs[28:48])
	if !cfg.Known(ih) {
		return nil, newErr(ErrHandshake, fmt.Errorf("unknown info hash %x", ih))
	}
	stream = &bufferedConn{Reader: peek, Writer: stream}
	res, err := pp.Handshake(ctx, stream, &ih, cfg.PeerID, reserved)
	if err != nil {
		return nil, classify(err, ErrHandshake)
	}
	c = newConn(raw, stream, method, max)
	c.InfoHash, c.PeerID, c.Reserved, c.Incoming = res.Hash, res.PeerID, res.PeerExtensionBits, true
	c.HandshakeDuration = time.Since(start)
	return c, nil
}

// bufferedConn reads through the bufio.Reader that peeked the first bytes.
type bufferedConn struct {
	*bufio.Reader
	io.Writer
}
