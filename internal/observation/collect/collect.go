// Package collect is the observation side of an audit and the one owner of
// every connection the auditor holds to a peer. It schedules polite probes
// of every address in the address book (a bitfield snapshot every
// SnapshotInterval, a bandwidth probe at most every ProbeInterval; BEP 3,
// BEP 6), keeps cheap idle watch connections that deliver HAVEs and PEX
// messages (BEP 11) in real time, accepts incoming connections and treats
// each as the watch of the peer's listen address (BEP 10 `p`), and records
// every observation in the store as it happens.
//
// Map first, then measure: bandwidth probes wait until every address known
// has been contacted once (its first probe ended), or one SnapshotInterval
// since the collection began, whichever comes first. The map is then
// never queued behind downloads of ProbeBytes, nor paid for with them, and
// the first bandwidth probes go to peers known to hold pieces (a peer that
// holds none is not probed for bandwidth until a later snapshot shows
// some). With watches, a bandwidth probe of a watched peer runs on the
// watch's connection (watch.Lender).
//
// One loop owns the schedule: connection goroutines report to it on a
// channel and never touch its state. MaxConns bounds every connection,
// incoming ones included, and no two connections to one peer address are
// open at once (many clients accept one connection per IP and torrent). A
// failure to store an observation ends the collection and is returned by
// Run: evidence is never dropped silently.
package collect

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
	"github.com/swarmaudit/swarmaudit/internal/observation/watch"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/holepunch"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// Config configures the observation side of an audit.
type Config struct {
	Torrent *torrentmeta.Torrent
	Store   *store.Store
	Swarm   store.SwarmID
	// Book is where discovery (trackers, DHT, PEX, the embedded tracker)
	// puts addresses; every address in it is audited.
	Book *addrbook.Book

	SnapshotInterval time.Duration // default DefaultSnapshotInterval
	ProbeInterval    time.Duration // default DefaultProbeInterval
	ProbeBytes       int64         // default DefaultProbeBytes
	ProbeTimeout     time.Duration // default DefaultProbeTimeout
	// MaxConns caps every live connection: probes, watches and incoming
	// connections (default DefaultMaxConns). Watches take at most
	// MaxConns − max(MaxConns/4, MaxBandwidthProbes+2) of them, so that
	// snapshots and probes of the other peers always have connections left.
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
	// PEX puts the addresses peers send in ut_pex messages on watch
	// connections into Book (never for a private torrent, BEP 27).
	PEX bool
	// Listener, when set, accepts incoming peer connections (plaintext and
	// MSE). The collector closes it when Run ends.
	Listener net.Listener
	// UTPListener, when set, accepts incoming uTP connections (a
	// utp.Socket made to accept, on the Listener's port as peers expect),
	// like Listener.
	UTPListener net.Listener
	// Holepunch asks watched peers that speak ut_holepunch (BEP 55) to
	// introduce us to peers no connection of ours reaches (holepunch.go).
	// It needs Network.UTP, a socket that also accepts (UTPListener, or
	// Incoming from a shared one): the peer's connection to us is often
	// the one that comes through its NAT.
	Holepunch bool
	// Incoming, when set, delivers incoming connections already handshaken
	// for this torrent by a listener shared with other torrents (serve):
	// each is handed over to the collector, which owns it from then on and
	// runs it as a watch like the Listener's (and closes it when over
	// budget or when Run ends).
	Incoming <-chan *peerwire.Conn
	// RewatchAfter: a watch that the peer closed after lasting at least
	// this long is taken up again at once, not after SnapshotInterval
	// (default 10 s). Peers prune idle connections (aria2 closes one on
	// which neither side is interested after 30 s); waiting a snapshot
	// interval would leave the auditor blind to the peer's HAVEs for that
	// long. A peer that closes a watch sooner waits the interval, so a
	// peer costs at most a handshake and a bitfield per RewatchAfter.
	RewatchAfter time.Duration

	// Budget, when set, is shared with other collectors (swarmaudit serve
	// audits many swarms at once): it then bounds their connections,
	// bandwidth probes and download rate together, and MaxConns,
	// MaxBandwidthProbes and MaxAuditorRate are ignored.
	Budget *Budget

	Policy     peerwire.Policy
	PeerID     [20]byte
	ClientName string
	// Network opens every outgoing connection: its Dialer the TCP ones
	// (nil: a net.Dialer; set to bind a source address, or to count
	// connections in tests), its UTP socket the uTP ones (nil: TCP only).
	// Without a memo of its own, the collector remembers per peer which
	// transport worked.
	Network peerwire.Network
	Logger  *slog.Logger
}

// Budget is what collectors sharing it hold together: every connection,
// the watches among them, the concurrent bandwidth probes, and the
// auditor's own download rate for probes.
type Budget struct {
	conns, watches, bwProbes chan struct{}
	rate                     *rate.Limiter // nil: no rate cap
	probeBytes               int64

	// Per-peer politeness across the collectors sharing the budget: a
	// peer (by IP) gets a bandwidth probe at most every peerProbeGap,
	// however many swarms it is in.
	mu           sync.Mutex
	peerProbeGap time.Duration
	lastProbe    map[netip.Addr]time.Time
	// gate, when set, is asked last before a bandwidth probe starts: the
	// politeness shared with other nodes (serve on PostgreSQL).
	gate func(netip.Addr) bool
}

// SetPeerGate makes every bandwidth probe ask gate first, once every local
// limit allows it; a false answer postpones the probe. Several nodes share
// per-peer politeness this way (store.TakeTurn).
func (b *Budget) SetPeerGate(gate func(ip netip.Addr) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gate = gate
}

