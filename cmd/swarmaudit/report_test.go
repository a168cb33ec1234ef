package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// TestReportHidesPasskeys: `swarmaudit report` judges a stored audit again
// and writes no passkey in clear — not in the JSON, HTML or CSV reports,
// not in --json — unless --show-passkeys asks for it.
func TestReportHidesPasskeys(t *testing.T) {
	dir := t.TempDir()
	payload := testclients.MakePayload(t, dir, 1<<20, 7)
	tpath, _ := testclients.MakeTorrent(t, payload, 256<<10, []string{"http://127.0.0.1:1/announce"}, true)
	tor, err := torrentmeta.Load(tpath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db := testclients.StoreDB(t, filepath.Join(dir, "audit.db"))
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnsureSwarm(ctx, store.SwarmInfo{InfoHash: tor.InfoHash, Name: tor.Name, PieceLength: tor.PieceLength,
		TotalLength: tor.TotalLength, NumPieces: tor.NumPieces}); err != nil {
		t.Fatal(err)
	}
	const passkey = "0123456789abcdefSECRETPASSKEY987"
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for k, up := range []int64{0, 50 << 20, 90 << 20} {
		ev := reported.EventNone
		if k == 0 {
			ev = reported.EventStarted
		}
		a := reported.Announce{At: at.Add(time.Duration(k) * 10 * time.Minute), InfoHash: tor.InfoHash, PeerID: [20]byte{'-', 'q', 'B'},
			IP: netip.MustParseAddr("127.0.0.9"), Port: 6881, Uploaded: up, Left: 0, Event: ev, Passkey: passkey}
		if err := st.AddAnnounce(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, show := range []bool{false, true} {
		out := filepath.Join(dir, map[bool]string{false: "hidden", true: "shown"}[show])
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		args := []string{"report", "--torrent", tpath, "--db", db, "--json",
			"--json-out", filepath.Join(out, "r.json"), "--html-out", filepath.Join(out, "r.html"), "--csv-out", filepath.Join(out, "r.csv")}
		if show {
			args = append(args, "--show-passkeys")
		}
		stdout, err := run(t, args...)
		if code := exitCode(err); code != exitOK && code != exitFlagged {
			t.Fatalf("report: %v\n%s", err, stdout)
		}
		texts := map[string]string{"--json": stdout}
		for _, f := range []string{"r.json", "r.html", "r.csv"} {
			b, err := os.ReadFile(filepath.Join(out, f))
			if err != nil {
				t.Fatal(err)
			}
			texts[f] = string(b)
		}
		if !strings.Contains(stdout, `"verdicts"`) || !strings.Contains(texts["r.json"], "127.0.0.9") {
			t.Fatalf("the reports do not show the identity:\n%s", stdout)
		}
		for name, text := range texts {
			has := strings.Contains(text, passkey)
			switch {
			case !show && has:
				t.Errorf("%s shows the passkey in clear", name)
			case show && !has && (name == "--json" || name == "r.json"):
				t.Errorf("--show-passkeys: %s lacks the passkey", name)
			}
		}
	}
}
