package swarmsim

import (
	"context"
	"net/netip"
	"slices"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// Address book bounds.
const (
	maxBook      = 4096 // addresses a peer remembers
	maxDialFails = 5    // failures after which an address is given up
	dialBackoff  = 2 * time.Second
	pruneBackoff = 30 * time.Second
)

// addrEntry is an address a peer learned (from the tracker or AddPeers).
type addrEntry struct {
	addr    netip.AddrPort
	conns   int // live connections known to reach it
	dialing bool
	fails   int
	next    time.Time // no dial before
	banned  bool
	self    bool
}

func (e *addrEntry) dialable(now time.Time) bool {
	return e.conns == 0 && !e.dialing && !e.banned && !e.self && e.fails < maxDialFails && !now.Before(e.next)
}

// addrBook keeps learned addresses in the order they were learned, so that
// dial order is reproducible under a seed.
type addrBook struct {
	list []*addrEntry
	idx  map[netip.AddrPort]*addrEntry
}

func (b *addrBook) get(a netip.AddrPort) *addrEntry { return b.idx[a] }

func (b *addrBook) add(a netip.AddrPort) *addrEntry {
	if e := b.idx[a]; e != nil {
		return e
	}
	if len(b.list) >= maxBook {
		return nil
	}
	if b.idx == nil {
		b.idx = map[netip.AddrPort]*addrEntry{}
	}
	e := &addrEntry{addr: a}
	b.list = append(b.list, e)
	b.idx[a] = e
	return e
}

func (b *addrBook) connected(a netip.AddrPort, up bool) {
	if e := b.idx[a]; e != nil {
		if up {
			e.conns++
		} else if e.conns > 0 {
			e.conns--
		}
	}
}

func (b *addrBook) ban(a netip.AddrPort) {
	if e := b.add(a); e != nil {
		e.banned = true
	}
}

func (b *addrBook) markSelf(a netip.AddrPort) {
	if e := b.idx[a]; e != nil {
		e.self = true
	}
}

// AddPeers tells a downloading peer about other peers' addresses; it dials
// them (in an order shuffled under its seed) while it lacks pieces and has
// room for connections. A complete peer, or one that does not download,
// ignores them. Only loopback addresses are taken: a simulated
// swarm never talks to anything else. It returns how many were new.
func (p *Peer) AddPeers(addrs ...netip.AddrPort) int {
	var ok []netip.AddrPort
	for _, a := range addrs {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		if a.Addr().IsLoopback() && a.Port() != 0 && a != p.addr {
			ok = append(ok, a)
		}
	}
	p.mu.Lock()
	if p.dl == nil || p.closed || p.have.Complete() {
		p.mu.Unlock()
		return 0 // complete peers wait to be dialled
	}
	p.rng.Shuffle(len(ok), func(i, j int) { ok[i], ok[j] = ok[j], ok[i] })
	added := 0
	for _, a := range ok {
		if p.book.get(a) != nil {
			continue
		}
		e := p.book.add(a)
		if e == nil {
			break
		}
		added++
		for _, k := range p.conns {
			if k.listen == a {
				e.conns++
			}
		}
	}
	p.mu.Unlock()
	if added > 0 {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return added
}

// noteListenPort records the listening port a remote gave in its extension
// handshake, so that the address it announces is known to be connected.
func (p *Peer) noteListenPort(c *peerwire.Conn, port int) {
	if port <= 0 || port > 65535 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := p.conns[c]
	if k == nil || p.dl == nil || k.listen.IsValid() {
		return
	}
	k.listen = netip.AddrPortFrom(c.Remote.Addr(), uint16(port))
	p.book.connected(k.listen, true)
}

// housekeeping dials, prunes, rotates upload slots and sends keep-alives.
func (p *Peer) housekeeping() {
	defer p.wg.Done()
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.wake:
		}
		p.tick(time.Now())
	}
}

func (p *Peer) tick(now time.Time) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if now.Sub(p.lastChoke) >= p.cfg.ChokeInterval {
		p.lastChoke = now
		p.rotateLocked()
	}
	if now.Sub(p.lastAlive) >= keepaliveEvery {
		if !p.lastAlive.IsZero() {
			for _, k := range p.conns {
				k.enqueue(pp.Message{Keepalive: true})
			}
		}
		p.lastAlive = now
	}
	if p.cfg.DropUninterested > 0 {
		p.dropUninterestedLocked(now)
	}
	var dials []netip.AddrPort
	if p.dl != nil && !p.have.Complete() {
		p.pruneLocked(now)
		free := p.maxConns - len(p.conns) - p.pending
		for _, e := range p.book.list {
			if free <= 0 || p.dialing >= maxDials {
				break
			}
			if !e.dialable(now) {
				continue
			}
			e.dialing = true
			p.dialing++
			p.pending++
			p.connWG.Add(1)
			free--
			dials = append(dials, e.addr)
		}
	}
	p.mu.Unlock()
	for _, a := range dials {
		go p.dial(a)
	}
}

// pruneLocked closes the connection that has been of no use longest when
// the peer is full and has addresses it could try instead.
func (p *Peer) pruneLocked(now time.Time) {
	if len(p.conns)+p.pending < p.maxConns || !slices.ContainsFunc(p.book.list, func(e *addrEntry) bool { return e.dialable(now) }) {
		return
	}
	var victim *conn
	for _, k := range p.sortedConnsLocked() {
		if k.closed || now.Sub(k.lastUseful) < pruneIdle || len(k.reqs) > 0 {
			continue
		}
		if victim == nil || k.lastUseful.Before(victim.lastUseful) {
			victim = k
		}
	}
	if victim == nil {
		return
	}
	if e := p.book.get(victim.listen); e != nil {
		e.next = now.Add(pruneBackoff)
	}
	victim.closed = true
	victim.c.Close()
}

// dropUninterestedLocked closes the connections on which neither side has
// been interested for DropUninterested.
func (p *Peer) dropUninterestedLocked(now time.Time) {
	for _, k := range p.conns {
		switch {
		case k.closed:
		case k.remoteInterested || k.amInterested:
			k.interestAt = now
		case now.Sub(k.interestAt) >= p.cfg.DropUninterested:
			k.closed = true
			k.c.Close()
		}
	}
}

// dial opens one connection (admitted by tick) and runs it.
func (p *Peer) dial(a netip.AddrPort) {
	defer p.connWG.Done()
	ctx, cancel := context.WithTimeout(p.ctx, handshakeTime)
	c, err := peerwire.Dial(ctx, a, peerwire.Config{
		InfoHash: p.cfg.Payload.InfoHash, PeerID: p.cfg.PeerID, Policy: p.cfg.Encryption.dialPolicy(),
	})
	cancel()
	p.mu.Lock()
	p.dialing--
	e := p.book.get(a)
	if e != nil {
		e.dialing = false
	}
	if err != nil {
		p.pending--
		if e != nil {
			e.fails++
			e.next = time.Now().Add(time.Duration(e.fails) * dialBackoff)
		}
		p.mu.Unlock()
		p.cfg.Logger.Debug("swarmsim dial", "addr", a, "err", err)
		return
	}
	if e != nil {
		e.fails = 0
	}
	p.mu.Unlock()
	p.run(c, true, a)
}

func sortConns(ks []*conn) {
	slices.SortFunc(ks, func(a, b *conn) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
}
