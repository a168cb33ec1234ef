// Package frompeers learns about a swarm from its own peers when no audit
// runs (`swarmaudit discover`), and is then the one owner of the peer
// connections (an audit's collector, package collect, does the same work
// beside its probes). It keeps idle watch connections to the peers other
// sources found, to read their PEX messages (BEP 11); it fetches the info
// dictionary by ut_metadata when only a magnet is known (BEP 9); and it
// accepts incoming connections, plaintext and MSE, since peers behind NAT
// can often only be seen that way.
package frompeers

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/observation/watch"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// Config says what to learn and where to put it.
type Config struct {
	InfoHash infohash.T
	// Torrent is nil when only a magnet is known: metadata is fetched from
	// the first peer that serves it, and watches start after that.
	Torrent *torrentmeta.Torrent
	// PEX keeps watch connections to read ut_pex (off for private torrents).
	PEX bool
	// Listener, when set, accepts incoming peer connections.
	Listener net.Listener
	// MaxConns bounds live connections (default 32).
	MaxConns int
	// Watch carries our peer_id, encryption policy and client name.
	Watch watch.Options
	Book  *addrbook.Book
	// AddPEX and AddIncoming record what peers told us (discover.Discoverer
	// has both).
	AddPEX      func(from netip.AddrPort, m pex.Message) int
	AddIncoming func(listen netip.AddrPort)
	// OnMetadata is called once with the torrent fetched by magnet.
	OnMetadata func(*torrentmeta.Torrent)
	Logger     *slog.Logger
}

// Stats count what happened.
type Stats struct {
	Watched          int64  `json:"watched"`
	PEXMessages      int64  `json:"pex_messages"`
	PEXAdded         int64  `json:"pex_added"`
	Incoming         int64  `json:"incoming"`
	MetadataAttempts int64  `json:"metadata_attempts"`
	MetadataFrom     string `json:"metadata_from,omitempty"`
}

type runner struct {
	cfg   Config
	sem   chan struct{}
	wg    sync.WaitGroup
	stats struct {
		watched, pexMsgs, pexAdded, incoming, metaTries atomic.Int64
	}
	mu       sync.Mutex
	torrent  *torrentmeta.Torrent
	metaFrom string
}

// Run works until ctx ends, then waits for its connections to close.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	if cfg.Book == nil {
		return Stats{}, errors.New("frompeers: no address book")
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 32
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Watch.InfoHash = cfg.InfoHash
	r := &runner{cfg: cfg, sem: make(chan struct{}, cfg.MaxConns), torrent: cfg.Torrent}
	if cfg.Listener != nil {
		r.wg.Add(1)
		go r.acceptLoop(ctx)
		stop := context.AfterFunc(ctx, func() { cfg.Listener.Close() })
		defer stop()
	}
	found := make(chan netip.AddrPort)
	go func() {
		defer close(found)
		cur := cfg.Book.Watch()
		for {
			e, err := cur.Next(ctx)
			if err != nil {
				return
			}
			select {
			case found <- e.Addr:
			case <-ctx.Done():
				return
			}
		}
	}()
	metaDone := make(chan *torrentmeta.Torrent, 1)
	var waiting []netip.AddrPort // found before the metadata
	fetching := false
	for {
		select {
		case <-ctx.Done():
			if found != nil {
				for range found {
				}
			}
			r.wg.Wait()
			return r.snapshot(), nil
		case t := <-metaDone:
			fetching = false
			if t == nil {
				// That attempt failed: try the next waiting peer.
				if next := r.nextFetch(ctx, &waiting, metaDone); next {
					fetching = true
				}
				continue
			}
			for _, a := range waiting {
				r.startWatch(ctx, a)
			}
			waiting = nil
		case a, ok := <-found:
			if !ok {
				found = nil
				continue
			}
			if r.currentTorrent() == nil {
				waiting = append(waiting, a)
				if !fetching && r.nextFetch(ctx, &waiting, metaDone) {
					fetching = true
				}
				continue
			}
			r.startWatch(ctx, a)
		}
	}
}

