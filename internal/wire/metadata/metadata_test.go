package metadata_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/wire/metadata"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// infoBytes builds a valid single-file info dictionary of roughly n bytes
// (the pieces string makes up the bulk).
func infoBytes(n int) []byte {
	pieces := n / 20
	if pieces < 1 {
		pieces = 1
	}
	r := rand.New(rand.NewPCG(1, 2))
	p := make([]byte, pieces*20)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return fmt.Appendf(nil, "d6:lengthi%de4:name4:file12:piece lengthi16384e6:pieces%d:%se", pieces*16384, len(p), p)
}

func TestFetchAssembles(t *testing.T) {
	for _, size := range []int{100, metadata.PieceSize, metadata.PieceSize + 1, 3*metadata.PieceSize + 77} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			info := infoBytes(size)
			ih := infohash.HashBytes(info)
			f, err := metadata.NewFetcher(ih, int64(len(info)))
			if err != nil {
				t.Fatal(err)
			}
			reqs := f.Requests()
			if len(reqs) != f.NumPieces() || f.NumPieces() != (len(info)+metadata.PieceSize-1)/metadata.PieceSize {
				t.Fatalf("%d requests, %d pieces", len(reqs), f.NumPieces())
			}
			// Answer in reverse order, as a peer may.
			for i := len(reqs) - 1; i >= 0; i-- {
				m, err := metadata.Parse(reqs[i])
				if err != nil || m.Type != metadata.Request || m.Piece != i {
					t.Fatalf("request %d: %+v %v", i, m, err)
				}
				if _, err := f.InfoBytes(); !errors.Is(err, metadata.ErrIncomplete) {
					t.Fatalf("InfoBytes before complete: %v", err)
				}
				if _, err := f.Handle(metadata.DataPayload(i, info)); err != nil {
					t.Fatalf("piece %d: %v", i, err)
				}
			}
			got, err := f.InfoBytes()
			if err != nil || !bytes.Equal(got, info) {
				t.Fatalf("InfoBytes: %v", err)
			}
			tor, err := torrentmeta.FromInfoBytes(got, ih)
			if err != nil {
				t.Fatalf("FromInfoBytes: %v", err)
			}
			if tor.InfoHash != ih || tor.Name != "file" {
				t.Errorf("torrent %+v", tor)
			}
		})
	}
}

