package swarmsim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"golang.org/x/time/rate"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// errPeer marks a connection ended because the remote peer broke the
// protocol (bad index, bad bitfield, oversized queue, ...).
var errPeer = errors.New("swarmsim: remote peer misbehaved")

// conn is one live connection of a peer. Its reader runs on the goroutine
// that accepted or dialled it; a writer goroutine sends everything queued
// for it (control messages first, then requested blocks under the upload
// limiter), so a reader never blocks on a write and two peers can never
// wedge each other with full socket buffers.
type conn struct {
	p        *Peer
	c        *peerwire.Conn
	seq      uint64
	outgoing bool
	id       [20]byte
	listen   netip.AddrPort // the remote's listening address, when known
	wakeW    chan struct{}
	since    time.Time

	// Guarded by p.mu.
	closed           bool
	out              []pp.Message // control messages to send
	upq              []pp.Message // remote's requests we will serve
	amChoking        bool
	remoteInterested bool
	unchokedAt       time.Time
	interestAt       time.Time // last tick either side was interested
	// Download side (used only when the peer downloads).
	remoteHave     bitfield.Bitfield
	remoteChoking  bool
	amInterested   bool
	wanted         int // pieces the remote has and we lack
	reqs           []blockReq
	lastUseful     time.Time
	remoteComplete bool
}

// enqueue queues control messages for the writer. Called with p.mu held.
func (k *conn) enqueue(msgs ...pp.Message) {
	if k.closed {
		return
	}
	if len(k.out)+len(msgs) > maxOutbox {
		// The remote is not reading what we send; give up on it.
		k.p.cfg.Logger.Debug("swarmsim outbox full", "remote", k.c.Remote)
		k.closed = true
		k.c.Close()
		return
	}
	k.out = append(k.out, msgs...)
	k.signal()
}

func (k *conn) signal() {
	select {
	case k.wakeW <- struct{}{}:
	default:
	}
}

// send queues msgs on c's writer, or writes them directly when c is not a
// registered connection.
func (p *Peer) send(c *peerwire.Conn, msgs ...pp.Message) error {
	p.mu.Lock()
	k := p.conns[c]
	if k != nil {
		k.enqueue(msgs...)
	}
	p.mu.Unlock()
	if k == nil {
		return c.WriteMessages(msgs...)
	}
	return nil
}

// ourExtHandshake is the extension handshake of a downloading peer: the
// extensions peerwire speaks plus "p", the port others can reach us on, so
// a peer that accepted our connection does not dial us again.
func (p *Peer) ourExtHandshake() pp.Message {
	h := pp.ExtendedHandshakeMessage{
		M: map[pp.ExtensionName]pp.ExtensionNumber{
			peerwire.ExtPEX:      peerwire.LocalPEXID,
			peerwire.ExtMetadata: peerwire.LocalMetadataID,
		},
		V:            p.clientName(),
		Reqq:         maxUploadQueue,
		MetadataSize: len(p.cfg.InfoBytes),
		Port:         int(p.addr.Port()),
	}
	payload, err := bencode.Marshal(h)
	if err != nil {
		// A struct of strings and ints always marshals; fall back anyway.
		return peerwire.OurExtHandshake(p.clientName(), maxUploadQueue, len(p.cfg.InfoBytes), false)
	}
	return pp.Message{Type: pp.Extended, ExtendedID: pp.HandshakeExtendedID, ExtendedPayload: payload}
}

