// Package audit runs an audit of one swarm: it keeps discovery running,
// schedules polite probes of every peer (a bitfield snapshot every
// SnapshotInterval, a bandwidth probe at most every ProbeInterval), keeps
// cheap idle connections that deliver HAVEs in real time, records every
// observation in the store as it happens, and finally turns the stored
// observations and announces into timelines, bounds and verdicts.
package audit

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/swarmaudit/swarmaudit/internal/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/discover/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/peerid"
	"github.com/swarmaudit/swarmaudit/internal/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/probe"
	"github.com/swarmaudit/swarmaudit/internal/store"
	"github.com/swarmaudit/swarmaudit/internal/torrentmeta"
	"github.com/swarmaudit/swarmaudit/internal/watch"
)

// CollectConfig configures the observation side of an audit.
type CollectConfig struct {
	Torrent *torrentmeta.Torrent
	Store   *store.Store
	Swarm   store.SwarmID
	// Book is where discovery (trackers, DHT, PEX, the embedded tracker)
	// puts addresses; every address in it is audited.
	Book *addrbook.Book

	SnapshotInterval time.Duration // default 60 s
	ProbeInterval    time.Duration // default 10 min
	ProbeBytes       int64         // default 2 MiB
	ProbeTimeout     time.Duration // default 30 s
	// MaxConns caps live connections (probes and watches); default 64.
	// Watches take at most MaxConns − max(MaxConns/4, MaxBandwidthProbes+2)
	// of them, so that snapshots and probes of the other peers always have
	// connections left.
	MaxConns int
	// MaxBandwidthProbes caps concurrent bandwidth probes, so the auditor's
	// own download stays small; default 2.
	MaxBandwidthProbes int
	// MaxAuditorRate caps the auditor's own average download for bandwidth
	// probes, in bytes per second (0: no cap). Probes are never slowed down
	// (that would falsify the measurement): they are started only when the
	// budget allows another ProbeBytes.
	MaxAuditorRate float64
	// Watch keeps an idle connection to peers that allow it.
	Watch bool
	// RewatchAfter: a watch that the peer closed after lasting at least
	// this long is taken up again at once, not after SnapshotInterval
	// (default 10 s). Peers prune idle connections (aria2 closes one on
	// which neither side is interested after 30 s); waiting a snapshot
	// interval would leave the auditor blind to the peer's HAVEs for that
	// long. A peer that closes a watch sooner waits the interval, so a
	// peer costs at most a handshake and a bitfield per RewatchAfter.
	RewatchAfter time.Duration

	Policy     peerwire.Policy
	PeerID     [20]byte
	ClientName string
	Logger     *slog.Logger
}

// The default intervals of an audit: a bitfield snapshot of each peer a
// minute and a bandwidth probe every ten.
const (
	DefaultSnapshotInterval = time.Minute
	DefaultProbeInterval    = 10 * time.Minute
)

