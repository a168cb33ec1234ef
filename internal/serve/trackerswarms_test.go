package serve

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
)

// TestTrackerSwarmsIdleAndLimit: a tracker swarm without a report for
// TrackerSwarmIdle is forgotten; one whose metadata is known joins the
// scan's swarms under its tracker path, unless MaxSwarms are already
// audited (the watch folder's first).
func TestTrackerSwarmsIdleAndLimit(t *testing.T) {
	dir := t.TempDir()
	_, tor, err := swarmsim.NewPayload("tracker-swarm.bin", 1<<20, 64<<10, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, metadataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	named := writeTorrent(t, filepath.Join(dir, metadataDir), tor, "")
	if err := os.Rename(named, filepath.Join(dir, metadataDir, tor.InfoHash.HexString()+".torrent")); err != nil {
		t.Fatal(err)
	}
	stale := infohash.T{0xee}
	for _, c := range []struct {
		name      string
		max       int
		watched   int // swarms of the watch folder already in the scan
		wantAdded bool
	}{
		{"added", 0, 0, true},
		{"under the limit", 2, 1, true},
		{"at the limit", 1, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Service{cfg: Config{WatchDir: dir, TrackerSwarms: true, TrackerSwarmIdle: time.Hour, MaxSwarms: c.max},
				log: slog.New(slog.DiscardHandler), loaded: map[string]loadedFile{}, resolving: map[infohash.T]bool{},
				trackerSwarms: map[infohash.T]*trackerSwarm{
					tor.InfoHash: {name: "tracker-swarm.bin", last: time.Now()},
					stale:        {name: "gone", last: time.Now().Add(-2 * time.Hour)},
				}}
			seen := map[infohash.T]string{}
			for i := range c.watched {
				seen[infohash.T{byte(i + 1)}] = "w.torrent"
			}
			s.addTrackerSwarms(context.Background(), seen)
			if _, ok := s.trackerSwarms[stale]; ok {
				t.Error("the idle tracker swarm is still known")
			}
			path, added := seen[tor.InfoHash]
			if added != c.wantAdded || (added && path != trackerSource+tor.InfoHash.HexString()) {
				t.Errorf("added %v at %q, want %v", added, path, c.wantAdded)
			}
			if added && s.loaded[path].torrent.InfoHash != tor.InfoHash {
				t.Errorf("loaded %+v", s.loaded[path])
			}
			s.wg.Wait()
		})
	}
}
