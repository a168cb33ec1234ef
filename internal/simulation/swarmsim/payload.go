package swarmsim

import (
	"crypto/sha1"
	"fmt"
	"math/rand/v2"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// NewPayload makes size bytes of deterministic pseudo-random content (from
// seed) and the single-file v1 torrent that describes it.
func NewPayload(name string, size, pieceLength int64, seed uint64) (*Payload, *torrentmeta.Torrent, error) {
	return newPayload(name, size, pieceLength, seed, false)
}

// NewPrivatePayload is NewPayload for a private torrent (BEP 27).
func NewPrivatePayload(name string, size, pieceLength int64, seed uint64) (*Payload, *torrentmeta.Torrent, error) {
	return newPayload(name, size, pieceLength, seed, true)
}

func newPayload(name string, size, pieceLength int64, seed uint64, private bool) (*Payload, *torrentmeta.Torrent, error) {
	if size <= 0 || pieceLength <= 0 {
		return nil, nil, fmt.Errorf("swarmsim payload: size %d and piece length %d must be positive", size, pieceLength)
	}
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i < len(data); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < len(data); j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	p := &Payload{PieceLength: pieceLength, Data: data}
	pieces := make([]byte, 0, p.NumPieces()*20)
	for i := 0; i < p.NumPieces(); i++ {
		off := int64(i) * pieceLength
		h := sha1.Sum(data[off : off+p.PieceSize(i)])
		pieces = append(pieces, h[:]...)
	}
	info := metainfo.Info{Name: name, PieceLength: pieceLength, Length: size, Pieces: pieces}
	if private {
		info.Private = &private
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		return nil, nil, fmt.Errorf("swarmsim payload: %w", err)
	}
	p.InfoHash = infohash.HashBytes(infoBytes)
	t, err := torrentmeta.FromInfoBytes(infoBytes, p.InfoHash)
	if err != nil {
		return nil, nil, fmt.Errorf("swarmsim payload: %w", err)
	}
	return p, t, nil
}

// MetainfoFile returns a .torrent for the payload announcing to trackers,
// for real clients that join a simulated swarm.
func MetainfoFile(t *torrentmeta.Torrent, trackers ...string) ([]byte, error) {
	mi := metainfo.MetaInfo{InfoBytes: t.InfoBytes, CreatedBy: "swarmaudit swarmsim"}
	if len(trackers) > 0 {
		mi.Announce = trackers[0]
		mi.AnnounceList = metainfo.AnnounceList{trackers}
	}
	return bencode.Marshal(mi)
}
