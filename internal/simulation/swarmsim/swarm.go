package swarmsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/cheat"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/httptracker"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// Role is what a simulated peer starts as.
type Role string

// The roles.
const (
	RoleSeeder  Role = "seeder"  // starts with every piece
	RoleLeecher Role = "leecher" // starts with PeerSpec.Have of the pieces and downloads the rest
)

// Defaults for the zero values of SwarmConfig.
const (
	DefaultAnnounceInterval = 30 * time.Second
	DefaultNumWant          = 50
	DefaultUploadSlots      = 8
	DefaultSwarmChoke       = 5 * time.Second
	maxTrackerConns         = 32 // HTTP connections to the tracker, all peers together
	closeWorkers            = 16
)

// Errors of StartSwarm, checkable with errors.Is.
var (
	ErrSwarmConfig = errors.New("swarmsim: invalid swarm config")
	// ErrNotLoopback: the tracker resolved to an address off loopback; a
	// simulated swarm talks to nothing else.
	ErrNotLoopback = errors.New("swarmsim: address is not loopback")
)

// PeerSpec describes one member of a simulated swarm.
type PeerSpec struct {
	Role Role
	// Have is the fraction of pieces a leecher starts with (0..1), chosen
	// at random under the swarm's seed.
	Have       float64
	Encryption Encryption
	// UploadRate and DownloadRate cap the peer's payload traffic in bytes
	// per second; 0 means unlimited.
	UploadRate, DownloadRate float64
	// Lie is applied to the counters the peer announces.
	Lie           Lie
	BadData       bool
	NeverUnchoke  bool
	Unconnectable bool
	ClientName    string
	// Cheat, when set, makes this member a scripted fake announcer from
	// internal/cheat instead of a simulated peer (it needs a tracker);
	// CheatRate is the upload it claims in bytes per second.
	Cheat     cheat.Kind
	CheatRate float64
}

// SwarmConfig configures StartSwarm.
type SwarmConfig struct {
	Payload *Payload
	// InfoBytes, when set, is served to ut_metadata requests.
	InfoBytes []byte
	Peers     []PeerSpec
	// Tracker is an HTTP announce URL on loopback. Every peer announces to
	// it and learns the others from its replies. Without one, each
	// downloading peer is told NumWant other members' addresses directly.
	Tracker          string
	AnnounceInterval time.Duration
	NumWant          int
	// Seed makes the swarm reproducible: peer ids, which pieces each
	// leecher starts with, and every peer's random choices.
	Seed uint64
	// IP is the loopback address the peers listen on (127.0.0.1).
	IP string
	// Per-peer settings, see PeerConfig; zero values take DefaultMaxConns,
	// DefaultUploadSlots, DefaultRequestQueue and DefaultSwarmChoke.
	MaxConns      int
	UploadSlots   int
	RequestQueue  int
	ChokeInterval time.Duration
	// KeepData makes leechers keep the bytes they download (Peer.Data).
	KeepData bool
	Logger   *slog.Logger
}

// PeerPlan is what the seed decides for one member before anything runs.
type PeerPlan struct {
	PeerID [20]byte
	Have   bitfield.Bitfield
	Seed   uint64 // the member's own random stream
	Key    uint32 // its announce key
	// Jitter delays its first periodic announce, spreading the swarm's
	// announces over the interval.
	Jitter time.Duration
}

// Plan computes the deterministic part of a swarm: the same config and
// seed always give the same plan.
func Plan(cfg SwarmConfig) ([]PeerPlan, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	n := cfg.Payload.NumPieces()
	r := rand.New(rand.NewPCG(cfg.Seed, 0x73776172_6d73696d)) // "swarmsim"
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	plans := make([]PeerPlan, len(cfg.Peers))
	for i, spec := range cfg.Peers {
		pl := &plans[i]
		copy(pl.PeerID[:], "-SM0100-")
		for j := 8; j < 20; j++ {
			pl.PeerID[j] = alphabet[r.IntN(len(alphabet))]
		}
		switch spec.Role {
		case RoleSeeder:
			pl.Have = bitfield.Full(n)
		default:
			pl.Have = bitfield.New(n)
			k := int(spec.Have*float64(n) + 0.5)
			if k >= n && spec.Have < 1 {
				k = n - 1 // a leecher always has something to fetch
			}
			for _, piece := range r.Perm(n)[:k] {
				pl.Have.Set(piece)
			}
		}
		pl.Seed = r.Uint64()
		pl.Key = r.Uint32()
		pl.Jitter = time.Duration(r.Int64N(int64(cfg.AnnounceInterval)/4 + 1))
	}
	return plans, nil
}