// run registers an established connection, says hello, and reads from it
// until it ends. listen is the dialled address for outgoing connections.
func (p *Peer) run(c *peerwire.Conn, outgoing bool, listen netip.AddrPort) {
	defer c.Close()
	now := time.Now()
	k := &conn{p: p, c: c, outgoing: outgoing, id: c.PeerID, listen: listen, wakeW: make(chan struct{}, 1),
		since: now, interestAt: now, amChoking: true, remoteChoking: true, lastUseful: now}
	p.mu.Lock()
	p.pending--
	if reason := p.registerLocked(k); reason != "" {
		p.mu.Unlock()
		p.cfg.Logger.Debug("swarmsim connection dropped", "remote", c.Remote, "reason", reason)
		return
	}
	var hello []pp.Message
	if c.SupportsExtended() {
		if p.dl != nil {
			hello = append(hello, p.ourExtHandshake())
		} else {
			hello = append(hello, peerwire.OurExtHandshake(p.clientName(), maxUploadQueue, len(p.cfg.InfoBytes), false))
		}
	}
	have := p.have
	switch {
	case c.SupportsFast() && have.Complete():
		hello = append(hello, pp.Message{Type: pp.HaveAll})
	case c.SupportsFast() && have.Count() == 0:
		hello = append(hello, pp.Message{Type: pp.HaveNone})
	case have.Count() > 0:
		hello = append(hello, pp.Message{Type: pp.Bitfield, Bitfield: bools(have)})
	}
	k.enqueue(hello...)
	p.mu.Unlock()

	stop := context.AfterFunc(p.ctx, func() { c.Close() })
	defer stop()
	var writer sync.WaitGroup
	writer.Go(k.writeLoop)
	err := k.readLoop()
	c.Close()
	p.mu.Lock()
	p.unregisterLocked(k)
	p.mu.Unlock()
	k.signal()
	writer.Wait()
	if errors.Is(err, errPeer) {
		p.cfg.Logger.Debug("swarmsim connection ended", "remote", c.Remote, "err", err)
	}
}

// registerLocked adds k to the peer's connections, or says why not.
func (p *Peer) registerLocked(k *conn) string {
	if p.closed {
		return "peer closed"
	}
	if p.cfg.OneConnPerIP && !k.outgoing {
		for _, o := range p.conns {
			if !o.closed && o.c.Remote.Addr() == k.c.Remote.Addr() {
				return "one connection per IP"
			}
		}
	}
	if p.dl != nil {
		if k.id == p.cfg.PeerID && k.id != ([20]byte{}) {
			p.book.markSelf(k.listen)
			return "connected to ourselves"
		}
		if p.dl.isBanned(k.id) {
			return "banned"
		}
		// One connection per remote peer when either is ours: two peers
		// that dialled each other at once keep the connection opened by
		// the smaller peer id, and both ends agree which one that is.
		// Several incoming ones from one id (an auditor's probe and watch)
		// are all kept.
		for _, o := range p.conns {
			if o.id != k.id || (!o.outgoing && !k.outgoing) || o.closed {
				continue
			}
			if initiator(p, k) < initiator(p, o) {
				o.closed = true
				o.c.Close()
				continue
			}
			return "duplicate connection"
		}
	}
	p.connSeq++
	k.seq = p.connSeq
	p.conns[k.c] = k
	if p.dl != nil {
		k.remoteHave = bitfield.New(p.have.Len())
		if k.listen.IsValid() {
			p.book.connected(k.listen, true)
		}
	}
	return ""
}

// initiator is the peer id of the side that opened k, as a string for
// comparison.
func initiator(p *Peer, k *conn) string {
	if k.outgoing {
		return string(p.cfg.PeerID[:])
	}
	return string(k.id[:])
}

func (p *Peer) unregisterLocked(k *conn) {
	if p.conns[k.c] != k {
		return
	}
	delete(p.conns, k.c)
	delete(p.peerExt, k.c)
	k.closed = true
	k.out, k.upq = nil, nil
	if !k.amChoking && p.cfg.UploadSlots > 0 {
		p.unchoked--
		k.amChoking = true
		p.fillSlotsLocked()
	}
	if p.dl != nil {
		p.dl.dropConn(k)
		if k.listen.IsValid() {
			p.book.connected(k.listen, false)
		}
	}
}

func (k *conn) readLoop() error {
	for {
		k.c.SetDeadline(time.Now().Add(readIdleTimeout))
		m, err := k.c.ReadMessage()
		if err != nil {
			return err
		}
		if m.Keepalive || m.Unknown {
			continue
		}
		if err := k.handle(m.Message); err != nil {
			return err
		}
	}
}

