// Package discovery finds the peers of one swarm from every source real
// clients use — HTTP and UDP trackers over BEP 12 tiers, the Mainline DHT,
// magnet-link peers, Local Service Discovery (BEP 14) when asked — runs
// them concurrently for a bounded time, and
// records each address with where it came from in an address book.
//
// The pieces: addrbook (the deduplicating book), dhtsearch (get_peers
// traversals) and lsd (local multicast announces) here; the tracker protocols in internal/trackerclient; the
// PEX and metadata codecs in internal/wire. PEX and incoming addresses come
// from the owner of the peer connections (internal/observation/collect in
// an audit, internal/observation/frompeers otherwise) into the same book.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/discovery/dhtsearch"
	"github.com/swarmaudit/swarmaudit/internal/discovery/lsd"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/httptracker"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/udptracker"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// DefaultNumWant is the number of peers asked of trackers.
const DefaultNumWant = 200

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("invalid discovery config")

// ErrNoSource is returned by Run when no source could run at all (no
// tracker could be used, DHT off or failed, no magnet peers).
var ErrNoSource = errors.New("no discovery source could run")

// Config describes one discovery run. Fill it from a torrent or magnet
// with FromTorrent / FromMagnet, or by hand.
type Config struct {
	InfoHash infohash.T
	// AlsoInfoHash, when set, names a second swarm of the same torrent,
	// searched on the same trackers, DHT and LSD: the v2 swarm (truncated
	// v2 info hash) of a hybrid torrent, BEP 52. A hybrid's peers take a
	// handshake with either hash.
	AlsoInfoHash infohash.T
	// Trackers are BEP 12 tiers.
	Trackers [][]string
	// Private torrents use trackers only: no DHT and no LSD (and no PEX,
	// which is the peer connection's business), BEP 27.
	Private bool
	// Peers are known peer addresses (magnet "x.pe"), recorded with source
	// "magnet".
	Peers []netip.AddrPort
	// Left is the byte count still missing announced to trackers: the full
	// size for an auditor that downloads nothing; -1 when unknown.
	Left int64

	// Port is the listen port announced to trackers and the DHT (0: the
	// DHT is not announced to; trackers get 0).
	Port uint16
	// PeerID is announced to trackers (trackerclient.NewPeerID if zero).
	PeerID [20]byte
	// NumWant is asked of trackers (DefaultNumWant if 0; -1: tracker
	// default).
	NumWant int32
	// Uploaded and Downloaded return the true byte counters at announce
	// time (0 if nil).
	Uploaded, Downloaded func() int64

	// Duration bounds the run (0: until ctx ends).
	Duration time.Duration

	// StrictTiers announces only to the first working tier (literal
	// BEP 12); by default one tracker of every tier is used.
	StrictTiers bool
	// DenyPrivateTrackers refuses tracker hosts resolving to loopback,
	// private or other non-public addresses.
	DenyPrivateTrackers bool
	// NoScrape skips the scrape after each tracker's first announce.
	NoScrape bool
	// AnnounceFloor is the least time between announces to one tracker
	// (trackerclient.DefaultFloor if 0).
	AnnounceFloor time.Duration
	// TrackerRetry is the first wait after a tier failed entirely
	// (trackerclient.DefaultRetryBase if 0).
	TrackerRetry time.Duration
	// HTTP and UDP tune the tracker clients; their DenyPrivate is set from
	// DenyPrivateTrackers.
	HTTP httptracker.Options
	UDP  udptracker.Options

	// DHT enables the DHT search (ignored for private torrents).
	DHT bool
	// Bootstrap lists DHT bootstrap nodes host:port
	// (dhtsearch.DefaultBootstrap if empty).
	Bootstrap []string
	// DHTListen is the DHT UDP address (":0" if empty).
	DHTListen string
	// DHTRepeat is the pause between DHT traversals
	// (dhtsearch.DefaultRepeat if 0).
	DHTRepeat time.Duration
	// DHTResendDelay tunes the DHT query resend delay (library default 2 s
	// if 0).
	DHTResendDelay time.Duration

	// LSD listens for BEP 14 Local Service Discovery announces of the
	// swarm on the local network, and announces Port there (ignored for
	// private torrents). LSDInterface names the network interface ("":
	// the system's choice).
	LSD          bool
	LSDInterface string

	// Exclude lists addresses never recorded, typically the auditor's own
	// listen addresses: trackers such as opentracker hand a client its own
	// address back.
	Exclude []netip.AddrPort

	// Book receives the addresses (a new book with default options if
	// nil).
	Book   *addrbook.Book
	Logger *slog.Logger
}