// checkConfig validates cfg and fills in defaults.
func checkConfig(cfg *SwarmConfig) error {
	if cfg.Payload == nil || len(cfg.Payload.Data) == 0 || cfg.Payload.PieceLength <= 0 {
		return fmt.Errorf("%w: no payload", ErrSwarmConfig)
	}
	if len(cfg.Peers) == 0 {
		return fmt.Errorf("%w: no peers", ErrSwarmConfig)
	}
	if cfg.AnnounceInterval <= 0 {
		cfg.AnnounceInterval = DefaultAnnounceInterval
	}
	if cfg.NumWant <= 0 {
		cfg.NumWant = DefaultNumWant
	}
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	if ip, err := netip.ParseAddr(cfg.IP); err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: IP %q: %w", ErrSwarmConfig, cfg.IP, ErrNotLoopback)
	}
	if cfg.UploadSlots == 0 {
		cfg.UploadSlots = DefaultUploadSlots
	}
	if cfg.ChokeInterval <= 0 {
		cfg.ChokeInterval = DefaultSwarmChoke
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for i, s := range cfg.Peers {
		switch {
		case s.Role != RoleSeeder && s.Role != RoleLeecher:
			return fmt.Errorf("%w: peer %d: role %q", ErrSwarmConfig, i, s.Role)
		case s.Have < 0 || s.Have > 1 || s.Have != s.Have:
			return fmt.Errorf("%w: peer %d: have fraction %v", ErrSwarmConfig, i, s.Have)
		case s.UploadRate < 0 || s.DownloadRate < 0:
			return fmt.Errorf("%w: peer %d: negative rate", ErrSwarmConfig, i)
		case s.Cheat != "" && cfg.Tracker == "":
			return fmt.Errorf("%w: peer %d: a %s cheater needs a tracker", ErrSwarmConfig, i, s.Cheat)
		}
		switch s.Encryption {
		case "", EncRequired, EncPreferred, EncDisabled:
		default:
			return fmt.Errorf("%w: peer %d: encryption %q", ErrSwarmConfig, i, s.Encryption)
		}
		if err := s.Lie.check(); err != nil {
			return fmt.Errorf("%w: peer %d: %w", ErrSwarmConfig, i, err)
		}
	}
	return nil
}

// member is one running member of a swarm.
type member struct {
	spec    PeerSpec
	plan    PeerPlan
	peer    *Peer
	ann     *announcer
	cheater *cheat.Cheater
	started time.Time
}

// Swarm is a running simulated swarm.
type Swarm struct {
	cfg       SwarmConfig
	members   []*member
	client    *httptracker.Client
	transport *http.Transport
	ctx       context.Context
	cancel    context.CancelFunc
	annWG     sync.WaitGroup
	done      chan struct{}
	stopWatch chan struct{}
	closeOnce sync.Once
	closeErr  error
	unhook    func() bool
}