// handle acts on one message from the remote.
func (k *conn) handle(m pp.Message) error {
	p := k.p
	switch m.Type {
	case pp.Interested, pp.NotInterested:
		p.mu.Lock()
		p.interestLocked(k, m.Type == pp.Interested)
		p.mu.Unlock()
	case pp.Request:
		p.mu.Lock()
		err := p.requestLocked(k, m)
		p.mu.Unlock()
		return err
	case pp.Cancel:
		p.mu.Lock()
		for i, r := range k.upq {
			if r.Index == m.Index && r.Begin == m.Begin && r.Length == m.Length {
				k.upq = append(k.upq[:i], k.upq[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
	case pp.Extended:
		return p.extended(k.c, m)
	case pp.Have, pp.Bitfield, pp.HaveAll, pp.HaveNone, pp.Choke, pp.Unchoke, pp.Reject, pp.Piece:
		if p.dl == nil {
			return nil // a serving-only peer ignores what others have
		}
		return p.dl.handle(k, m)
	}
	return nil
}

// interestLocked records the remote's interest and (un)chokes it: without
// upload slots every interested peer is unchoked at once; with slots, up
// to that many, the rest wait for a rotation.
func (p *Peer) interestLocked(k *conn, interested bool) {
	k.remoteInterested = interested
	if interested {
		if k.amChoking && !p.cfg.NeverUnchoke && (p.cfg.UploadSlots <= 0 || p.unchoked < p.cfg.UploadSlots) {
			p.unchokeLocked(k)
		}
		return
	}
	if !k.amChoking && p.cfg.UploadSlots > 0 {
		p.chokeLocked(k)
		p.fillSlotsLocked()
	}
}

func (p *Peer) unchokeLocked(k *conn) {
	k.amChoking = false
	k.unchokedAt = time.Now()
	if p.cfg.UploadSlots > 0 {
		p.unchoked++
	}
	k.enqueue(pp.Message{Type: pp.Unchoke})
}

// chokeLocked chokes k and drops its queued requests, rejecting them when
// the Fast extension is on (BEP 6).
func (p *Peer) chokeLocked(k *conn) {
	k.amChoking = true
	if p.cfg.UploadSlots > 0 {
		p.unchoked--
	}
	msgs := []pp.Message{{Type: pp.Choke}}
	if k.c.SupportsFast() {
		for _, r := range k.upq {
			msgs = append(msgs, pp.Message{Type: pp.Reject, Index: r.Index, Begin: r.Begin, Length: r.Length})
		}
	}
	k.upq = nil
	k.enqueue(msgs...)
}

// fillSlotsLocked unchokes waiting interested peers while slots are free,
// picking among them at random.
func (p *Peer) fillSlotsLocked() {
	if p.cfg.UploadSlots <= 0 || p.cfg.NeverUnchoke || p.closed {
		return
	}
	for p.unchoked < p.cfg.UploadSlots {
		waiting := p.waitingLocked()
		if len(waiting) == 0 {
			return
		}
		p.unchokeLocked(waiting[p.rng.IntN(len(waiting))])
	}
}

// waitingLocked lists interested, choked connections in connection order.
func (p *Peer) waitingLocked() []*conn {
	var w []*conn
	for _, k := range p.sortedConnsLocked() {
		if k.remoteInterested && k.amChoking && !k.closed {
			w = append(w, k)
		}
	}
	return w
}

// rotateLocked gives the slot held longest to a waiting peer, so that
// every interested peer is served in turn.
func (p *Peer) rotateLocked() {
	if p.cfg.UploadSlots <= 0 || p.cfg.NeverUnchoke {
		return
	}
	if len(p.waitingLocked()) > 0 && p.unchoked >= p.cfg.UploadSlots {
		var oldest *conn
		for _, k := range p.sortedConnsLocked() {
			if !k.amChoking && (oldest == nil || k.unchokedAt.Before(oldest.unchokedAt)) {
				oldest = k
			}
		}
		if oldest != nil {
			p.chokeLocked(oldest)
		}
	}
	p.fillSlotsLocked()
}

// requestLocked queues one of the remote's requests, or rejects it.
func (p *Peer) requestLocked(k *conn, m pp.Message) error {
	i, begin, length := int(m.Index), int64(m.Begin), int64(m.Length)
	ok := !k.amChoking && p.have.Has(i) && length > 0 && length <= 1<<17 && begin >= 0 && begin+length <= p.cfg.Payload.PieceSize(i)
	if !ok {
		if k.c.SupportsFast() {
			k.enqueue(pp.Message{Type: pp.Reject, Index: m.Index, Begin: m.Begin, Length: m.Length})
		}
		return nil
	}
	if len(k.upq) >= maxUploadQueue {
		return fmt.Errorf("%w: more than %d requests queued", errPeer, maxUploadQueue)
	}
	k.upq = append(k.upq, pp.Message{Type: pp.Request, Index: m.Index, Begin: m.Begin, Length: m.Length})
	k.signal()
	return nil
}

// writeLoop sends queued control messages and requested blocks until the
// connection ends.
func (k *conn) writeLoop() {
	p := k.p
	for {
		p.mu.Lock()
		out := k.out
		k.out = nil
		var job pp.Message
		haveJob := false
		if len(out) == 0 && len(k.upq) > 0 && !k.amChoking {
			job, k.upq, haveJob = k.upq[0], k.upq[1:], true
		}
		closed := k.closed
		p.mu.Unlock()
		switch {
		case len(out) > 0:
			if err := k.c.WriteMessages(out...); err != nil {
				k.c.Close()
				return
			}
		case haveJob:
			if err := k.upload(job); err != nil {
				k.c.Close()
				return
			}
		case closed:
			return
		default:
			select {
			case <-k.wakeW:
			case <-p.ctx.Done():
				return
			}
		}
	}
}

// upload sends one requested block once the upload limiter allows it; the
// control messages queued meanwhile are sent while it waits.
func (k *conn) upload(m pp.Message) error {
	p := k.p
	length := int(m.Length)
	if p.limiter != nil {
		if err := k.waitTokens(p.limiter, length); err != nil {
			return err
		}
	}
	p.mu.Lock()
	if k.amChoking || k.closed {
		// Choked while we waited: the block is not sent.
		if !k.closed && k.c.SupportsFast() {
			k.enqueue(pp.Message{Type: pp.Reject, Index: m.Index, Begin: m.Begin, Length: m.Length})
		}
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	off := int64(m.Index)*p.cfg.Payload.PieceLength + int64(m.Begin)
	data := p.cfg.Payload.Data[off : off+int64(length)]
	if p.cfg.BadData {
		data = append([]byte(nil), data...)
		for j := range data {
			data[j] ^= 0x5a
		}
	}
	if err := k.c.WriteMessages(pp.Message{Type: pp.Piece, Index: m.Index, Begin: m.Begin, Piece: data}); err != nil {
		return err
	}
	p.uploaded.Add(int64(length))
	p.mu.Lock()
	k.lastUseful = time.Now()
	p.mu.Unlock()
	return nil
}

// waitTokens takes n bytes' worth of tokens from lim (in chunks no larger
// than its burst) and waits until they are due, flushing control messages
// queued in the meantime.
func (k *conn) waitTokens(lim *rate.Limiter, n int) error {
	now := time.Now()
	var delay time.Duration
	var rs []*rate.Reservation
	for left := n; left > 0; left -= limiterChunk {
		r := lim.ReserveN(now, min(left, limiterChunk))
		if !r.OK() {
			return fmt.Errorf("swarmsim: %d bytes exceed the limiter's burst", min(left, limiterChunk))
		}
		rs = append(rs, r)
		delay = max(delay, r.DelayFrom(now))
	}
	if delay <= 0 {
		return nil
	}
	// Tokens of a block that will not be sent go back to the other
	// connections.
	giveBack := func() {
		for _, r := range rs {
			r.Cancel()
		}
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return nil
		case <-k.p.ctx.Done():
			giveBack()
			return k.p.ctx.Err()
		case <-k.wakeW:
			k.p.mu.Lock()
			out := k.out
			k.out = nil
			closed := k.closed
			k.p.mu.Unlock()
			if closed {
				giveBack()
				return errConnClosed
			}
			if len(out) > 0 {
				if err := k.c.WriteMessages(out...); err != nil {
					return err
				}
			}
		}
	}
}

// errConnClosed ends a writer whose connection was closed while it waited.
var errConnClosed = errors.New("swarmsim: connection closed")

// sortedConnsLocked returns the connections in the order they were made,
// so that choices over them are reproducible under a seed.
func (p *Peer) sortedConnsLocked() []*conn {
	ks := make([]*conn, 0, len(p.conns))
	for _, k := range p.conns {
		ks = append(ks, k)
	}
	sortConns(ks)
	return ks
}
