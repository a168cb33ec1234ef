package watch

import (
	"crypto/sha256"
	"fmt"
	"math/bits"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// maxHashesPerRequest bounds a hash request (BEP 52): 512 hashes are a
// 16 KiB answer, well within the messages a connection takes.
const maxHashesPerRequest = 512

// layerRequest is one BEP 52 hash request for (part of) a piece layer:
// count hashes of the piece layer from index on, with no proof hashes.
// The requests of a layer cover it whole, so the layer is checked as one
// against its pieces root (Torrent.SetPieceLayer); libtorrent gives no
// uncle hash of the layer's top (a request's base and proof layers must
// stay below the root), so a part could not be checked alone anyway.
type layerRequest struct {
	need  torrentmeta.PieceLayerNeed
	base  int // the piece layer: log2(piece length / 16 KiB)
	index int // first hash asked, a multiple of count
	count int // a power of two, within the layer padded to one
}

// layerRequests splits the layers t lacks into hash requests.
func layerRequests(t *torrentmeta.Torrent) []layerRequest {
	base := bits.Len64(uint64(t.PieceLength/(16<<10))) - 1
	var out []layerRequest
	for _, need := range t.MissingLayers() {
		width := 1 << bits.Len(uint(need.Pieces-1)) // the layer, padded to a power of two
		count := min(width, maxHashesPerRequest)
		for index := 0; index < need.Pieces; index += count {
			out = append(out, layerRequest{need: need, base: base, index: index, count: count})
		}
	}
	return out
}

func (r layerRequest) message() pp.Message {
	return pp.Message{Type: pp.HashRequest, PiecesRoot: r.need.Root, BaseLayer: pp.Integer(r.base),
		Index: pp.Integer(r.index), Length: pp.Integer(r.count)}
}

// matches reports whether m answers r.
func (r layerRequest) matches(m peerwire.Message) bool {
	return m.PiecesRoot == r.need.Root && int(m.BaseLayer) == r.base && int(m.Index) == r.index && int(m.Length) == r.count
}

// hashes returns the hashes of the file's pieces an answer holds.
func (r layerRequest) hashes(m peerwire.Message) ([][sha256.Size]byte, error) {
	if len(m.Hashes) != r.count {
		return nil, fmt.Errorf("%d hashes for a request of %d", len(m.Hashes), r.count)
	}
	return m.Hashes[:min(r.count, r.need.Pieces-r.index)], nil
}

// fetchLayers asks the peer on c for the piece layers t lacks (BEP 52
// hash requests) and gives them to t. c's deadline bounds it.
func fetchLayers(c *peerwire.Conn, t *torrentmeta.Torrent) error {
	reqs := layerRequests(t)
	if len(reqs) == 0 {
		return nil
	}
	msgs := make([]pp.Message, len(reqs))
	for i, r := range reqs {
		msgs[i] = r.message()
	}
	if err := c.WriteMessages(msgs...); err != nil {
		return fmt.Errorf("piece layers: %w", err)
	}
	got := map[[sha256.Size]byte][][sha256.Size]byte{}
	maxReads := 10_000 + 4*len(reqs)
	for read := 0; len(reqs) > 0; read++ {
		if read > maxReads {
			return fmt.Errorf("piece layers: %d requests unanswered after %d messages", len(reqs), read)
		}
		m, err := c.ReadMessage()
		if err != nil {
			return fmt.Errorf("piece layers: %w", err)
		}
		if m.Keepalive || m.Unknown || (m.Type != pp.Hashes && m.Type != pp.HashReject) {
			continue
		}
		k := -1
		for i, r := range reqs {
			if r.matches(m) {
				k = i
				break
			}
		}
		if k < 0 {
			return fmt.Errorf("piece layers: %w: an answer to no request of ours", peerwire.ErrProtocol)
		}
		r := reqs[k]
		reqs = append(reqs[:k], reqs[k+1:]...)
		if m.Type == pp.HashReject {
			return fmt.Errorf("piece layers: the peer rejected our hash request for pieces root %x", r.need.Root)
		}
		hashes, err := r.hashes(m)
		if err != nil {
			return fmt.Errorf("piece layers: %w: %w", peerwire.ErrProtocol, err)
		}
		layer := got[r.need.Root]
		if layer == nil {
			layer = make([][sha256.Size]byte, r.need.Pieces)
		}
		copy(layer[r.index:], hashes)
		got[r.need.Root] = layer
	}
	for root, layer := range got {
		if err := t.SetPieceLayer(root, layer); err != nil {
			return fmt.Errorf("piece layers: %w", err)
		}
	}
	return nil
}
