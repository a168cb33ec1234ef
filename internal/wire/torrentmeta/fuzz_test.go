package torrentmeta

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"reflect"
	"testing"

	"github.com/anacrolix/torrent/types/infohash"
)

// Seeds live in testdata/fuzz/FuzzParse (fixtures and malformed variants).
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		tor, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if tor.PieceLength <= 0 || tor.PieceLength > MaxPieceLength || tor.TotalLength <= 0 || tor.Name == "" {
			t.Fatalf("bad torrent %+v", tor)
		}
		if tor.V2 && !tor.Hybrid { // v2 only (BEP 52)
			if !bytes.Equal(tor.InfoHash[:], tor.InfoHashV2[:20]) || tor.InfoHashV2 != sha256.Sum256(tor.InfoBytes) {
				t.Fatal("InfoHash is not the truncated SHA-256 of InfoBytes")
			}
			var sum, off int64
			for i := range tor.NumPieces {
				if n := tor.PieceSize(i); n <= 0 || n > tor.PieceLength {
					t.Fatalf("piece %d of %d bytes", i, n)
				}
				sum += tor.PieceSize(i)
			}
			for _, f := range tor.Files {
				if f.Offset != off || f.Length < 0 || f.Offset%tor.PieceLength != 0 {
					t.Fatalf("file %+v at offset %d", f, off)
				}
				off += (f.Length + tor.PieceLength - 1) / tor.PieceLength * tor.PieceLength
			}
			if sum != tor.TotalLength || tor.pieces != nil || len(tor.v2) != tor.NumPieces {
				t.Fatalf("pieces sum to %d, TotalLength %d", sum, tor.TotalLength)
			}
			// By magnet: named by its truncated SHA-256, missing a layer
			// for each file longer than a piece, until SetPieceLayer.
			fetched, err := FromInfoBytes(tor.InfoBytes, tor.InfoHash)
			if err != nil {
				t.Fatalf("FromInfoBytes of v2-only info: %v", err)
			}
			for _, need := range fetched.MissingLayers() {
				var hashes [][32]byte
				for i := range need.Pieces {
					hashes = append(hashes, tor.v2[need.First+i].hash)
				}
				if err := fetched.SetPieceLayer(need.Root, hashes); err != nil {
					t.Fatalf("the .torrent's own layer: %v", err)
				}
			}
			if len(fetched.MissingLayers()) != 0 || fetched.NumPieces != tor.NumPieces {
				t.Fatal("layers still missing after SetPieceLayer")
			}
			return
		}
		if tor.InfoHash != infohash.HashBytes(tor.InfoBytes) {
			t.Fatal("InfoHash is not SHA-1 of InfoBytes")
		}
		if len(tor.pieces) != tor.NumPieces*sha1.Size || tor.v2 != nil && len(tor.v2) != tor.NumPieces {
			t.Fatalf("%d piece bytes for %d pieces", len(tor.pieces), tor.NumPieces)
		}
		var off int64
		for _, f := range tor.Files {
			if f.Offset != off || f.Length < 0 {
				t.Fatalf("file %+v at offset %d", f, off)
			}
			off += f.Length
		}
		if off != tor.TotalLength {
			t.Fatalf("files sum to %d, TotalLength %d", off, tor.TotalLength)
		}
		last := tor.PieceSize(tor.NumPieces - 1)
		if last <= 0 || last > tor.PieceLength ||
			int64(tor.NumPieces-1)*tor.PieceLength+last != tor.TotalLength {
			t.Fatalf("last piece %d of %d does not end at %d", last, tor.NumPieces, tor.TotalLength)
		}
		again, err := FromInfoBytes(tor.InfoBytes, tor.InfoHash)
		if err != nil {
			t.Fatalf("FromInfoBytes rejects info Parse accepted: %v", err)
		}
		again.Trackers, again.CreatedBy, again.Comment = tor.Trackers, tor.CreatedBy, tor.Comment
		if again.v2 == nil { // by magnet, no piece layers: the v1 description only
			again.v2, again.layers = tor.v2, tor.layers
		}
		if !reflect.DeepEqual(again, tor) {
			t.Fatal("FromInfoBytes and Parse disagree")
		}
	})
}

// Seeds live in testdata/fuzz/FuzzParseMagnet.
func FuzzParseMagnet(f *testing.F) {
	f.Fuzz(func(t *testing.T, uri string) {
		m, err := ParseMagnet(uri)
		if err != nil {
			if !errors.Is(err, ErrInvalidMagnet) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		s := m.String()
		back, err := ParseMagnet(s)
		if err != nil {
			t.Fatalf("String() %q of a parsed magnet does not parse: %v", s, err)
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip via %q: %+v != %+v", s, back, m)
		}
	})
}