// passGate asks the shared gate, if any.
func (b *Budget) passGate(ip netip.Addr) bool {
	b.mu.Lock()
	gate := b.gate
	b.mu.Unlock()
	return gate == nil || gate(ip)
}

// SetPeerProbeGap makes every collector sharing the budget wait d between
// two bandwidth probes of one IP, across all their swarms (0: no limit
// beyond each collector's ProbeInterval).
func (b *Budget) SetPeerProbeGap(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.peerProbeGap = d
}

// peerProbeDue reports whether ip may get a bandwidth probe now.
func (b *Budget) peerProbeDue(ip netip.Addr, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	last, ok := b.lastProbe[ip]
	return b.peerProbeGap <= 0 || !ok || now.Sub(last) >= b.peerProbeGap
}

// notePeerProbe records a bandwidth probe of ip starting now.
func (b *Budget) notePeerProbe(ip netip.Addr, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.peerProbeGap <= 0 {
		return
	}
	if b.lastProbe == nil {
		b.lastProbe = map[netip.Addr]time.Time{}
	}
	if len(b.lastProbe) > 1<<20 { // bounded: forget the oldest half's worth
		for k, t := range b.lastProbe {
			if now.Sub(t) >= b.peerProbeGap {
				delete(b.lastProbe, k)
			}
		}
	}
	b.lastProbe[ip] = now
}

// NewBudget makes a budget of maxConns connections (watches take at most
// maxConns − max(maxConns/4, maxBWProbes+2) of them), maxBWProbes
// concurrent bandwidth probes of probeBytes each, and maxRate bytes per
// second of probe download (0: uncapped).
func NewBudget(maxConns, maxBWProbes int, maxRate float64, probeBytes int64) *Budget {
	maxConns, maxBWProbes = max(maxConns, 1), max(maxBWProbes, 1)
	if probeBytes <= 0 {
		probeBytes = DefaultProbeBytes
	}
	b := &Budget{
		conns:      make(chan struct{}, maxConns),
		watches:    make(chan struct{}, max(maxConns-max(maxConns/4, maxBWProbes+2), 1)),
		bwProbes:   make(chan struct{}, maxBWProbes),
		probeBytes: probeBytes,
	}
	if maxRate > 0 {
		b.rate = rate.NewLimiter(rate.Limit(maxRate), int(probeBytes))
	}
	return b
}

// InUse reports the connections and bandwidth probes held now.
func (b *Budget) InUse() (conns, bwProbes int) { return len(b.conns), len(b.bwProbes) }

// The defaults of an audit: a bitfield snapshot of each peer a minute, a
// bandwidth probe of 2 MiB every ten, and 64 connections at most.
const (
	DefaultSnapshotInterval = time.Minute
	DefaultProbeInterval    = 10 * time.Minute
	DefaultProbeBytes       = 2 << 20
	DefaultProbeTimeout     = 30 * time.Second
	DefaultMaxConns         = 64
)

// SourceIncoming is the address book source of peers that connected to
// the auditor and named their listen port.
const SourceIncoming = addrbook.SourceIncoming

