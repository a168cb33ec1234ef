package trackerdb

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// openTracker starts a throwaway MariaDB holding one tracker schema.
func openTracker(t *testing.T, ctx context.Context, schema string) *sql.DB {
	t.Helper()
	dsn := testclients.StartMariaDB(ctx, t)
	db, err := sql.Open("mysql", dsn+"&multiStatements=true")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ddl, err := os.ReadFile("testdata/" + schema + ".sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, string(ddl)); err != nil {
		t.Fatalf("schema: %v", err)
	}
	return db
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func pid(s string) []byte { return []byte((s + strings.Repeat("x", 20))[:20]) }

// TestUNIT3D: the reader maps torrent ids to info hashes, turns every
// rewritten `peers` row into an announce with the row's counters, address
// and user, and reads only what changed at the next poll.
func TestUNIT3D(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := openTracker(t, ctx, "unit3d")
	ih1, ih2 := infohash.T{1, 2, 3}, infohash.T{9, 9}
	exec(t, db, "INSERT INTO torrents (id, name, info_hash) VALUES (1, 'one', ?), (2, 'two', ?)", ih1[:], ih2[:])
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ip4 := netip.MustParseAddr("10.1.2.3").As4()
	ip6 := netip.MustParseAddr("2001:db8::7").As16()
	insert := "INSERT INTO peers (peer_id, ip, port, agent, uploaded, downloaded, `left`, seeder, torrent_id, user_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	exec(t, db, insert, pid("-qB4650-a"), ip4[:], 51413, "qBittorrent/4.6.5", 1000, 0, 0, 1, 1, 7, t0, t0)
	exec(t, db, insert, pid("-TR4060-b"), ip6[:], 6881, "Transmission/4.0.6", 0, 500, 1500, 0, 1, 8, t0, t0.Add(time.Second))
	exec(t, db, insert, pid("-lt0D80-c"), ip4[:], 6882, "libtorrent", 5, 5, 5, 0, 99, 9, t0, t0) // torrent the tracker does not list

	r, err := New(ctx, Config{DB: db, Schema: UNIT3D, Since: t0.Add(-time.Hour), Batch: 1})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d announces, want 2: %+v", len(got), got)
	}
	a, b := got[0], got[1]
	if a.InfoHash != ih1 || a.IP != netip.MustParseAddr("10.1.2.3") || a.Port != 51413 || a.Uploaded != 1000 || a.UserID != "7" ||
		string(a.PeerID[:8]) != "-qB4650-" || !a.At.Equal(t0) || a.Source != "unit3d" || a.UserAgent != "qBittorrent/4.6.5" {
		t.Errorf("first: %+v", a)
	}
	if b.IP != netip.MustParseAddr("2001:db8::7") || b.Downloaded != 500 || b.Left != 1500 || b.UserID != "8" || !b.At.Equal(t0.Add(time.Second)) {
		t.Errorf("second: %+v", b)
	}
	// Nothing changed: nothing read. A row rewritten by an announce, and a
	// new torrent with its first peer: only those.
	if again, err := r.Poll(ctx); err != nil || len(again) != 0 {
		t.Fatalf("second poll: %d, %v", len(again), err)
	}
	ih3 := infohash.T{3}
	exec(t, db, "INSERT INTO torrents (id, name, info_hash) VALUES (3, 'three', ?)", ih3[:])
	exec(t, db, "UPDATE peers SET uploaded = 4000, updated_at = ? WHERE user_id = 7", t0.Add(time.Minute))
	exec(t, db, insert, pid("-qB4650-d"), ip4[:], 51414, "qBittorrent/4.6.5", 0, 0, 100, 0, 3, 7, t0, t0.Add(time.Minute))
	more, err := r.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(more) != 2 || more[0].Uploaded != 4000 || more[1].InfoHash != ih3 {
		t.Fatalf("third poll: %+v", more)
	}
	if r.Name(ih1) != "one" || r.Name(ih3) != "three" || r.Name(infohash.T{7}) != "" {
		t.Errorf("names from the torrents table: %q %q", r.Name(ih1), r.Name(ih3))
	}
}

