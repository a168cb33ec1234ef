// Package trackerserver is swarmaudit's embedded BitTorrent tracker. Its one job is
// collecting what peers report about themselves: it answers HTTP (BEP 3, 7,
// 23, 24, 48) and UDP (BEP 15, 41) announces and scrapes from an in-memory
// swarm, or, with Config.Upstream, forwards HTTP announces to another tracker
// as a recording proxy, and it hands every announce to a reported.Recorder
// before answering.
//
// Addresses: the recorded Announce.IP is always the source address of the TCP
// connection or UDP packet, never a claimed one. The HTTP `ip` parameter and
// the UDP IP field are used only when the request comes from a loopback
// address (a local reverse proxy or test harness speaking for a peer), and
// then only as the address handed to other peers; from anywhere else they are
// ignored, and so is X-Forwarded-For.
//
// URLs: announces go to /announce, /announce/<passkey> or /<passkey>/announce;
// scrapes to /scrape, /scrape/<passkey> or /<passkey>/scrape (BEP 48's
// convention derives the last from /<passkey>/announce). A passkey is 1 to
// 128 characters of A-Z a-z 0-9 . _ ~ -, recorded but not checked. UDP
// announces take the passkey from the BEP 41 URL data when its path has one
// of these forms.
package trackerserver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
)

// Defaults for the zero values of Config.
const (
	DefaultInterval           = 5 * time.Minute
	DefaultMinInterval        = time.Minute
	DefaultNumWant            = 50
	DefaultMaxPeersPerReply   = 200
	DefaultMaxTorrents        = 100_000
	DefaultMaxPeersPerTorrent = 10_000
	DefaultMaxConns           = 1024
	DefaultUDPWorkers         = 4
	DefaultUpstreamTimeout    = 15 * time.Second
)

// Fixed bounds on what a request or an upstream may make the tracker do.
const (
	MaxQueryBytes         = 16 << 10 // longest HTTP query string accepted
	MaxScrapeHashes       = 100      // info hashes in one HTTP scrape
	MaxFullScrape         = 1000     // torrents in a scrape without info_hash
	MaxUpstreamReplyBytes = 1 << 20  // longest upstream reply relayed
	maxUserAgentBytes     = 256      // recorded User-Agent is cut to this
)

// Errors of this package, checkable with errors.Is.
var (
	ErrConfig      = errors.New("invalid tracker config")
	ErrStarted     = errors.New("tracker already started")
	ErrBadRequest  = errors.New("bad request")
	ErrTrackerFull = errors.New("tracker full")
	ErrUpstream    = errors.New("upstream tracker")
)