func (r *runner) currentTorrent() *torrentmeta.Torrent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.torrent
}

// nextFetch starts a metadata fetch from the oldest waiting peer (which
// stays in waiting, to be watched once metadata is known).
func (r *runner) nextFetch(ctx context.Context, waiting *[]netip.AddrPort, done chan<- *torrentmeta.Torrent) bool {
	tried := int(r.stats.metaTries.Load())
	if tried >= len(*waiting) {
		return false
	}
	addr := (*waiting)[tried]
	r.stats.metaTries.Add(1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		t, err := watch.FetchMetadata(fctx, addr, r.cfg.Watch)
		if err != nil {
			r.cfg.Logger.Debug("metadata fetch failed", "peer", addr, "err", err)
			done <- nil
			return
		}
		r.mu.Lock()
		first := r.torrent == nil
		if first {
			r.torrent, r.metaFrom = t, addr.String()
		}
		r.mu.Unlock()
		if first && r.cfg.OnMetadata != nil {
			r.cfg.OnMetadata(t)
		}
		done <- t
	}()
	return true
}

// startWatch keeps an idle connection to a peer for its PEX messages.
func (r *runner) startWatch(ctx context.Context, addr netip.AddrPort) {
	t := r.currentTorrent()
	if !r.cfg.PEX || t.Private {
		return // BEP 27: a private torrent's peers come from its trackers only
	}
	select {
	case r.sem <- struct{}{}:
	default:
		return // at the connection cap: this peer is not watched
	}
	o := r.cfg.Watch
	o.NumPieces = t.NumPieces
	r.stats.watched.Add(1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.sem }()
		_, err := watch.Watch(ctx, addr, o, r.events(addr))
		if err != nil {
			r.cfg.Logger.Debug("watch ended", "peer", addr, "err", err)
		}
	}()
}

func (r *runner) events(from netip.AddrPort) watch.Events {
	return watch.Events{
		PEX: func(_ time.Time, m pex.Message) {
			r.stats.pexMsgs.Add(1)
			if t := r.currentTorrent(); t != nil && t.Private {
				return
			}
			if r.cfg.AddPEX != nil {
				r.stats.pexAdded.Add(int64(r.cfg.AddPEX(from, m)))
			}
		},
	}
}

// acceptLoop answers incoming connections for our torrent, plaintext or
// MSE, and records the peer's listen address from its extension handshake.
func (r *runner) acceptLoop(ctx context.Context) {
	defer r.wg.Done()
	for {
		raw, err := r.cfg.Listener.Accept()
		if err != nil {
			return
		}
		select {
		case r.sem <- struct{}{}:
		default:
			raw.Close()
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.sem }()
			c, err := watch.Accept(ctx, raw, r.cfg.Watch)
			if err != nil {
				r.cfg.Logger.Debug("incoming refused", "err", err)
				return
			}
			r.stats.incoming.Add(1)
			t := r.currentTorrent()
			if t == nil {
				c.Close() // no metadata yet: nothing to check its messages against
				return
			}
			o := r.cfg.Watch
			o.NumPieces, o.Private = t.NumPieces, o.Private || t.Private
			ev := r.events(c.Remote)
			ev.Connected = func(c *peerwire.Conn, ext *peerwire.ExtHandshake) {
				if ext != nil && ext.ListenPort > 0 && r.cfg.AddIncoming != nil {
					r.cfg.AddIncoming(netip.AddrPortFrom(c.Remote.Addr(), uint16(ext.ListenPort)))
				}
			}
			watch.Follow(ctx, c, o, ev)
		}()
	}
}

func (r *runner) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{
		Watched: r.stats.watched.Load(), PEXMessages: r.stats.pexMsgs.Load(), PEXAdded: r.stats.pexAdded.Load(),
		Incoming: r.stats.incoming.Load(), MetadataAttempts: r.stats.metaTries.Load(), MetadataFrom: r.metaFrom,
	}
}
