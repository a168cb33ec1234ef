package probe

import (
	"context"
	"crypto/sha1"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// testPayload is a deterministic payload and the probe target for it.
func testPayload(size, pieceLength int64) (*swarmsim.Payload, Target) {
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	p := &swarmsim.Payload{InfoHash: infohash.T{0xab, 0xcd}, PieceLength: pieceLength, Data: data}
	hashes := make([][20]byte, p.NumPieces())
	for i := range hashes {
		off := int64(i) * pieceLength
		hashes[i] = sha1.Sum(data[off : off+p.PieceSize(i)])
	}
	return p, Target{
		InfoHash:  p.InfoHash,
		NumPieces: p.NumPieces(),
		PieceSize: p.PieceSize,
		Verify:    func(i int, b []byte) bool { return sha1.Sum(b) == hashes[i] },
	}
}

func startPeer(t *testing.T, cfg swarmsim.PeerConfig) netip.AddrPort {
	t.Helper()
	p, err := swarmsim.StartPeer("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Addr()
}

func TestProbeAgainstSimulatedPeers(t *testing.T) {
	payload, target := testPayload(1<<20+5000, 64<<10)
	n := payload.NumPieces()
	half := bitfield.New(n)
	for i := 0; i < n; i += 2 {
		half.Set(i)
	}
	tests := []struct {
		name     string
		peer     swarmsim.PeerConfig
		policy   peerwire.Policy
		outcome  Outcome
		enc      string
		have     int
		verified bool
	}{
		{"required peer, auto", swarmsim.PeerConfig{Have: bitfield.Full(n), Encryption: swarmsim.EncRequired}, peerwire.PolicyAuto, OutcomeOK, "rc4", n, true},
		{"required peer, require", swarmsim.PeerConfig{Have: bitfield.Full(n), Encryption: swarmsim.EncRequired}, peerwire.PolicyRequire, OutcomeOK, "rc4", n, true},
		{"required peer, plaintext", swarmsim.PeerConfig{Have: bitfield.Full(n), Encryption: swarmsim.EncRequired}, peerwire.PolicyPlaintext, OutcomeEncryptionRequired, "", 0, false},
		{"preferred peer, auto", swarmsim.PeerConfig{Have: bitfield.Full(n), Encryption: swarmsim.EncPreferred}, peerwire.PolicyAuto, OutcomeOK, "mse-plaintext", n, true},
		{"disabled peer, auto falls back", swarmsim.PeerConfig{Have: bitfield.Full(n), Encryption: swarmsim.EncDisabled}, peerwire.PolicyAuto, OutcomeOK, "plaintext", n, true},
		{"disabled peer, require", swarmsim.PeerConfig{Have: bitfield.Full(n), Encryption: swarmsim.EncDisabled}, peerwire.PolicyRequire, OutcomeHandshakeFailed, "", 0, false},
		{"partial peer", swarmsim.PeerConfig{Have: half, Encryption: swarmsim.EncPreferred}, peerwire.PolicyPlaintext, OutcomeOK, "plaintext", half.Count(), true},
		{"peer with nothing", swarmsim.PeerConfig{Encryption: swarmsim.EncPreferred}, peerwire.PolicyPlaintext, OutcomeOK, "plaintext", 0, false},
		{"bad data", swarmsim.PeerConfig{Have: bitfield.Full(n), BadData: true}, peerwire.PolicyAuto, OutcomeBadData, "mse-plaintext", n, false},
		{"never unchokes", swarmsim.PeerConfig{Have: bitfield.Full(n), NeverUnchoke: true}, peerwire.PolicyAuto, OutcomeChoked, "mse-plaintext", n, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.peer.Payload = payload
			tt.peer.PeerID = [20]byte{'-', 'T', 'R', '3', '0', '0', '0', '-'}
			addr := startPeer(t, tt.peer)
			timeout := 10 * time.Second
			if tt.outcome == OutcomeChoked {
				timeout = 2 * time.Second
			}
			r, err := Run(context.Background(), addr, target, Options{Policy: tt.policy, MaxBytes: 256 << 10, Timeout: timeout, InitialWait: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if r.Outcome != tt.outcome || r.Encryption != tt.enc || r.PiecesHave != tt.have {
				t.Fatalf("outcome=%s enc=%q have=%d (err %q), want %s %q %d", r.Outcome, r.Encryption, r.PiecesHave, r.Error, tt.outcome, tt.enc, tt.have)
			}
			if tt.verified && (r.PiecesVerified == 0 || r.PiecesFailed != 0 || r.BytesDownloaded < 256<<10) {
				t.Fatalf("verified=%d failed=%d bytes=%d", r.PiecesVerified, r.PiecesFailed, r.BytesDownloaded)
			}
			if tt.outcome == OutcomeBadData && r.PiecesFailed == 0 {
				t.Fatal("bad data not detected")
			}
			if r.Outcome == OutcomeOK && r.Client != "swarmsim" {
				t.Fatalf("client = %q", r.Client)
			}
		})
	}
}

// TestProbeMeasuresRateLimit checks the bandwidth estimate against a known
// cap: an accuracy requirement, not a speed one.
func TestProbeMeasuresRateLimit(t *testing.T) {
	payload, target := testPayload(4<<20, 256<<10)
	const limit = 512 << 10
	addr := startPeer(t, swarmsim.PeerConfig{Payload: payload, Have: bitfield.Full(payload.NumPieces()), UploadRate: limit})
	r, err := Run(context.Background(), addr, target, Options{MaxBytes: 2 << 20, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != OutcomeOK {
		t.Fatalf("outcome %s: %s", r.Outcome, r.Error)
	}
	if rel := r.ThroughputBytesPerSec/limit - 1; rel < -0.1 || rel > 0.1 {
		t.Fatalf("throughput %.0f B/s vs cap %d: %.1f%% off (spread %.3f)", r.ThroughputBytesPerSec, limit, rel*100, r.ThroughputSpread)
	}
	if r.PiecesVerified != 8 {
		t.Fatalf("verified %d pieces, want 8", r.PiecesVerified)
	}
}