// Config configures a Server. Zero values take the Default* constants.
type Config struct {
	// HTTPAddr and UDPAddr are listen addresses such as "127.0.0.1:0"; an
	// empty one is not listened on. Start needs at least one.
	HTTPAddr, UDPAddr string
	// Interval is the announce interval handed to clients; peers expire from
	// the swarm 2×Interval after their last announce. At least one second.
	Interval time.Duration
	// MinInterval is the HTTP "min interval"; at most Interval.
	MinInterval time.Duration
	// Recorder receives every announce before it is answered. Required.
	Recorder reported.Recorder
	// Upstream, when set, makes the tracker a recording proxy: HTTP announces
	// (and scrapes) are forwarded to this http(s) announce URL with the same
	// query, recorded with Source "upstream", and answered with the
	// upstream's reply. The passkey of the request path replaces a
	// "{passkey}" placeholder in Upstream (an announce without passkey is
	// then refused), or, without placeholder, is appended as a last path
	// segment (/announce becomes /announce/<passkey>). Scrapes go to the
	// URL made by BEP 48's rule (the last path segment starting with
	// "announce" becomes "scrape"), and are refused when there is none.
	// The peer's address is passed on as UpstreamAddrHeader and, with
	// UpstreamIPParam, as the announce's "ip" parameter; the local swarm is
	// not used. An announce is recorded only when the upstream accepted it.
	// The upstream may also be a udp:// tracker (BEP 15, its passkey in the
	// path per BEP 41). Announces that do not match its protocol — UDP
	// announces to an HTTP upstream, HTTP announces to a UDP one — are
	// translated: the same counters announced by a tracker client, the
	// reply turned back into the client's protocol.
	Upstream string
	// UpstreamAddrHeader names the HTTP header that carries the peer's
	// address to the upstream (default "X-Forwarded-For"; "-" sends none).
	UpstreamAddrHeader string
	// UpstreamIPParam also passes the peer's address as BEP 3's "ip"
	// announce parameter, for trackers that honour it from a trusted proxy.
	UpstreamIPParam bool
	// Self, when set, names the auditor to the peers of the torrents it
	// audits: for an HTTP announce of a torrent it answers a port for, the
	// peer list starts with the address the peer reached the tracker on,
	// at that port, so that peers nobody can connect to (behind a NAT)
	// connect to the auditor. (UDP announces do not carry it: a wildcard
	// socket does not tell which local address a datagram reached.)
	Self func(infohash.T) (port uint16, peerID [20]byte, ok bool)
	// OnRecordError is called when the Recorder fails (the announce is then
	// answered with a failure); nil only logs. The audit ends on it.
	OnRecordError func(error)
	// UpstreamTimeout bounds one upstream exchange.
	UpstreamTimeout time.Duration
	// MaxPeersPerReply caps numwant.
	MaxPeersPerReply int
	// MaxTorrents and MaxPeersPerTorrent bound the swarm state; announces
	// beyond them are recorded and then refused with "tracker full".
	MaxTorrents, MaxPeersPerTorrent int
	// MaxConns bounds concurrent HTTP connections.
	MaxConns int
	// UDPWorkers is the number of goroutines serving UDP packets.
	UDPWorkers int
	// TrackerID, when set, is sent as "tracker id" in HTTP replies.
	TrackerID string
	// Logger receives the tracker's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
}

// Server is an embedded tracker. Create it with New.
type Server struct {
	cfg      Config
	log      *slog.Logger
	swarms   *swarmTable
	connKey  [32]byte // HMAC key of UDP connection ids
	upstream *upstream

	mu       sync.Mutex
	started  bool
	httpLn   net.Listener
	httpSrv  *http.Server
	udpConn  *net.UDPConn
	forwards chan struct{} // UDP announces being forwarded upstream
	stop     chan struct{} // closed by Close or a fatal serving error
	stopOnce sync.Once
	quit     chan struct{} // closed when shutdown begins
	done     chan struct{} // closed when shutdown is complete
	wg       sync.WaitGroup
	errMu    sync.Mutex
	err      error // first fatal serving error
}

