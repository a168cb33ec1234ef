package trackerserver

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

// peerKey identifies a peer in a swarm: its peer id and source address, so
// that nobody can stop or overwrite another address's entry by reusing its
// peer id.
type peerKey struct {
	id [20]byte
	ip netip.Addr
}

type peerEntry struct {
	addr      netip.AddrPort // handed to other peers
	id        [20]byte
	seeder    bool
	completed bool // its "completed" event was counted
	expires   time.Time
}

type swarm struct {
	peers     map[peerKey]*peerEntry
	seeders   int
	completed int64
	nextSweep time.Time
}

// swarmStats are a swarm's scrape counts.
type swarmStats struct {
	seeders, leechers int
	completed         int64
}

func (sw *swarm) stats() swarmStats {
	return swarmStats{seeders: sw.seeders, leechers: len(sw.peers) - sw.seeders, completed: sw.completed}
}

func (sw *swarm) remove(k peerKey, p *peerEntry) {
	if p.seeder {
		sw.seeders--
	}
	delete(sw.peers, k)
}

// sweep drops expired peers, at most once per ttl/4 unless forced.
func (sw *swarm) sweep(now time.Time, ttl time.Duration, force bool) {
	if !force && now.Before(sw.nextSweep) {
		return
	}
	sw.nextSweep = now.Add(ttl / 4)
	for k, p := range sw.peers {
		if now.After(p.expires) {
			sw.remove(k, p)
		}
	}
}

// swarmTable is the tracker's in-memory state: one swarm per info hash.
type swarmTable struct {
	mu          sync.Mutex
	torrents    map[[20]byte]*swarm
	maxTorrents int
	maxPeers    int
	ttl         time.Duration // a peer's lifetime after its last announce
}

// peerInfo is a peer handed out in a reply.
type peerInfo struct {
	addr netip.AddrPort
	id   [20]byte
}

type announceArgs struct {
	infoHash [20]byte
	key      peerKey
	addr     netip.AddrPort // where other peers reach it
	left     int64
	event    reported.Event
	numWant  int
	family   int // 4 or 6: hand out only peers of that family; 0: any
}

// announce updates the swarm with one announce and appends up to numWant
// other live peers to dst: leechers only for a seeder, never the announcer,
// never a peer with port 0.
func (t *swarmTable) announce(now time.Time, a announceArgs, dst []peerInfo) ([]peerInfo, swarmStats, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sw := t.torrents[a.infoHash]
	if sw == nil {
		if a.event == reported.EventStopped {
			return dst, swarmStats{}, nil
		}
		if len(t.torrents) >= t.maxTorrents {
			return dst, swarmStats{}, fmt.Errorf("%w: %d torrents", ErrTrackerFull, len(t.torrents))
		}
		sw = &swarm{peers: make(map[peerKey]*peerEntry), nextSweep: now.Add(t.ttl / 4)}
		t.torrents[a.infoHash] = sw
	}
	sw.sweep(now, t.ttl, false)
	p := sw.peers[a.key]
	if a.event == reported.EventStopped {
		if p != nil {
			sw.remove(a.key, p)
		}
		st := sw.stats()
		if len(sw.peers) == 0 {
			delete(t.torrents, a.infoHash)
		}
		return dst, st, nil
	}
	if p == nil {
		if len(sw.peers) >= t.maxPeers {
			return dst, sw.stats(), fmt.Errorf("%w: %d peers in this swarm", ErrTrackerFull, len(sw.peers))
		}
		p = &peerEntry{id: a.key.id}
		sw.peers[a.key] = p
	}
	p.addr = a.addr
	p.expires = now.Add(t.ttl)
	if seeder := a.left == 0; seeder != p.seeder {
		p.seeder = seeder
		if seeder {
			sw.seeders++
		} else {
			sw.seeders--
		}
	}
	if a.event == reported.EventCompleted && !p.completed {
		p.completed = true
		sw.completed++
	}
	// Go's map iteration starts at a random place: a fair enough sample.
	for k, q := range sw.peers {
		if len(dst) >= a.numWant {
			break
		}
		if k == a.key || q.addr.Port() == 0 || now.After(q.expires) || (p.seeder && q.seeder) {
			continue
		}
		if (a.family == 4 && !q.addr.Addr().Is4()) || (a.family == 6 && !q.addr.Addr().Is6()) {
			continue
		}
		dst = append(dst, peerInfo{addr: q.addr, id: q.id})
	}
	return dst, sw.stats(), nil
}

// scrape returns the counts of the given torrents; ok[i] is false for a
// torrent with no swarm. With no info hashes it returns up to max swarms.
func (t *swarmTable) scrape(now time.Time, ihs [][20]byte, max int) (got [][20]byte, stats []swarmStats, ok []bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(ihs) == 0 {
		for ih, sw := range t.torrents {
			if len(got) >= max {
				break
			}
			sw.sweep(now, t.ttl, false)
			got = append(got, ih)
			stats = append(stats, sw.stats())
			ok = append(ok, true)
		}
		return got, stats, ok
	}
	for _, ih := range ihs {
		sw := t.torrents[ih]
		if sw == nil {
			stats = append(stats, swarmStats{})
			ok = append(ok, false)
			continue
		}
		sw.sweep(now, t.ttl, false)
		stats = append(stats, sw.stats())
		ok = append(ok, true)
	}
	return ihs, stats, ok
}

// sweepAll drops every expired peer and every empty swarm.
func (t *swarmTable) sweepAll(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ih, sw := range t.torrents {
		sw.sweep(now, t.ttl, true)
		if len(sw.peers) == 0 {
			delete(t.torrents, ih)
		}
	}
}