// FromTorrent fills the torrent fields of a Config: info hash, tracker
// tiers, private flag and Left = the full size.
func FromTorrent(t *torrentmeta.Torrent) Config {
	c := Config{InfoHash: t.InfoHash, Trackers: t.Trackers, Private: t.Private, Left: t.TotalLength}
	if t.Hybrid {
		c.AlsoInfoHash = t.InfoHashV2Truncated()
	}
	return c
}

// FromMagnet fills the magnet fields of a Config: info hash, each "tr" as
// its own tier (BEP 9 gives no tiers), "x.pe" peers given as IP:port (host
// names are not resolved), Left unknown. The second result lists x.pe
// entries that were skipped.
func FromMagnet(m *torrentmeta.Magnet) (Config, []string) {
	cfg := Config{InfoHash: m.InfoHash, AlsoInfoHash: m.TruncatedV2(), Left: -1}
	for _, tr := range m.Trackers {
		cfg.Trackers = append(cfg.Trackers, []string{tr})
	}
	var skipped []string
	for _, p := range m.Peers {
		ap, err := netip.ParseAddrPort(p)
		if err != nil {
			skipped = append(skipped, p)
			continue
		}
		cfg.Peers = append(cfg.Peers, ap)
	}
	return cfg, skipped
}

// Summary is the outcome of a run, for the final {"summary":...} line.
type Summary struct {
	InfoHash string                 `json:"info_hash"`
	Started  time.Time              `json:"started"`
	Duration float64                `json:"duration_s"`
	Peers    int                    `json:"peers"`
	BySource map[string]int         `json:"by_source"`
	Invalid  int                    `json:"invalid"`
	Full     int                    `json:"full"`
	Trackers []trackerclient.Status `json:"trackers"`
	DHT      *DHTSummary            `json:"dht,omitempty"`
	// PacketsSent totals tracker requests/packets and DHT datagrams.
	PacketsSent int64    `json:"packets_sent"`
	Errors      []string `json:"errors,omitempty"`
}

// DHTSummary is the DHT part of a Summary.
type DHTSummary struct {
	dhtsearch.Stats
	Error string `json:"error,omitempty"`
}

// Discoverer runs one discovery.
type Discoverer struct {
	cfg  Config
	book *addrbook.Book
	log  *slog.Logger

	// announcers: one per swarm (InfoHash, then AlsoInfoHash).
	announcers []*trackerclient.Announcer

	mu       sync.Mutex
	searcher *dhtsearch.Searcher // created by Run
	stopDHT  context.CancelFunc  // ends the DHT search (see StopDHT)
	stopLSD  context.CancelFunc  // ends LSD (MarkPrivate)
	private  bool                // learnt from metadata: no DHT from then on
	started  time.Time
	ended    time.Time
	dhtErr   error
	errs     []string
}

