package collect

import (
	"context"
	"hash/maphash"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
	"github.com/swarmaudit/swarmaudit/internal/observation/relay"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
)

// Holepunching (BEP 55, see package relay): a peer no connection of ours
// reaches (behind a NAT) is introduced to us by a watched peer that speaks
// ut_holepunch, and both sides open a uTP connection. A relay can only
// introduce a peer it is connected to: those that named the peer in their
// PEX (BEP 11 lists a peer's connections) are asked first. Ours becomes the
// probe's; or the peer's comes in on the uTP listener and becomes an
// incoming watch (parked until this probe ends). Either way its
// connection events say "holepunch".
const (
	maxRelaysTried = 3
	rendezvousTime = 10 * time.Second
	// punchedFor is how long after an introduction a connection from the
	// peer's IP counts as through the hole.
	punchedFor = time.Minute
)

// punches is what holepunching shares between the connection goroutines;
// its methods do nothing on nil (no holepunching).
type punches struct {
	mu sync.Mutex
	// relays: watched peers that speak ut_holepunch, each with the peers
	// its PEX said lately it is connected to.
	relays  map[netip.AddrPort]*pexSeen
	tried   map[netip.AddrPort]time.Time // last introduction asked per peer
	punched map[netip.Addr]time.Time     // IPs introduced lately
}

// pexSeen remembers the last pexRing peers a relay's PEX added, as hashes
// (a fixed 512 B per relay, however many peers it names; a collision only
// puts a relay first that may not know the target).
type pexSeen struct {
	h [pexRing]uint64 // 0: empty
	n int             // adds so far: the next slot is n % pexRing
}

const pexRing = 64

var pexSeed = maphash.MakeSeed()

func pexHash(a netip.AddrPort) uint64 { return max(maphash.Comparable(pexSeed, a), 1) }

func (s *pexSeen) add(a netip.AddrPort) {
	s.h[s.n%pexRing] = pexHash(a)
	s.n++
}

func (s *pexSeen) drop(a netip.AddrPort) {
	h := pexHash(a)
	for i := range s.h {
		if s.h[i] == h {
			s.h[i] = 0
		}
	}
}

func (s *pexSeen) has(a netip.AddrPort) bool {
	h := pexHash(a)
	for _, x := range s.h {
		if x == h {
			return true
		}
	}
	return false
}

func (p *punches) setRelay(addr netip.AddrPort, ok bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !ok {
		delete(p.relays, addr)
	} else if p.relays[addr] == nil {
		p.relays[addr] = &pexSeen{}
	}
}

// notePEX records whom a relay's PEX message says it is connected to.
// Messages from peers that are not relays are ignored.
func (p *punches) notePEX(from netip.AddrPort, m pex.Message) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := p.relays[from]
	if seen == nil {
		return
	}
	for _, a := range m.Dropped {
		seen.drop(a)
	}
	for _, a := range m.Added {
		seen.add(a.Addr)
	}
}

// pick returns up to n relays other than target if target was not tried
// within every: first those whose PEX named target, then the others, each
// group in random order.
func (p *punches) pick(target netip.AddrPort, n int, every time.Duration, now time.Time) []netip.AddrPort {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if at, ok := p.tried[target]; ok && now.Sub(at) < every {
		return nil
	}
	var knowing, others []netip.AddrPort
	for a, seen := range p.relays {
		switch {
		case a == target:
		case seen.has(target):
			knowing = append(knowing, a)
		default:
			others = append(others, a)
		}
	}
	if len(knowing)+len(others) == 0 {
		return nil
	}
	for a, at := range p.tried { // forget what is due again: the map stays small
		if now.Sub(at) >= every {
			delete(p.tried, a)
		}
	}
	p.tried[target] = now
	for _, s := range [][]netip.AddrPort{knowing, others} {
		rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	}
	out := append(knowing, others...)
	return out[:min(n, len(out))]
}

func (p *punches) notePunched(ip netip.Addr, now time.Time) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, at := range p.punched {
		if now.Sub(at) >= punchedFor {
			delete(p.punched, a)
		}
	}
	p.punched[ip] = now
}

// wasPunched reports whether ip was introduced to us lately.
func (p *punches) wasPunched(ip netip.Addr, now time.Time) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.punched[ip]
	return ok && now.Sub(at) < punchedFor
}

// unreached reports whether a probe reached no BitTorrent peer at all: the
// case for an introduction.
func unreached(r *probe.Result) bool {
	switch r.Outcome {
	case probe.OutcomeRefused, probe.OutcomeTimeout:
		return !r.TCPConnected
	case probe.OutcomeHandshakeFailed:
		return r.Encryption == ""
	}
	return false
}

// throughHole asks watched relays to introduce us to addr and probes it over
// the hole; it returns that probe's result, or nil when no relay could
// introduce us or our connection did not come through (the peer's may
// still: see the package comment).
func (c *Collector) throughHole(ctx context.Context, addr netip.AddrPort, opts probe.Options) *probe.Result {
	for _, rl := range c.punch.pick(addr, maxRelaysTried, c.cfg.ProbeInterval, time.Now()) {
		rctx, cancel := context.WithTimeout(ctx, rendezvousTime)
		// A peer id of its own: a relay that sees two connections with
		// one id (this and our watch of it) drops one of them.
		ep, err := relay.Rendezvous(rctx, rl, addr, peerwire.Config{
			InfoHash: c.cfg.Torrent.InfoHash, PeerID: peerid.New(peerid.Prefix), Policy: c.cfg.Policy, Private: c.cfg.Torrent.Private, Network: c.cfg.Network,
		}, c.cfg.ClientName)
		cancel()
		if err != nil {
			c.cfg.Logger.Debug("holepunch: no introduction", "peer", addr, "relay", rl, "err", err)
			continue
		}
		c.punch.notePunched(ep.Addr(), time.Now())
		opts.Dialer.Network.Transport = peerwire.TransportUTP
		r, err := probe.Run(ctx, ep, c.target(), opts)
		if err != nil || r.Encryption == "" {
			c.cfg.Logger.Debug("holepunch: our connection did not come through", "peer", addr, "relay", rl, "at", ep)
			if r != nil && r.Conn != nil {
				r.Conn.Close()
			}
			return nil
		}
		r.Holepunch = true
		return r
	}
	return nil
}

func newPunches() *punches {
	return &punches{relays: map[netip.AddrPort]*pexSeen{}, tried: map[netip.AddrPort]time.Time{}, punched: map[netip.Addr]time.Time{}}
}