func (c *CollectConfig) defaults() {
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeBytes <= 0 {
		c.ProbeBytes = 2 << 20
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = 30 * time.Second
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 64
	}
	if c.MaxBandwidthProbes <= 0 {
		c.MaxBandwidthProbes = 2
	}
	if c.Policy == "" {
		c.Policy = peerwire.PolicyAuto
	}
	if c.PeerID == ([20]byte{}) {
		c.PeerID = peerid.New(peerid.Prefix)
	}
	if c.ClientName == "" {
		c.ClientName = "swarmaudit"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RewatchAfter <= 0 {
		c.RewatchAfter = 10 * time.Second
	}
}

// Progress is a live count of what the collector did.
type Progress struct {
	Discovered int   `json:"discovered"`
	Watching   int   `json:"watching"`
	Probed     int   `json:"probed"`   // peers with at least one bandwidth probe
	Reached    int   `json:"reached"`  // peers that completed a handshake
	Failed     int   `json:"failed"`   // peers whose last attempt failed
	Probes     int   `json:"probes"`   // connections made for snapshots and probes
	BytesIn    int64 `json:"bytes_in"` // the auditor's own traffic, wire bytes
	BytesOut   int64 `json:"bytes_out"`
}

// peerState is the schedule of one address; owned by the collector loop.
type peerState struct {
	addr     netip.AddrPort
	busy     bool // a probe is running
	watching bool
	// stopWatch ends the peer's watch, so that a bandwidth probe can
	// connect: many clients (Transmission, qBittorrent, aria2) accept one
	// connection per IP and torrent, and drop a second one mid-probe.
	stopWatch context.CancelFunc
	// awaitingProbe: its watch was ended for a bandwidth probe that has
	// not started yet (counted in Collector.closing).
	awaitingProbe bool
	nextSnapshot  time.Time
	nextProbe     time.Time
	fails         int
	probed        bool
	reached       bool
	lastFailed    bool
}

// Collector schedules and records observations until its context ends.
type Collector struct {
	cfg      CollectConfig
	budget   *rate.Limiter // bandwidth-probe bytes, nil when uncapped
	conns    chan struct{}
	watches  chan struct{} // held by watches in addition to a conns slot
	bwProbes chan struct{}
	closing  int // watches ended for bandwidth probes not started yet; under mu
	results  chan probeDone
	wg       sync.WaitGroup

	mu    sync.Mutex
	peers map[netip.AddrPort]*peerState

	probes            atomic.Int64
	bytesIn, bytesOut atomic.Int64
}

type probeDone struct {
	addr      netip.AddrPort
	bandwidth bool
	r         *probe.Result
}

// NewCollector checks the configuration.
func NewCollector(cfg CollectConfig) (*Collector, error) {
	if cfg.Torrent == nil || cfg.Store == nil || cfg.Book == nil {
		return nil, errors.New("audit: collector needs a torrent, a store and an address book")
	}
	cfg.defaults()
	var budget *rate.Limiter
	if cfg.MaxAuditorRate > 0 {
		budget = rate.NewLimiter(rate.Limit(cfg.MaxAuditorRate), int(cfg.ProbeBytes))
	}
	return &Collector{
		budget:   budget,
		cfg:      cfg,
		conns:    make(chan struct{}, cfg.MaxConns),
		watches:  make(chan struct{}, max(cfg.MaxConns-max(cfg.MaxConns/4, cfg.MaxBandwidthProbes+2), 1)),
		bwProbes: make(chan struct{}, cfg.MaxBandwidthProbes),
		results:  make(chan probeDone, cfg.MaxConns),
		peers:    map[netip.AddrPort]*peerState{},
	}, nil
}

// Progress returns the current counts; safe from any goroutine.
func (c *Collector) Progress() Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := Progress{Discovered: len(c.peers), Probes: int(c.probes.Load()), BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load()}
	for _, s := range c.peers {
		if s.watching {
			p.Watching++
		}
		if s.probed {
			p.Probed++
		}
		if s.reached {
			p.Reached++
		}
		if s.lastFailed {
			p.Failed++
		}
	}
	return p
}

