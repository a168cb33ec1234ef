package timeline

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// decodeObs turns fuzz bytes into observations: per record a kind byte, a
// 2-byte time offset in seconds, a piece byte and, for bitfields, the wire
// bytes of a bitfield of n pieces (spare bits cleared).
func decodeObs(data []byte, n int) []Observation {
	var obs []Observation
	nb := (n + 7) / 8
	for len(data) >= 4 && len(obs) < 512 {
		k := Kind(data[0] % uint8(kindEnd+1))
		off := binary.BigEndian.Uint16(data[1:3])
		o := Observation{At: t0.Add(time.Duration(off) * time.Second), Kind: k, Piece: int(int8(data[3]))}
		if data[0]&0x80 != 0 {
			o.At = time.Time{} // a bad timestamp now and then
		}
		data = data[4:]
		if k == KindBitfield {
			b := bitfield.New(n)
			for i := 0; i < n && i/8 < len(data) && i/8 < nb; i++ {
				if data[i/8]&(0x80>>(i%8)) != 0 {
					b.Set(i)
				}
			}
			data = data[min(nb, len(data)):]
			o.Pieces = b
		}
		obs = append(obs, o)
	}
	return obs
}

func FuzzBuild(f *testing.F) {
	f.Add(uint8(10), []byte{1, 0, 0, 0, 0xf0, 0x00, 2, 0, 10, 5, 1, 0, 20, 0, 0xff, 0xc0})
	f.Add(uint8(1), []byte{3, 0, 1, 0, 6, 0, 2, 0, 7, 0, 3, 0})
	// connected, bitfield, watch, have, heartbeat, disconnected
	f.Add(uint8(8), []byte{6, 0, 0, 0, 1, 0, 1, 0, 0x00, 12, 0, 2, 0, 2, 0, 40, 3, 11, 0, 60, 0, 7, 0, 90, 0})
	f.Fuzz(func(t *testing.T, np uint8, data []byte) {
		n := int(np)
		obs := decodeObs(data, n)
		tl := Build(n, obs)
		prevHad := -1
		for _, g := range tl.Gains() {
			if g.Piece <= prevHad || g.Piece >= n {
				t.Fatalf("gains out of order or range: %d after %d", g.Piece, prevHad)
			}
			prevHad = g.Piece
			if !g.AtFirstSight() && !g.Lacked.Before(g.Had) {
				t.Fatalf("piece %d lacked %v not before had %v", g.Piece, g.Lacked, g.Had)
			}
			if h, ok := tl.HaveAt(g.Had); !ok || !h.Has(g.Piece) {
				t.Fatalf("piece %d not held at its Had time", g.Piece)
			}
			if !g.AtFirstSight() && tl.LackingFrom(g.Had).Has(g.Piece) {
				t.Fatalf("piece %d both held and lacking at %v", g.Piece, g.Had)
			}
		}
		// Prompt HAVEs only ever move a piece's lacked time later, and
		// never to or past the time it was first seen held.
		pl := tl.PromptLacked(10 * time.Second)
		for i := range n {
			l, h := tl.PieceNanos(i)
			if pl[i] < l || (h != PosInf && pl[i] >= h) {
				t.Fatalf("piece %d: prompt lacked %d, lacked %d, had %d", i, pl[i], l, h)
			}
		}
		for _, ivs := range [][]Interval{tl.Presence(time.Minute), tl.Absence(time.Minute)} {
			for k, iv := range ivs {
				if iv.To.Before(iv.From) || (k > 0 && !ivs[k-1].To.Before(iv.From)) {
					t.Fatalf("intervals not sorted and disjoint: %v", ivs)
				}
			}
		}
		prev := -1
		for s := 0; s <= 70000; s += 7000 {
			h, _ := tl.HaveAt(t0.Add(time.Duration(s) * time.Second))
			if h.Count() < prev {
				t.Fatalf("HaveAt shrank at %d s", s)
			}
			prev = h.Count()
		}
	})
}
