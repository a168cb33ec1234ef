// Package watch keeps a cheap, idle connection to one peer: it is not
// interested and requests nothing, so the peer spends almost nothing on it,
// while the auditor receives the peer's bitfield, every HAVE in real time,
// and its PEX messages (BEP 11). It also fetches a torrent's info
// dictionary from a peer by ut_metadata (BEP 9) when only a magnet is known.
package watch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/metadata"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
)

// Events receives what a watched peer says. Callbacks run on the
// connection's goroutine; nil callbacks are skipped.
type Events struct {
	// Connected reports the handshake (and the extension handshake, which
	// is nil if the peer sent none within the first messages).
	Connected func(c *peerwire.Conn, ext *peerwire.ExtHandshake)
	// Bitfield reports the peer's full piece set: from a bitfield,
	// HaveAll or HaveNone message.
	Bitfield func(at time.Time, have bitfield.Bitfield)
	// Have reports one HAVE message.
	Have func(at time.Time, piece int)
	// PEX reports one ut_pex message.
	PEX func(at time.Time, m pex.Message)
	// Tick is called every Options.TickEvery while the connection lasts,
	// from the connection's timer goroutine (the one that sends
	// keep-alives), not the reading one: a watch costs two goroutines, not
	// a third for a caller's heartbeat.
	Tick func(at time.Time)
}

// Options configure a watch.
type Options struct {
	InfoHash  infohash.T
	NumPieces int
	PeerID    [20]byte
	Policy    peerwire.Policy
	// ClientName goes into our extension handshake.
	ClientName string
	// Private: the torrent is private (BEP 27): no DHT bit in our
	// handshake and no PEX in our extension handshake.
	Private bool
	// HandshakeTimeout bounds connecting and handshaking (default 20 s).
	HandshakeTimeout time.Duration
	// KeepAlive is the interval of our keep-alives (default 60 s; peers
	// drop connections idle for two minutes).
	KeepAlive time.Duration
	// TickEvery is the interval of Events.Tick (0: no ticks).
	TickEvery time.Duration
	// Dialer makes the TCP connection (nil: a net.Dialer).
	Dialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
}

// Summary says how a watch went.
type Summary struct {
	Method    peerwire.Method
	Messages  int
	Haves     int
	PEX       int
	Connected time.Duration
}

// Watch connects to addr and reports the peer's messages to ev until ctx
// ends or the peer hangs up. It returns the peer's error, or nil when ctx
// ended the watch.
func Watch(ctx context.Context, addr netip.AddrPort, o Options, ev Events) (Summary, error) {
	var sum Summary
	if o.NumPieces <= 0 {
		return sum, errors.New("watch: number of pieces unknown")
	}
	c, err := dial(ctx, addr, o)
	if err != nil {
		return sum, err
	}
	return Follow(ctx, c, o, ev)
}

// Follow runs a watch on an established connection (one we dialled or one
// the peer opened, see peerwire.Accept): it sends our extension handshake
// and HaveNone, then reports the peer's messages until ctx ends or the peer
// hangs up. It closes c.
func Follow(ctx context.Context, c *peerwire.Conn, o Options, ev Events) (sum Summary, err error) {
	defer c.Close()
	addr := c.Remote
	if o.NumPieces <= 0 {
		return sum, errors.New("watch: number of pieces unknown")
	}
	if err := hello(c, o); err != nil {
		return sum, err
	}
	sum.Method = c.Method
	start := time.Now()
	// named results: the deferred assignment reaches the caller
	defer func() { sum.Connected = time.Since(start) }()
	// Ending ctx, or this function, unblocks the read below and ends the
	// keep-alives, which are waited for.
	fctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(fctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	kaDone := make(chan struct{})
	go func() { defer close(kaDone); timers(fctx, c, o, ev.Tick) }()
	defer func() { cancel(); <-kaDone }()

	var ext *peerwire.ExtHandshake
	announced := !c.SupportsExtended()
	if announced && ev.Connected != nil {
		ev.Connected(c, nil)
	}
	for {
		m, err := c.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return sum, nil
			}
			return sum, fmt.Errorf("watch %s: %w", addr, err)
		}
		sum.Messages++
		now := time.Now()
		if m.Keepalive || m.Unknown {
			continue
		}
		if !announced && (m.Type != pp.Extended || m.ExtendedID != pp.HandshakeExtendedID) && sum.Messages > 3 {
			announced = true
			if ev.Connected != nil {
				ev.Connected(c, nil)
			}
		}
		switch m.Type {
		case pp.Bitfield:
			bf, err := bitfield.FromBools(m.Bitfield, o.NumPieces)
			if err != nil {
				return sum, fmt.Errorf("watch %s: %w: %v", addr, peerwire.ErrProtocol, err)
			}
			if ev.Bitfield != nil {
				ev.Bitfield(now, bf)
			}
		case pp.HaveAll, pp.HaveNone:
			bf := bitfield.New(o.NumPieces)
			if m.Type == pp.HaveAll {
				bf = bitfield.Full(o.NumPieces)
			}
			if ev.Bitfield != nil {
				ev.Bitfield(now, bf)
			}
		case pp.Have:
			if int(m.Index) >= o.NumPieces {
				return sum, fmt.Errorf("watch %s: %w: have %d of %d pieces", addr, peerwire.ErrProtocol, m.Index, o.NumPieces)
			}
			sum.Haves++
			if ev.Have != nil {
				ev.Have(now, int(m.Index))
			}
		case pp.Extended:
			switch m.ExtendedID {
			case pp.HandshakeExtendedID:
				h, err := peerwire.ParseExtHandshake(m.ExtendedPayload)
				if err != nil {
					return sum, fmt.Errorf("watch %s: %w: %v", addr, peerwire.ErrProtocol, err)
				}
				ext = &h
				if !announced {
					announced = true
					if ev.Connected != nil {
						ev.Connected(c, ext)
					}
				}
			case peerwire.LocalPEXID:
				pm, err := pex.Parse(m.ExtendedPayload)
				if err != nil {
					continue // one bad PEX message is not worth the connection
				}
				sum.PEX++
				if ev.PEX != nil {
					ev.PEX(now, pm)
				}
			case peerwire.LocalMetadataID:
				if err := rejectMetadata(c, ext, m.ExtendedPayload); err != nil {
					return sum, err
				}
			}
		}
	}
}

