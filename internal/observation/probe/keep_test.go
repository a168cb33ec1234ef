package probe

import (
	"context"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// TestKeepHandsOverTheConnection: with Keep, a probe that ended cleanly
// returns its connection open, and the peer's next HAVE arrives on it; a
// probe that did not end cleanly returns none.
func TestKeepHandsOverTheConnection(t *testing.T) {
	payload, target := testPayload(1<<20, 64<<10)
	n := payload.NumPieces()
	even := bitfield.New(n)
	for i := 0; i < n; i += 2 {
		even.Set(i)
	}
	for _, tt := range []struct {
		name         string
		bitfieldOnly bool
		peer         swarmsim.PeerConfig
		kept         bool
	}{
		{"snapshot", true, swarmsim.PeerConfig{Have: bitfield.New(n), Encryption: swarmsim.EncRequired}, true},
		{"bandwidth", false, swarmsim.PeerConfig{Have: even, Encryption: swarmsim.EncPreferred}, true},
		{"kept choked", false, swarmsim.PeerConfig{Have: bitfield.Full(n), NeverUnchoke: true}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.peer.Payload = payload
			p, err := swarmsim.StartPeer("127.0.0.1:0", tt.peer)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r, err := Run(ctx, p.Addr(), target, Options{BitfieldOnly: tt.bitfieldOnly, MaxBytes: 256 << 10, Keep: true, Timeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if (r.Conn != nil) != tt.kept {
				t.Fatalf("outcome %s: connection kept %v, want %v", r.Outcome, r.Conn != nil, tt.kept)
			}
			if r.Conn == nil {
				return
			}
			defer r.Conn.Close()
			p.Gain(5)
			r.Conn.SetDeadline(time.Now().Add(5 * time.Second))
			for {
				m, err := r.Conn.ReadMessage()
				if err != nil {
					t.Fatalf("no HAVE on the kept connection: %v", err)
				}
				if m.Type == pp.Have && m.Index == 5 {
					return
				}
			}
		})
	}
}
