package store

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// BenchmarkPeerHour records one hour of a 1,000-peer swarm the way an audit
// sees it and reports the database size per peer-hour. The swarm: a 1 GiB
// torrent of 2,000 512 KiB pieces; 30% seeders; leechers start 0-90%
// complete and gain 0-20 pieces a minute (mean ~80 KiB/s) in random order,
// each gain a HAVE; one bitfield snapshot per peer per minute.
func BenchmarkPeerHour(b *testing.B) {
	const (
		peers   = 1000
		pieces  = 2000
		minutes = 60
	)
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		path := filepath.Join(dir, "bench.db")
		ctx := context.Background()
		s, err := Open(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		sw, err := s.EnsureSwarm(ctx, SwarmInfo{InfoHash: ih(1), NumPieces: pieces})
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(42, 42))
		type peerState struct {
			addr  netip.AddrPort
			bf    bitfield.Bitfield
			order []int // pieces not yet had, in the order they will come
			rate  int
		}
		ps := make([]*peerState, peers)
		for i := range ps {
			p := &peerState{addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}), 6881)}
			if rng.Float64() < 0.3 {
				p.bf = bitfield.Full(pieces)
			} else {
				p.bf = bitfield.New(pieces)
				perm := rng.Perm(pieces)
				have := rng.IntN(pieces * 9 / 10)
				for _, k := range perm[:have] {
					p.bf.Set(k)
				}
				p.order = perm[have:]
				p.rate = rng.IntN(21)
			}
			ps[i] = p
		}
		b.StartTimer()
		start := time.Now()
		haves := 0
		for m := 0; m < minutes; m++ {
			minute := t0.Add(time.Duration(m) * time.Minute)
			for _, p := range ps {
				for k := 0; k < p.rate && len(p.order) > 0; k++ {
					piece := p.order[0]
					p.order = p.order[1:]
					p.bf.Set(piece)
					at := minute.Add(time.Duration(rng.IntN(60_000)) * time.Millisecond)
					if err := s.AddHave(ctx, sw, p.addr, at, piece); err != nil {
						b.Fatal(err)
					}
					haves++
				}
				if err := s.AddSnapshot(ctx, sw, p.addr, minute.Add(59*time.Second), p.bf); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		readStart := time.Now()
		snaps, err := s.Snapshots(ctx, sw)
		if err != nil || len(snaps) != peers {
			b.Fatalf("read back %d peers' snapshots: %v", len(snaps), err)
		}
		if _, err := s.Haves(ctx, sw); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(readStart).Seconds(), "readback-s")
		tables := tableSizes(ctx, s)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		size := fileSize(b, path) + fileSize(b, path+"-wal")
		peerHours := float64(peers) * minutes / 60
		b.ReportMetric(float64(size)/peerHours, "dbB/peer-hour")
		b.ReportMetric(float64(haves)/peerHours, "HAVEs/peer-hour")
		b.ReportMetric(float64(peers*minutes+haves)/elapsed.Seconds(), "obs/s")
		if n, ok := tables["obs_snapshots"]; ok {
			b.ReportMetric(float64(n+tables["obs_snapshots_peer"])/(peers*minutes), "B/snapshot")
			b.ReportMetric(float64(tables["obs_haves"]+tables["obs_have_batches"]+tables["obs_have_batches_swarm"])/float64(haves), "B/HAVE")
		}
		b.StartTimer()
	}
}

// tableSizes reads per-table bytes from SQLite's dbstat table when the build
// has it (nil otherwise).
func tableSizes(ctx context.Context, s *Store) map[string]int64 {
	rows, err := s.r.QueryContext(ctx, `SELECT name, SUM(pgsize) FROM dbstat GROUP BY name`)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if rows.Scan(&name, &n) == nil {
			out[name] = n
		}
	}
	return out
}

func fileSize(b *testing.B, path string) int64 {
	fi, err := os.Stat(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

func benchStore(b *testing.B, engine string, pieces int) (*Store, SwarmID) {
	path := filepath.Join(b.TempDir(), "bench.db")
	if engine == postgresDialect.name {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		path = testclients.StartPostgres(ctx, b)
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	sw, err := s.EnsureSwarm(context.Background(), SwarmInfo{InfoHash: ih(1), NumPieces: pieces})
	if err != nil {
		b.Fatal(err)
	}
	return s, sw
}

// onEngines runs a store benchmark on SQLite and on PostgreSQL (a
// throwaway cluster on loopback; skipped without PostgreSQL outside CI),
// and reports rows/s, the rows committed per second.
func onEngines(b *testing.B, pieces int, fn func(b *testing.B, s *Store, sw SwarmID)) {
	for _, engine := range []string{sqliteDialect.name, postgresDialect.name} {
		b.Run("engine="+engine, func(b *testing.B) {
			s, sw := benchStore(b, engine, pieces)
			fn(b, s, sw)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkAddSnapshot is the cost of one committed snapshot (mostly deltas).
func BenchmarkAddSnapshot(b *testing.B) {
	const pieces = 2000
	onEngines(b, pieces, func(b *testing.B, s *Store, sw SwarmID) {
		ctx := context.Background()
		bfs := make([]bitfield.Bitfield, 100)
		for i := range bfs {
			bfs[i] = bitfield.New(pieces)
		}
		i := 0
		for b.Loop() {
			p := i % len(bfs)
			bfs[p].Set((i * 7) % pieces)
			addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(p)}), 1)
			if err := s.AddSnapshot(ctx, sw, addr, t0.Add(time.Duration(i)*time.Millisecond), bfs[p]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkAddHave is the cost of one HAVE event, batched 100 per commit
// (COPY on PostgreSQL).
func BenchmarkAddHave(b *testing.B) {
	onEngines(b, 1<<20, func(b *testing.B, s *Store, sw SwarmID) {
		ctx := context.Background()
		i := 0
		for b.Loop() {
			addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i % 200)}), 1)
			if err := s.AddHave(ctx, sw, addr, t0.Add(time.Duration(i)*time.Microsecond), i%(1<<20)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkRecordAnnounce is the cost of one committed announce.
func BenchmarkRecordAnnounce(b *testing.B) {
	onEngines(b, 10, func(b *testing.B, s *Store, _ SwarmID) {
		i := 0
		for b.Loop() {
			a := reported.Announce{At: t0.Add(time.Duration(i) * time.Millisecond), InfoHash: ih(1),
				IP: netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}), Port: 6881, Uploaded: int64(i), Source: "bench"}
			if err := s.RecordAnnounce(a); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
