package peerwire

import (
	"fmt"
	"slices"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// PeerState is what a peer has told us so far on one connection that the
// connection's next user needs and cannot ask for again: its piece set
// (BEP 3 sends the bitfield once, as the first message), whether it chokes
// us, its allowed-fast pieces (BEP 6) and its request queue (BEP 10's
// reqq). A watch keeps it so that it can lend its connection to a
// bandwidth probe, and a probe hands it back with the connection.
type PeerState struct {
	// Have is the piece set: the bitfield, HaveAll or HaveNone, and every
	// HAVE since; zero until the peer sent one of them.
	Have bitfield.Bitfield
	// Choked: the peer chokes us (every connection starts choked).
	Choked      bool
	AllowedFast []int
	Reqq        int
}

// NewPeerState is the state of a connection on which the peer has said
// nothing yet.
func NewPeerState() PeerState { return PeerState{Choked: true} }

// Apply updates the state with one message of the peer, on a torrent of
// numPieces pieces; it ignores the messages that change none of it. A
// piece set after the first adds to it (aria2 sends its bitfield again
// instead of HAVEs). It reports out-of-range pieces as ErrProtocol.
func (st *PeerState) Apply(m Message, numPieces int) error {
	if m.Keepalive || m.Unknown {
		return nil
	}
	switch m.Type {
	case pp.Bitfield, pp.HaveAll:
		var bf bitfield.Bitfield
		if m.Type == pp.HaveAll {
			bf = bitfield.Full(numPieces)
		} else {
			var err error
			if bf, err = bitfield.FromBools(m.Bitfield, numPieces); err != nil {
				return newErr(ErrProtocol, err)
			}
		}
		if st.Have.Len() == numPieces {
			bf.Union(st.Have)
		}
		st.Have = bf
	case pp.HaveNone:
		if st.Have.Len() != numPieces {
			st.Have = bitfield.New(numPieces)
		}
	case pp.Have:
		if st.Have.Len() != numPieces {
			st.Have = bitfield.New(numPieces)
		}
		if !st.Have.Set(int(m.Index)) {
			return newErr(ErrProtocol, fmt.Errorf("have for piece %d of %d", m.Index, numPieces))
		}
	case pp.Choke:
		st.Choked = true
	case pp.Unchoke:
		st.Choked = false
	case pp.AllowedFast:
		if i := int(m.Index); i < numPieces && !slices.Contains(st.AllowedFast, i) && len(st.AllowedFast) < maxAllowedFast {
			st.AllowedFast = append(st.AllowedFast, i)
		}
	}
	return nil
}

// maxAllowedFast bounds the allowed-fast set a state keeps: BEP 6
// suggests 10; a peer that sends thousands gains nothing by it.
const maxAllowedFast = 64
