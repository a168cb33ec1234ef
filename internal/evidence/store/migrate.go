package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// migration is one step of the schema. Steps are applied in order, each in
// its own transaction together with its schema_migrations row, so a crash
// leaves the database at a whole version.
type migration struct {
	version int
	name    string
	stmts   []string
	// only, when set, names the one engine the statements are for; on the
	// others the step is recorded with nothing done, so that versions mean
	// the same on every engine.
	only string
}

// migrations is the schema history. Append new steps; never edit a released
// one (a database that already applied it would not see the change).
//
// Times are BIGINT microseconds since the Unix epoch (UTC): portable, compact
// (6-byte integers in SQLite), and exact for the precision the audit needs.
var migrations = []migration{
	{version: 1, name: "initial schema", stmts: []string{
		`CREATE TABLE swarms (
			id           {{id}},
			info_hash    {{blob}} NOT NULL UNIQUE,
			name         TEXT NOT NULL DEFAULT '',
			piece_length BIGINT NOT NULL DEFAULT 0,
			total_length BIGINT NOT NULL DEFAULT 0,
			num_pieces   BIGINT NOT NULL DEFAULT 0,
			created_us   BIGINT NOT NULL
		)`,
		`CREATE TABLE peers (
			id            {{id}},
			swarm_id      BIGINT NOT NULL REFERENCES swarms(id),
			addr          TEXT NOT NULL,
			peer_id       {{blob}},
			client        TEXT NOT NULL DEFAULT '',
			encryption    TEXT NOT NULL DEFAULT '',
			first_seen_us BIGINT NOT NULL,
			last_seen_us  BIGINT NOT NULL,
			sources       TEXT NOT NULL DEFAULT '',
			UNIQUE (swarm_id, addr)
		)`,
		// A snapshot is kind 0 (full, wire bitfield), 1 (full, runs of set
		// pieces) or 2 (delta: runs of pieces gained since snapshot base_id).
		`CREATE TABLE obs_snapshots (
			id         {{id}},
			peer_id    BIGINT NOT NULL REFERENCES peers(id),
			at_us      BIGINT NOT NULL,
			kind       SMALLINT NOT NULL,
			num_pieces BIGINT NOT NULL,
			base_id    BIGINT REFERENCES obs_snapshots(id),
			data       {{blob}} NOT NULL
		)`,
		`CREATE INDEX obs_snapshots_peer ON obs_snapshots (peer_id)`,
		`CREATE TABLE obs_haves (
			peer_id BIGINT NOT NULL REFERENCES peers(id),
			at_us   BIGINT NOT NULL,
			piece   BIGINT NOT NULL,
			PRIMARY KEY (peer_id, at_us, piece)
		){{without_rowid}}`,
		`CREATE TABLE obs_conn (
			id         {{id}},
			peer_id    BIGINT NOT NULL REFERENCES peers(id),
			at_us      BIGINT NOT NULL,
			outcome    TEXT NOT NULL,
			encryption TEXT NOT NULL DEFAULT '',
			detail     TEXT NOT NULL DEFAULT ''
		)`,
		`CREATE INDEX obs_conn_peer ON obs_conn (peer_id, at_us)`,
		`CREATE TABLE probes (
			id               {{id}},
			peer_id          BIGINT NOT NULL REFERENCES peers(id),
			at_us            BIGINT NOT NULL,
			outcome          TEXT NOT NULL,
			encryption       TEXT NOT NULL DEFAULT '',
			throughput_bps   DOUBLE PRECISION NOT NULL DEFAULT 0,
			spread           DOUBLE PRECISION NOT NULL DEFAULT 0,
			bytes_downloaded BIGINT NOT NULL DEFAULT 0,
			pieces_verified  BIGINT NOT NULL DEFAULT 0,
			pieces_failed    BIGINT NOT NULL DEFAULT 0,
			handshake_ms     DOUBLE PRECISION NOT NULL DEFAULT 0,
			result_json      TEXT NOT NULL DEFAULT '{}'
		)`,
		`CREATE INDEX probes_peer ON probes (peer_id, at_us)`,
		`CREATE TABLE announces (
			id            {{id}},
			swarm_id      BIGINT NOT NULL REFERENCES swarms(id),
			at_us         BIGINT NOT NULL,
			peer_id       {{blob}} NOT NULL,
			ip            TEXT NOT NULL DEFAULT '',
			port          INTEGER NOT NULL DEFAULT 0,
			uploaded      BIGINT NOT NULL,
			downloaded    BIGINT NOT NULL,
			left_bytes    BIGINT NOT NULL,
			event         TEXT NOT NULL DEFAULT '',
			announce_key  TEXT NOT NULL DEFAULT '',
			passkey       TEXT NOT NULL DEFAULT '',
			user_agent    TEXT NOT NULL DEFAULT '',
			source        TEXT NOT NULL DEFAULT '',
			user_id       TEXT NOT NULL DEFAULT ''
		)`,
		`CREATE INDEX announces_swarm_at ON announces (swarm_id, at_us)`,
		`CREATE TABLE runs (
			id          {{id}},
			swarm_id    BIGINT NOT NULL REFERENCES swarms(id),
			started_us  BIGINT NOT NULL,
			stopped_us  BIGINT,
			config_json TEXT NOT NULL DEFAULT '{}'
		)`,
		`CREATE TABLE verdicts (
			id              {{id}},
			swarm_id        BIGINT NOT NULL REFERENCES swarms(id),
			run_id          BIGINT REFERENCES runs(id),
			identity        TEXT NOT NULL,
			window_start_us BIGINT NOT NULL,
			window_end_us   BIGINT NOT NULL,
			status          TEXT NOT NULL,
			confidence      DOUBLE PRECISION NOT NULL,
			reasons_json    TEXT NOT NULL DEFAULT '[]',
			computed_us     BIGINT NOT NULL,
			UNIQUE (swarm_id, identity, window_start_us, window_end_us)
		)`,
	}},
	{version: 2, name: "per-database secrets", stmts: []string{
		`CREATE TABLE secrets (
			name       TEXT PRIMARY KEY,
			value      {{blob}} NOT NULL,
			created_us BIGINT NOT NULL
		)`,
	}},
	{version: 3, name: "leases of work between nodes", stmts: []string{
		`CREATE TABLE leases (
			name       TEXT PRIMARY KEY,
			node       TEXT NOT NULL,
			expires_us BIGINT NOT NULL
		)`,
	}},
	// The append-only tables grow in time order, so on PostgreSQL a BRIN
	// index on the time (a few pages for millions of rows) serves time
	// ranges — windows, retention — without a B-tree's size. SQLite has no
	// BRIN, and a B-tree on time would cost more than it saves there.
	{version: 4, name: "time-range (BRIN) indexes of the append-only tables", only: "postgres", stmts: []string{
		`CREATE INDEX obs_snapshots_at ON obs_snapshots USING BRIN (at_us)`,
		`CREATE INDEX obs_haves_at ON obs_haves USING BRIN (at_us)`,
		`CREATE INDEX obs_conn_at ON obs_conn USING BRIN (at_us)`,
		`CREATE INDEX probes_at ON probes USING BRIN (at_us)`,
		`CREATE INDEX announces_at ON announces USING BRIN (at_us)`,
	}},
	// A watch's heartbeat ("still connected", every snapshot interval)
	// was a row each; a run of them is now one row whose end and count
	// grow (Store.AddBeat).
	{version: 5, name: "heartbeat runs in obs_conn", stmts: []string{
		`ALTER TABLE obs_conn ADD COLUMN until_us BIGINT`,
		`ALTER TABLE obs_conn ADD COLUMN beats BIGINT NOT NULL DEFAULT 1`,
	}},
	// HAVE events were a row each (obs_haves, still read); a flush's
	// batch is now one row per swarm, packed in bits (havebatch.go). A
	// probe's record is stored deflated (result_z, probejson.go).
	{version: 6, name: "HAVE batches, deflated probe records", stmts: []string{
		`CREATE TABLE obs_have_batches (
			id       {{id}},
			swarm_id BIGINT NOT NULL REFERENCES swarms(id),
			at_us    BIGINT NOT NULL,
			events   BIGINT NOT NULL,
			data     {{blob}} NOT NULL
		)`,
		`CREATE INDEX obs_have_batches_swarm ON obs_have_batches (swarm_id)`,
		`ALTER TABLE probes ADD COLUMN result_z {{blob}}`,
	}},
	{version: 7, name: "time-range (BRIN) index of HAVE batches", only: "postgres", stmts: []string{
		`CREATE INDEX obs_have_batches_at ON obs_have_batches USING BRIN (at_us)`,
	}},
	// uTP (BEP 29) next to TCP: what each connection ran over, '' for TCP.
	{version: 8, name: "transport of connections", stmts: []string{
		`ALTER TABLE obs_conn ADD COLUMN transport TEXT NOT NULL DEFAULT ''`,
	}},
}

