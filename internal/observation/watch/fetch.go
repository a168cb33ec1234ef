package watch

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/metadata"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// ErrNoMetadata: the peer does not offer ut_metadata (or no size).
var ErrNoMetadata = errors.New("peer offers no metadata")

// FetchMetadata asks the peer at addr for the info dictionary of
// o.InfoHash over ut_metadata (BEP 9), verifies it against the info hash and
// returns the torrent; for a v2-only torrent (BEP 52) it asks the same
// peer for the piece layers too, so that every piece can be checked. ctx
// bounds the whole exchange.
func FetchMetadata(ctx context.Context, addr netip.AddrPort, o Options) (*torrentmeta.Torrent, error) {
	c, err := dial(ctx, addr, o)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := hello(c, o); err != nil {
		return nil, err
	}
	if !c.SupportsExtended() {
		return nil, fmt.Errorf("metadata from %s: %w (no extension protocol)", addr, ErrNoMetadata)
	}
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	stop := peerwire.Interrupt(ctx, c)
	defer stop()
	var (
		f  *metadata.Fetcher
		id pp.ExtensionNumber
	)
	for msgs := 0; ; msgs++ {
		if f == nil && msgs > 50 {
			return nil, fmt.Errorf("metadata from %s: %w (no extension handshake)", addr, ErrNoMetadata)
		}
		m, err := c.ReadMessage()
		if err != nil {
			return nil, fmt.Errorf("metadata from %s: %w", addr, err)
		}
		if m.Type != pp.Extended || m.Unknown || m.Keepalive {
			continue
		}
		switch {
		case m.ExtendedID == pp.HandshakeExtendedID && f == nil:
			h, err := peerwire.ParseExtHandshake(m.ExtendedPayload)
			if err != nil {
				return nil, fmt.Errorf("metadata from %s: %w", addr, err)
			}
			var ok bool
			if id, ok = h.ExtensionID(peerwire.ExtMetadata); !ok || h.MetadataSize <= 0 {
				return nil, fmt.Errorf("metadata from %s: %w", addr, ErrNoMetadata)
			}
			if f, err = metadata.NewFetcher(o.InfoHash, h.MetadataSize); err != nil {
				return nil, fmt.Errorf("metadata from %s: %w", addr, err)
			}
			var reqs []pp.Message
			for _, p := range f.Requests() {
				reqs = append(reqs, pp.Message{Type: pp.Extended, ExtendedID: id, ExtendedPayload: p})
			}
			if err := c.WriteMessages(reqs...); err != nil {
				return nil, fmt.Errorf("metadata from %s: %w", addr, err)
			}
		case m.ExtendedID == peerwire.LocalMetadataID && f != nil:
			if _, err := f.Handle(m.ExtendedPayload); err != nil {
				return nil, fmt.Errorf("metadata from %s: %w", addr, err)
			}
			if f.Complete() {
				info, err := f.InfoBytes()
				if err != nil {
					return nil, fmt.Errorf("metadata from %s: %w", addr, err)
				}
				t, err := torrentmeta.FromInfoBytes(info, o.InfoHash)
				if err != nil {
					return nil, err
				}
				// A v2 torrent's piece layers are not in its info
				// dictionary: the same peer gives them (BEP 52).
				if err := fetchLayers(c, t); err != nil {
					return nil, fmt.Errorf("metadata from %s: %w", addr, err)
				}
				return t, nil
			}
		}
	}
}
