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