// schemaVersion is the newest version this build knows.
func schemaVersion(ms []migration) int {
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    BIGINT PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_us BIGINT NOT NULL
)`

// migrate brings db to the newest version in ms. A database whose version is
// newer than ms knows is refused with ErrSchemaTooNew and left untouched.
// Each step runs in a write transaction that re-reads the version first, so
// two processes opening the same new file cannot both apply a step.
// It returns the versions it applied.
func migrate(ctx context.Context, db *sql.DB, d dialect, ms []migration) ([]int, error) {
	if err := createMigrations(ctx, db, d); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	known := schemaVersion(ms)
	var done []int
	for _, m := range ms {
		applied, err := applyMigration(ctx, db, d, m, known)
		if err != nil {
			return done, err
		}
		if applied {
			done = append(done, m.version)
		}
	}
	// A database with no pending step can still be too new.
	cur, err := currentVersion(ctx, db)
	if err != nil {
		return done, err
	}
	if cur > known {
		return done, fmt.Errorf("%w: database is at version %d, this build knows up to %d", ErrSchemaTooNew, cur, known)
	}
	return done, nil
}

func currentVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

func applyMigration(ctx context.Context, db *sql.DB, d dialect, m migration, known int) (applied bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migration %d: begin: %w", m.version, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, rollback(tx))
		}
	}()
	if d.migrationLock != "" {
		// Nodes opening one database at once take turns (PostgreSQL).
		if _, err := tx.ExecContext(ctx, d.migrationLock); err != nil {
			return false, fmt.Errorf("migration %d: lock: %w", m.version, err)
		}
	}
	cur, err := currentVersion(ctx, tx)
	if err != nil {
		return false, err
	}
	if cur > known {
		return false, fmt.Errorf("%w: database is at version %d, this build knows up to %d", ErrSchemaTooNew, cur, known)
	}
	if cur >= m.version {
		return false, rollback(tx)
	}
	if cur != m.version-1 {
		return false, fmt.Errorf("migration %d: database is at version %d: %w", m.version, cur, ErrCorrupt)
	}
	for i, stmt := range m.stmts {
		if m.only != "" && m.only != d.name {
			break
		}
		if _, err := tx.ExecContext(ctx, d.schema(stmt)); err != nil {
			return false, fmt.Errorf("migration %d (%s) statement %d: %w", m.version, m.name, i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO schema_migrations (version, name, applied_us) VALUES (?, ?, ?)`),
		m.version, m.name, time.Now().UnixMicro()); err != nil {
		return false, fmt.Errorf("migration %d: record: %w", m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migration %d: commit: %w", m.version, err)
	}
	return true, nil
}

// rollback ends a transaction that is being abandoned; a transaction that
// already ended is not an error.
func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}

// createMigrations creates schema_migrations if needed; on PostgreSQL under
// the migration lock, since two nodes starting at once would otherwise
// race in CREATE TABLE IF NOT EXISTS.
func createMigrations(ctx context.Context, db *sql.DB, d dialect) (err error) {
	if d.migrationLock == "" {
		_, err := db.ExecContext(ctx, createMigrationsTable)
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, rollback(tx))
		}
	}()
	if _, err := tx.ExecContext(ctx, d.migrationLock); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, createMigrationsTable); err != nil {
		return err
	}
	return tx.Commit()
}
