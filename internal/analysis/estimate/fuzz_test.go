package estimate

import (
	"math/rand/v2"
	"testing"
	"time"
)

// FuzzBounds drives random swarms and windows from the fuzzer's seeds and
// checks the indexed bounds against the brute-force reading.
func FuzzBounds(f *testing.F) {
	f.Add(uint64(1), uint64(2), int64(0), int64(600))
	f.Add(uint64(3), uint64(99), int64(-50), int64(0))
	f.Fuzz(func(t *testing.T, s1, s2 uint64, from, length int64) {
		r := rand.New(rand.NewPCG(s1, s2))
		n := 1 + r.IntN(20)
		tor := Torrent{NumPieces: n, PieceLength: 8, TotalLength: int64(n-1)*8 + 1 + int64(r.IntN(8))}
		cfg := exact()
		cfg.TransferLead = time.Duration(r.IntN(100)) * time.Second
		cfg.UnresolvedTail = time.Duration(r.IntN(1000)) * time.Second
		cfg.ClockSlack = time.Duration(r.IntN(5)) * time.Second
		peers := randomSwarm(r, n, 1+r.IntN(6))
		e, err := New(Input{Torrent: tor, Peers: peers}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		from %= 1 << 20
		length %= 1 << 20
		if length < 0 {
			length = -length
		}
		f, to := at(float64(from)), at(float64(from+length))
		br := newBrute(tor, cfg, peers)
		s := int64(cfg.ClockSlack)
		for p := range peers {
			b, err := e.Peer(p, f, to)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := b.Explain.AvailabilityObserved, br.availability(p, f.UnixNano()-s, to.UnixNano()+s); got != want {
				t.Fatalf("peer %d availability %d, brute force %d", p, got, want)
			}
			if got, want := b.DownloadedLower, br.downloaded(p, f.UnixNano()+s, to.UnixNano()-s); got != want {
				t.Fatalf("peer %d downloaded %d, brute force %d", p, got, want)
			}
			if got, want := b.UploadLower, br.uploadLower(p, f.UnixNano()+s, to.UnixNano()-s); got != want {
				t.Fatalf("peer %d upload lower %d, brute force %d", p, got, want)
			}
		}
	})
}

// FuzzSlicedFlow drives random honest swarms with capacities (the sliced
// bound's flow) and windows from the fuzzer's seeds: the flow holds every
// observed peer's true upload and never exceeds the per-slice sum.
func FuzzSlicedFlow(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint16(10), uint16(40), false)
	f.Add(uint64(7), uint64(5), uint16(0), uint16(100), true)
	f.Fuzz(func(t *testing.T, s1, s2 uint64, from, length uint16, large bool) {
		if large {
			defer func(n int) { heldFilterPeers = n }(heldFilterPeers)
			heldFilterPeers = 0
		}
		r := rand.New(rand.NewPCG(s1, s2))
		peers := 2 + r.IntN(6)
		nObs := 1 + r.IntN(peers)
		h := newHonestSwarm(r, 1+r.IntN(2), peers, nObs)
		for p := range h.in.Peers {
			h.in.Peers[p].Capacity = Capacity{Samples: []Sample{{At: at(float64(r.IntN(100))), BytesPerSec: 1e9, Duration: time.Second}}}
		}
		cfg := exact()
		cfg.SlicedCapacityFactor, cfg.SlicedAvailabilityFactor = 1+r.Float64(), 1+r.Float64()
		e, err := New(h.in, cfg)
		if err != nil {
			t.Fatal(err)
		}
		fs, ts := float64(from%200), float64(from%200)+1+float64(length%200)
		for p := range nObs {
			var truth int64
			for _, tr := range h.transfers {
				if tr.from == p && tr.at >= fs && tr.at < ts {
					truth += tr.bytes
				}
			}
			b, err := e.Peer(p, at(fs), at(ts))
			if err != nil {
				t.Fatal(err)
			}
			pl := b.Plausible
			if truth > pl.SlicedBound || pl.SlicedBound > pl.SlicedThreshold {
				t.Fatalf("peer %d [%v,%v): uploaded %d, sliced bound %d, threshold %d", p, fs, ts, truth, pl.SlicedBound, pl.SlicedThreshold)
			}
		}
	})
}

// FuzzJoint drives random honest swarms from the fuzzer's seeds through
// the joint claims network: every peer's true uploads, announce interval
// by announce interval, fit with no tolerance (with and without the held
// filter, some peers without a capacity), and with one peer's claims
// multiplied, leaving that peer out always makes the rest fit.
func FuzzJoint(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint8(3), false)
	f.Add(uint64(7), uint64(5), uint8(30), true)
	f.Fuzz(func(t *testing.T, s1, s2 uint64, factor uint8, large bool) {
		if large {
			defer func(n int) { heldFilterPeers = n }(heldFilterPeers)
			heldFilterPeers = 0
		}
		r := rand.New(rand.NewPCG(s1, s2))
		peers := 2 + r.IntN(6)
		nObs := 1 + r.IntN(peers)
		h := newHonestSwarm(r, 1+r.IntN(2), peers, nObs)
		for p := range h.in.Peers {
			if r.IntN(3) > 0 {
				h.in.Peers[p].Capacity = Capacity{Samples: []Sample{{At: at(float64(r.IntN(100))), BytesPerSec: 1e9, Duration: time.Second}}}
			}
		}
		e, err := New(h.in, exact())
		if err != nil {
			t.Fatal(err)
		}
		cheat := r.IntN(peers)
		for _, k := range []float64{1, 1 + float64(factor)/10} {
			sets := honestClaims(r, h, nObs, cheat, k)
			jt, err := e.Joint(at(0), at(101), sets, JointConfig{})
			if err != nil {
				t.Fatal(err)
			}
			if k == 1 {
				if u := jt.Unmet(-1); u != 0 {
					t.Fatalf("honest claims leave %d unmet", u)
				}
			} else if u := jt.Unmet(cheat); u != 0 {
				t.Fatalf("without the over-claimer %d (×%v), %d unmet", cheat, k, u)
			}
		}
	})
}
