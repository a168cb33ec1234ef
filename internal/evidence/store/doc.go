// Package store is the audit's durable memory: it records what swarmaudit
// observes about a swarm (bitfield snapshots, HAVE events, connection
// outcomes, bandwidth probes), the announces peers sent to a tracker, the
// verdicts computed from them and the audit runs, and reads them back.
//
// # Durability
//
// The default engine is SQLite (modernc.org/sqlite, pure Go) in WAL mode with
// synchronous=NORMAL. In WAL mode a commit appends the transaction to the
// -wal file with write(2) before returning; the bytes then belong to the
// kernel, so killing the process at any instant (SIGKILL, panic, OOM) loses
// nothing that was committed, and SQLite's recovery on the next open discards
// only a torn, uncommitted tail. NORMAL skips the fsync per commit (it syncs
// at checkpoints), which is what makes per-observation commits cheap; the
// price is that an operating-system crash or power cut may roll back the last
// few commits — never corrupt the file. Use a journaling filesystem on local
// disk; network filesystems break WAL's shared-memory locking.
//
// Every call that returns nil has committed, except AddHave: HAVE events are
// queued and written in small transactions (every 100 events or every
// second, whichever comes first, and on Flush, on read-back and on Close). A
// crash can lose only the queued events of the batch in flight — at most the
// last second or 100 events, more only while flushes are failing, which
// AddHave reports.
//
// # Concurrency
//
// A Store is safe for concurrent use and owns its connections: one writer
// connection (SQLite allows one writer at a time; a mutex orders the store's
// write transactions and keeps its caches consistent with them) and a small
// pool of read-only connections, which WAL lets run beside the writer. Open
// one Store per database file per process. Several processes may share a file
// (busy timeout), and a snapshot delta always names the snapshot it extends,
// so interleaved writers never corrupt the reconstruction.
//
// # Snapshots
//
// A peer's bitfield snapshots are stored compactly: the first snapshot of a
// peer (per Store), every Nth one, and any that is not a superset of the
// previous (a peer "losing" pieces) are stored whole, as the wire bitfield or
// as runs of set pieces, whichever is smaller; the others as the runs of
// pieces gained since the previous snapshot. Snapshots reconstructs the full
// bitfields.
//
// # Schema and PostgreSQL
//
// The schema is versioned by the migrations in this package (table
// schema_migrations; each step applied in one transaction). An old database
// is upgraded on Open; one newer than this build is refused with
// ErrSchemaTooNew.
//
// Open takes a file path (SQLite) or a postgres:// URL (PostgreSQL, driver
// pgx; give the password in $PGPASSWORD rather than the URL, which shows
// in process lists). The SQL is written once, in the subset both engines
// share (ON CONFLICT upserts, RETURNING, CASE rather than two-argument max,
// BIGINT microsecond times, JSON as TEXT); the differences (identity
// columns, BLOB/BYTEA, WITHOUT ROWID, placeholders, the advisory lock that
// serialises migrations between nodes) live in dialect.go. On PostgreSQL
// one pool serves reads and writes, and durability is the engine's; the
// append-only tables have BRIN indexes on their time (migrations 4 and 7,
// steps recorded on SQLite with nothing done). On both, what changes is
// stored rather than what stays: a flush of HAVEs is one row packed in
// bits (havebatch.go), a watch's heartbeats one row per run, snapshots
// deltas (delta.go), probe records deflated (probejson.go). Leases share work between nodes
// (lease.go). The tests of the package and of every package that stores
// observations run on both engines (SWARMAUDIT_STORE_ENGINE=postgres,
// testclients.StoreDB).
package store