func (c *Config) defaults() {
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeBytes <= 0 {
		c.ProbeBytes = DefaultProbeBytes
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxBandwidthProbes <= 0 {
		c.MaxBandwidthProbes = 2
	}
	if c.Policy == "" {
		c.Policy = peerwire.PolicyAuto
	}
	if c.Network.UTP != nil && c.Network.Transports == nil {
		c.Network.Transports = peerwire.NewTransportMemo(1 << 16)
	}
	if c.PeerID == ([20]byte{}) {
		c.PeerID = peerid.New(peerid.Prefix)
	}
	if c.ClientName == "" {
		c.ClientName = peerid.OurName
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RewatchAfter <= 0 {
		c.RewatchAfter = 10 * time.Second
	}
	if c.Torrent != nil && c.Torrent.Private {
		c.PEX = false
	}
}

// Progress is a live count of what the collector did.
type Progress struct {
	Discovered  int   `json:"discovered"`
	Watching    int   `json:"watching"`
	Probed      int   `json:"probed"`   // peers with at least one bandwidth probe
	Reached     int   `json:"reached"`  // peers that completed a handshake
	Failed      int   `json:"failed"`   // peers whose last attempt failed
	Probes      int   `json:"probes"`   // connections made for snapshots and probes
	BytesIn     int64 `json:"bytes_in"` // the auditor's own traffic, wire bytes
	BytesOut    int64 `json:"bytes_out"`
	Incoming    int64 `json:"incoming"`     // incoming connections handshaken
	PEXMessages int64 `json:"pex_messages"` // ut_pex messages received
	PEXAdded    int64 `json:"pex_added"`    // addresses new to the book from PEX
	// Outcomes counts the probes (snapshots and bandwidth) by outcome.
	Outcomes map[probe.Outcome]int64 `json:"outcomes,omitempty"`
}

// peerState is the schedule of one address; owned by the loop.
type peerState struct {
	addr     netip.AddrPort
	busy     bool // a probe is running
	watching bool
	incoming bool // the watch is a connection the peer opened
	// stopWatch ends the peer's watch (when the collection ends).
	stopWatch func()
	// lend runs a bandwidth probe on the watch's connection (watch.Lender):
	// many clients (Transmission, qBittorrent, aria2) accept one
	// connection per IP and torrent, and a peer behind a NAT none at all.
	lend func(watch.Task) bool
	// lent: a bandwidth probe was lent the watch's connection and has not
	// reported (it holds a bandwidth-probe slot; busy is set too).
	lent         bool
	nextSnapshot time.Time
	nextProbe    time.Time
	fails        int
	contacted    bool // a first probe ended, or the peer connected to us
	probed       bool
	reached      bool
	lastFailed   bool
}

// Collector schedules and records observations until its context ends.
type Collector struct {
	cfg    Config
	shared *Budget
	// storeCtx writes observations: the run's context without its end,
	// since a watch that ends with the run is still evidence.
	storeCtx context.Context
	budget   *rate.Limiter // bandwidth-probe bytes, nil when uncapped
	// Semaphores: conns is held by every connection, watches in addition
	// by watches, bwProbes in addition by bandwidth probes.
	conns    chan struct{}
	watches  chan struct{}
	bwProbes chan struct{}
	// events carries what connection goroutines report to the loop.
	events chan any
	wg     sync.WaitGroup

	// Owned by the loop.
	peers map[netip.AddrPort]*peerState
	// admitted counts incoming connections per IP that are handshaking
	// and not yet claimed: no probe of a peer on that IP starts meanwhile.
	admitted map[netip.Addr]int
	// parked are incoming connections that arrived while one of our own
	// probes of their IP was running (a peer behind a NAT connects to us
	// as we try to connect to it): each waits for that probe to end, at
	// most parkFor, rather than being dropped — the peer would come back
	// only at its reconnect interval (libtorrent's is a minute).
	parked   map[netip.Addr][]parkedAdmit
	stopping bool
	// Map first (see the package doc): uncontacted counts the peers not
	// contacted yet until measuring starts, at the latest at measureBy.
	uncontacted int
	measuring   bool
	measureBy   time.Time

	// punch is what holepunching shares (holepunch.go); nil without.
	punch *punches

	progress atomic.Pointer[Progress]
	counts   struct {
		probes, bytesIn, bytesOut, incoming, pexMsgs, pexAdded atomic.Int64
		// outcomes: a counter per probe.Outcomes(), the map filled by New
		// and only read after.
		outcomes map[probe.Outcome]*atomic.Int64
	}
	failOnce sync.Once
	failed   error
	fail     context.CancelCauseFunc
}

// Loop events.
type (
	probeDone struct {
		addr      netip.AddrPort
		bandwidth bool
		r         *probe.Result // r.Conn: the connection, kept for a watch with its slot
	}
	watchEnded struct {
		addr      netip.AddrPort
		connected time.Duration
	}
	// admit asks the loop whether an incoming connection from ip may
	// handshake: not while the auditor has a connection to a peer on that
	// IP (clients allow one connection per IP).
	admit struct {
		ip    netip.Addr
		reply chan bool
	}
	// claim asks the loop to let an admitted incoming connection be the
	// watch of the peer listening at addr; the loop answers on reply.
	claim struct {
		addr  netip.AddrPort
		stop  context.CancelFunc
		lend  func(watch.Task) bool
		reply chan bool
	}
	// release: an admitted incoming connection ended without a claim.
	release struct{ ip netip.Addr }
)

// ErrStore wraps a failure to store an observation, which ends the run.
var ErrStore = errors.New("collect: storing an observation failed")

// New checks the configuration.
func New(cfg Config) (*Collector, error) {
	if cfg.Torrent == nil || cfg.Store == nil || cfg.Book == nil {
		return nil, errors.New("collect: needs a torrent, a store and an address book")
	}
	cfg.defaults()
	b := cfg.Budget
	if b == nil {
		b = NewBudget(cfg.MaxConns, cfg.MaxBandwidthProbes, cfg.MaxAuditorRate, cfg.ProbeBytes)
	}
	c := &Collector{
		shared:   b,
		budget:   b.rate,
		cfg:      cfg,
		conns:    b.conns,
		watches:  b.watches,
		bwProbes: b.bwProbes,
		events:   make(chan any),
		peers:    map[netip.AddrPort]*peerState{},
		admitted: map[netip.Addr]int{},
		parked:   map[netip.Addr][]parkedAdmit{},
	}
	if cfg.Holepunch && cfg.Network.UTP != nil {
		c.punch = newPunches()
	}
	c.counts.outcomes = map[probe.Outcome]*atomic.Int64{}
	for _, o := range probe.Outcomes() {
		c.counts.outcomes[o] = new(atomic.Int64)
	}
	c.progress.Store(&Progress{})
	return c, nil
}

// Progress returns the current counts; safe from any goroutine.
func (c *Collector) Progress() Progress {
	p := *c.progress.Load()
	p.Probes = int(c.counts.probes.Load())
	p.BytesIn, p.BytesOut = c.counts.bytesIn.Load(), c.counts.bytesOut.Load()
	p.Incoming = c.counts.incoming.Load()
	p.PEXMessages, p.PEXAdded = c.counts.pexMsgs.Load(), c.counts.pexAdded.Load()
	p.Outcomes = make(map[probe.Outcome]int64, len(c.counts.outcomes))
	for o, n := range c.counts.outcomes {
		if v := n.Load(); v > 0 {
			p.Outcomes[o] = v
		}
	}
	return p
}

// Run collects until ctx ends, then waits for every connection it opened
// to close and flushes the store. It returns the first failure to store an
// observation (wrapping ErrStore), which also ends the collection early;
// everything stored before it stays.
func (c *Collector) Run(ctx context.Context) error {
	ctx, c.fail = context.WithCancelCause(ctx)
	defer c.fail(nil)
	c.storeCtx = context.WithoutCancel(ctx)
	c.measureBy = time.Now().Add(c.cfg.SnapshotInterval)
	found := make(chan netip.AddrPort)
	c.wg.Add(1)
	go c.follow(ctx, found)
	for _, ln := range []net.Listener{c.cfg.Listener, c.cfg.UTPListener} {
		if ln != nil {
			c.wg.Add(1)
			go c.acceptLoop(ctx, ln)
		}
	}
	if c.cfg.Incoming != nil {
		c.wg.Add(1)
		go c.handedOverLoop(ctx)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var allDone chan struct{}
	for {
		select {
		case <-ctx.Done():
			if allDone == nil {
				c.stopping = true
				for _, s := range c.peers {
					if s.stopWatch != nil {
						s.stopWatch() // watches follow no context (launchWatch)
					}
				}
				allDone = make(chan struct{})
				go func() { c.wg.Wait(); close(allDone) }()
			}
		case <-allDone:
			c.publish()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := c.cfg.Store.Flush(fctx); err != nil {
				c.storeErr(err)
			}
			return c.failed
		case a := <-found:
			if _, seen := c.peers[a]; !seen {
				c.addPeer(a)
			}
		case ev := <-c.events:
			c.handle(ctx, ev)
		case <-tick.C:
		}
		c.expireParked(time.Now())
		if !c.stopping {
			c.schedule(ctx)
		}
		c.publish()
	}
}

// follow hands every address the book learns to the loop, after storing it.
func (c *Collector) follow(ctx context.Context, found chan<- netip.AddrPort) {
	defer c.wg.Done()
	cur := c.cfg.Book.Watch()
	for {
		e, err := cur.Next(ctx)
		if err != nil {
			return
		}
		c.storeErr(c.cfg.Store.UpsertPeer(context.WithoutCancel(ctx), c.cfg.Swarm, store.Peer{Addr: e.Addr, FirstSeen: e.FirstSeen, LastSeen: e.FirstSeen, Sources: e.Sources()}))
		select {
		case found <- e.Addr:
		case <-ctx.Done():
			return
		}
	}
}

// report sends an event to the loop; the loop reads events until every
// connection goroutine has ended, so this never blocks for long.
func (c *Collector) report(ev any) { c.events <- ev }

// handle applies a connection goroutine's report; it runs on the loop.
func (c *Collector) handle(ctx context.Context, ev any) {
	switch ev := ev.(type) {
	case probeDone:
		c.finish(ctx, ev)
		c.grantParked(ev.addr.Addr())
	case watchEnded:
		s := c.peers[ev.addr]
		s.watching, s.incoming, s.stopWatch, s.lend = false, false, nil, nil
		if s.lent { // the probe lent its connection never ran
			s.lent, s.busy = false, false
			<-c.bwProbes
		}
		next := c.cfg.SnapshotInterval
		if ev.connected >= c.cfg.RewatchAfter {
			next = 0
		}
		s.nextSnapshot = time.Now().Add(next)
	case admit:
		ok := !c.stopping && !c.connectedTo(ev.ip)
		if ok {
			c.admitted[ev.ip]++
		} else if !c.stopping && c.onlyProbing(ev.ip) {
			wait := parkFor
			if c.punch.wasPunched(ev.ip, time.Now()) {
				wait = punchedParkFor // our probe through the hole may still be dialling
			}
			c.parked[ev.ip] = append(c.parked[ev.ip], parkedAdmit{reply: ev.reply, until: time.Now().Add(wait)})
			return
		}
		ev.reply <- ok
	case release:
		c.unadmit(ev.ip)
	case claim:
		c.unadmit(ev.addr.Addr())
		s := c.peers[ev.addr]
		if s == nil {
			s = c.addPeer(ev.addr)
		}
		if c.stopping || s.busy || s.watching {
			ev.reply <- false // one connection per peer address
			return
		}
		s.watching, s.incoming, s.stopWatch, s.lend = true, true, ev.stop, ev.lend
		c.contacted(s)
		ev.reply <- true
	}
}

// addPeer starts the schedule of a new address; on the loop.
func (c *Collector) addPeer(a netip.AddrPort) *peerState {
	s := &peerState{addr: a}
	c.peers[a] = s
	if !c.measuring {
		c.uncontacted++
	}
	return s
}

// contacted marks a peer's first contact; once every peer known has had
// one, bandwidth probes may start (see the package doc). On the loop.
func (c *Collector) contacted(s *peerState) {
	if s.contacted {
		return
	}
	s.contacted = true
	if !c.measuring {
		c.uncontacted--
	}
}

// mayMeasure reports whether bandwidth probes may start: map first (see
// the package doc). On the loop.
func (c *Collector) mayMeasure(now time.Time) bool {
	if !c.measuring && (c.uncontacted <= 0 && len(c.peers) > 0 || !now.Before(c.measureBy)) {
		c.measuring = true
	}
	return c.measuring
}

// connectedTo reports whether the auditor holds a connection to a peer on
// ip; it runs on the loop.
func (c *Collector) connectedTo(ip netip.Addr) bool {
	if c.admitted[ip] > 0 {
		return true
	}
	for a, s := range c.peers {
		if (s.busy || s.watching) && a.Addr() == ip {
			return true
		}
	}
	return false
}

// parkFor bounds how long an incoming connection waits for our own probe
// of its IP to end.
const parkFor = 5 * time.Second

// punchedParkFor is parkFor for a peer introduced to us (holepunch.go),
// which connects as our probe of it dials through the hole, at most
// rendezvousTime more.
const punchedParkFor = parkFor + rendezvousTime

// parkedAdmit is an incoming connection waiting to be admitted.
type parkedAdmit struct {
	reply chan<- bool
	until time.Time
}

// onlyProbing reports whether the auditor's only connections to ip are
// probes it opened (no watch, no admitted incoming connection).
func (c *Collector) onlyProbing(ip netip.Addr) bool {
	if c.admitted[ip] > 0 {
		return false
	}
	probing := false
	for a, s := range c.peers {
		if a.Addr() != ip {
			continue
		}
		if s.watching {
			return false
		}
		probing = probing || s.busy
	}
	return probing
}

// grantParked admits the first incoming connection waiting for ip once
// the auditor holds no connection to it; on the loop.
func (c *Collector) grantParked(ip netip.Addr) {
	waiting := c.parked[ip]
	if len(waiting) == 0 || c.connectedTo(ip) {
		return
	}
	c.admitted[ip]++
	waiting[0].reply <- true
	for _, w := range waiting[1:] {
		w.reply <- false // one connection per IP
	}
	delete(c.parked, ip)
}

// expireParked refuses the incoming connections that waited too long
// (all of them when the collection stops); on the loop.
func (c *Collector) expireParked(now time.Time) {
	for ip, waiting := range c.parked {
		kept := waiting[:0]
		for _, w := range waiting {
			if c.stopping || now.After(w.until) {
				w.reply <- false
			} else {
				kept = append(kept, w)
			}
		}
		if len(kept) == 0 {
			delete(c.parked, ip)
		} else {
			c.parked[ip] = kept
		}
	}
}

func (c *Collector) unadmit(ip netip.Addr) {
	if c.admitted[ip]--; c.admitted[ip] <= 0 {
		delete(c.admitted, ip)
	}
}

// publish makes the loop's counts visible to Progress.
func (c *Collector) publish() {
	p := Progress{Discovered: len(c.peers)}
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
	c.progress.Store(&p)
}

// schedule starts every probe that is due, within the connection caps.
func (c *Collector) schedule(ctx context.Context) {
	now := time.Now()
	measure := c.mayMeasure(now)
	for _, s := range c.peers {
		if s.busy || c.admitted[s.addr.Addr()] > 0 {
			continue // an incoming connection from its IP is handshaking
		}
		bandwidth := measure && !now.Before(s.nextProbe)
		snapshot := !s.watching && !now.Before(s.nextSnapshot)
		if !bandwidth && !snapshot {
			continue
		}
		if s.watching {
			if bandwidth && s.lend != nil {
				c.lendProbe(ctx, s, now)
			}
			continue
		}
		if bandwidth && !c.shared.peerProbeDue(s.addr.Addr(), now) {
			bandwidth = false // probed for another swarm lately: later
			if !snapshot {
				continue
			}
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
		if bandwidth && !c.shared.passGate(s.addr.Addr()) {
			<-c.bwProbes // probed by another node lately: a snapshot, if due, and the probe later
			bandwidth = false
			s.nextProbe = now.Add(c.cfg.SnapshotInterval)
			if !snapshot {
				<-c.conns
				continue
			}
		}
		s.busy = true
		if bandwidth {
			c.shared.notePeerProbe(s.addr.Addr(), now)
		}
		c.wg.Add(1)
		go c.probe(ctx, s.addr, bandwidth)
	}
}

// probe runs on its own goroutine: one connection to one peer.
func (c *Collector) probe(ctx context.Context, addr netip.AddrPort, bandwidth bool) {
	defer c.wg.Done()
	var kept *peerwire.Conn
	defer func() {
		if kept == nil {
			<-c.conns // a kept connection's slot goes to its watch (finish)
		}
	}()
	if bandwidth {
		defer func() { <-c.bwProbes }()
	}
	opts := probe.Options{
		PeerID: c.cfg.PeerID, Policy: c.cfg.Policy, MaxBytes: c.cfg.ProbeBytes, BitfieldOnly: !bandwidth,
		Timeout: c.cfg.ProbeTimeout, ClientName: c.cfg.ClientName, ClientNameFromID: peerid.ClientName,
		Dialer: peerwire.Config{Network: c.cfg.Network}, Keep: c.cfg.Watch,
	}
	r, err := probe.Run(ctx, addr, c.target(), opts)
	if err != nil {
		c.cfg.Logger.Error("probe", "peer", addr, "err", err)
		r = &probe.Result{Peer: addr.String(), Started: time.Now(), Outcome: probe.OutcomeProtocolError, Error: err.Error()}
	}
	if c.punch != nil && unreached(r) {
		if pr := c.throughHole(ctx, addr, opts); pr != nil {
			c.done(ctx, addr, bandwidth, r) // the direct attempt's failure is evidence too
			r = pr
		}
	}
	c.done(ctx, addr, bandwidth, r)
	kept = r.Conn
	c.report(probeDone{addr: addr, bandwidth: bandwidth, r: r})
}

// target is the torrent every probe asks about.
func (c *Collector) target() probe.Target {
	t := c.cfg.Torrent
	return probe.Target{InfoHash: t.InfoHash, NumPieces: t.NumPieces, PieceSize: t.PieceSize, Verify: t.VerifyPiece, Private: t.Private}
}

// done counts and records a probe that ended.
func (c *Collector) done(ctx context.Context, addr netip.AddrPort, bandwidth bool, r *probe.Result) {
	c.counts.probes.Add(1)
	if n := c.counts.outcomes[r.Outcome]; n != nil {
		n.Add(1)
	}
	c.counts.bytesIn.Add(r.WireBytesIn)
	c.counts.bytesOut.Add(r.WireBytesOut)
	c.record(ctx, addr, bandwidth, r)
}

// lendProbe starts a bandwidth probe of a watched peer on its watch's
// connection, if the probe slots, the budget and the gate allow one now;
// it runs on the loop. The probe runs on the watch's goroutine and reports
// like any other (probeDone); if the watch ends before it could run, the
// loop learns it from watchEnded (s.lent).
func (c *Collector) lendProbe(ctx context.Context, s *peerState, now time.Time) {
	ip := s.addr.Addr()
	if s.busy || !c.shared.peerProbeDue(ip, now) || (c.budget != nil && c.budget.TokensAt(now) < float64(c.cfg.ProbeBytes)) {
		return
	}
	select {
	case c.bwProbes <- struct{}{}:
	default:
		return
	}
	if !c.shared.passGate(ip) {
		<-c.bwProbes // probed by another node lately: later
		s.nextProbe = now.Add(c.cfg.SnapshotInterval)
		return
	}
	addr := s.addr
	task := func(conn *peerwire.Conn, st *peerwire.PeerState) error {
		r, err := probe.RunOn(ctx, conn, st, c.target(), probe.Options{
			MaxBytes: c.cfg.ProbeBytes, Timeout: c.cfg.ProbeTimeout, ClientNameFromID: peerid.ClientName,
		})
		if r == nil { // the target is checked by New: unreachable
			r = &probe.Result{Peer: addr.String(), Started: time.Now(), OnWatch: true, Outcome: probe.OutcomeProtocolError, Error: err.Error()}
		}
		c.done(ctx, addr, true, r)
		<-c.bwProbes
		c.report(probeDone{addr: addr, bandwidth: true, r: r})
		return err
	}
	if !s.lend(task) {
		<-c.bwProbes // the watch is not connected yet, or ending
		return
	}
	if c.budget != nil {
		c.budget.AllowN(now, int(c.cfg.ProbeBytes))
	}
	s.busy, s.lent = true, true
	c.shared.notePeerProbe(ip, now)
}

// finish updates the schedule after a probe; it runs on the loop.
func (c *Collector) finish(ctx context.Context, d probeDone) {
	now := time.Now()
	s := c.peers[d.addr]
	s.busy, s.lent = false, false
	c.contacted(s)
	handshaken := d.r.Encryption != ""
	s.nextSnapshot = now.Add(c.cfg.SnapshotInterval)
	if !d.bandwidth && handshaken && d.r.PiecesHave == 0 && now.After(s.nextProbe) {
		s.nextProbe = s.nextSnapshot // nothing to serve yet: see at the next snapshot
	}
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
		switch kept := d.r.Conn; {
		case !c.cfg.Watch || s.watching || c.stopping:
			if kept != nil { // its slot was kept for a watch that is not to be
				kept.Close()
				<-c.conns
			}
		case kept != nil:
			c.resumeWatch(ctx, s, kept, d.r.ExtHandshake, *d.r.State)
		default:
			c.startWatch(ctx, s)
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

// startWatch keeps an idle connection that records the bitfield, every
// HAVE and PEX; it runs on the loop.
func (c *Collector) startWatch(ctx context.Context, s *peerState) {
	select {
	case c.watches <- struct{}{}:
	default:
		return
	}
	select {
	case c.conns <- struct{}{}:
	default:
		<-c.watches
		return
	}
	c.launchWatch(ctx, s, func(o watch.Options, ev watch.Events) (watch.Summary, error) {
		return watch.Watch(ctx, s.addr, o, ev)
	})
}

// launchWatch runs a watch of s that holds a watch slot and a connection
// slot, which it gives back when it ends; it runs on the loop. The watch
// follows no context of its own (a context per watch costs more than the
// rest of its bookkeeping): s.stopWatch ends it, and the loop calls that
// for every watch when the collection ends.
func (c *Collector) launchWatch(ctx context.Context, s *peerState, run func(watch.Options, watch.Events) (watch.Summary, error)) {
	stopper, lender := &watch.Stopper{}, &watch.Lender{}
	s.watching, s.stopWatch, s.lend = true, stopper.Stop, lender.Lend
	w := &watcher{c: c, addr: s.addr}
	o := c.watchOptions()
	o.Stopper, o.Lender = stopper, lender
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.conns; <-c.watches }()
		sum, err := run(o, w.events())
		w.end(ctx, sum, err)
	}()
}

// resumeWatch makes a probe's connection the peer's watch (no second
// connection: see probe.Options.Keep); the connection keeps the probe's
// connection slot. It runs on the loop.
func (c *Collector) resumeWatch(ctx context.Context, s *peerState, conn *peerwire.Conn, ext *peerwire.ExtHandshake, st peerwire.PeerState) {
	select {
	case c.watches <- struct{}{}:
	default:
		conn.Close()
		<-c.conns
		return
	}
	c.launchWatch(ctx, s, func(o watch.Options, ev watch.Events) (watch.Summary, error) {
		return watch.Resume(ctx, conn, ext, st, o, ev)
	})
}

func (c *Collector) watchOptions() watch.Options {
	t := c.cfg.Torrent
	return watch.Options{
		InfoHash: t.InfoHash, NumPieces: t.NumPieces, PeerID: c.cfg.PeerID,
		Policy: c.cfg.Policy, ClientName: c.cfg.ClientName, Private: t.Private, Network: c.cfg.Network,
		TickEvery: c.cfg.SnapshotInterval, // the heartbeat of a watch (Tick in watcher.events)
	}
}

// acceptLoop answers incoming connections for our torrent, within the
// connection caps; each runs as a watch (see watcher).
func (c *Collector) acceptLoop(ctx context.Context, ln net.Listener) {
	defer c.wg.Done()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				c.cfg.Logger.Warn("incoming connections: listener failed", "err", err)
			}
			return
		}
		c.incoming(ctx, raw, func(wctx context.Context) (*peerwire.Conn, error) {
			return watch.Accept(wctx, raw, c.watchOptions())
		})
	}
}

// handedOverLoop takes the connections a shared listener handshook for
// our torrent (Config.Incoming); each runs as a watch, like acceptLoop's.
func (c *Collector) handedOverLoop(ctx context.Context) {
	defer c.wg.Done()
	for {
		select {
		case <-ctx.Done():
			for { // connections handed over after the end are closed
				select {
				case conn := <-c.cfg.Incoming:
					conn.Close()
				default:
					return
				}
			}
		case conn := <-c.cfg.Incoming:
			c.incoming(ctx, conn, func(context.Context) (*peerwire.Conn, error) { return conn, nil })
		}
	}
}

// incoming runs one incoming connection as a watch, within the connection
// caps and one connection per IP; handshake completes it (or returns the
// connection already handshaken). raw is closed on every path.
func (c *Collector) incoming(ctx context.Context, raw io.Closer, handshake func(context.Context) (*peerwire.Conn, error)) {
	var remoteAddr net.Addr
	switch r := raw.(type) {
	case net.Conn:
		remoteAddr = r.RemoteAddr()
	case *peerwire.Conn:
		remoteAddr = r.RemoteAddr()
	}
	select {
	case c.watches <- struct{}{}:
	default:
		c.cfg.Logger.Debug("incoming refused: every watch slot taken", "remote", remoteAddr)
		raw.Close()
		return
	}
	select {
	case c.conns <- struct{}{}:
	default:
		<-c.watches
		c.cfg.Logger.Debug("incoming refused: every connection taken", "remote", remoteAddr)
		raw.Close()
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.conns; <-c.watches }()
		remote, err := netip.ParseAddrPort(fmt.Sprint(remoteAddr))
		if err != nil {
			raw.Close()
			return
		}
		ip := remote.Addr().Unmap()
		reply := make(chan bool, 1)
		c.report(admit{ip: ip, reply: reply})
		if !<-reply {
			c.cfg.Logger.Debug("incoming refused: a connection to that IP is held", "remote", remoteAddr)
			raw.Close()
			return
		}
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		w := &watcher{c: c, incoming: true, ip: ip, stop: stop, lender: &watch.Lender{}}
		defer w.release()
		conn, err := handshake(wctx)
		if err != nil {
			c.cfg.Logger.Debug("incoming refused", "err", err)
			return
		}
		c.counts.incoming.Add(1)
		o := c.watchOptions()
		o.Lender = w.lender
		sum, err := watch.Follow(wctx, conn, o, w.events())
		w.end(ctx, sum, err)
	}()
}

