package serve

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/swarmaudit/swarmaudit/internal/discovery"
	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/observation/frompeers"
	"github.com/swarmaudit/swarmaudit/internal/observation/watch"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// A watch folder may hold .magnet files (one magnet URI each). The info
// dictionary is fetched from the swarm's peers (BEP 9) — found from the
// magnet's trackers, its x.pe peers and, for a torrent not known to be
// private, the DHT — and kept as a .torrent in metadataDir under the
// folder; from then on the magnet is audited like a .torrent file.
const (
	metadataDir     = ".swarmaudit-metadata"
	maxResolving    = 4               // magnets resolved at once
	resolveDeadline = 5 * time.Minute // per attempt; a later scan tries again
)

// magnetTorrent returns the torrent of a magnet file once its metadata is
// known, with the magnet's x.pe peers; otherwise it starts resolving it
// and returns nil.
func (s *Service) magnetTorrent(ctx context.Context, path string) (*torrentmeta.Torrent, []netip.AddrPort) {
	raw, err := os.ReadFile(path)
	if err != nil || len(raw) > 64<<10 {
		s.log.Warn("watch folder: unreadable magnet file", "file", path, "err", err)
		return nil, nil
	}
	m, err := torrentmeta.ParseMagnet(strings.TrimSpace(string(raw)))
	if err != nil {
		s.log.Warn("watch folder: not a magnet", "file", path, "err", err)
		return nil, nil
	}
	t := s.metadata(ctx, m, false)
	if t == nil {
		return nil, nil
	}
	cfg, _ := discovery.FromMagnet(m) // the x.pe peers that are IP:port
	return t, cfg.Peers
}

// metadata returns the torrent of a magnet once its info dictionary is in
// metadataDir; otherwise it starts fetching it (at most maxResolving at
// once) and returns nil. A magnet known to be private (a private
// tracker's swarm) is never looked up in the DHT (BEP 27).
func (s *Service) metadata(ctx context.Context, m *torrentmeta.Magnet, private bool) *torrentmeta.Torrent {
	cached := filepath.Join(s.cfg.WatchDir, metadataDir, m.InfoHash.HexString()+".torrent")
	if t, err := torrentmeta.Load(cached); err == nil {
		return t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resolving[m.InfoHash] || len(s.resolving) >= maxResolving || ctx.Err() != nil {
		return nil
	}
	s.resolving[m.InfoHash] = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.resolve(ctx, m, cached, private)
		s.mu.Lock()
		delete(s.resolving, m.InfoHash)
		s.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("magnet: no metadata yet, trying again later", "swarm", m.InfoHash.HexString(), "err", err)
		}
	}()
	return nil
}

var errNoMetadata = errors.New("no peer served the metadata in time")

// resolve fetches a magnet's info dictionary and writes the .torrent.
func (s *Service) resolve(ctx context.Context, m *torrentmeta.Magnet, dst string, private bool) error {
	ctx, cancel := context.WithTimeout(ctx, resolveDeadline)
	defer cancel()
	dc, _ := discovery.FromMagnet(m)
	if !s.cfg.Trackers {
		dc.Trackers = nil
	}
	dc.DHT, dc.Logger = s.cfg.DHT && !private, s.log
	disc, err := discovery.New(dc)
	if errors.Is(err, discovery.ErrNoSource) || (err == nil && len(dc.Trackers) == 0 && !dc.DHT && len(dc.Peers) == 0) {
		return errors.New("the magnet names no source of peers (no tracker, no x.pe, DHT off)")
	}
	if err != nil {
		return err
	}
	book := addrbook.New(addrbook.Options{})
	var fetched *torrentmeta.Torrent
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { disc.Run(gctx); return nil }) // its failures are in its summary; the deadline bounds it
	g.Go(func() error { addrbook.Copy(gctx, book, disc.Book()); return nil })
	g.Go(func() error {
		c := s.cfg.Collect
		_, err := frompeers.Run(gctx, frompeers.Config{
			InfoHash: m.InfoHash, Book: book,
			Watch:  watch.Options{PeerID: peerid.New(peerid.Prefix), Policy: c.Policy, ClientName: peerid.OurName},
			Logger: s.log,
			OnMetadata: func(t *torrentmeta.Torrent) {
				if t.Private {
					disc.MarkPrivate() // BEP 27
				}
				fetched = t
				cancel()
			},
		})
		return err
	})
	g.Wait()
	if fetched == nil {
		return errNoMetadata
	}
	b, err := m.Metainfo(fetched, peerid.OurName)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	s.log.Info("magnet: metadata fetched", "swarm", m.InfoHash.HexString(), "name", fetched.Name)
	return os.Rename(tmp, dst)
}

// magnetFile reports whether a watch-folder entry is a magnet file.
func magnetFile(name string) bool { return strings.EqualFold(filepath.Ext(name), ".magnet") }
