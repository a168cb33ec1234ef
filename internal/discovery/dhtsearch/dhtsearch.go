// Package dhtsearch finds the peers of one info hash in the Mainline DHT
// (BEP 5) with get_peers traversals of github.com/anacrolix/dht/v2, from
// configurable bootstrap nodes, repeated until its context ends. It also
// provides PeerStore, a correct peer store for DHT nodes that serve
// announces (the library's peer_store.InMemory keys peers by IP alone).
package dhtsearch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
	alog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent/types/infohash"
	"golang.org/x/time/rate"
)

// DefaultBootstrap are the well-known public DHT routers.
var DefaultBootstrap = []string{
	"router.bittorrent.com:6881",
	"dht.transmissionbt.com:6881",
	"router.utorrent.com:6881",
}

// Defaults of Config.
const (
	DefaultRepeat       = 60 * time.Second
	DefaultSendRate     = 250 // packets per second
	DefaultResendDelay  = 2 * time.Second
	resolveTimeout      = 10 * time.Second
	maxBootstrapEntries = 64
)

// ErrNoBootstrap is returned when no bootstrap node could be resolved.
var ErrNoBootstrap = errors.New("no usable DHT bootstrap node")

// Config configures a Searcher.
type Config struct {
	InfoHash infohash.T
	// AlsoInfoHash, when set, is searched (and announced) too, after
	// InfoHash in each round: the v2 swarm of a hybrid torrent (BEP 52).
	AlsoInfoHash infohash.T
	// Bootstrap lists host:port of the starting nodes (DefaultBootstrap if
	// empty). Names are resolved once at Run.
	Bootstrap []string
	// Listen is the UDP address to bind (":0" if empty).
	Listen string
	// AnnouncePort, when non-zero, makes each traversal end with
	// announce_peer of this port to the closest nodes.
	AnnouncePort int
	// Respond answers other nodes' queries; by default the node is
	// read-only (BEP 43) and only asks.
	Respond bool
	// Repeat is the pause between two traversals (DefaultRepeat if <= 0).
	Repeat time.Duration
	// SendRate bounds packets per second (DefaultSendRate if <= 0).
	SendRate float64
	// ResendDelay is the wait before a query is resent, and after the last
	// send before it is abandoned (DefaultResendDelay if <= 0).
	ResendDelay time.Duration
	// OnPeer receives every peer address from get_peers "values" (with
	// repeats). It must not block for long.
	OnPeer func(netip.AddrPort)
	Logger *slog.Logger
}

// Stats describe the work done so far.
type Stats struct {
	Traversals     int   `json:"traversals"`
	NodesContacted int64 `json:"nodes_contacted"`
	Responses      int64 `json:"responses"`
	Values         int64 `json:"values"` // peer addresses received, repeats included
	PacketsSent    int64 `json:"packets_sent"`
	TableNodes     int   `json:"table_nodes"`
}

// Searcher runs get_peers traversals for one info hash.
type Searcher struct {
	cfg    Config
	conn   *countingConn
	server *dht.Server

	mu        sync.Mutex
	stats     Stats
	bootstrap []dht.Addr // resolved by Run
}

// New binds the UDP socket and creates the DHT node; nothing is sent until
// Run.
func New(cfg Config) (*Searcher, error) {
	if len(cfg.Bootstrap) == 0 {
		cfg.Bootstrap = DefaultBootstrap
	}
	if cfg.Listen == "" {
		cfg.Listen = ":0"
	}
	if cfg.Repeat <= 0 {
		cfg.Repeat = DefaultRepeat
	}
	if cfg.SendRate <= 0 {
		cfg.SendRate = DefaultSendRate
	}
	if cfg.ResendDelay <= 0 {
		cfg.ResendDelay = DefaultResendDelay
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pc, err := net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("dht listen %s: %w", cfg.Listen, err)
	}
	conn := &countingConn{PacketConn: pc}
	s := &Searcher{cfg: cfg, conn: conn}
	srv, err := dht.NewServer(&dht.ServerConfig{
		Conn:        conn,
		NoSecurity:  true,
		Passive:     !cfg.Respond,
		Logger:      libLogger(cfg.Logger),
		SendLimiter: rate.NewLimiter(rate.Limit(cfg.SendRate), max(1, int(cfg.SendRate/10))),
		// Starting nodes are resolved by Run with a context and bounds;
		// the library's resolver panics on a malformed host:port.
		StartingNodes:    func() ([]dht.Addr, error) { return s.startingNodes() },
		QueryResendDelay: func() time.Duration { return cfg.ResendDelay },
	})
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dht server: %w", err)
	}
	s.server = srv
	return s, nil
}

// libLogger routes the library's warnings and errors to slog and drops
// its debug chatter.
func libLogger(l *slog.Logger) alog.Logger {
	lg := alog.NewLogger("dht")
	lg.SetHandlers(alog.SlogHandlerAsHandler{SlogHandler: l.Handler()})
	return lg.FilterLevel(alog.Warning)
}

// Addr returns the local UDP address of the node.
func (s *Searcher) Addr() net.Addr { return s.server.Addr() }

// Stats returns counters so far.
func (s *Searcher) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	st.PacketsSent = s.conn.sent.Load()
	st.TableNodes = s.server.Stats().Nodes
	return st
}

func (s *Searcher) startingNodes() ([]dht.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bootstrap) == 0 {
		return nil, ErrNoBootstrap
	}
	return s.bootstrap, nil
}

