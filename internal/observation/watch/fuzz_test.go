package watch

import (
	"bytes"
	"context"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// FuzzFollow runs the watch loop on arbitrary bytes from a peer (after the
// handshake): every event it reports must be in range, and it must end
// with the input, never panic or hang.
func FuzzFollow(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 5, 0xff, 0xc0, 0, 0, 0, 5, 4, 0, 0, 0, 9})                         // bitfield, HAVE 9
	f.Add([]byte{0, 0, 0, 1, 14, 0, 0, 0, 5, 4, 0, 0, 0, 99})                                   // HaveAll, HAVE out of range
	f.Add(append([]byte{0, 0, 0, 26, 20, 0}, []byte("d1:md6:ut_pexi1ee1:pi6881ee")...))         // extension handshake
	f.Add(append([]byte{0, 0, 0, 22, 20, 1}, []byte("d5:added6:\x7f\x00\x00\x01\x1a\xe1e")...)) // PEX
	f.Add(append([]byte{0, 0, 0, 27, 20, 2}, []byte("d8:msg_typei0e5:piecei0ee")...))           // metadata request
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})                               // keep-alives
	f.Fuzz(func(t *testing.T, data []byte) {
		const n = 10
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c := peerwire.NewStreamConn(data, 1<<14)
		ev := Events{
			Bitfield: func(_ time.Time, bf bitfield.Bitfield) {
				if bf.Len() != n {
					t.Fatalf("bitfield of %d pieces, torrent has %d", bf.Len(), n)
				}
			},
			Have: func(_ time.Time, i int) {
				if i < 0 || i >= n {
					t.Fatalf("HAVE %d of %d pieces", i, n)
				}
			},
			PEX: func(_ time.Time, m pex.Message) {
				for _, a := range m.Added {
					if !a.Addr.IsValid() {
						t.Fatalf("PEX address %v", a)
					}
				}
			},
		}
		sum, _ := Follow(ctx, c, Options{NumPieces: n}, ev)
		if ctx.Err() != nil {
			t.Fatal("the watch did not end with its input")
		}
		if sum.Haves > sum.Messages {
			t.Fatalf("summary %+v", sum)
		}
	})
}

// FuzzFetchLayers answers our BEP 52 hash requests for the v2 fixture's
// piece layers with arbitrary bytes: fetchLayers must end with the input,
// never panic, and succeed only with the layers that hash to their roots.
func FuzzFetchLayers(f *testing.F) {
	full, err := torrentmeta.Load("../../wire/torrentmeta/testdata/v2only.torrent")
	if err != nil {
		f.Fatal(err)
	}
	fresh := func() *torrentmeta.Torrent {
		t, err := torrentmeta.FromInfoBytes(full.InfoBytes, full.InfoHash)
		if err != nil {
			f.Fatal(err)
		}
		return t
	}
	// The honest answers, and a reject, as seeds.
	var honest []byte
	for _, r := range layerRequests(fresh()) {
		req := r.message()
		m := pp.Message{Type: pp.Hashes, PiecesRoot: r.need.Root, BaseLayer: req.BaseLayer, Index: req.Index, Length: req.Length}
		for i := range r.count {
			var h [32]byte
			if k := r.index + i; k < r.need.Pieces {
				h = full.PieceLayerHash(r.need.First + k)
			}
			m.Hashes = append(m.Hashes, h)
		}
		b, err := m.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		honest = append(honest, b...)
	}
	f.Add(honest)
	f.Add(honest[:len(honest)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		tor := fresh()
		c := peerwire.NewStreamConn(data, 1<<17)
		if err := fetchLayers(c, tor); err != nil {
			if bytes.Equal(data, honest) {
				t.Fatalf("the honest answers: %v", err)
			}
			return
		}
		if len(tor.MissingLayers()) != 0 {
			t.Fatal("fetchLayers succeeded with layers missing")
		}
	})
}
