package serve

import (
	"context"
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
		if e.IsDir() || !strings.EqualFold(filepath.Ext(e.Name()), ".torrent") {
			continue
		}
		path := filepath.Join(s.cfg.WatchDir, e.Name())
		t, ok := s.load(path, e)
		if !ok {
			continue
		}
		if _, dup := seen[t.InfoHash]; !dup {
			seen[t.InfoHash] = path
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for path := range s.loaded {
		if _, err := os.Stat(path); err != nil {
			delete(s.loaded, path)
		}
	}
	for ih := range s.swarms {
		if _, ok := seen[ih]; !ok {
			s.drop(ih)
		}
	}
	for ih, path := range seen {
		if _, ok := s.swarms[ih]; !ok {
			if t, ok := s.loaded[path]; ok && ctx.Err() == nil {
				s.start(path, t.torrent)
			}
		}
	}
}

// loadedFile is a watch-folder file as last read.
type loadedFile struct {
	mod     time.Time
	torrent *torrentmeta.Torrent // nil when it did not load
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