// watcher records what one watch connection delivers. An incoming
// connection has no address until the peer names its listen port in its
// extension handshake and the loop lets it be that address's watch; what
// it said before that is kept and recorded then.
type watcher struct {
	c        *Collector
	addr     netip.AddrPort // zero until an incoming connection is claimed
	incoming bool
	ip       netip.Addr // of an incoming connection
	claimed  bool       // the loop answered its claim
	stop     context.CancelFunc
	lender   *watch.Lender // of an incoming connection
	enc      string
	tr       peerwire.Transport
	pending  bitfield.Bitfield
	pendAt   time.Time
	// beat is what the heartbeat records, set once the watch is up
	// (watch.Events.Tick); beats is the run it extends (Store.AddBeat).
	// Both belong to the watch's goroutine.
	beat  atomic.Pointer[store.ConnEvent]
	beats store.Beats
}

func (w *watcher) events() watch.Events {
	c := w.c
	store1 := c.storeCtx // a watch ending is still evidence
	return watch.Events{
		Connected: func(conn *peerwire.Conn, ext *peerwire.ExtHandshake) {
			w.enc, w.tr = string(conn.Method), conn.Transport
			if w.incoming && !w.claim(conn, ext) {
				return
			}
			w.connected(store.DetailWatch)
			// A relay watched over uTP would take a second uTP connection
			// from our socket for the watch's own: it keeps one of them.
			if ext != nil && conn.Transport == peerwire.TransportTCP {
				if _, ok := ext.ExtensionID(holepunch.ExtensionName); ok {
					c.punch.setRelay(w.addr, true)
				}
			}
		},
		Bitfield: func(at time.Time, bf bitfield.Bitfield) {
			if !w.addr.IsValid() {
				w.pending, w.pendAt = bf, at
				return
			}
			c.storeErr(c.cfg.Store.AddSnapshot(store1, c.cfg.Swarm, w.addr, at, bf))
		},
		Have: func(at time.Time, i int) {
			if !w.addr.IsValid() {
				if w.pending.Len() > 0 {
					w.pending.Set(i)
					w.pendAt = at
				}
				return
			}
			c.storeErr(c.cfg.Store.AddHave(store1, c.cfg.Swarm, w.addr, at, i))
		},
		Tick: func(at time.Time) {
			if b := w.beat.Load(); b != nil {
				ev := *b
				ev.At = at
				c.storeErr(c.cfg.Store.AddBeat(store1, c.cfg.Swarm, ev, &w.beats))
			}
		},
		PEX: func(_ time.Time, m pex.Message) {
			c.counts.pexMsgs.Add(1)
			if !w.addr.IsValid() {
				return // an unclaimed incoming connection names no source
			}
			if c.cfg.PEX {
				c.counts.pexAdded.Add(int64(c.cfg.Book.AddPEX(w.addr, m)))
			}
			c.punch.notePEX(w.addr, m)
		},
	}
}

