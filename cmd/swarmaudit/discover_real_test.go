package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/trackerserver"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// TestDiscoverFromRealPeers: with only a magnet naming one real libtorrent
// leecher, discover fetches the metadata from it (hash-verified, saved with
// --save-torrent) and learns by its PEX the seeder it downloads from, which
// it never got from any tracker. (libtorrent's PEX lists the peers it
// connected to, and those that told it their listen port.)
func TestDiscoverFromRealPeers(t *testing.T) {
	dir := t.TempDir()
	payload := testclients.MakePayload(t, dir, 2<<20, 41)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A tracker only the two clients use, so they find each other.
	srv, err := trackerserver.New(trackerserver.Config{HTTPAddr: "127.0.0.1:0", Interval: 5 * time.Second, Recorder: &reported.MemoryRecorder{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tpath, ih := testclients.MakeTorrent(t, payload, 64<<10, []string{srv.HTTPURL()}, false)
	seeder := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Libtorrent, TorrentFile: tpath, DataDir: filepath.Dir(payload), Seed: true, PEX: true, IP: "127.0.0.21"})
	leecher := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Libtorrent, TorrentFile: tpath, DataDir: t.TempDir(), PEX: true, IP: "127.0.0.22", DownloadLimitKiB: 64})
	// Wait until the two are connected, so the seeder has someone to gossip.
	for {
		st, err := leecher.Stats(ctx)
		if err == nil && st.NumPeers > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the clients never connected: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	saved := filepath.Join(t.TempDir(), "from-magnet.torrent")
	magnet := fmt.Sprintf("magnet:?xt=urn:btih:%x&x.pe=%s", ih, leecher.Addr)
	out, err := run(t, "discover", "--magnet", magnet, "--no-dht", "--duration", "15s", "--json", "--save-torrent", saved)
	if err != nil {
		t.Fatalf("discover: %v\n%s", err, out)
	}
	got, err := torrentmeta.Load(saved)
	if err != nil {
		t.Fatalf("metadata was not saved: %v\n%s", err, out)
	}
	if got.InfoHash != ih || got.TotalLength != 2<<20 {
		t.Fatalf("saved torrent %x of %d bytes", got.InfoHash, got.TotalLength)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			Addr    string   `json:"addr"`
			Sources []string `json:"sources"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Addr == seeder.Addr.String() {
			found = strings.Join(e.Sources, ",") == "pex:"+leecher.Addr.String()
		}
	}
	if !found {
		t.Fatalf("the seeder %s was not learned by PEX from %s:\n%s", seeder.Addr, leecher.Addr, out)
	}
}

// TestDiscoverBTMHMagnet: a btmh magnet (BitTorrent v2) naming a real
// libtorrent seeder of a v2-only torrent: discover fetches the info
// dictionary and the piece layers (BEP 52 hash requests) and saves a
// .torrent that loads as the original, and a probe with it verifies the
// seeder's pieces by their SHA-256 merkle roots.
func TestDiscoverBTMHMagnet(t *testing.T) {
	testclients.Require(t, string(testclients.Libtorrent))
	dir := filepath.Join(t.TempDir(), "v2")
	testclients.MakePayload(t, dir, 3<<20+5, 43)
	testclients.MakePayload(t, dir, 1<<20, 44)
	tpath := testclients.MakeTorrentV2(t, dir, 32<<10, nil, false)
	orig, err := torrentmeta.Load(tpath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seeder := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Libtorrent, TorrentFile: tpath, DataDir: filepath.Dir(dir), Seed: true})
	magnet := fmt.Sprintf("magnet:?xt=urn:btmh:1220%x&x.pe=%s", orig.InfoHashV2, seeder.Addr)
	saved := filepath.Join(t.TempDir(), "from-btmh.torrent")
	out, err := run(t, "discover", "--magnet", magnet, "--no-dht", "--duration", "5s", "--json", "--save-torrent", saved)
	if err != nil {
		t.Fatalf("discover: %v\n%s", err, out)
	}
	got, err := torrentmeta.Load(saved)
	if err != nil {
		t.Fatalf("metadata and piece layers were not saved: %v\n%s", err, out)
	}
	if got.InfoHashV2 != orig.InfoHashV2 || got.InfoHash != orig.InfoHash || got.NumPieces != orig.NumPieces || got.PieceHashes() != "SHA-256" {
		t.Fatalf("saved torrent v2 %x, %d pieces checked by %s; want v2 %x, %d pieces", got.InfoHashV2, got.NumPieces, got.PieceHashes(), orig.InfoHashV2, orig.NumPieces)
	}
	waitNoPeersCmd(t, seeder)
	out, err = run(t, "probe", "--torrent", saved, "--peer", seeder.Addr.String(), "--json")
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	var r struct {
		Outcome        string `json:"outcome"`
		PiecesVerified int    `json:"pieces_verified"`
		PiecesFailed   int    `json:"pieces_failed"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
		t.Fatalf("probe output: %v\n%s", err, out)
	}
	if r.Outcome != "ok" || r.PiecesVerified == 0 || r.PiecesFailed != 0 {
		t.Fatalf("probe with the saved torrent: %+v", r)
	}
}

// waitNoPeersCmd waits until the client counts no peer (it takes one
// connection per IP), logging when it never did.
func waitNoPeersCmd(t *testing.T, c *testclients.Client) {
	t.Helper()
	if !c.WaitNoPeers(context.Background()) {
		t.Logf("the client still counts a peer after 10 s; going on")
	}
}
