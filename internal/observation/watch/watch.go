// Package watch keeps a cheap, idle connection to one peer: it is not
// interested and requests nothing, so the peer spends almost nothing on it,
// while the auditor receives the peer's bitfield, every HAVE in real time,
// and its PEX messages (BEP 11). It keeps what the peer told it that a
// bandwidth probe would need (peerwire.PeerState: piece set, choke,
// allowed-fast pieces), so that it can lend its connection to one between
// two messages (Lender) instead of the auditor opening a second connection.
// It also fetches a torrent's info
// dictionary from a peer by ut_metadata (BEP 9) when only a magnet is known.
package watch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
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
	// on the connection's goroutine like the other events: the watch keeps
	// time with read deadlines, so it costs one goroutine.
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
	// Network opens the connection (nil dialer: TCP by a net.Dialer).
	Network peerwire.Network
	// Lender, if set, lends the connection to tasks (Lender.Lend).
	Lender *Lender
	// Stopper, if set, ends the watch instead of ctx: ctx is then looked
	// at only between messages and timers, and the caller stops the
	// watch when ctx ends. It spares a watch the context and callback that
	// following ctx costs, which a collector holding thousands of watches
	// under one context does not need.
	Stopper *Stopper
}

// Stopper ends a watch from another goroutine (see Options.Stopper). The
// zero value is ready; it ends one watch.
type Stopper struct {
	mu      sync.Mutex // orders Stop and attach
	conn    *peerwire.Conn
	stopped atomic.Bool // read by the watch between messages
}

// Stop ends the watch: at once if it is connected, or as soon as it is.
func (s *Stopper) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped.Store(true)
	if s.conn != nil {
		s.conn.SetDeadline(time.Unix(1, 0))
	}
}

// Stopped reports whether Stop was called.
func (s *Stopper) Stopped() bool { return s.stopped.Load() }

// attach ties the stopper to the watch's connection; false if it was
// stopped already.
func (s *Stopper) attach(c *peerwire.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn = c
	return !s.stopped.Load()
}

// Task uses a watch's connection on the watch's goroutine (see Lender):
// st is what the peer told the watch, and the task updates it with what
// the peer told the task. It must leave the connection as a watch needs
// it (not interested, nothing requested); an error ends the watch.
type Task func(c *peerwire.Conn, st *peerwire.PeerState) error

// Lender lends a watch's connection to a task between two of the peer's
// messages (a bandwidth probe: probe.RunOn). The task runs on the watch's
// goroutine, so the connection keeps one owner, and the peer sees no new
// connection: clients that take one connection per IP (Transmission,
// qBittorrent, aria2) would refuse a second, and a peer that only ever
// connected to us (behind a NAT) could not be reached by one. The zero
// value is ready; it serves one watch.
type Lender struct {
	mu   sync.Mutex
	conn *peerwire.Conn // set while the watch is connected
	task Task
}

// Lend asks the watch to run task as soon as it is between two messages.
// It reports false, and task never runs, if the watch is not connected
// (not yet, or not any more) or has a task pending. A task accepted runs
// unless the watch ends first.
func (l *Lender) Lend(task Task) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil || l.task != nil {
		return false
	}
	l.task = task
	l.conn.SetReadDeadline(time.Unix(1, 0)) // wakes the watch's read
	return true
}

// attach makes the lender lend c (nil: nothing any more).
func (l *Lender) attach(c *peerwire.Conn) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conn, l.task = c, nil
}

// pending reports whether a task waits to run.
func (l *Lender) pending() bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.task != nil
}