// TestGazelle: the same from Ocelot's xbt_files_users (no port; mtime in
// seconds; hex info hashes are not Gazelle's, binary ones are).
func TestGazelle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := openTracker(t, ctx, "gazelle")
	ih := infohash.T{0xab, 0xcd}
	exec(t, db, "INSERT INTO torrents (ID, GroupID, info_hash) VALUES (10, 1, ?)", ih[:])
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).Unix()
	insert := "INSERT INTO xbt_files_users (uid, fid, peer_id, ip, useragent, uploaded, downloaded, remaining, mtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
	exec(t, db, insert, 42, 10, pid("-DE2110-a"), "192.0.2.5", "Deluge 2.1.1", 1<<30, 0, 0, t0)
	exec(t, db, insert, 43, 10, pid("-DE2110-b"), "192.0.2.6", "Deluge 2.1.1", 0, 1<<20, 1<<21, t0) // same second: the cursor must not drop it
	r, err := New(ctx, Config{DB: db, Schema: Gazelle, Since: time.Unix(t0-60, 0), Batch: 1})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].UserID != "42" || got[0].Uploaded != 1<<30 || got[0].IP != netip.MustParseAddr("192.0.2.5") ||
		got[1].UserID != "43" || got[1].Left != 1<<21 || got[0].Port != 0 || got[0].Source != "gazelle" {
		t.Fatalf("announces %+v", got)
	}
	exec(t, db, "UPDATE xbt_files_users SET remaining = 0, downloaded = 3145728, mtime = ? WHERE uid = 43", t0+1800)
	more, err := r.Poll(ctx)
	if err != nil || len(more) != 1 || more[0].Left != 0 || more[0].Downloaded != 3<<20 {
		t.Fatalf("after an announce: %+v, %v", more, err)
	}
	if string(got[0].PeerID[:8]) != "-DE2110-" {
		t.Errorf("peer id %q", got[0].PeerID)
	}
}

// TestNotATrackerDatabase: a database without the schema's tables is an
// error up front.
func TestNotATrackerDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := openTracker(t, ctx, "gazelle")
	if _, err := New(ctx, Config{DB: db, Schema: UNIT3D}); !errors.Is(err, ErrSchema) {
		t.Fatalf("UNIT3D reader on a Gazelle database: %v", err)
	}
	if _, err := ParseSchema("ocelot2"); err == nil {
		t.Fatal("unknown schema accepted")
	}
}

// TestUNIT3DAnnounces: with Announces, every row of UNIT3D's announces
// log is a report, with its event, and its address from the peer's row.
func TestUNIT3DAnnounces(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := openTracker(t, ctx, "unit3d")
	ih := infohash.T{5, 5}
	exec(t, db, "INSERT INTO torrents (id, name, info_hash) VALUES (1, 'one', ?)", ih[:])
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ip := netip.MustParseAddr("10.9.8.7").As4()
	exec(t, db, "INSERT INTO peers (peer_id, ip, port, agent, uploaded, downloaded, `left`, seeder, torrent_id, user_id, updated_at) VALUES (?, ?, 6881, 'x', 0, 0, 0, 1, 1, 7, ?)", pid("-qB-a"), ip[:], t0)
	ann := "INSERT INTO announces (user_id, torrent_id, uploaded, downloaded, `left`, peer_id, port, created_at, event) VALUES (7, 1, ?, 0, 0, ?, 6881, ?, ?)"
	exec(t, db, ann, 0, pid("-qB-a"), t0, "started")
	exec(t, db, ann, 1000, pid("-qB-a"), t0.Add(time.Minute), "")
	exec(t, db, ann, 2000, pid("-qB-a"), t0.Add(2*time.Minute), "stopped")
	r, err := New(ctx, Config{DB: db, Schema: UNIT3D, Announces: true, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Event != reported.EventStarted || got[2].Event != reported.EventStopped || got[1].Uploaded != 1000 ||
		got[2].IP != netip.MustParseAddr("10.9.8.7") || got[2].UserID != "7" {
		t.Fatalf("announces %+v", got)
	}
	if more, err := r.Poll(ctx); err != nil || len(more) != 0 {
		t.Fatalf("read again: %d, %v", len(more), err)
	}
	if _, err := New(ctx, Config{DB: db, Schema: Gazelle, Announces: true}); err == nil {
		t.Fatal("a Gazelle reader of UNIT3D's announces table")
	}
}
