package watch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// TestFetchV2MetadataFromLibtorrent: a btmh magnet of a v2-only torrent
// names the swarm by its truncated SHA-256 (BEP 52); a real libtorrent
// seeder gives its info dictionary over ut_metadata and then its piece
// layers in answer to hash requests — one file's in one request, a longer
// file's in two, with the uncle hash that ties each half to the pieces
// root. Every piece of the payload then checks against the fetched
// torrent, as against the .torrent.
func TestFetchV2MetadataFromLibtorrent(t *testing.T) {
	testclients.Require(t, string(testclients.Libtorrent))
	dir := filepath.Join(t.TempDir(), "v2")
	testclients.MakePayload(t, dir, 10<<20+777, 61) // 641 pieces of 16 KiB: two requests
	testclients.MakePayload(t, dir, 3<<20, 62)      // 192 pieces: one request
	path := testclients.MakeTorrentV2(t, dir, 16<<10, nil, false)
	full, err := torrentmeta.Load(path)
	if err != nil || !full.V2 || full.Hybrid {
		t.Fatalf("v2 torrent: %v", err)
	}
	m, err := torrentmeta.ParseMagnet(full.Magnet().String())
	if err != nil || !m.V2 || m.InfoHash != full.InfoHash {
		t.Fatalf("the torrent's magnet %q: %+v, %v", full.Magnet().String(), m, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Libtorrent, TorrentFile: path, DataDir: filepath.Dir(dir), Seed: true})
	fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
	defer fcancel()
	got, err := FetchMetadata(fctx, c.Addr, Options{InfoHash: m.InfoHash, PeerID: peerid.New(peerid.Prefix)})
	if err != nil {
		t.Fatal(err)
	}
	if got.InfoHashV2 != full.InfoHashV2 || got.NumPieces != full.NumPieces || len(got.MissingLayers()) != 0 {
		t.Fatalf("fetched: %d pieces, %d layers missing; the .torrent has %d pieces", got.NumPieces, len(got.MissingLayers()), full.NumPieces)
	}
	checked := 0
	for _, f := range got.Files {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f.Path))
		if err != nil {
			t.Fatal(err)
		}
		first := int(f.Offset / got.PieceLength)
		for j := 0; int64(j)*got.PieceLength < f.Length; j++ {
			piece := data[int64(j)*got.PieceLength : min(int64(j+1)*got.PieceLength, f.Length)]
			if !got.VerifyPiece(first+j, piece) || !full.VerifyPiece(first+j, piece) {
				t.Fatalf("piece %d (%s, its piece %d) does not check", first+j, f.Path, j)
			}
			checked++
		}
	}
	if checked != got.NumPieces {
		t.Fatalf("checked %d of %d pieces", checked, got.NumPieces)
	}
}
