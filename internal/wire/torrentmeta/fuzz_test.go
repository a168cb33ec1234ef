package torrentmeta

import (
	"crypto/sha1"
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
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrV2Only) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if tor.InfoHash != infohash.HashBytes(tor.InfoBytes) {
			t.Fatal("InfoHash is not SHA-1 of InfoBytes")
		}
		if tor.PieceLength <= 0 || tor.PieceLength > MaxPieceLength || tor.TotalLength <= 0 || tor.Name == "" {
			t.Fatalf("bad torrent %+v", tor)
		}
		if len(tor.pieces) != tor.NumPieces*sha1.Size {
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
			if !errors.Is(err, ErrInvalidMagnet) && !errors.Is(err, ErrV2Only) {
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