// Run collects until ctx ends, then waits for its connections to close
// and flushes the store.
func (c *Collector) Run(ctx context.Context) error {
	found := make(chan netip.AddrPort, 64)
	go func() {
		defer close(found)
		cur := c.cfg.Book.Watch()
		for {
			e, err := cur.Next(ctx)
			if err != nil {
				return
			}
			c.recordPeer(ctx, e)
			select {
			case found <- e.Addr:
			case <-ctx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if found != nil {
				for range found {
				}
			}
			c.wg.Wait()
			c.drainResults()
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return c.cfg.Store.Flush(fctx)
		case a, ok := <-found:
			if !ok {
				found = nil
				continue
			}
			c.mu.Lock()
			if _, seen := c.peers[a]; !seen {
				c.peers[a] = &peerState{addr: a}
			}
			c.mu.Unlock()
			c.schedule(ctx)
		case d := <-c.results:
			c.finish(ctx, d)
			c.schedule(ctx)
		case <-tick.C:
			c.schedule(ctx)
		}
	}
}

func (c *Collector) drainResults() {
	for {
		select {
		case d := <-c.results:
			c.finish(context.Background(), d)
		default:
			return
		}
	}
}

// schedule starts every probe that is due, within the connection caps.
func (c *Collector) schedule(ctx context.Context) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.peers {
		if s.busy {
			continue
		}
		bandwidth := !now.Before(s.nextProbe)
		snapshot := !s.watching && !now.Before(s.nextSnapshot)
		if !bandwidth && !snapshot {
			continue
		}
		if s.watching {
			// A bandwidth probe is due: end the watch first (one
			// connection per IP) when the probe could start now; it starts
			// once the watch has closed, and a new watch after it.
			// Only as many as the free probe slots and the budget allow
			// at once, or a pass would end every due watch for one probe.
			canProbe := len(c.bwProbes)+c.closing < cap(c.bwProbes) &&
				(c.budget == nil || c.budget.TokensAt(now) >= float64(c.cfg.ProbeBytes)*float64(c.closing+1))
			if canProbe && s.stopWatch != nil && !s.awaitingProbe {
				s.stopWatch()
				s.stopWatch = nil
				s.awaitingProbe = true
				c.closing++
			}
			continue
		}
		if bandwidth && c.budget != nil && !c.budget.AllowN(now, int(c.cfg.ProbeBytes)) {
			bandwidth = false // over the auditor's bandwidth budget: later
			if !snapshot {
				continue
			}
		}
		if bandwidth {
			select {
			case c.bwProbes <- struct{}{}:
			default:
				bandwidth = false
				if !snapshot {
					continue
				}
			}
		}
		select {
		case c.conns <- struct{}{}:
		default:
			if bandwidth {
				<-c.bwProbes
			}
			return // at the connection cap
		}
		s.busy = true
		if s.awaitingProbe {
			s.awaitingProbe = false
			c.closing--
		}
		c.wg.Add(1)
		go c.probe(ctx, s.addr, bandwidth)
	}
}

// probe runs on its own goroutine: one connection to one peer.
func (c *Collector) probe(ctx context.Context, addr netip.AddrPort, bandwidth bool) {
	defer c.wg.Done()
	defer func() { <-c.conns }()
	if bandwidth {
		defer func() { <-c.bwProbes }()
	}
	t := c.cfg.Torrent
	r, err := probe.Run(ctx, addr, probe.Target{InfoHash: t.InfoHash, NumPieces: t.NumPieces, PieceSize: t.PieceSize, Verify: t.VerifyPiece, Private: t.Private}, probe.Options{
		PeerID: c.cfg.PeerID, Policy: c.cfg.Policy, MaxBytes: c.cfg.ProbeBytes, BitfieldOnly: !bandwidth,
		Timeout: c.cfg.ProbeTimeout, ClientName: c.cfg.ClientName, ClientNameFromID: peerid.ClientName,
	})
	if err != nil {
		c.cfg.Logger.Error("probe", "peer", addr, "err", err)
		r = &probe.Result{Peer: addr.String(), Started: time.Now(), Outcome: probe.OutcomeProtocolError, Error: err.Error()}
	}
	c.probes.Add(1)
	c.bytesIn.Add(r.WireBytesIn)
	c.bytesOut.Add(r.WireBytesOut)
	c.record(ctx, addr, bandwidth, r)
	c.results <- probeDone{addr: addr, bandwidth: bandwidth, r: r}
}

// finish updates the schedule after a probe; it runs on the loop.
func (c *Collector) finish(ctx context.Context, d probeDone) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.peers[d.addr]
	s.busy = false
	handshaken := d.r.Encryption != ""
	s.nextSnapshot = now.Add(c.cfg.SnapshotInterval)
	if d.bandwidth && handshaken {
		s.nextProbe = now.Add(c.cfg.ProbeInterval)
		if d.r.PiecesHave == 0 {
			// A leecher first seen with nothing had nothing to serve: it
			// cost a handshake, so try again at the next snapshot rather
			// than a probe interval later, when it may have pieces.
			s.nextProbe = now.Add(c.cfg.SnapshotInterval)
		}
		s.probed = true
	}
	if handshaken {
		s.reached, s.lastFailed, s.fails = true, false, 0
		if c.cfg.Watch && !s.watching && ctx.Err() == nil {
			s.watching = true
			c.startWatch(ctx, s.addr)
		}
		return
	}
	// Back off exponentially from the snapshot interval, up to 30 min.
	s.lastFailed = true
	s.fails++
	wait := c.cfg.SnapshotInterval << min(s.fails-1, 5)
	wait = min(wait, 30*time.Minute)
	s.nextSnapshot = now.Add(wait)
	if s.nextProbe.Before(s.nextSnapshot) {
		s.nextProbe = s.nextSnapshot
	}
}