// New checks cfg, fills in defaults and returns a Server that is not yet
// listening; its Handler can already be used.
func New(cfg Config) (*Server, error) {
	if cfg.Recorder == nil {
		return nil, fmt.Errorf("%w: no Recorder", ErrConfig)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Interval < time.Second {
		return nil, fmt.Errorf("%w: interval %v is under a second", ErrConfig, cfg.Interval)
	}
	if cfg.MinInterval == 0 {
		cfg.MinInterval = min(DefaultMinInterval, cfg.Interval)
	}
	if cfg.MinInterval < 0 || cfg.MinInterval > cfg.Interval {
		return nil, fmt.Errorf("%w: min interval %v not within 0..%v", ErrConfig, cfg.MinInterval, cfg.Interval)
	}
	for _, l := range []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxPeersPerReply", &cfg.MaxPeersPerReply, DefaultMaxPeersPerReply},
		{"MaxTorrents", &cfg.MaxTorrents, DefaultMaxTorrents},
		{"MaxPeersPerTorrent", &cfg.MaxPeersPerTorrent, DefaultMaxPeersPerTorrent},
		{"MaxConns", &cfg.MaxConns, DefaultMaxConns},
		{"UDPWorkers", &cfg.UDPWorkers, DefaultUDPWorkers},
	} {
		if *l.v < 0 {
			return nil, fmt.Errorf("%w: negative %s", ErrConfig, l.name)
		}
		if *l.v == 0 {
			*l.v = l.def
		}
	}
	if cfg.UpstreamAddrHeader == "" {
		cfg.UpstreamAddrHeader = "X-Forwarded-For"
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg: cfg,
		log: cfg.Logger.With("component", "tracker"),
		swarms: &swarmTable{
			torrents:    make(map[[20]byte]*swarm),
			maxTorrents: cfg.MaxTorrents,
			maxPeers:    cfg.MaxPeersPerTorrent,
			ttl:         2 * cfg.Interval,
		},
	}
	rand.Read(s.connKey[:]) // never fails (crypto/rand since Go 1.24)
	s.forwards = make(chan struct{}, maxForwards)
	if cfg.Upstream != "" {
		up, err := newUpstream(cfg.Upstream, cfg.UpstreamTimeout)
		if err != nil {
			return nil, fmt.Errorf("%w: upstream %s: %v", ErrConfig, trackerclient.Redact(cfg.Upstream), trackerclient.ScrubError(err, cfg.Upstream))
		}
		s.upstream = up
	}
	return s, nil
}

// Start listens on the configured addresses and serves in the background
// until ctx is cancelled or Close is called. It returns once the listeners
// are bound, so HTTPURL and UDPURL are then known.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return ErrStarted
	}
	if s.cfg.HTTPAddr == "" && s.cfg.UDPAddr == "" {
		return fmt.Errorf("%w: neither HTTPAddr nor UDPAddr set", ErrConfig)
	}
	var lc net.ListenConfig
	if s.cfg.HTTPAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", s.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("listen http %s: %w", s.cfg.HTTPAddr, err)
		}
		s.httpLn = ln
	}
	if s.cfg.UDPAddr != "" {
		pc, err := lc.ListenPacket(ctx, "udp", s.cfg.UDPAddr)
		if err != nil {
			if s.httpLn != nil {
				s.httpLn.Close()
			}
			return fmt.Errorf("listen udp %s: %w", s.cfg.UDPAddr, err)
		}
		s.udpConn = pc.(*net.UDPConn)
	}
	s.started = true
	s.stop = make(chan struct{})
	s.quit = make(chan struct{})
	s.done = make(chan struct{})

	if s.httpLn != nil {
		writeTimeout := 15 * time.Second
		if s.upstream != nil {
			writeTimeout += s.cfg.UpstreamTimeout
		}
		s.httpSrv = &http.Server{
			Handler:           s.Handler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    MaxQueryBytes + 8<<10,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		ln := netutil.LimitListener(s.httpLn, s.cfg.MaxConns)
		s.wg.Go(func() {
			if err := s.httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				s.fail(fmt.Errorf("serve http: %w", err))
			}
		})
	}
	if s.udpConn != nil {
		for range s.cfg.UDPWorkers {
			s.wg.Go(func() { s.serveUDP(s.udpConn) })
		}
	}
	s.wg.Go(s.sweepLoop)
	go s.watch(ctx)
	s.log.Info("tracker listening", "http", s.httpURLLocked(), "udp", s.udpURLLocked(), "upstream", trackerclient.Redact(s.cfg.Upstream))
	return nil
}

// Run is Start followed by waiting for the shutdown: it returns nil once ctx
// is cancelled (or Close called) and everything is closed, or the first
// fatal serving error.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-s.done
	return s.firstErr()
}

// Close stops a started server and waits until it is shut down; it returns
// the first fatal serving error, if any. Closing an unstarted server does
// nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return s.firstErr()
}

func (s *Server) fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
	s.log.Error("tracker stopping", "err", err)
	s.stopOnce.Do(func() { close(s.stop) })
}

