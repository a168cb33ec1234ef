// Package relay reaches peers behind a NAT through a peer connected to
// both (BEP 55, ut_holepunch). A peer whose NAT lets nobody in can still
// be reached: a relay it connected to introduces us (rendezvous), tells it
// to connect to us and tells us to connect to it (connect), and the two
// uTP connections both sides then open pass each other's NAT, since each
// side's packet out opens the way for the other's in.
//
// The relay names us to the target by the address of our connection to
// it, so the rendezvous runs on a uTP connection of its own from our uTP
// socket: that is the address the target's uTP connection must reach.
package relay

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/holepunch"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// localID is our id for ut_holepunch messages (our extension handshake's
// "m"), distinct from the ids of every extension peerwire names.
const localID = 4

// Errors of Rendezvous, besides the connection's own (peerwire's kinds).
var (
	// ErrNoSupport: the relay speaks no ut_holepunch.
	ErrNoSupport = errors.New("the relay does not speak ut_holepunch")
	// ErrNoAnswer: the relay said nothing of the rendezvous in time.
	ErrNoAnswer = errors.New("the relay did not answer the rendezvous")
)

// RefusedError is a relay's error message: it cannot introduce us.
type RefusedError struct {
	Relay  netip.AddrPort
	Target netip.AddrPort
	Code   holepunch.ErrCode
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("relay %s cannot introduce us to %s: %v", e.Relay, e.Target, e.Code)
}

// Rendezvous connects to relay over uTP (cfg names the torrent and our
// uTP socket; its transport is overridden), asks it to introduce us to
// target, and returns the address its connect message names for target
// once it has told target to connect to us. ctx bounds it all; the
// connection to the relay is closed before it returns.
func Rendezvous(ctx context.Context, relay, target netip.AddrPort, cfg peerwire.Config, client string) (netip.AddrPort, error) {
	cfg.Transport = peerwire.TransportUTP
	conn, err := peerwire.Dial(ctx, relay, cfg)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("rendezvous through %s: %w", relay, err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := peerwire.Interrupt(ctx, conn)
	defer stop()
	ep, err := talk(conn, target, client)
	if err != nil {
		var refused *RefusedError
		if errors.As(err, &refused) {
			refused.Relay = relay
		}
		return netip.AddrPort{}, fmt.Errorf("rendezvous through %s: %w", relay, err)
	}
	return ep, nil
}

func talk(conn *peerwire.Conn, target netip.AddrPort, client string) (netip.AddrPort, error) {
	if !conn.SupportsExtended() {
		return netip.AddrPort{}, ErrNoSupport
	}
	hello, err := bencode.Marshal(map[string]any{"m": map[string]int{holepunch.ExtensionName: localID}, "v": client})
	if err != nil {
		return netip.AddrPort{}, err
	}
	if err := conn.WriteMessages(pp.Message{Type: pp.Extended, ExtendedID: pp.HandshakeExtendedID, ExtendedPayload: hello}); err != nil {
		return netip.AddrPort{}, fmt.Errorf("send extension handshake: %w", err)
	}
	asked := false
	// A relay sends its bitfield, extension handshake and a few more
	// before it answers; a bounded number of messages keeps a chatty one
	// from holding us past what ctx allows anyway.
	for range 10_000 {
		m, err := conn.ReadMessage()
		if err != nil {
			if errors.Is(err, peerwire.ErrTimeout) {
				return netip.AddrPort{}, errors.Join(ErrNoAnswer, err)
			}
			return netip.AddrPort{}, err
		}
		if m.Type != pp.Extended || m.Keepalive || m.Unknown {
			continue
		}
		switch m.ExtendedID {
		case pp.HandshakeExtendedID:
			if asked {
				continue
			}
			eh, err := peerwire.ParseExtHandshake(m.ExtendedPayload)
			if err != nil {
				return netip.AddrPort{}, fmt.Errorf("its extension handshake: %w", err)
			}
			id, ok := eh.ExtensionID(holepunch.ExtensionName)
			if !ok {
				return netip.AddrPort{}, ErrNoSupport
			}
			payload, err := holepunch.Marshal(holepunch.Msg{MsgType: holepunch.Rendezvous, AddrPort: target})
			if err != nil {
				return netip.AddrPort{}, err
			}
			if err := conn.WriteMessages(pp.Message{Type: pp.Extended, ExtendedID: id, ExtendedPayload: payload}); err != nil {
				return netip.AddrPort{}, fmt.Errorf("send rendezvous: %w", err)
			}
			asked = true
		case localID:
			msg, err := holepunch.Parse(m.ExtendedPayload)
			if err != nil {
				return netip.AddrPort{}, err
			}
			switch {
			case !asked || msg.MsgType == holepunch.Rendezvous:
				// Not an answer: a relay that asks us to relay, or
				// introduces someone unasked. We relay for nobody.
			case msg.MsgType == holepunch.Error:
				return netip.AddrPort{}, &RefusedError{Target: target, Code: msg.ErrCode}
			case msg.MsgType == holepunch.Connect && msg.AddrPort.Addr().Unmap() == target.Addr().Unmap():
				return netip.AddrPortFrom(msg.AddrPort.Addr().Unmap(), msg.AddrPort.Port()), nil
			}
		}
	}
	return netip.AddrPort{}, ErrNoAnswer
}
