package serve

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// With Config.TrackerSwarms the tracker's own database lists the swarms
// too: every torrent it records reports for is audited, its metadata
// fetched from the reporting peers (BEP 9; never the DHT, the tracker is
// private) and kept in metadataDir, and the swarm dropped once its
// torrent has gone TrackerSwarmIdle without a report.
const (
	trackerSource   = "tracker-db:" // the path of a tracker swarm in Service.loaded
	maxTrackerPeers = 32            // addresses kept per tracker swarm to fetch its metadata
)

// trackerSwarm is a torrent the tracker's database reported on; owned by
// Run's loop.
type trackerSwarm struct {
	name  string
	peers []netip.AddrPort // the latest reporting addresses, newest last
	last  time.Time        // when a report for it was last read
}

// noteTrackerSwarms records the torrents of reports read from the
// tracker's database.
func (s *Service) noteTrackerSwarms(anns []reported.Announce) {
	if !s.cfg.TrackerSwarms {
		return
	}
	now := time.Now()
	for _, a := range anns {
		ts := s.trackerSwarms[a.InfoHash]
		if ts == nil {
			ts = &trackerSwarm{name: s.cfg.TrackerDB.Name(a.InfoHash)}
			s.trackerSwarms[a.InfoHash] = ts
		}
		ts.last = now
		if ap := a.AddrPort(); ap.IsValid() && ap.Port() != 0 {
			ts.peers = slices.DeleteFunc(ts.peers, func(p netip.AddrPort) bool { return p == ap })
			ts.peers = append(ts.peers, ap)
			if len(ts.peers) > maxTrackerPeers {
				ts.peers = slices.Delete(ts.peers, 0, len(ts.peers)-maxTrackerPeers)
			}
		}
	}
}

// addTrackerSwarms adds the tracker's swarms whose metadata is known to
// the swarms of a scan (seen: info hash → path), forgets those gone idle,
// and starts fetching the metadata of the others. At most MaxSwarms are
// audited in all.
func (s *Service) addTrackerSwarms(ctx context.Context, seen map[infohash.T]string) {
	idle := time.Now().Add(-s.cfg.TrackerSwarmIdle)
	for ih, ts := range s.trackerSwarms {
		if ts.last.Before(idle) {
			delete(s.trackerSwarms, ih)
		}
	}
	for ih, ts := range s.trackerSwarms {
		if _, dup := seen[ih]; dup {
			continue
		}
		if s.cfg.MaxSwarms > 0 && len(seen) >= s.cfg.MaxSwarms {
			if !s.warnedMax {
				s.log.Warn("tracker database: more swarms than --max-swarms, the rest wait", "max", s.cfg.MaxSwarms, "known", len(s.trackerSwarms))
				s.warnedMax = true
			}
			return
		}
		m := &torrentmeta.Magnet{InfoHash: ih, Name: ts.name}
		for _, p := range ts.peers {
			m.Peers = append(m.Peers, p.String())
		}
		t := s.metadata(ctx, m, true)
		if t == nil {
			continue
		}
		path := trackerSource + ih.HexString()
		s.mu.Lock()
		s.loaded[path] = loadedFile{torrent: t, peers: slices.Clone(ts.peers)}
		s.mu.Unlock()
		seen[ih] = path
	}
}

// isTrackerSwarm reports whether a loaded path is a tracker swarm's.
func isTrackerSwarm(path string) bool { return strings.HasPrefix(path, trackerSource) }
