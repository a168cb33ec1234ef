package peerwire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Transport is how a connection reaches a peer: TCP, or uTP (BEP 29).
type Transport string

const (
	TransportTCP Transport = "tcp"
	TransportUTP Transport = "utp"
	// TransportAuto dials TCP, then uTP when TCP did not reach a
	// BitTorrent peer, and starts with whichever last worked for the peer.
	TransportAuto Transport = "auto"
)

// ParseTransport reads a --transport value.
func ParseTransport(s string) (Transport, error) {
	switch t := Transport(s); t {
	case TransportTCP, TransportUTP, TransportAuto:
		return t, nil
	}
	return "", fmt.Errorf("unknown transport %q (want auto, tcp or utp)", s)
}

// ContextDialer opens a connection, as net.Dialer and utp.Socket do.
type ContextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Network is how outgoing connections are opened.
type Network struct {
	// Dialer opens TCP connections; nil uses a net.Dialer.
	Dialer ContextDialer
	// UTP opens uTP connections (a *utp.Socket); nil: none.
	UTP ContextDialer
	// Transport says which transports Dial tries (default TransportAuto
	// when UTP is set, else TransportTCP).
	Transport Transport
	// Transports remembers per peer what reached it, for TransportAuto
	// (nil: nothing is remembered).
	Transports *TransportMemo
}

// TransportMemo remembers the peers uTP reached, so that TransportAuto
// starts with uTP next time; TCP, tried first anyway, needs no entry. It
// is bounded: when full, it forgets an arbitrary peer for each new one.
// Safe for concurrent use.
type TransportMemo struct {
	mu  sync.Mutex
	m   map[netip.AddrPort]Transport
	max int
}

// NewTransportMemo remembers up to max peers.
func NewTransportMemo(max int) *TransportMemo {
	return &TransportMemo{m: map[netip.AddrPort]Transport{}, max: max}
}

// Get says what last reached addr ("" if nothing yet).
func (m *TransportMemo) Get(addr netip.AddrPort) Transport {
	if m == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[addr]
}

// Set records that t reached addr.
func (m *TransportMemo) Set(addr netip.AddrPort, t Transport) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t == TransportTCP {
		delete(m.m, addr)
		return
	}
	if _, ok := m.m[addr]; !ok && len(m.m) >= m.max {
		for k := range m.m {
			delete(m.m, k)
			break
		}
	}
	m.m[addr] = t
}

// transports is the order in which Dial tries the transports for addr.
func (c Network) transports(addr netip.AddrPort) ([]Transport, error) {
	t := c.Transport
	if t == "" {
		t = TransportTCP
		if c.UTP != nil {
			t = TransportAuto
		}
	}
	if t != TransportTCP && c.UTP == nil {
		return nil, fmt.Errorf("dial %s: transport %s needs a uTP socket", addr, t)
	}
	switch t {
	case TransportTCP, TransportUTP:
		return []Transport{t}, nil
	case TransportAuto:
		if c.Transports.Get(addr) == TransportUTP {
			return []Transport{TransportUTP, TransportTCP}, nil
		}
		return []Transport{TransportTCP, TransportUTP}, nil
	}
	return nil, fmt.Errorf("dial %s: unknown transport %q", addr, t)
}

// Dial connects to addr and completes the BitTorrent handshake under
// cfg.Policy, over the transports cfg.Transport allows. With PolicyAuto a
// peer that drops the MSE handshake is dialled again in plaintext; with
// TransportAuto a peer TCP did not reach is dialled over uTP (the first
// transport gets half the time). ctx bounds the whole exchange, fallbacks
// included. When every transport fails, the error is the first one's, with
// the others' said after it.
func Dial(ctx context.Context, addr netip.AddrPort, cfg Config) (*Conn, error) {
	order, err := cfg.transports(addr)
	if err != nil {
		return nil, err
	}
	var first error
	for i, t := range order {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if i < len(order)-1 {
			actx, cancel = context.WithTimeout(ctx, firstTransportTime(ctx))
		}
		c, err := dialPolicy(actx, addr, cfg, t)
		cancel()
		if err == nil {
			cfg.Transports.Set(addr, t)
			return c, nil
		}
		if first == nil {
			first = err
		} else {
			first = fmt.Errorf("%w (over %s: %v)", first, t, err)
		}
		if ctx.Err() != nil || errors.Is(err, ErrPlaintextRefused) {
			// A peer that answered and refused our encryption policy
			// would refuse it over any transport.
			break
		}
	}
	return nil, first
}

// firstTransportTime is what the first of two transports gets: half of
// what ctx has left, or the MSE attempt's default twice over.
func firstTransportTime(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d) / 2
	}
	return 2 * DefaultMSETimeout
}