// startWatch keeps an idle connection that records the bitfield and every
// HAVE; called with c.mu held.
func (c *Collector) startWatch(ctx context.Context, addr netip.AddrPort) {
	select {
	case c.watches <- struct{}{}:
	default:
		c.peers[addr].watching = false
		return
	}
	select {
	case c.conns <- struct{}{}:
	default:
		<-c.watches
		c.peers[addr].watching = false
		return
	}
	// The audit's end ends the watch; so does a due bandwidth probe, which
	// must not count as the peer going away: the heartbeats and store
	// writes below keep the audit's ctx.
	auditCtx := ctx
	ctx, stop := context.WithCancel(ctx)
	c.peers[addr].stopWatch = stop
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.conns; <-c.watches }()
		defer stop()
		// The connection's life is evidence of presence: record when it
		// came up, a heartbeat every snapshot interval while it lasts, and
		// when it ended.
		wctx := context.WithoutCancel(ctx)
		var enc string
		hb := make(chan struct{})
		defer close(hb)
		sum, err := watch.Watch(ctx, addr, watch.Options{
			InfoHash: c.cfg.Torrent.InfoHash, NumPieces: c.cfg.Torrent.NumPieces, PeerID: c.cfg.PeerID,
			Policy: c.cfg.Policy, ClientName: c.cfg.ClientName, Private: c.cfg.Torrent.Private,
		}, watch.Events{
			Connected: func(conn *peerwire.Conn, _ *peerwire.ExtHandshake) {
				enc = string(conn.Method)
				c.storeErr(c.cfg.Store.AddConnEvent(wctx, c.cfg.Swarm, store.ConnEvent{Addr: addr, At: time.Now(), Outcome: store.ConnOK, Encryption: enc, Detail: "watch"}))
				go func() {
					t := time.NewTicker(c.cfg.SnapshotInterval)
					defer t.Stop()
					for {
						select {
						case <-hb:
							return
						case <-ctx.Done():
							return
						case at := <-t.C:
							c.storeErr(c.cfg.Store.AddConnEvent(wctx, c.cfg.Swarm, store.ConnEvent{Addr: addr, At: at, Outcome: store.ConnOK, Encryption: enc, Detail: "watching"}))
						}
					}
				}()
			},
			Bitfield: func(at time.Time, bf bitfield.Bitfield) {
				c.storeErr(c.cfg.Store.AddSnapshot(auditCtx, c.cfg.Swarm, addr, at, bf))
			},
			Have: func(at time.Time, i int) { c.storeErr(c.cfg.Store.AddHave(auditCtx, c.cfg.Swarm, addr, at, i)) },
		})
		c.cfg.Logger.Debug("watch ended", "peer", addr, "messages", sum.Messages, "haves", sum.Haves, "err", err)
		if sum.Method != "" {
			detail := ""
			if ctx.Err() != nil && auditCtx.Err() == nil {
				detail = "closed by the auditor for a bandwidth probe"
			}
			c.storeErr(c.cfg.Store.AddConnEvent(wctx, c.cfg.Swarm, store.ConnEvent{Addr: addr, At: time.Now(), Outcome: store.ConnDisconnected, Encryption: string(sum.Method), Detail: detail}))
		}
		// A watch the peer closed after a good while is taken up again
		// at once (see RewatchAfter); one we closed for a bandwidth probe
		// is taken up after the probe.
		next := c.cfg.SnapshotInterval
		if ctx.Err() == nil && sum.Connected >= c.cfg.RewatchAfter {
			next = 0
		}
		c.mu.Lock()
		if s := c.peers[addr]; s != nil {
			s.watching, s.stopWatch = false, nil
			s.nextSnapshot = time.Now().Add(next)
		}
		c.mu.Unlock()
	}()
}

