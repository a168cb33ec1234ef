package store

import (
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// sqliteOnly skips a test of the SQLite file itself (reached with rawDB:
// its path, pragmas and locks) when the package's tests run on PostgreSQL.
func sqliteOnly(t *testing.T) {
	t.Helper()
	if testEngine == "postgres" {
		t.Skip("a test of the SQLite file itself")
	}
}

func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqliteURI(path, "_pragma=busy_timeout(10000)"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func countRows(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(testCtx(t), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestOpenMigratesOnceAndReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	ctx := testCtx(t)
	for i := 0; i < 3; i++ {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if _, err := s.EnsureSwarm(ctx, SwarmInfo{InfoHash: ih(byte(i + 1))}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	db := rawDB(t, path)
	if n := countRows(t, db, `SELECT COUNT(*) FROM schema_migrations`); n != len(migrations) {
		t.Fatalf("%d migration rows, want %d", n, len(migrations))
	}
	if n := countRows(t, db, `SELECT COUNT(*) FROM swarms`); n != 3 {
		t.Fatalf("%d swarms after three opens, want 3", n)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
}

func TestMigrateUpgradesAndRefusesNewer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	ctx := testCtx(t)
	db, d, tables := rawDB(t, path), sqliteDialect, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'more'`
	if testEngine == "postgres" { // the same steps on PostgreSQL
		pg, err := sql.Open("pgx", testclients.StartPostgres(ctx, t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pg.Close() })
		db, d, tables = pg, postgresDialect, `SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'more'`
	}
	v1 := migration{version: 1, name: "things", stmts: []string{`CREATE TABLE things (id {{id}}, name TEXT NOT NULL)`}}
	v2 := migration{version: 2, name: "thing sizes", stmts: []string{`ALTER TABLE things ADD COLUMN size BIGINT NOT NULL DEFAULT 7`}}
	// A step for the other engine only is recorded here with nothing run.
	other := map[string]string{"sqlite": "postgres", "postgres": "sqlite"}[d.name]
	v3other := migration{version: 3, name: "the other engine's", only: other, stmts: []string{`THIS IS NOT SQL`}}
	v4bad := migration{version: 4, name: "broken", stmts: []string{`CREATE TABLE more (id {{id}})`, `THIS IS NOT SQL`}}

	steps := []struct {
		name        string
		ms          []migration
		wantApplied []int
		wantErr     error
		wantVersion int
	}{
		{"empty to v1", []migration{v1}, []int{1}, nil, 1},
		{"v1 again is a no-op", []migration{v1}, nil, nil, 1},
		{"old db upgraded to v2", []migration{v1, v2}, []int{2}, nil, 2},
		{"another engine's step recorded, not run", []migration{v1, v2, v3other}, []int{3}, nil, 3},
		{"failed step rolls back whole", []migration{v1, v2, v3other, v4bad}, nil, errAny, 3},
		{"newer db refused", []migration{v1}, nil, ErrSchemaTooNew, 3},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			applied, err := migrate(ctx, db, d, st.ms)
			switch {
			case st.wantErr == errAny && err == nil:
				t.Fatal("migrate succeeded, want an error")
			case st.wantErr != errAny && !errors.Is(err, st.wantErr):
				t.Fatalf("migrate err = %v, want %v", err, st.wantErr)
			}
			if fmt.Sprint(applied) != fmt.Sprint(st.wantApplied) {
				t.Fatalf("applied %v, want %v", applied, st.wantApplied)
			}
			if v, err := currentVersion(ctx, db); err != nil || v != st.wantVersion {
				t.Fatalf("version = %d, %v; want %d", v, err, st.wantVersion)
			}
		})
		if st.name == "empty to v1" {
			if _, err := db.Exec(`INSERT INTO things (name) VALUES ('kept')`); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := countRows(t, db, `SELECT COUNT(*) FROM things WHERE name = 'kept' AND size = 7`); n != 1 {
		t.Fatalf("row from v1 not carried through the upgrade")
	}
	if n := countRows(t, db, tables); n != 0 {
		t.Fatalf("half-applied migration left table behind")
	}
}

// errAny marks a step that must fail without a specific sentinel.
var errAny = errors.New("any error")

func TestOpenRefuses(t *testing.T) {
	sqliteOnly(t)
	dir := t.TempDir()
	newer := filepath.Join(dir, "newer.db")
	s := openTest(t, newer)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rawDB(t, newer).Exec(`INSERT INTO schema_migrations (version, name, applied_us) VALUES (999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database\n", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr error
	}{
		{"newer schema", newer, ErrSchemaTooNew},
		{"not a database", garbage, errAny},
		{"empty path", "", ErrInvalid},
		{"directory missing", filepath.Join(dir, "no", "such", "dir", "x.db"), errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(testCtx(t), tt.path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if tt.wantErr != errAny && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestOpenOddPath(t *testing.T) {
	sqliteOnly(t)
	path := filepath.Join(t.TempDir(), "a?b#c%20d.db")
	s := openTest(t, path)
	if _, err := s.EnsureSwarm(testCtx(t), SwarmInfo{InfoHash: ih(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
}

// TestConcurrentWriters runs writers of every kind and readers at once (run
// it with -race) and checks that every write landed.
func TestConcurrentWriters(t *testing.T) {
	s := openTest(t, "", WithHaveBatch(16, 10*time.Millisecond))
	ctx := testCtx(t)
	const n, workers, per = 64, 8, 40
	sw := mustSwarm(t, s, SwarmInfo{InfoHash: ih(1), NumPieces: n})
	var wg sync.WaitGroup
	errs := make(chan error, workers+2)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(w)}), 6881)
			bf := bitfield.New(n)
			for i := 0; i < per; i++ {
				at := t0.Add(time.Duration(i) * time.Second)
				bf.Set(i)
				err := errors.Join(
					s.AddSnapshot(ctx, sw, p, at, bf),
					s.AddHave(ctx, sw, p, at, i),
					s.AddConnEvent(ctx, sw, ConnEvent{Addr: p, At: at, Outcome: ConnOK}),
					s.RecordAnnounce(reported.Announce{At: at, InfoHash: ih(1), IP: p.Addr(), Port: p.Port(), Uploaded: int64(i)}),
					s.UpsertPeer(ctx, sw, Peer{Addr: p, Sources: []string{fmt.Sprintf("src%d", i%3)}}),
				)
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := s.Snapshots(ctx, sw); err != nil {
					errs <- err
					return
				}
				if _, err := s.Haves(ctx, sw); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	snaps, err := s.Snapshots(ctx, sw)
	if err != nil {
		t.Fatal(err)
	}
	haves, err := s.Haves(ctx, sw)
	if err != nil {
		t.Fatal(err)
	}
	conns, err := s.ConnEvents(ctx, sw)
	if err != nil {
		t.Fatal(err)
	}
	anns, err := s.Announces(ctx, ih(1), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	peers, err := s.Peers(ctx, sw)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != workers || len(haves) != workers || len(conns) != workers*per || len(anns) != workers*per || len(peers) != workers {
		t.Fatalf("got %d/%d/%d/%d/%d peers/peers/conns/announces/peers", len(snaps), len(haves), len(conns), len(anns), len(peers))
	}
	for p, ss := range snaps {
		if len(ss) != per || len(haves[p]) != per || ss[per-1].Bitfield.Count() != per {
			t.Fatalf("%s: %d snapshots, %d HAVEs, last has %d pieces", p, len(ss), len(haves[p]), ss[per-1].Bitfield.Count())
		}
	}
	for _, p := range peers {
		if len(p.Sources) != 3 {
			t.Fatalf("%s sources %v, want 3", p.Addr, p.Sources)
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestHaveBatching(t *testing.T) {
	sqliteOnly(t)
	path := filepath.Join(t.TempDir(), "audit.db")
	// An interval long enough that only the size trigger and Close flush.
	s := openTest(t, path, WithHaveBatch(5, time.Hour))
	ctx := testCtx(t)
	sw := mustSwarm(t, s, SwarmInfo{InfoHash: ih(1), NumPieces: 100})
	db := rawDB(t, path)
	p := addr("127.0.0.1:1")
	for i := 0; i < 12; i++ {
		if err := s.AddHave(ctx, sw, p, t0.Add(time.Duration(i)*time.Millisecond), i); err != nil {
			t.Fatal(err)
		}
	}
	if n := countRows(t, db, `SELECT COALESCE(SUM(events), 0) FROM obs_have_batches`); n != 10 {
		t.Fatalf("%d HAVEs committed after 12 with batch 5, want 10", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, `SELECT COALESCE(SUM(events), 0) FROM obs_have_batches`); n != 12 {
		t.Fatalf("%d HAVEs committed after Close, want 12", n)
	}
	if err := s.AddHave(ctx, sw, p, t0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddHave after Close = %v, want ErrClosed", err)
	}
}

func TestHaveBacklog(t *testing.T) {
	sqliteOnly(t)
	path := filepath.Join(t.TempDir(), "audit.db")
	s := openTest(t, path, WithHaveBatch(20, time.Hour))
	ctx := testCtx(t)
	sw := mustSwarm(t, s, SwarmInfo{InfoHash: ih(1), NumPieces: 1000})
	// Another connection holds the write lock: flushes fail with SQLITE_BUSY
	// once the (short, for this test) busy timeout passes.
	if _, err := s.w.Exec(`PRAGMA busy_timeout = 0`); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	if _, err := db.Exec(`PRAGMA busy_timeout = 0`); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	p := addr("127.0.0.1:1")
	var flushErrs, backlog int
	for i := 0; i < 300; i++ {
		err := s.AddHave(ctx, sw, p, t0.Add(time.Duration(i)*time.Millisecond), i)
		switch {
		case errors.Is(err, ErrBacklog):
			backlog++
		case err != nil:
			flushErrs++
		}
	}
	if flushErrs == 0 || backlog != 100 { // 10 batches of 20 queued, then refusals
		t.Fatalf("%d flush errors, %d backlog refusals; want some and 100", flushErrs, backlog)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, `SELECT COALESCE(SUM(events), 0) FROM obs_have_batches`); n != 200 {
		t.Fatalf("%d HAVEs after the lock was released, want the 200 queued", n)
	}
}

// TestCorruptRowsAreErrors damages stored snapshots and peers the way a
// hostile or broken file could and checks that reads fail cleanly.
func TestCorruptRowsAreErrors(t *testing.T) {
	sqliteOnly(t)
	tests := []struct {
		name   string
		damage string
	}{
		{"garbage delta", `UPDATE obs_snapshots SET data = x'ffffffffffff' WHERE kind = 2`},
		{"unknown kind", `UPDATE obs_snapshots SET kind = 9 WHERE kind = 2`},
		{"missing base", `UPDATE obs_snapshots SET base_id = 12345 WHERE kind = 2`},
		{"base of another peer", `UPDATE obs_snapshots SET base_id = (SELECT MAX(id) FROM obs_snapshots) WHERE id = 2`},
		{"negative pieces", `UPDATE obs_snapshots SET num_pieces = -1`},
		{"huge pieces", `UPDATE obs_snapshots SET num_pieces = 1000000000000`},
		{"wire bitfield wrong length", `UPDATE obs_snapshots SET kind = 0, data = x'ff' WHERE kind = 1`},
		{"bad address", `UPDATE peers SET addr = 'not an address' WHERE addr = '127.0.0.1:2'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.db")
			s := openTest(t, path, WithFullSnapshotEvery(100))
			ctx := testCtx(t)
			sw := mustSwarm(t, s, SwarmInfo{InfoHash: ih(1), NumPieces: 40})
			for i := 0; i < 3; i++ {
				if err := s.AddSnapshot(ctx, sw, addr("127.0.0.1:1"), t0.Add(time.Duration(i)*time.Second), bfOf(40, 0, 10, 10+i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.AddSnapshot(ctx, sw, addr("127.0.0.1:2"), t0, bitfield.Full(40)); err != nil {
				t.Fatal(err)
			}
			db := rawDB(t, path)
			if _, err := db.Exec(tt.damage); err != nil {
				t.Fatal(err)
			}
			_, err := s.Snapshots(ctx, sw)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Snapshots = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestDialects(t *testing.T) {
	tests := []struct {
		d    dialect
		in   string
		want string
	}{
		{sqliteDialect, `SELECT a FROM t WHERE b = ? AND c = ?`, `SELECT a FROM t WHERE b = ? AND c = ?`},
		{postgresDialect, `SELECT a FROM t WHERE b = ? AND c = ?`, `SELECT a FROM t WHERE b = $1 AND c = $2`},
		{postgresDialect, `SELECT 1`, `SELECT 1`},
	}
	for _, tt := range tests {
		if got := tt.d.q(tt.in); got != tt.want {
			t.Errorf("%s: q(%q) = %q, want %q", tt.d.name, tt.in, got, tt.want)
		}
	}
	for _, d := range []dialect{sqliteDialect, postgresDialect} {
		for _, m := range migrations {
			for _, stmt := range m.stmts {
				out := d.schema(stmt)
				if strings.Contains(out, "{{") {
					t.Errorf("%s: unexpanded token in %s", d.name, out)
				}
				if d.name == "postgres" && (strings.Contains(out, "ROWID") || strings.Contains(out, "BLOB")) {
					t.Errorf("postgres schema keeps SQLite syntax: %s", out)
				}
			}
		}
	}
}