// take returns the pending task, if any, and forgets it.
func (l *Lender) take() Task {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.task
	l.task = nil
	return t
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
func Follow(ctx context.Context, c *peerwire.Conn, o Options, ev Events) (Summary, error) {
	return follow(ctx, c, o, ev, nil, nil)
}

// Resume runs a watch on a connection whose hello was already exchanged (a
// snapshot or bandwidth probe's, see probe.Options.Keep): ext is the
// extension handshake the peer sent on it, nil if none, and st what the
// peer told the probe. Events.Connected is called at once. It closes c.
func Resume(ctx context.Context, c *peerwire.Conn, ext *peerwire.ExtHandshake, st peerwire.PeerState, o Options, ev Events) (Summary, error) {
	return follow(ctx, c, o, ev, ext, &st)
}

// follow is Follow, or Resume when resumed (st set: no hello of ours).
func follow(ctx context.Context, c *peerwire.Conn, o Options, ev Events, ext *peerwire.ExtHandshake, resumed *peerwire.PeerState) (sum Summary, err error) {
	defer c.Close()
	defer o.Lender.attach(nil)
	addr := c.Remote
	if o.NumPieces <= 0 {
		return sum, errors.New("watch: number of pieces unknown")
	}
	st := peerwire.NewPeerState()
	if resumed != nil {
		st = *resumed
	} else {
		if err := hello(c, o); err != nil {
			return sum, err
		}
	}
	// A watch lasts: a peer gone without a word must end it (TCP
	// keep-alive), or its heartbeats would say it is present.
	if err := c.KeepAlive(); err != nil {
		return sum, fmt.Errorf("watch %s: keep-alive: %w", addr, err)
	}
	sum.Method = c.Method
	start := time.Now()
	// named results: the deferred assignment reaches the caller
	defer func() { sum.Connected = time.Since(start) }()
	// Ending ctx (or o.Stopper) unblocks the read below. The loop keeps
	// time itself: its read deadline is the next keep-alive or tick, so a
	// watch is one goroutine.
	ended := ctx.Err
	if o.Stopper != nil {
		if !o.Stopper.attach(c) {
			return sum, nil
		}
		ended = func() error {
			if o.Stopper.Stopped() {
				return errStopped
			}
			return ctx.Err()
		}
	} else {
		stop := peerwire.Interrupt(ctx, c)
		defer stop()
	}
	clock := newClock(start, o, ev.Tick != nil)

	// The watch is announced (Events.Connected) once the peer's hello is
	// in (its extension handshake, or a few messages without one); only
	// then does it lend its connection, so that no task reads the hello.
	announced := false
	announce := func(ext *peerwire.ExtHandshake) {
		announced = true
		o.Lender.attach(c)
		if ev.Connected != nil {
			ev.Connected(c, ext)
		}
	}
	if resumed != nil || !c.SupportsExtended() {
		announce(ext)
	}
	// Of the peer's extension handshake the watch keeps only what it
	// answers with: the id of its ut_metadata (0: none).
	metadataID := metadataIDOf(ext)
	if ext != nil {
		st.Reqq = ext.Reqq
	}
	var deadline time.Time // the read deadline set last
	for {
		if next := clock.next(); !next.Equal(deadline) {
			c.SetReadDeadline(next)
			deadline = next
		}
		if ended() != nil {
			return sum, nil // ended before the deadline above was set
		}
		if task := o.Lender.take(); task != nil {
			if err := lend(c, &st, task); err != nil {
				return sum, fmt.Errorf("watch %s: %w", addr, err)
			}
			deadline = time.Time{}
			continue
		}
		m, err := c.ReadMessage()
		if err != nil {
			if ended() != nil {
				return sum, nil
			}
			if errors.Is(err, peerwire.ErrTimeout) && o.Lender.pending() {
				continue // Lend woke the read: the task runs at the loop's top
			}
			if errors.Is(err, peerwire.ErrTimeout) && !time.Now().Before(clock.next()) {
				if err := clock.fire(c, o, ev.Tick); err != nil {
					return sum, fmt.Errorf("watch %s: keep-alive: %w", addr, err)
				}
				continue
			}
			return sum, fmt.Errorf("watch %s: %w", addr, err)
		}
		sum.Messages++
		now := time.Now()
		if m.Keepalive || m.Unknown {
			continue
		}
		if err := st.Apply(m, o.NumPieces); err != nil {
			return sum, fmt.Errorf("watch %s: %w", addr, err)
		}
		if !announced && (m.Type != pp.Extended || m.ExtendedID != pp.HandshakeExtendedID) && sum.Messages > 3 {
			announce(nil)
		}
		switch m.Type {
		case pp.Bitfield:
			if ev.Bitfield != nil {
				bf, _ := bitfield.FromBools(m.Bitfield, o.NumPieces) // valid: st.Apply checked
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
		case pp.Have: // in range: st.Apply checked
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
				metadataID = metadataIDOf(&h)
				st.Reqq = h.Reqq
				if !announced {
					announce(&h)
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
				if err := rejectMetadata(c, metadataID, m.ExtendedPayload); err != nil {
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
	return peerwire.Dial(hctx, addr, peerwire.Config{InfoHash: o.InfoHash, PeerID: o.PeerID, Policy: o.Policy, Private: o.Private, Network: o.Network})
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

var errStopped = errors.New("watch stopped")

// lend runs a task on the watch's connection and readies the connection
// for the watch again: no deadline, and the peer's state as the task left
// it.
func lend(c *peerwire.Conn, st *peerwire.PeerState, task Task) error {
	c.SetDeadline(time.Time{})
	err := task(c, st)
	c.SetDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("lent connection: %w", err)
	}
	return nil
}

// clock holds a watch's timers: a keep-alive every o.KeepAlive (default
// 60 s) and a tick every o.TickEvery.
type clock struct {
	keepAliveEvery, tickEvery time.Duration
	keepAlive, tick           time.Time // next ones; tick zero: no ticks
}

func newClock(start time.Time, o Options, ticks bool) *clock {
	k := &clock{keepAliveEvery: o.KeepAlive, tickEvery: o.TickEvery}
	if k.keepAliveEvery <= 0 {
		k.keepAliveEvery = 60 * time.Second
	}
	k.keepAlive = start.Add(k.keepAliveEvery)
	if ticks && k.tickEvery > 0 {
		k.tick = start.Add(k.tickEvery)
	}
	return k
}

// next is when the next timer is due.
func (k *clock) next() time.Time {
	if !k.tick.IsZero() && k.tick.Before(k.keepAlive) {
		return k.tick
	}
	return k.keepAlive
}

// fire runs the timers that are due: the tick callback, and a keep-alive
// written within the handshake timeout (a peer that stops reading ends
// the watch).
func (k *clock) fire(c *peerwire.Conn, o Options, tick func(time.Time)) error {
	now := time.Now()
	if !k.tick.IsZero() && !now.Before(k.tick) {
		tick(now)
		for !k.tick.After(now) {
			k.tick = k.tick.Add(k.tickEvery)
		}
	}
	if !now.Before(k.keepAlive) {
		timeout := o.HandshakeTimeout
		if timeout <= 0 {
			timeout = 20 * time.Second
		}
		c.SetWriteDeadline(now.Add(timeout))
		err := c.WriteMessages(pp.Message{Keepalive: true})
		c.SetWriteDeadline(time.Time{})
		if err != nil {
			return err
		}
		for !k.keepAlive.After(now) {
			k.keepAlive = k.keepAlive.Add(k.keepAliveEvery)
		}
	}
	return nil
}

// metadataIDOf is the peer's id for ut_metadata in its extension
// handshake, 0 if it has none.
func metadataIDOf(ext *peerwire.ExtHandshake) pp.ExtensionNumber {
	if ext == nil {
		return 0
	}
	id, ok := ext.ExtensionID(peerwire.ExtMetadata)
	if !ok {
		return 0
	}
	return id
}

// rejectMetadata answers a peer's ut_metadata request: we serve no
// metadata on a watch connection. id is the peer's ut_metadata id.
func rejectMetadata(c *peerwire.Conn, id pp.ExtensionNumber, payload []byte) error {
	msg, err := metadata.Parse(payload)
	if err != nil || msg.Type != metadata.Request || id == 0 {
		return nil
	}
	return c.WriteMessages(pp.Message{Type: pp.Extended, ExtendedID: id, ExtendedPayload: metadata.RejectPayload(msg.Piece)})
}