func TestFetcherHostile(t *testing.T) {
	info := infoBytes(2*metadata.PieceSize + 10)
	ih := infohash.HashBytes(info)
	size := len(info)
	data := func(piece, total int, b []byte) []byte {
		return append(fmt.Appendf(nil, "d8:msg_typei1e5:piecei%de10:total_sizei%dee", piece, total), b...)
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		err     error
	}{
		{"reject", metadata.RejectPayload(0), metadata.ErrRejected},
		{"total size differs", data(0, size+1, info[:metadata.PieceSize]), metadata.ErrTotalSize},
		{"piece out of range", data(3, size, info[:10]), metadata.ErrPieceRange},
		{"negative piece", data(-1, size, nil), metadata.ErrPieceRange},
		{"huge piece", data(1<<40, size, nil), metadata.ErrPieceRange},
		{"short piece", data(0, size, info[:100]), metadata.ErrPieceLength},
		{"long last piece", data(2, size, info[:11]), metadata.ErrPieceLength},
		{"no total_size", []byte("d8:msg_typei1e5:piecei0ee"), metadata.ErrMalformed},
		{"unknown type", []byte("d8:msg_typei7e5:piecei0ee"), metadata.ErrMalformed},
		{"no piece", []byte("d8:msg_typei0ee"), metadata.ErrMalformed},
		{"junk after request", append(metadata.RequestPayload(0), 'x'), metadata.ErrMalformed},
		{"not bencode", []byte("hello"), metadata.ErrMalformed},
		{"empty", nil, metadata.ErrMalformed},
		{"piece is a string", []byte("d8:msg_typei1e5:piece1:0e"), metadata.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := metadata.NewFetcher(ih, int64(size))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Handle(tc.payload); !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if len(f.Missing()) != f.NumPieces() {
				t.Errorf("a refused message changed the state: missing %v", f.Missing())
			}
		})
	}
	t.Run("duplicate", func(t *testing.T) {
		f, _ := metadata.NewFetcher(ih, int64(size))
		if _, err := f.Handle(metadata.DataPayload(1, info)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Handle(metadata.DataPayload(1, info)); !errors.Is(err, metadata.ErrDuplicate) {
			t.Fatalf("duplicate: %v", err)
		}
		if fmt.Sprint(f.Missing()) != "[0 2]" {
			t.Errorf("missing %v", f.Missing())
		}
	})
	t.Run("request from peer", func(t *testing.T) {
		f, _ := metadata.NewFetcher(ih, int64(size))
		m, err := f.Handle(metadata.RequestPayload(2))
		if err != nil || m.Type != metadata.Request || m.Piece != 2 {
			t.Fatalf("%+v %v", m, err)
		}
	})
	t.Run("hash mismatch resets", func(t *testing.T) {
		f, _ := metadata.NewFetcher(ih, int64(size))
		bad := bytes.Clone(info)
		bad[5] ^= 1
		for i := 0; i < f.NumPieces(); i++ {
			if _, err := f.Handle(metadata.DataPayload(i, bad)); err != nil {
				t.Fatal(err)
			}
		}
		if !f.Complete() {
			t.Fatal("not complete")
		}
		if _, err := f.InfoBytes(); !errors.Is(err, metadata.ErrHashMismatch) {
			t.Fatalf("mismatch: %v", err)
		}
		if f.Complete() || len(f.Missing()) != f.NumPieces() {
			t.Fatalf("pieces not discarded after mismatch: %v", f.Missing())
		}
		for i := 0; i < f.NumPieces(); i++ {
			if _, err := f.Handle(metadata.DataPayload(i, info)); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := f.InfoBytes(); err != nil || !bytes.Equal(got, info) {
			t.Fatalf("refetch: %v", err)
		}
	})
}

func TestNewFetcherSize(t *testing.T) {
	for _, n := range []int64{-1, 0, metadata.MaxSize + 1, 1 << 62} {
		if _, err := metadata.NewFetcher(infohash.T{}, n); !errors.Is(err, metadata.ErrSize) {
			t.Errorf("size %d: %v", n, err)
		}
	}
	f, err := metadata.NewFetcher(infohash.T{}, metadata.MaxSize)
	if err != nil || f.NumPieces() != metadata.MaxSize/metadata.PieceSize {
		t.Errorf("max size: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	info := infoBytes(100)
	f.Add(metadata.RequestPayload(0))
	f.Add(metadata.RejectPayload(3))
	f.Add(metadata.DataPayload(0, info))
	f.Add([]byte("d8:msg_typei1e5:piecei0e10:total_sizei-5ee"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := metadata.Parse(payload)
		if err != nil {
			return
		}
		if m.Piece < 0 || m.Piece > metadata.MaxSize/metadata.PieceSize {
			t.Fatalf("piece %d accepted", m.Piece)
		}
		if m.Type != metadata.Data && len(m.Data) != 0 {
			t.Fatalf("%s with data", m.Type)
		}
	})
}

// FuzzFetcher feeds arbitrary messages to a fetcher of a small info dict:
// it must never panic, and must never return bytes that do not hash to the
// info hash.
func FuzzFetcher(f *testing.F) {
	info := infoBytes(metadata.PieceSize + 100)
	ih := infohash.HashBytes(info)
	f.Add(metadata.DataPayload(0, info), metadata.DataPayload(1, info))
	f.Add(metadata.DataPayload(1, info), metadata.RejectPayload(0))
	f.Add([]byte("d8:msg_typei1e5:piecei1e10:total_sizei16484ee"), metadata.DataPayload(0, info))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		fe, err := metadata.NewFetcher(ih, int64(len(info)))
		if err != nil {
			t.Fatal(err)
		}
		fe.Handle(a)
		fe.Handle(b)
		if got, err := fe.InfoBytes(); err == nil && infohash.HashBytes(got) != ih {
			t.Fatal("returned bytes that do not match the info hash")
		}
	})
}
