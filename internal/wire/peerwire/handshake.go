package peerwire

import (
	"bytes"
	"fmt"
	"io"

	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"
)

// handshakeLen is the BitTorrent handshake's length: the protocol string
// with its length byte, 8 reserved bytes, the info hash and the peer id.
const handshakeLen = 1 + 19 + 8 + 20 + 20

// appendHandshake appends our BitTorrent handshake.
func appendHandshake(dst []byte, reserved pp.PeerExtensionBits, ih infohash.T, peerID [20]byte) []byte {
	dst = append(dst, pp.Protocol...)
	dst = append(dst, reserved[:]...)
	dst = append(dst, ih[:]...)
	return append(dst, peerID[:]...)
}

// peerHandshake is what a peer's BitTorrent handshake says.
type peerHandshake struct {
	Reserved pp.PeerExtensionBits
	InfoHash infohash.T
	PeerID   [20]byte
}

// readHandshake reads a peer's BitTorrent handshake: an error for any other
// protocol string, the reader's error (EOF, timeout) as it is.
func readHandshake(r io.Reader) (peerHandshake, error) {
	var b [handshakeLen]byte
	var h peerHandshake
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return h, err
	}
	if !bytes.Equal(b[:20], []byte(pp.Protocol)) {
		return h, fmt.Errorf("unexpected protocol string %q", b[:20])
	}
	copy(h.Reserved[:], b[20:28])
	copy(h.InfoHash[:], b[28:48])
	copy(h.PeerID[:], b[48:68])
	return h, nil
}