// claim makes an incoming connection the watch of the peer's listen
// address, if the loop has no other connection to it; otherwise the
// connection ends (one connection per peer address).
func (w *watcher) claim(conn *peerwire.Conn, ext *peerwire.ExtHandshake) bool {
	if ext == nil || ext.ListenPort <= 0 || ext.ListenPort > 65535 {
		w.stop() // nothing to key its evidence by
		return false
	}
	addr := netip.AddrPortFrom(conn.Remote.Addr().Unmap(), uint16(ext.ListenPort))
	reply := make(chan bool, 1)
	w.c.report(claim{addr: addr, stop: w.stop, lend: w.lender.Lend, reply: reply})
	w.claimed = true
	if !<-reply {
		w.stop()
		return false
	}
	w.addr = addr
	w.c.cfg.Book.Add(addr, SourceIncoming, 0)
	if w.pending.Len() > 0 {
		w.c.storeErr(w.c.cfg.Store.AddSnapshot(context.Background(), w.c.cfg.Swarm, addr, w.pendAt, w.pending))
	}
	return true
}

// release tells the loop an admitted incoming connection ended unclaimed.
func (w *watcher) release() {
	if !w.claimed {
		w.c.report(release{ip: w.ip})
	}
}

// connected records that the watch came up and arms its heartbeat: the
// connection's life is evidence of presence, so a heartbeat is recorded
// every snapshot interval while it lasts (on the watch's goroutine).
func (w *watcher) connected(detail string) {
	c := w.c
	if w.incoming {
		detail = store.DetailIncomingWatch
	}
	if c.punch.wasPunched(w.addr.Addr(), time.Now()) {
		detail = store.DetailHolepunchWatch
	}
	c.storeErr(c.cfg.Store.AddConnEvent(c.storeCtx, c.cfg.Swarm, store.ConnEvent{Addr: w.addr, At: time.Now(), Outcome: store.ConnOK, Encryption: w.enc, Transport: string(w.tr), Detail: detail}))
	w.beat.Store(&store.ConnEvent{Addr: w.addr, Outcome: store.ConnOK, Encryption: w.enc, Transport: string(w.tr), Detail: store.DetailHeartbeat})
}