// StartSwarm starts every member: the simulated peers listen (or, when
// unconnectable, hold a port), then announce to the tracker (or are
// introduced to each other), and the leechers start downloading. The
// swarm runs until Close or until ctx ends.
func StartSwarm(ctx context.Context, cfg SwarmConfig) (*Swarm, error) {
	plans, err := Plan(cfg)
	if err != nil {
		return nil, err
	}
	_ = checkConfig(&cfg) // defaults, as Plan saw them
	s := &Swarm{cfg: cfg, done: make(chan struct{}), stopWatch: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if cfg.Tracker != "" {
		d := &net.Dialer{Timeout: 5 * time.Second, Control: loopbackOnly}
		s.transport = &http.Transport{
			DialContext: d.DialContext, Proxy: nil,
			MaxConnsPerHost: maxTrackerConns, MaxIdleConnsPerHost: maxTrackerConns,
			IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: announceTimeout,
		}
		s.client, err = httptracker.New(cfg.Tracker, httptracker.Options{Transport: s.transport, Timeout: announceTimeout, UserAgent: "swarmsim/0.1"})
		if err != nil {
			s.cancel()
			return nil, fmt.Errorf("%w: tracker: %w", ErrSwarmConfig, err)
		}
	}
	for i, spec := range cfg.Peers {
		if spec.Encryption == "" {
			spec.Encryption = EncPreferred
		}
		m := &member{spec: spec, plan: plans[i], started: time.Now()}
		s.members = append(s.members, m)
		if spec.Cheat != "" {
			continue
		}
		enc := spec.Encryption
		m.peer, err = StartPeer(net.JoinHostPort(cfg.IP, "0"), PeerConfig{
			Payload: cfg.Payload, PeerID: m.plan.PeerID, Have: m.plan.Have, Encryption: enc,
			UploadRate: spec.UploadRate, DownloadRate: spec.DownloadRate,
			BadData: spec.BadData, NeverUnchoke: spec.NeverUnchoke, ClientName: spec.ClientName,
			InfoBytes: cfg.InfoBytes, Logger: cfg.Logger.With("peer", i),
			Download: true, UploadSlots: cfg.UploadSlots, ChokeInterval: cfg.ChokeInterval,
			MaxConns: cfg.MaxConns, RequestQueue: cfg.RequestQueue, Seed: m.plan.Seed,
			KeepData: cfg.KeepData && spec.Role == RoleLeecher, Unconnectable: spec.Unconnectable,
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("swarmsim: start peer %d: %w", i, err)
		}
	}
	if cfg.Tracker == "" {
		s.introduce()
	}
	for i, m := range s.members {
		switch {
		case m.spec.Cheat != "":
			m.cheater, err = cheat.Start(s.ctx, cheat.Config{
				Kind: m.spec.Cheat, Announce: cfg.Tracker, InfoHash: cfg.Payload.InfoHash,
				Size: int64(len(cfg.Payload.Data)), Rate: m.spec.CheatRate, Interval: cfg.AnnounceInterval,
				IP: cfg.IP, PeerID: m.plan.PeerID, Seed: m.plan.Seed,
			})
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("swarmsim: start cheater %d: %w", i, err)
			}
		case s.client != nil:
			m.ann = &announcer{
				p: m.peer, client: s.client, lie: m.spec.Lie, interval: cfg.AnnounceInterval,
				numWant: cfg.NumWant, key: m.plan.Key, start: m.started,
				log: cfg.Logger.With("peer", i).Debug,
			}
			s.annWG.Go(func() { m.ann.run(s.ctx, m.plan.Jitter) })
		}
	}
	go s.watchDone()
	s.unhook = context.AfterFunc(ctx, func() { s.Close() })
	return s, nil
}

// loopbackOnly refuses tracker connections that would leave loopback.
func loopbackOnly(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("%w: %s", ErrNotLoopback, address)
	}
	return nil
}

// introduce tells each downloading peer about NumWant other members, chosen under the seed (the swarm without a tracker).
func (s *Swarm) introduce() {
	r := rand.New(rand.NewPCG(s.cfg.Seed, 0x696e74726f))
	var addrs []netip.AddrPort
	for _, m := range s.members {
		if m.peer != nil {
			addrs = append(addrs, m.peer.Addr()) // unconnectable ones too, as a tracker lists them
		}
	}
	for _, m := range s.members {
		if m.peer == nil {
			continue
		}
		pick := make([]netip.AddrPort, 0, s.cfg.NumWant)
		for _, j := range r.Perm(len(addrs)) {
			if len(pick) == s.cfg.NumWant {
				break
			}
			if addrs[j] != m.peer.Addr() {
				pick = append(pick, addrs[j])
			}
		}
		m.peer.AddPeers(pick...)
	}
}

func (s *Swarm) watchDone() {
	for _, m := range s.members {
		if m.peer == nil || m.spec.Role != RoleLeecher {
			continue
		}
		select {
		case <-m.peer.Complete():
		case <-s.stopWatch:
			return
		}
	}
	close(s.done)
}

// Peers returns the simulated peers in the order of SwarmConfig.Peers,
// cheaters (which are not simulated peers) left out.
func (s *Swarm) Peers() []*Peer {
	var ps []*Peer
	for _, m := range s.members {
		if m.peer != nil {
			ps = append(ps, m.peer)
		}
	}
	return ps
}

// Done is closed once every leecher has every piece.
func (s *Swarm) Done() <-chan struct{} { return s.done }