// Resolve turns host:port strings into UDP addresses. Names are looked up
// with ctx; unresolvable or malformed entries are skipped and reported in
// the returned error only when nothing is left.
func Resolve(ctx context.Context, hostPorts []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	var errs []error
	for i, hp := range hostPorts {
		if i >= maxBootstrapEntries {
			break
		}
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			errs = append(errs, fmt.Errorf("bootstrap %q: %w", hp, err))
			continue
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			errs = append(errs, fmt.Errorf("bootstrap %q: bad port", hp))
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(p)))
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		ips, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("bootstrap %q: %w", hp, err))
			continue
		}
		for _, ip := range ips {
			out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(p)))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %w", ErrNoBootstrap, errors.Join(errs...))
	}
	return out, nil
}

// Run resolves the bootstrap nodes and runs traversals, pausing Repeat
// between them, until ctx ends; then it closes the node. It returns an
// error only when no bootstrap node resolves.
func (s *Searcher) Run(ctx context.Context) error {
	defer s.server.Close()
	aps, err := Resolve(ctx, s.cfg.Bootstrap)
	if err != nil {
		return fmt.Errorf("dht: %w", err)
	}
	addrs := make([]dht.Addr, len(aps))
	for i, ap := range aps {
		addrs[i] = dht.NewAddr(net.UDPAddrFromAddrPort(ap))
	}
	s.mu.Lock()
	s.bootstrap = addrs
	s.mu.Unlock()
	hashes := []infohash.T{s.cfg.InfoHash}
	if s.cfg.AlsoInfoHash != (infohash.T{}) && s.cfg.AlsoInfoHash != s.cfg.InfoHash {
		hashes = append(hashes, s.cfg.AlsoInfoHash)
	}
	for ctx.Err() == nil {
		for _, ih := range hashes {
			if err := s.traverse(ctx, ih); err != nil {
				s.cfg.Logger.Debug("dht traversal", "info_hash", ih.HexString(), "err", err)
			}
		}
		t := time.NewTimer(s.cfg.Repeat)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return nil
}

func (s *Searcher) traverse(ctx context.Context, ih infohash.T) error {
	var opts []dht.AnnounceOpt
	if s.cfg.AnnouncePort > 0 {
		opts = append(opts, dht.AnnouncePeer(dht.AnnouncePeerOpts{Port: s.cfg.AnnouncePort}))
	}
	a, err := s.server.AnnounceTraversal(ih, opts...)
	if err != nil {
		return err
	}
	defer func() {
		// Stop, and drain the peer channel: the library's query goroutines
		// block sending on it until the traversal has stopped, and the
		// stats may be read only then.
		a.Close()
		drain := time.NewTimer(10 * time.Second)
		defer drain.Stop()
	loop:
		for {
			select {
			case _, ok := <-a.Peers:
				if !ok {
					break loop
				}
			case <-drain.C:
				s.cfg.Logger.Warn("dht traversal did not stop in time")
				return
			}
		}
		st := a.TraversalStats()
		s.mu.Lock()
		s.stats.Traversals++
		s.stats.NodesContacted += int64(st.NumAddrsTried)
		s.stats.Responses += int64(st.NumResponses)
		s.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case pv, ok := <-a.Peers:
			if !ok {
				return nil
			}
			for _, p := range pv.Peers {
				ip, ok := netip.AddrFromSlice(p.IP)
				if !ok || p.Port <= 0 || p.Port > 65535 {
					continue
				}
				s.mu.Lock()
				s.stats.Values++
				s.mu.Unlock()
				if s.cfg.OnPeer != nil {
					s.cfg.OnPeer(netip.AddrPortFrom(ip.Unmap(), uint16(p.Port)))
				}
			}
		}
	}
}

// countingConn counts the datagrams the DHT node sends.
type countingConn struct {
	net.PacketConn
	sent atomic.Int64
}

func (c *countingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(b, addr)
	if err == nil {
		c.sent.Add(1)
	}
	return n, err
}

// PeerStore is a bounded in-memory peer store for a DHT node
// (peer_store.Interface of github.com/anacrolix/dht/v2), keyed by the full
// address so that several peers behind one IP are all kept.
type PeerStore struct {
	// MaxPerHash bounds the peers kept per info hash (500 if <= 0); the
	// oldest entry is replaced when full.
	MaxPerHash int

	mu    sync.Mutex
	peers map[infohash.T][]netip.AddrPort
}

// AddPeer stores a peer announced for ih.
func (ps *PeerStore) AddPeer(ih infohash.T, na krpc.NodeAddr) {
	ip, ok := netip.AddrFromSlice(na.IP)
	if !ok || na.Port <= 0 || na.Port > 65535 {
		return
	}
	ap := netip.AddrPortFrom(ip.Unmap(), uint16(na.Port))
	limit := ps.MaxPerHash
	if limit <= 0 {
		limit = 500
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.peers == nil {
		ps.peers = map[infohash.T][]netip.AddrPort{}
	}
	l := ps.peers[ih]
	for i, p := range l {
		if p == ap { // refresh: move to the back (newest)
			copy(l[i:], l[i+1:])
			l[len(l)-1] = ap
			return
		}
	}
	if len(l) >= limit {
		l = append(l[:0], l[1:]...)
	}
	ps.peers[ih] = append(l, ap)
}

// GetPeers returns the peers stored for ih.
func (ps *PeerStore) GetPeers(ih infohash.T) []krpc.NodeAddr {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	l := ps.peers[ih]
	out := make([]krpc.NodeAddr, len(l))
	for i, ap := range l {
		out[i] = krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
	}
	return out
}

var _ peer_store.Interface = (*PeerStore)(nil)