// end records how the watch ended and tells the loop; runCtx is the
// collection's context.
func (w *watcher) end(runCtx context.Context, sum watch.Summary, err error) {
	c := w.c
	c.cfg.Logger.Debug("watch ended", "peer", w.addr, "incoming", w.incoming, "messages", sum.Messages, "haves", sum.Haves, "err", err)
	if !w.addr.IsValid() {
		return // an incoming connection that never became a peer's watch
	}
	c.punch.setRelay(w.addr, false)
	if sum.Method != "" {
		c.storeErr(c.cfg.Store.AddConnEvent(context.WithoutCancel(runCtx), c.cfg.Swarm, store.ConnEvent{Addr: w.addr, At: time.Now(), Outcome: store.ConnDisconnected, Encryption: string(sum.Method)}))
	}
	c.report(watchEnded{addr: w.addr, connected: sum.Connected})
}

// record stores everything one probe learned, as soon as it ends.
func (c *Collector) record(ctx context.Context, addr netip.AddrPort, bandwidth bool, r *probe.Result) {
	ctx = context.WithoutCancel(ctx) // a probe that ends at shutdown is still evidence
	s := c.cfg.Store
	// A probe on a watch's connection (r.OnWatch) made no connection and
	// read no piece set: the watch recorded those, and the peer.
	if !r.OnWatch && !c.recordConnection(ctx, addr, r) {
		return
	}
	for _, h := range r.Haves {
		c.storeErr(s.AddHave(ctx, c.cfg.Swarm, addr, r.Started.Add(time.Duration(h.AtMS*float64(time.Millisecond))), h.Piece))
	}
	if bandwidth {
		raw, _ := json.Marshal(r.ForStore())
		_, err := s.AddProbe(ctx, c.cfg.Swarm, store.ProbeRecord{
			Addr: addr, At: r.Started, Outcome: string(r.Outcome), Encryption: r.Encryption,
			ThroughputBytesPerSec: r.ThroughputBytesPerSec, ThroughputSpread: r.ThroughputSpread,
			BytesDownloaded: r.BytesDownloaded, PiecesVerified: r.PiecesVerified, PiecesFailed: r.PiecesFailed,
			HandshakeMS: r.HandshakeMS, Result: raw,
		})
		c.storeErr(err)
	}
}

