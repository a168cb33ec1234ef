package estimate

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// The benchmark swarm: 1,000 peers (10% seeders) of a 2,000-piece torrent,
// each looked at 60 times a minute apart; leechers gain 0-60 random pieces
// between looks and report some gains by HAVE; every peer was probed twice.
const (
	benchPeers  = 1000
	benchPieces = 2000
	benchSnaps  = 60
)

var benchTor = Torrent{NumPieces: benchPieces, PieceLength: 1 << 20, TotalLength: benchPieces<<20 - 1234}

type benchSwarm struct {
	obs     [][]timeline.Observation
	samples [][]Sample
}

var (
	benchOnce sync.Once
	benchData benchSwarm
)

func benchInput() benchSwarm {
	benchOnce.Do(func() {
		r := rand.New(rand.NewPCG(7, 7))
		for p := 0; p < benchPeers; p++ {
			held := bitfield.New(benchPieces)
			if p%10 == 0 {
				held = bitfield.Full(benchPieces)
			}
			obs := make([]timeline.Observation, 0, 2*benchSnaps+benchSnaps*8)
			for s := 0; s < benchSnaps; s++ {
				tm := at(float64(s*60 + r.IntN(30)))
				obs = append(obs, timeline.Observation{At: tm, Kind: timeline.KindConnected},
					timeline.Observation{At: tm, Kind: timeline.KindBitfield, Pieces: held.Clone()})
				for g := r.IntN(60); g > 0; g-- {
					i := r.IntN(benchPieces)
					if held.Has(i) {
						continue
					}
					held.Set(i)
					if g%4 == 0 {
						obs = append(obs, timeline.Observation{At: tm.Add(time.Duration(1+r.IntN(50)) * time.Second), Kind: timeline.KindHave, Piece: i})
					}
				}
			}
			benchData.obs = append(benchData.obs, obs)
			benchData.samples = append(benchData.samples, []Sample{
				{At: at(float64(r.IntN(3600))), BytesPerSec: 1e5 + r.Float64()*1e6, Spread: 1e4, Bytes: 2 << 20},
				{At: at(float64(r.IntN(3600))), BytesPerSec: 1e5 + r.Float64()*1e6, Spread: 1e4, Bytes: 2 << 20},
			})
		}
	})
	return benchData
}

func benchPeersBuilt() []Peer {
	d := benchInput()
	peers := make([]Peer, benchPeers)
	for p := range peers {
		peers[p] = Peer{ID: "p", Timeline: timeline.Build(benchPieces, d.obs[p]), Capacity: Capacity{Samples: d.samples[p]}}
	}
	return peers
}

func benchUnobserved() []Unobserved {
	var u []Unobserved
	for k := 0; k < 50; k++ {
		u = append(u, Unobserved{ID: "u", Present: []timeline.Interval{{From: at(float64(k * 60)), To: at(float64(k*60 + 900))}}, MaxGain: -1})
	}
	return u
}

// BenchmarkBuildTimelines: reading 60 snapshots of 1,000 peers.
func BenchmarkBuildTimelines(b *testing.B) {
	d := benchInput()
	b.ResetTimer()
	for b.Loop() {
		for p := 0; p < benchPeers; p++ {
			timeline.Build(benchPieces, d.obs[p])
		}
	}
}

// BenchmarkNew: indexing the swarm (events, capacity, sole holders).
func BenchmarkNew(b *testing.B) {
	peers := benchPeersBuilt()
	unobs := benchUnobserved()
	b.ResetTimer()
	for b.Loop() {
		if _, err := New(Input{Torrent: benchTor, Peers: peers, Unobserved: unobs}, DefaultConfig()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBoundsAllPeers: every peer's bounds over one 30-minute window.
func BenchmarkBoundsAllPeers(b *testing.B) {
	e, err := New(Input{Torrent: benchTor, Peers: benchPeersBuilt(), Unobserved: benchUnobserved()}, DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		for p := 0; p < benchPeers; p++ {
			if _, err := e.Peer(p, at(900), at(2700)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkSwarm: the swarm-wide sums over one 30-minute window.
func BenchmarkSwarm(b *testing.B) {
	e, err := New(Input{Torrent: benchTor, Peers: benchPeersBuilt(), Unobserved: benchUnobserved()}, DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Swarm(at(900), at(2700)); err != nil {
			b.Fatal(err)
		}
	}
}