// recordPeer stores a newly found address with its sources.
func (c *Collector) recordPeer(ctx context.Context, e addrbook.Entry) {
	c.storeErr(c.cfg.Store.UpsertPeer(ctx, c.cfg.Swarm, store.Peer{Addr: e.Addr, FirstSeen: e.FirstSeen, LastSeen: e.FirstSeen, Sources: e.Sources()}))
}

// record stores everything one probe learned, as soon as it ends.
func (c *Collector) record(ctx context.Context, addr netip.AddrPort, bandwidth bool, r *probe.Result) {
	ctx = context.WithoutCancel(ctx) // a probe that ends at shutdown is still evidence
	s := c.cfg.Store
	ev := store.ConnEvent{Addr: addr, At: r.Started, Encryption: r.Encryption, Detail: r.Error}
	switch {
	case r.Outcome == probe.OutcomeRefused:
		ev.Outcome = store.ConnRefused
	case r.Outcome == probe.OutcomeTimeout && !r.TCPConnected:
		ev.Outcome = store.ConnTimeout // nothing answered: absent, firewalled or NATed
	case r.Encryption == "":
		ev.Outcome = store.ConnHandshakeFailed
	case r.SnapshotBitfield == nil && waitedForBitfield(r):
		// It sent no bitfield, HaveAll or HaveNone (perhaps only HAVEs)
		// while the probe waited: BEP 3 allows that only with no pieces.
		ev.Outcome = store.ConnNoBitfield
	default:
		ev.Outcome = store.ConnOK
	}
	c.storeErr(s.AddConnEvent(ctx, c.cfg.Swarm, ev))
	if r.Encryption == "" {
		return
	}
	id, _ := hex.DecodeString(r.PeerIDHex)
	c.storeErr(s.UpsertPeer(ctx, c.cfg.Swarm, store.Peer{Addr: addr, PeerID: id, Client: r.Client, Encryption: r.Encryption, LastSeen: r.Started}))
	if r.SnapshotBitfield != nil {
		if bf, err := bitfield.FromWire(r.SnapshotBitfield, r.PiecesTotal); err == nil {
			at := r.Started.Add(time.Duration(r.SnapshotAtMS * float64(time.Millisecond)))
			c.storeErr(s.AddSnapshot(ctx, c.cfg.Swarm, addr, at, bf))
		}
	}
	for _, h := range r.Haves {
		c.storeErr(s.AddHave(ctx, c.cfg.Swarm, addr, r.Started.Add(time.Duration(h.AtMS*float64(time.Millisecond))), h.Piece))
	}
	if bandwidth {
		raw, _ := json.Marshal(r)
		_, err := s.AddProbe(ctx, c.cfg.Swarm, store.ProbeRecord{
			Addr: addr, At: r.Started, Outcome: string(r.Outcome), Encryption: r.Encryption,
			ThroughputBytesPerSec: r.ThroughputBytesPerSec, ThroughputSpread: r.ThroughputSpread,
			BytesDownloaded: r.BytesDownloaded, PiecesVerified: r.PiecesVerified, PiecesFailed: r.PiecesFailed,
			HandshakeMS: r.HandshakeMS, Result: raw,
		})
		c.storeErr(err)
	}
}

// waitedForBitfield reports whether the probe got past its wait for the
// peer's first message, so that the absence of a bitfield is evidence (a
// probe cut short by its deadline or a protocol error proves nothing).
func waitedForBitfield(r *probe.Result) bool {
	switch r.Outcome {
	case probe.OutcomeOK, probe.OutcomeChoked, probe.OutcomeBadData:
		return true
	}
	return false
}

func (c *Collector) storeErr(err error) {
	if err != nil {
		c.cfg.Logger.Error("store", "err", err)
	}
}