// recordConnection stores how a probe's own connection went, the peer it
// reached and the piece set it read; it reports whether the peer was
// reached (a handshake completed).
func (c *Collector) recordConnection(ctx context.Context, addr netip.AddrPort, r *probe.Result) bool {
	s := c.cfg.Store
	ev := store.ConnEvent{Addr: addr, At: r.Started, Encryption: r.Encryption, Transport: r.Transport, Detail: r.Error}
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
		if r.Holepunch && ev.Detail == "" {
			ev.Detail = store.DetailHolepunch
		}
	}
	c.storeErr(s.AddConnEvent(ctx, c.cfg.Swarm, ev))
	if r.Encryption == "" {
		return false
	}
	id, _ := hex.DecodeString(r.PeerIDHex)
	c.storeErr(s.UpsertPeer(ctx, c.cfg.Swarm, store.Peer{Addr: addr, PeerID: id, Client: r.Client, Encryption: r.Encryption, LastSeen: r.Started}))
	if r.SnapshotBitfield != nil {
		if bf, err := bitfield.FromWire(r.SnapshotBitfield, r.PiecesTotal); err == nil {
			at := r.Started.Add(time.Duration(r.SnapshotAtMS * float64(time.Millisecond)))
			c.storeErr(s.AddSnapshot(ctx, c.cfg.Swarm, addr, at, bf))
		}
	}
	return true
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

// storeErr ends the collection on the first failure to store an
// observation; Run returns it.
func (c *Collector) storeErr(err error) {
	if err == nil {
		return
	}
	c.failOnce.Do(func() {
		c.failed = fmt.Errorf("%w: %w", ErrStore, err)
		c.cfg.Logger.Error("store failed: ending the collection", "err", err)
		c.fail(c.failed)
	})
}
