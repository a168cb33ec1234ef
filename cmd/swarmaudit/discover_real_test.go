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
