package peerwire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/wire/mse"
)

// dialPolicy connects to addr over one transport and completes the
// BitTorrent handshake under cfg.Policy.
func dialPolicy(ctx context.Context, addr netip.AddrPort, cfg Config, t Transport) (*Conn, error) {
	if cfg.Policy == "" {
		cfg.Policy = PolicyAuto
	}
	switch cfg.Policy {
	case PolicyPlaintext:
		return dialOnce(ctx, addr, cfg, t, false)
	case PolicyRequire:
		return dialOnce(ctx, addr, cfg, t, true)
	case PolicyAuto:
		// The MSE attempt gets part of the time, so that a peer that
		// reads our MSE bytes and stays silent still gets a plaintext try
		// within the caller's deadline.
		mctx, cancel := context.WithTimeout(ctx, mseAttempt(ctx, cfg.MSETimeout))
		c, err := dialOnce(mctx, addr, cfg, t, true)
		silent := err != nil && errors.Is(err, ErrTimeout) && errors.Is(err, ErrConnected) && mctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil || !(errors.Is(err, errMSEDropped) || silent) {
			return c, err
		}
		c, err2 := dialOnce(ctx, addr, cfg, t, false)
		if err2 != nil && errors.Is(err2, ErrEncryptionRequired) {
			// A peer that requires encryption answers MSE; one that hung up
			// on both handshakes refuses us over TCP (full, banning us, or
			// taking uTP only), whatever its encryption policy.
			return nil, errors.Join(newErr(ErrHandshake, fmt.Errorf("%s closed both our MSE and our plaintext handshakes over %s: it is full, refuses us, or takes %s only", addr, t, otherTransport(t))), ErrConnected)
		}
		if err2 != nil {
			return nil, fmt.Errorf("%w (after MSE was dropped: %w)", err2, err)
		}
		return c, nil
	default:
		return nil, fmt.Errorf("dial %s: unknown policy %q", addr, cfg.Policy)
	}
}

// DefaultMSETimeout bounds the MSE attempt under PolicyAuto (see
// Config.MSETimeout).
const DefaultMSETimeout = 10 * time.Second

// mseAttempt is the time the MSE attempt gets under PolicyAuto: set, or
// DefaultMSETimeout, and never more than half of what ctx has left.
func mseAttempt(ctx context.Context, set time.Duration) time.Duration {
	if set <= 0 {
		set = DefaultMSETimeout
	}
	if d, ok := ctx.Deadline(); ok {
		set = min(set, time.Until(d)/2)
	}
	return set
}

// errMSEDropped marks an MSE attempt the peer hung up on (or never
// answered), which under PolicyAuto triggers the plaintext retry.
var errMSEDropped = errors.New("peer dropped the MSE handshake")

func dialOnce(ctx context.Context, addr netip.AddrPort, cfg Config, t Transport, encrypt bool) (*Conn, error) {
	start := time.Now()
	var d ContextDialer = &net.Dialer{KeepAlive: -1}
	switch {
	case t == TransportUTP:
		d = cfg.UTP
	case cfg.Dialer != nil:
		d = cfg.Dialer
	}
	sock, err := d.DialContext(ctx, string(t), addr.String())
	if err != nil {
		return nil, fmt.Errorf("dial %s over %s: %w", addr, t, classify(err, ErrRefused))
	}
	raw := newCountingConn(sock)
	stop := withDeadline(ctx, raw)
	defer stop()
	c, err := handshakeOutgoing(ctx, raw, cfg, encrypt)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("handshake with %s: %w", addr, errors.Join(err, ErrConnected))
	}
	c.HandshakeDuration = time.Since(start)
	return c, nil
}

func handshakeOutgoing(ctx context.Context, raw net.Conn, cfg Config, encrypt bool) (*Conn, error) {
	var c *Conn
	hello := appendHandshake(make([]byte, 0, handshakeLen), cfg.reserved(), cfg.InfoHash, cfg.PeerID)
	if encrypt {
		// Our BitTorrent handshake rides in MSE's initial payload, as
		// Transmission's does: one round trip fewer.
		st, err := mse.Initiate(raw, cfg.InfoHash[:], cryptoProvides(cfg.Policy), hello)
		if err != nil {
			if isTimeout(err) {
				// A peer that silently ignores MSE (reads but never sends Yb) also
				// gets the plaintext retry under auto; the retry has the same ctx.
				if cfg.Policy == PolicyAuto && ctx.Err() == nil {
					return nil, newErr(errMSEDropped, err)
				}
				return nil, newErr(ErrTimeout, err)
			}
			if isDrop(err) {
				if cfg.Policy == PolicyAuto {
					return nil, newErr(errMSEDropped, err)
				}
				return nil, newErr(ErrHandshake, fmt.Errorf("peer dropped MSE: %w", err))
			}
			if errors.Is(err, mse.ErrNoMethod) && cfg.Policy == PolicyRequire {
				return nil, newErr(ErrPlaintextRefused, err)
			}
			return nil, newErr(ErrHandshake, err)
		}
		switch st.Method() {
		case mse.RC4:
			c = newConn(raw, st, MethodRC4, cfg.maxMessage())
		case mse.Plaintext:
			if cfg.Policy == PolicyRequire {
				return nil, ErrPlaintextRefused
			}
			c = newConn(raw, st, MethodMSEPlaintext, cfg.maxMessage())
		}
	} else {
		if _, err := raw.Write(hello); err != nil {
			return nil, outgoingHandshakeErr(err, encrypt)
		}
		c = newConn(raw, raw, MethodPlaintext, cfg.maxMessage())
	}
	res, err := readHandshake(c.br)
	if err != nil {
		return nil, outgoingHandshakeErr(err, encrypt)
	}
	if res.InfoHash != cfg.InfoHash {
		return nil, newErr(ErrHandshake, fmt.Errorf("peer answered for info hash %x", res.InfoHash))
	}
	c.InfoHash = res.InfoHash
	c.PeerID = res.PeerID
	c.Reserved = res.Reserved
	return c, nil
}

// outgoingHandshakeErr classifies a failure of our BitTorrent handshake.
func outgoingHandshakeErr(err error, encrypted bool) error {
	switch {
	case isTimeout(err):
		return newErr(ErrTimeout, err)
	case isDrop(err) && !encrypted:
		return newErr(ErrEncryptionRequired, fmt.Errorf("peer closed the connection at our plaintext handshake (it requires encryption, or refuses to be reconnected to this soon): %w", err))
	default:
		return newErr(ErrHandshake, err)
	}
}

// otherTransport names the transport t is not.
func otherTransport(t Transport) Transport {
	if t == TransportUTP {
		return TransportTCP
	}
	return TransportUTP
}
