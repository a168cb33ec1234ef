package probe

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/observation/watch"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// TestRunOnLentWatch: a watch lends its connection to a bandwidth probe
// (watch.Lender, RunOn) of a peer that takes one connection per IP: the
// probe downloads and verifies pieces the peer holds, including one it
// announced to the watch after its bitfield, knows the peer's choke state
// from the watch, and returns the connection to the watch, which goes on
// receiving HAVEs (the one from during the probe reached the probe).
func TestRunOnLentWatch(t *testing.T) {
	payload, target := testPayload(1<<20, 64<<10)
	n := payload.NumPieces()
	even := bitfield.New(n)
	for i := 0; i < n; i += 2 {
		even.Set(i)
	}
	for _, tt := range []struct {
		name    string
		peer    swarmsim.PeerConfig
		outcome Outcome
	}{
		{"serves", swarmsim.PeerConfig{Have: even, OneConnPerIP: true, Encryption: swarmsim.EncRequired}, OutcomeOK},
		{"never unchokes", swarmsim.PeerConfig{Have: even, OneConnPerIP: true, NeverUnchoke: true}, OutcomeChoked},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.peer.Payload = payload
			p, err := swarmsim.StartPeer("127.0.0.1:0", tt.peer)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			lender, stopper := &watch.Lender{}, &watch.Stopper{}
			connected := make(chan struct{})
			haves := make(chan int, 16)
			type lent struct {
				r   *Result
				st  peerwire.PeerState
				err error
			}
			results := make(chan lent, 1)
			ev := watch.Events{
				Connected: func(*peerwire.Conn, *peerwire.ExtHandshake) { close(connected) },
				Have:      func(_ time.Time, i int) { haves <- i },
			}
			ended := make(chan error, 1)
			go func() {
				_, err := watch.Watch(ctx, p.Addr(), watch.Options{InfoHash: target.InfoHash, NumPieces: n, Lender: lender, Stopper: stopper}, ev)
				ended <- err
			}()
			<-connected
			p.Gain(1) // after the bitfield: known to the watch by its HAVE only
			if got := <-haves; got != 1 {
				t.Fatalf("HAVE %d, want 1", got)
			}
			ok := lender.Lend(func(c *peerwire.Conn, st *peerwire.PeerState) error {
				before := *st
				p.Gain(3) // during the probe: the probe reads it
				r, err := RunOn(ctx, c, st, target, Options{MaxBytes: int64(n) * 64 << 10, Timeout: 3 * time.Second})
				if before.Have.Count() != n/2+1 || !before.Choked {
					t.Errorf("the watch lent a state of %d pieces, choked %v; want %d, choked", before.Have.Count(), before.Choked, n/2+1)
				}
				results <- lent{r, *st, err}
				return err
			})
			if !ok {
				t.Fatal("a connected watch refused to lend its connection")
			}
			got := <-results
			if got.err != nil {
				t.Fatalf("giving the connection back: %v", got.err)
			}
			r := got.r
			if r.Outcome != tt.outcome || !r.OnWatch || r.SnapshotBitfield != nil || r.HandshakeMS != 0 {
				t.Fatalf("outcome %s (%s), on watch %v, snapshot %v, handshake %.1f ms", r.Outcome, r.Error, r.OnWatch, r.SnapshotBitfield != nil, r.HandshakeMS)
			}
			if tt.outcome == OutcomeOK && (r.PiecesVerified < n/2 || r.PiecesFailed != 0 || r.WireBytesIn < r.BytesDownloaded) {
				t.Fatalf("verified %d of the %d pieces it holds, %d failed, %d wire bytes for %d", r.PiecesVerified, n/2+2, r.PiecesFailed, r.WireBytesIn, r.BytesDownloaded)
			}
			if len(r.Haves) != 1 || r.Haves[0].Piece != 3 || got.st.Have.Count() != n/2+2 {
				t.Fatalf("HAVEs during the probe %v; the state handed back has %d pieces, want %d", r.Haves, got.st.Have.Count(), n/2+2)
			}
			p.Gain(5) // after: the watch again
			select {
			case i := <-haves:
				if i != 5 {
					t.Fatalf("HAVE %d after the probe, want 5", i)
				}
			case err := <-ended:
				t.Fatalf("the watch ended after the probe: %v", err)
			}
			stopper.Stop()
			if err := <-ended; err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("watch: %v", err)
			}
		})
	}
}

// TestLendNeedsAConnectedWatch: a lender whose watch is not connected
// refuses a task, which then never runs.
func TestLendNeedsAConnectedWatch(t *testing.T) {
	var l watch.Lender
	if l.Lend(func(*peerwire.Conn, *peerwire.PeerState) error { t.Error("ran"); return nil }) {
		t.Fatal("lent a connection that is not there")
	}
}