// New checks cfg and prepares the sources; nothing is sent until Run.
func New(cfg Config) (*Discoverer, error) {
	if cfg.InfoHash == (infohash.T{}) {
		return nil, fmt.Errorf("%w: no info hash", ErrConfig)
	}
	if cfg.PeerID == ([20]byte{}) {
		cfg.PeerID = peerid.New(peerid.Prefix)
	}
	if cfg.NumWant == 0 {
		cfg.NumWant = DefaultNumWant
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Book == nil {
		cfg.Book = addrbook.New(addrbook.Options{})
	}
	d := &Discoverer{cfg: cfg, book: cfg.Book, log: cfg.Logger}
	cfg.HTTP.DenyPrivate = cfg.DenyPrivateTrackers
	cfg.UDP.DenyPrivate = cfg.DenyPrivateTrackers
	if cfg.UDP.Logger == nil {
		cfg.UDP.Logger = cfg.Logger
	}
	for _, ih := range cfg.swarms() {
		if len(cfg.Trackers) == 0 {
			break
		}
		a, err := trackerclient.NewAnnouncer(trackerclient.AnnouncerConfig{
			Tiers: cfg.Trackers,
			Dial:  func(u string) (trackerclient.Client, error) { return Dial(u, cfg.HTTP, cfg.UDP) },
			Request: trackerclient.Request{
				InfoHash: ih,
				PeerID:   cfg.PeerID,
				Port:     cfg.Port,
				Left:     cfg.Left,
				Key:      trackerclient.NewKey(),
				NumWant:  cfg.NumWant,
			},
			Stats: func() (int64, int64) {
				var up, down int64
				if cfg.Uploaded != nil {
					up = cfg.Uploaded()
				}
				if cfg.Downloaded != nil {
					down = cfg.Downloaded()
				}
				return up, down
			},
			StrictTiers: cfg.StrictTiers,
			Floor:       cfg.AnnounceFloor,
			RetryBase:   cfg.TrackerRetry,
			Scrape:      !cfg.NoScrape,
			OnPeers:     d.trackerPeers,
			Logger:      cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		d.announcers = append(d.announcers, a)
	}
	return d, nil
}

// swarms are the info hashes searched: InfoHash, and AlsoInfoHash if set.
func (c Config) swarms() []infohash.T {
	if c.AlsoInfoHash == (infohash.T{}) || c.AlsoInfoHash == c.InfoHash {
		return []infohash.T{c.InfoHash}
	}
	return []infohash.T{c.InfoHash, c.AlsoInfoHash}
}

// Dial makes the tracker client for a URL by its scheme.
func Dial(rawURL string, h httptracker.Options, u udptracker.Options) (trackerclient.Client, error) {
	pu, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("tracker url %s: %w", trackerclient.Redact(rawURL), err)
	}
	switch pu.Scheme {
	case "http", "https":
		return httptracker.New(rawURL, h)
	case "udp":
		return udptracker.New(rawURL, u)
	}
	return nil, fmt.Errorf("tracker url %s: %w", trackerclient.Redact(rawURL), trackerclient.ErrUnsupportedScheme)
}

// Book returns the address book the run fills; follow it with
// Book().Watch() to stream peers as they are found.
func (d *Discoverer) Book() *addrbook.Book { return d.book }

func (d *Discoverer) excluded(a netip.AddrPort) bool {
	n, err := addrbook.Normalize(a)
	if err != nil {
		return false
	}
	for _, x := range d.cfg.Exclude {
		if xn, err := addrbook.Normalize(x); err == nil && xn == n {
			return true
		}
	}
	return false
}

func (d *Discoverer) add(a netip.AddrPort, src string) {
	if d.excluded(a) {
		return
	}
	if _, err := d.book.Add(a, src, 0); err != nil {
		d.log.Debug("peer refused", "addr", a, "source", src, "err", err)
	}
}

func (d *Discoverer) trackerPeers(u string, peers []trackerclient.Peer) {
	src := addrbook.Tracker(u)
	for _, p := range peers {
		d.add(p.Addr, src)
	}
}

func (d *Discoverer) dhtPeer(a netip.AddrPort) { d.add(a, addrbook.SourceDHT) }

// runLSD listens for (and sends) Local Service Discovery announces until
// ctx ends; it reports whether it could run.
func (d *Discoverer) runLSD(ctx context.Context) bool {
	cfg := lsd.Config{InfoHash: d.cfg.InfoHash, Port: d.cfg.Port, Logger: d.log}
	if d.cfg.LSDInterface != "" {
		ifi, err := net.InterfaceByName(d.cfg.LSDInterface)
		if err != nil {
			d.noteErr(fmt.Errorf("lsd: %w", err))
			return false
		}
		cfg.Interface = ifi
	}
	if err := lsd.Run(ctx, cfg, func(a netip.AddrPort) { d.add(a, addrbook.SourceLSD) }); err != nil {
		d.noteErr(err)
		return false
	}
	return true
}

// AddPEX records the added peers of a PEX message received from the peer
// at from, with their flags, and returns how many were new. Private
// torrents ignore PEX (BEP 27): nothing is recorded.
func (d *Discoverer) AddPEX(from netip.AddrPort, m pex.Message) int {
	if d.cfg.Private {
		return 0
	}
	src := addrbook.PEX(from)
	n := 0
	for _, p := range m.Added {
		if d.excluded(p.Addr) {
			continue
		}
		if isNew, err := d.book.Add(p.Addr, src, p.Flags); err == nil && isNew {
			n++
		}
	}
	return n
}

// AddIncoming records a peer that connected to us. Pass its listen
// address (its IP with the port from its extension handshake "p"), not the
// ephemeral source port of the connection.
func (d *Discoverer) AddIncoming(listen netip.AddrPort) {
	d.add(listen, addrbook.SourceIncoming)
}

// Run runs every source concurrently until ctx ends or Duration passes,
// then sends the trackers' stopped announces (bounded) and closes the
// book, so that cursors end. It returns ErrNoSource when nothing could run,
// else nil; per-source failures are in the Summary.
func (d *Discoverer) Run(ctx context.Context) error {
	defer d.book.Close()
	if d.cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.cfg.Duration)
		defer cancel()
	}
	d.mu.Lock()
	d.started = time.Now()
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.ended = time.Now()
		d.mu.Unlock()
	}()
	for _, p := range d.cfg.Peers {
		d.add(p, addrbook.SourceMagnet)
	}
	var wg sync.WaitGroup
	lsdRan := false
	if d.cfg.LSD && !d.cfg.Private {
		lctx, stop := context.WithCancel(ctx)
		d.mu.Lock()
		d.stopLSD = stop
		if d.private {
			stop()
		}
		d.mu.Unlock()
		lsdRan = true
		wg.Go(func() {
			defer stop()
			if !d.runLSD(lctx) {
				d.mu.Lock()
				lsdRan = false
				d.mu.Unlock()
			}
		})
	}
	for _, a := range d.announcers {
		wg.Go(func() {
			if err := a.Run(ctx); err != nil {
				d.noteErr(fmt.Errorf("trackers: %w", err))
			}
		})
	}
	useDHT := d.cfg.DHT && !d.cfg.Private
	if useDHT {
		s, err := dhtsearch.New(dhtsearch.Config{
			InfoHash:     d.cfg.InfoHash,
			AlsoInfoHash: d.cfg.AlsoInfoHash,
			Bootstrap:    d.cfg.Bootstrap,
			Listen:       d.cfg.DHTListen,
			AnnouncePort: int(d.cfg.Port),
			Repeat:       d.cfg.DHTRepeat,
			ResendDelay:  d.cfg.DHTResendDelay,
			OnPeer:       d.dhtPeer,
			Logger:       d.log,
		})
		if err != nil {
			d.dhtFailed(err)
			if len(d.announcers) == 0 && len(d.cfg.Peers) == 0 {
				wg.Wait()
				return fmt.Errorf("%w: %w", ErrNoSource, err) // nothing left to run
			}
		} else {
			dctx, stop := context.WithCancel(ctx)
			d.mu.Lock()
			d.searcher, d.stopDHT = s, stop
			private := d.private
			d.mu.Unlock()
			if private {
				stop()
			}
			wg.Go(func() {
				defer stop()
				if err := s.Run(dctx); err != nil && ctx.Err() == nil && dctx.Err() == nil {
					d.dhtFailed(err)
				}
			})
		}
	}
	wg.Wait()
	if len(d.announcers) == 0 && len(d.cfg.Peers) == 0 && !lsdRan {
		if !useDHT {
			return ErrNoSource
		}
		d.mu.Lock()
		err := d.dhtErr
		d.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNoSource, err)
		}
	}
	return nil
}