func (s *Server) firstErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// watch shuts the server down when ctx ends or stop is closed.
func (s *Server) watch(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.stop:
	}
	close(s.quit)
	if s.httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.httpSrv.Shutdown(sctx); err != nil {
			s.log.Warn("http shutdown, closing connections", "err", err)
			s.httpSrv.Close()
		}
		cancel()
	}
	if s.udpConn != nil {
		s.udpConn.Close()
	}
	if s.upstream != nil {
		s.upstream.client.CloseIdleConnections()
	}
	s.wg.Wait() // forwards in flight end within UpstreamTimeout
	if s.upstream != nil {
		s.upstream.closeClients()
	}
	s.log.Info("tracker stopped")
	close(s.done)
}

// sweepLoop drops expired peers and empty swarms once per interval, so that
// swarms nobody announces to any more do not stay in memory.
func (s *Server) sweepLoop() {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			s.swarms.sweepAll(s.cfg.Now())
		}
	}
}

// HTTPURL is the announce URL of the HTTP listener ("" when there is none),
// with the actual port. An unspecified listen address (0.0.0.0, ::) is shown
// as the loopback address of its family.
func (s *Server) HTTPURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpURLLocked()
}

func (s *Server) httpURLLocked() string {
	if s.httpLn == nil {
		return ""
	}
	return "http://" + reachable(s.httpLn.Addr()) + "/announce"
}

// UDPURL is the announce URL of the UDP listener ("" when there is none), as
// HTTPURL.
func (s *Server) UDPURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpURLLocked()
}

func (s *Server) udpURLLocked() string {
	if s.udpConn == nil {
		return ""
	}
	return "udp://" + reachable(s.udpConn.LocalAddr()) + "/announce"
}

// Serves reports whether announceURL points at this server: an http(s) URL
// at its HTTP listener or a udp URL at its UDP listener, by IP literal or
// "localhost", on the listener's address (any local address when it listens
// on all of them). The audit uses it not to announce to itself.
func (s *Server) Serves(announceURL string) bool {
	u, err := url.Parse(announceURL)
	if err != nil {
		return false
	}
	s.mu.Lock()
	var ln net.Addr
	switch {
	case (u.Scheme == "http" || u.Scheme == "https") && s.httpLn != nil:
		ln = s.httpLn.Addr()
	case u.Scheme == "udp" && s.udpConn != nil:
		ln = s.udpConn.LocalAddr()
	}
	s.mu.Unlock()
	if ln == nil {
		return false
	}
	own, err := netip.ParseAddrPort(ln.String())
	if err != nil {
		return false
	}
	port, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil || uint16(port) != own.Port() {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false // a name: not resolved here
	}
	ip = ip.Unmap()
	if ip == own.Addr().Unmap() {
		return true
	}
	if !own.Addr().IsUnspecified() {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ip {
			return true
		}
	}
	return false
}

func reachable(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return a.String()
	}
	ip := ap.Addr()
	switch {
	case ip.IsUnspecified() && ip.Is4():
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case ip.IsUnspecified():
		ip = netip.IPv6Loopback()
	}
	return netip.AddrPortFrom(ip.Unmap(), ap.Port()).String()
}

// record hands an announce to the Recorder; a failure is reported to
// OnRecordError (it ends an audit: evidence must not be dropped silently).
func (s *Server) record(a reported.Announce) bool {
	err := s.cfg.Recorder.RecordAnnounce(a)
	if err == nil {
		return true
	}
	s.log.Error("record announce", "info_hash", a.InfoHash, "ip", a.IP, "source", a.Source, "err", err)
	if s.cfg.OnRecordError != nil {
		s.cfg.OnRecordError(fmt.Errorf("recording an announce: %w", err))
	}
	return false
}

// sourceAddr is a request's source address as recorded: IPv4-mapped IPv6
// unmapped, zone dropped.
func sourceAddr(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}