// Accept answers a connection a peer opened to us (plaintext or MSE) for
// o.InfoHash within o.HandshakeTimeout; Follow then watches it. It closes
// raw when the handshake fails.
func Accept(ctx context.Context, raw net.Conn, o Options) (*peerwire.Conn, error) {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 20 * time.Second
	}
	hctx, cancel := context.WithTimeout(ctx, o.HandshakeTimeout)
	defer cancel()
	ih := o.InfoHash
	return peerwire.Accept(hctx, raw, peerwire.AcceptConfig{
		PeerID:            o.PeerID,
		Known:             func(h infohash.T) bool { return h == ih },
		InfoHash:          func(yield func(infohash.T) bool) { yield(ih) },
		AllowPlaintext:    true,
		AllowMSEPlaintext: true,
		Private:           o.Private,
	})
}

func dial(ctx context.Context, addr netip.AddrPort, o Options) (*peerwire.Conn, error) {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 20 * time.Second
	}
	hctx, cancel := context.WithTimeout(ctx, o.HandshakeTimeout)
	defer cancel()
	return peerwire.Dial(hctx, addr, peerwire.Config{InfoHash: o.InfoHash, PeerID: o.PeerID, Policy: o.Policy, Private: o.Private, Dialer: o.Dialer})
}

// hello sends our extension handshake (if the peer speaks BEP 10) and
// HaveNone (if it speaks BEP 6): we have nothing and want nothing.
func hello(c *peerwire.Conn, o Options) error {
	if o.ClientName == "" {
		o.ClientName = peerid.OurName
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 20 * time.Second
	}
	var hello []pp.Message
	if c.SupportsExtended() {
		hello = append(hello, peerwire.OurExtHandshake(o.ClientName, 250, 0, o.Private))
	}
	if c.SupportsFast() {
		hello = append(hello, pp.Message{Type: pp.HaveNone})
	}
	if len(hello) == 0 {
		return nil
	}
	c.SetDeadline(time.Now().Add(o.HandshakeTimeout))
	defer c.SetDeadline(time.Time{})
	if err := c.WriteMessages(hello...); err != nil {
		return fmt.Errorf("watch %s: %w", c.Remote, err)
	}
	return nil
}

// timers sends keep-alives and calls tick every o.TickEvery, until ctx
// ends or a write fails.
func timers(ctx context.Context, c *peerwire.Conn, o Options, tick func(time.Time)) {
	every := o.KeepAlive
	if every <= 0 {
		every = 60 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var ticks <-chan time.Time
	if tick != nil && o.TickEvery > 0 {
		tt := time.NewTicker(o.TickEvery)
		defer tt.Stop()
		ticks = tt.C
	}
	ka := pp.Message{Keepalive: true}
	for {
		select {
		case <-ctx.Done():
			return
		case at := <-ticks:
			tick(at)
		case <-t.C:
			if c.WriteMessages(ka) != nil {
				return
			}
		}
	}
}

// rejectMetadata answers a peer's ut_metadata request: we serve no
// metadata on a watch connection.
func rejectMetadata(c *peerwire.Conn, ext *peerwire.ExtHandshake, payload []byte) error {
	msg, err := metadata.Parse(payload)
	if err != nil || msg.Type != metadata.Request || ext == nil {
		return nil
	}
	id, ok := ext.ExtensionID(peerwire.ExtMetadata)
	if !ok {
		return nil
	}
	return c.WriteMessages(pp.Message{Type: pp.Extended, ExtendedID: id, ExtendedPayload: metadata.RejectPayload(msg.Piece)})
}
