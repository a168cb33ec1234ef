package probe

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// TestProbeV2AgainstLibtorrent: a real libtorrent 2.0 seeder of a v2-only
// torrent (BEP 52: the swarm named by the truncated SHA-256 info hash) and
// one of a hybrid are probed, and the pieces they send are checked against
// their SHA-256 merkle roots (the hybrid's against both hashes). The
// payload is two files, so the v2-only torrent's last piece of the first
// file is short.
func TestProbeV2AgainstLibtorrent(t *testing.T) {
	testclients.Require(t, string(testclients.Libtorrent))
	for _, tt := range []struct {
		name   string
		hybrid bool
		hashes string
	}{{"v2 only", false, "SHA-256"}, {"hybrid", true, "SHA-1+SHA-256"}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "two")
			testclients.MakePayload(t, dir, 700<<10+123, 5)
			testclients.MakePayload(t, dir, 300<<10, 6)
			tor, err := torrentmeta.Load(testclients.MakeTorrentV2(t, dir, 64<<10, nil, tt.hybrid))
			if err != nil {
				t.Fatal(err)
			}
			if !tor.V2 || tor.Hybrid != tt.hybrid || tor.PieceHashes() != tt.hashes {
				t.Fatalf("loaded as v2 %v, hybrid %v, checked by %s", tor.V2, tor.Hybrid, tor.PieceHashes())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			c := testclients.Start(ctx, t, testclients.Options{
				Kind: testclients.Libtorrent, TorrentFile: testclients.MakeTorrentV2(t, dir, 64<<10, nil, tt.hybrid), DataDir: filepath.Dir(dir), Seed: true,
			})
			r, err := Run(ctx, c.Addr, Target{InfoHash: tor.InfoHash, NumPieces: tor.NumPieces, PieceSize: tor.PieceSize, Verify: tor.VerifyPiece},
				Options{MaxBytes: int64(tor.NumPieces) * 64 << 10, Timeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if r.Outcome != OutcomeOK || !r.Seeder || r.PiecesFailed != 0 || r.PiecesVerified != tor.NumPieces {
				t.Fatalf("outcome %s (%s), seeder %v, %d of %d pieces verified, %d failed", r.Outcome, r.Error, r.Seeder, r.PiecesVerified, tor.NumPieces, r.PiecesFailed)
			}
			if !strings.Contains(r.Client, "libtorrent") && !strings.HasPrefix(r.PeerID, "-LT") {
				t.Errorf("client %q, peer id %q", r.Client, r.PeerID)
			}
		})
	}
}
