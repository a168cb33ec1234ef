package serve

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// maxWatchFiles bounds the files one scan considers, so a folder flooded
// with files cannot make a scan unbounded.
const maxWatchFiles = 100000

// scan reads the watch folder: every .torrent file that loads is audited,
// and a swarm whose file is gone stops. A file that does not load is
// logged once per modification.
func (s *Service) scan(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	entries, err := os.ReadDir(s.cfg.WatchDir)
	if err != nil {
		s.log.Warn("watch folder unreadable", "dir", s.cfg.WatchDir, "err", err)
		return
	}
	seen := map[infohash.T]string{}
	for i, e := range entries {
		if i >= maxWatchFiles {
			s.log.Warn("watch folder: too many files, the rest ignored", "limit", maxWatchFiles)
			break
		}
		path := filepath.Join(s.cfg.WatchDir, e.Name())
		var t *torrentmeta.Torrent
		switch {
		case e.IsDir():
			continue
		case magnetFile(e.Name()):
			var peers []netip.AddrPort
			if t, peers = s.magnetTorrent(ctx, path); t == nil {
				continue // resolving, or not a magnet
			}
			s.mu.Lock()
			s.loaded[path] = loadedFile{torrent: t, peers: peers}
			s.mu.Unlock()
		case strings.EqualFold(filepath.Ext(e.Name()), ".torrent"):
			var ok bool
			if t, ok = s.load(path, e); !ok {
				continue
			}
		default:
			continue
		}
		if _, dup := seen[t.InfoHash]; !dup {
			if s.cfg.MaxSwarms > 0 && len(seen) >= s.cfg.MaxSwarms {
				if !s.warnedMax {
					s.log.Warn("watch folder: more swarms than --max-swarms, the rest wait", "max", s.cfg.MaxSwarms)
					s.warnedMax = true
				}
				continue
			}
			seen[t.InfoHash] = path
		}
	}
	s.addTrackerSwarms(ctx, seen)
	if s.cfg.NodeID != "" {
		s.lease(ctx, seen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for path, lf := range s.loaded {
		if isTrackerSwarm(path) {
			if lf.torrent == nil || seen[lf.torrent.InfoHash] != path {
				delete(s.loaded, path)
			}
			continue
		}
		if _, err := os.Stat(path); err != nil {
			delete(s.loaded, path)
		}
	}
	for ih := range s.swarms {
		if _, ok := seen[ih]; !ok || (s.cfg.NodeID != "" && !s.leased[ih]) {
			s.drop(ih)
		}
	}
	for ih, path := range seen {
		if s.cfg.NodeID != "" && !s.leased[ih] {
			continue // another node audits it
		}
		if _, ok := s.swarms[ih]; !ok {
			if t, ok := s.loaded[path]; ok && ctx.Err() == nil {
				s.start(path, t.torrent, t.peers)
			}
		}
	}
}

// loadedFile is a watch-folder file as last read.
type loadedFile struct {
	mod     time.Time
	torrent *torrentmeta.Torrent // nil when it did not load
	peers   []netip.AddrPort     // a magnet's x.pe peers
}

// load reads a .torrent file, again only when it changed.
func (s *Service) load(path string, e os.DirEntry) (*torrentmeta.Torrent, bool) {
	info, err := e.Info()
	if err != nil {
		return nil, false
	}
	s.mu.Lock()
	prev, known := s.loaded[path]
	s.mu.Unlock()
	if known && prev.mod.Equal(info.ModTime()) {
		return prev.torrent, prev.torrent != nil
	}
	t, err := torrentmeta.Load(path)
	if err != nil {
		s.log.Warn("watch folder: not a torrent we can audit", "file", path, "err", err)
		t = nil
	}
	s.mu.Lock()
	s.loaded[path] = loadedFile{mod: info.ModTime(), torrent: t}
	s.mu.Unlock()
	return t, t != nil
}

// nodeLease names a node's own heartbeat lease: the nodes holding one
// are the live nodes.
const nodeLease = "node:"

// lease shares the folder's swarms among the live nodes: every node renews
// its heartbeat lease, and takes (or renews) the lease of each swarm that
// rendezvous hashing assigns to it among the live nodes, so the swarms
// spread evenly and move only when a node comes or goes. A swarm it holds
// but that now belongs to another (a node joined) is released for it; a
// dead node's swarms are taken once its leases expire.
func (s *Service) lease(ctx context.Context, seen map[infohash.T]string) {
	me, ttl, st := s.cfg.NodeID, s.cfg.LeaseTTL, s.cfg.Store
	warn := func(what string, err error) {
		if ctx.Err() == nil {
			s.log.Warn(what, "err", err)
		}
	}
	if _, err := st.AcquireLease(ctx, nodeLease+me, me, ttl); err != nil {
		warn("node heartbeat", err)
	}
	live := map[string]bool{me: true}
	ls, err := st.Leases(ctx)
	if err != nil {
		warn("leases", err)
	}
	for _, l := range ls {
		if strings.HasPrefix(l.Name, nodeLease) {
			live[l.Node] = true
		}
	}
	s.mu.Lock()
	prev := s.leased
	s.mu.Unlock()
	held := map[infohash.T]bool{}
	for ih := range seen {
		if preferred(ih, live) != me {
			if prev[ih] {
				if err := st.ReleaseLease(ctx, ih.HexString(), me); err != nil {
					warn("hand a swarm over", err)
				}
			}
			continue
		}
		ok, err := st.AcquireLease(ctx, ih.HexString(), me, ttl)
		if err != nil {
			warn("lease", err)
			continue // not renewed: dropped, taken again at the next scan
		}
		if ok {
			held[ih] = true
		}
	}
	for ih := range prev {
		if _, ok := seen[ih]; !ok {
			if err := st.ReleaseLease(ctx, ih.HexString(), me); err != nil {
				warn("release lease", err)
			}
		}
	}
	s.mu.Lock()
	s.leased = held
	s.mu.Unlock()
}

// preferred is the live node rendezvous hashing gives a swarm to.
func preferred(ih infohash.T, live map[string]bool) string {
	var best string
	var bestScore uint64
	for n := range live {
		sum := sha256.Sum256(append(append([]byte(n), 0), ih[:]...)) // the same on every node
		if sc := binary.BigEndian.Uint64(sum[:8]); best == "" || sc > bestScore || (sc == bestScore && n < best) {
			best, bestScore = n, sc
		}
	}
	return best
}
