package swarmsim

import (
	"net"
	"net/netip"

	"github.com/anacrolix/dht/v2/krpc"
	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/metadata"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// extended answers extension messages: on the peer's extension handshake it
// notes the remote's listening port and sends the configured PEX list;
// ut_metadata requests get the info dictionary (or a reject when the peer
// has none to serve). Replies go through the connection's writer.
func (p *Peer) extended(c *peerwire.Conn, m pp.Message) error {
	switch m.ExtendedID {
	case pp.HandshakeExtendedID:
		h, err := peerwire.ParseExtHandshake(m.ExtendedPayload)
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.peerExt[c] = h
		p.mu.Unlock()
		p.noteListenPort(c, h.ListenPort)
		if id, ok := h.ExtensionID(peerwire.ExtPEX); ok && len(p.cfg.PEX) > 0 {
			return p.send(c, pexMessage(p.cfg.PEX).Message(id))
		}
	case peerwire.LocalMetadataID:
		req, err := metadata.Parse(m.ExtendedPayload)
		if err != nil || req.Type != metadata.Request {
			return nil
		}
		p.mu.Lock()
		h, ok := p.peerExt[c]
		p.mu.Unlock()
		if !ok {
			return nil
		}
		id, ok := h.ExtensionID(metadata.ExtensionName)
		if !ok {
			return nil
		}
		payload := metadata.RejectPayload(req.Piece)
		if len(p.cfg.InfoBytes) > 0 && req.Piece*metadata.PieceSize < len(p.cfg.InfoBytes) {
			payload = metadata.DataPayload(req.Piece, p.cfg.InfoBytes)
		}
		return p.send(c, pp.Message{Type: pp.Extended, ExtendedID: id, ExtendedPayload: payload})
	}
	return nil
}

// pexMessage encodes addresses with peer_protocol's ut_pex codec.
func pexMessage(addrs []netip.AddrPort) *pp.PexMsg {
	var m pp.PexMsg
	for _, a := range addrs {
		na := krpc.NodeAddr{IP: net.IP(a.Addr().AsSlice()), Port: int(a.Port())}
		if a.Addr().Is4() {
			m.Added = append(m.Added, na)
			m.AddedFlags = append(m.AddedFlags, 0)
		} else {
			m.Added6 = append(m.Added6, na)
			m.Added6Flags = append(m.Added6Flags, 0)
		}
	}
	return &m
}
