package reports

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// bigSwarm is a day-long audit of a 2000-piece torrent with `peers` peers,
// each snapshotted every 10 minutes and announcing every 30 minutes.
func bigSwarm(b *testing.B, peers int) *audit.Result {
	b.Helper()
	const n = 2000
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tor := &torrentmeta.Torrent{InfoHash: infohash.T{9}, Name: "big", PieceLength: 1 << 20, TotalLength: n << 20, NumPieces: n}
	rng := rand.New(rand.NewPCG(1, 2))
	ev := &audit.Evidence{Torrent: tor}
	for i := 0; i < peers; i++ {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}), 6881)
		var pid [20]byte
		copy(pid[:], fmt.Sprintf("-TR3000-%012d", i))
		have := bitfield.New(n)
		for k := 0; k < rng.IntN(n); k++ {
			have.Set(rng.IntN(n))
		}
		w := verdict.WirePeer{Addr: addr, PeerIDs: [][20]byte{pid}}
		for m := 0; m < 144; m++ {
			at := t0.Add(time.Duration(m) * 10 * time.Minute)
			for k := 0; k < 5; k++ {
				have.Set(rng.IntN(n))
			}
			w.Observations = append(w.Observations, timeline.Observation{At: at, Kind: timeline.KindConnected},
				timeline.Observation{At: at, Kind: timeline.KindBitfield, Pieces: have.Clone()})
		}
		w.Probes = []estimate.Sample{{At: t0.Add(time.Hour), BytesPerSec: 1e6, Spread: 1e4, Bytes: 4 << 20}}
		ev.Wire = append(ev.Wire, w)
		ev.Peers = append(ev.Peers, store.Peer{Addr: addr, PeerID: pid[:], Client: "Transmission 3.00", FirstSeen: t0, LastSeen: t0.Add(24 * time.Hour), Sources: []string{"dht"}})
		var up int64
		for m := 0; m < 48; m++ {
			up += int64(rng.IntN(1 << 30))
			ev.Announces = append(ev.Announces, reported.Announce{At: t0.Add(time.Duration(m) * 30 * time.Minute), InfoHash: tor.InfoHash,
				PeerID: pid, IP: addr.Addr(), Port: addr.Port(), Uploaded: up, Left: 1 << 30})
		}
	}
	rep, err := ev.Judge(verdict.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	return &audit.Result{Started: t0, Ended: t0.Add(24 * time.Hour), Evidence: ev, Report: rep}
}

// BenchmarkBuild builds the report of a day-long audit of 300 peers (the
// verdicts already made): about 0.3 s on a 2-core CI machine.
func BenchmarkBuild(b *testing.B) {
	res := bigSwarm(b, 300)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Build(res, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteHTML renders that report.
func BenchmarkWriteHTML(b *testing.B) {
	r, err := Build(bigSwarm(b, 300), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := WriteHTML(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}