// MarkPrivate says the torrent turned out private (BEP 27: its metadata,
// fetched by magnet, says private=1): the DHT search ends at once and no
// other starts. Safe from any goroutine, before or during Run.
func (d *Discoverer) MarkPrivate() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.private {
		return
	}
	d.private = true
	if d.stopDHT != nil {
		d.stopDHT()
	}
	if d.stopLSD != nil {
		d.stopLSD()
	}
	d.log.Info("the torrent is private (BEP 27): DHT search and LSD stopped")
}

func (d *Discoverer) dhtFailed(err error) {
	d.mu.Lock()
	d.dhtErr = err
	d.mu.Unlock()
	d.noteErr(err)
}

func (d *Discoverer) noteErr(err error) {
	d.log.Warn("discovery source failed", "err", err)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.errs = append(d.errs, err.Error())
}

// PacketsSent returns the tracker requests/packets and DHT datagrams sent
// so far.
func (d *Discoverer) PacketsSent() int64 {
	var n int64
	for _, a := range d.announcers {
		n += a.Sent()
	}
	d.mu.Lock()
	s := d.searcher
	d.mu.Unlock()
	if s != nil {
		n += s.Stats().PacketsSent
	}
	return n
}

// Summary returns the counts so far (final once Run returned).
func (d *Discoverer) Summary() Summary {
	st := d.book.Stats()
	d.mu.Lock()
	s := Summary{
		InfoHash: d.cfg.InfoHash.HexString(),
		Started:  d.started,
		Peers:    st.Addrs,
		BySource: st.BySource,
		Invalid:  st.Invalid,
		Full:     st.Full,
		Errors:   append([]string(nil), d.errs...),
	}
	end := d.ended
	if end.IsZero() {
		end = time.Now()
	}
	if !d.started.IsZero() {
		s.Duration = end.Sub(d.started).Seconds()
	}
	dhtErr, searcher := d.dhtErr, d.searcher
	d.mu.Unlock()
	for _, a := range d.announcers { // the v2 swarm's after (AlsoInfoHash)
		s.Trackers = append(s.Trackers, a.Status()...)
	}
	if searcher != nil || dhtErr != nil {
		s.DHT = &DHTSummary{}
		if searcher != nil {
			s.DHT.Stats = searcher.Stats()
		}
		if dhtErr != nil {
			s.DHT.Error = dhtErr.Error()
		}
	}
	s.PacketsSent = d.PacketsSent()
	return s
}