// WaitComplete waits until every leecher has every piece, or ctx ends.
func (s *Swarm) WaitComplete(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	incomplete, leechers := 0, 0
	var missing int64
	for _, m := range s.members {
		if m.peer == nil || m.spec.Role != RoleLeecher {
			continue
		}
		leechers++
		if left := m.peer.Left(); left > 0 {
			incomplete++
			missing += left
		}
	}
	return fmt.Errorf("swarmsim: %d of %d leechers incomplete, %d bytes missing: %w", incomplete, leechers, missing, ctx.Err())
}

// Truth is what really happened to one member, next to what it claimed.
type Truth struct {
	Index         int
	Addr          netip.AddrPort // the address it announces
	PeerID        [20]byte
	Role          Role
	Encryption    Encryption
	Lie           Lie
	Cheat         cheat.Kind
	BadData       bool
	NeverUnchoke  bool
	Unconnectable bool
	UploadRate    float64
	DownloadRate  float64
	Started       time.Time
	// The true counters (payload bytes). A cheater's are zero.
	Uploaded, Downloaded, Wasted, Left int64
	StartPieces                        int
	Complete                           bool
	CompletedAt                        time.Time // zero for a peer that started complete
	HashFailures                       int
	Bans                               []Ban // peers it banned for bad data
	// Announces is how many announces it sent (-1 for a cheater, whose
	// count is internal/cheat's); Reported is the last one, with what it
	// claimed (for a cheater, only Uploaded: its claims so far).
	Announces int
	Reported  Report
}

// Truth returns the truth about every member, in the order of
// SwarmConfig.Peers. After Close, the counters are final and Reported is
// the stopped announce.
func (s *Swarm) Truth() []Truth {
	out := make([]Truth, len(s.members))
	for i, m := range s.members {
		t := Truth{
			Index: i, PeerID: m.plan.PeerID, Role: m.spec.Role, Encryption: m.spec.Encryption,
			Lie: m.spec.Lie, Cheat: m.spec.Cheat, BadData: m.spec.BadData, NeverUnchoke: m.spec.NeverUnchoke,
			Unconnectable: m.spec.Unconnectable, UploadRate: m.spec.UploadRate, DownloadRate: m.spec.DownloadRate,
			Started: m.started, StartPieces: m.plan.Have.Count(), Announces: -1,
		}
		switch {
		case m.cheater != nil:
			t.Addr = m.cheater.Addr
			t.Reported = Report{Uploaded: m.cheater.Claimed()}
		case m.peer != nil:
			p := m.peer
			t.Addr = p.Addr()
			t.Uploaded, t.Downloaded, t.Wasted = p.Uploaded(), p.Downloaded(), p.Wasted()
			p.mu.Lock()
			t.Left = p.leftLocked()
			t.Complete = p.have.Complete()
			t.CompletedAt = p.doneAt
			p.mu.Unlock()
			t.HashFailures = p.HashFailures()
			t.Bans = p.Bans()
			if m.ann != nil {
				t.Reported, t.Announces = m.ann.report()
			} else {
				t.Announces = 0
			}
		}
		out[i] = t
	}
	return out
}

// Close stops the swarm: announcing stops, every peer closes its
// connections, then each announces stopped with its final counters and the
// cheaters stop. It is safe to call more than once.
func (s *Swarm) Close() error {
	s.closeOnce.Do(func() {
		if s.unhook != nil {
			s.unhook()
		}
		close(s.stopWatch)
		s.cancel()
		s.annWG.Wait()
		errs := make([]error, len(s.members))
		s.each(func(i int, m *member) {
			if m.peer != nil {
				errs[i] = m.peer.Close()
			}
		})
		s.each(func(i int, m *member) {
			if m.ann != nil {
				m.ann.stop(context.Background())
			}
			if m.cheater != nil {
				m.cheater.Close()
			}
		})
		if s.transport != nil {
			s.transport.CloseIdleConnections()
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// each runs f over the members on a bounded number of goroutines.
func (s *Swarm) each(f func(int, *member)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(closeWorkers, len(s.members)) {
		wg.Go(func() {
			for i := range work {
				f(i, s.members[i])
			}
		})
	}
	for i := range s.members {
		work <- i
	}
	close(work)
	wg.Wait()
}
