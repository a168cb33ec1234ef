package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/anacrolix/torrent/types/infohash"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Errors callers can test with errors.Is.
var (
	// ErrInvalid wraps every refusal of a malformed argument.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound is returned when a swarm, run or other row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrSchemaTooNew is returned by Open for a database written by a newer
	// swarmaudit.
	ErrSchemaTooNew = errors.New("database schema is newer than this program")
	// ErrSwarmMismatch is returned when swarm metadata contradicts what the
	// database holds for the same info hash.
	ErrSwarmMismatch = errors.New("swarm metadata differs from the stored swarm")
	// ErrCorrupt is returned when stored rows contradict each other.
	ErrCorrupt = errors.New("database content is inconsistent")
	// ErrCorruptDelta is returned when a stored snapshot encoding is invalid;
	// it wraps ErrCorrupt.
	ErrCorruptDelta = fmt.Errorf("%w: bad snapshot encoding", ErrCorrupt)
	// ErrBacklog is returned by AddHave when too many HAVE events are queued
	// because flushes keep failing; the event was not recorded.
	ErrBacklog = errors.New("HAVE event backlog full")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("store closed")
)

// Limits on what is stored. Strings from peers and trackers are hostile:
// they are truncated to these byte lengths, made valid UTF-8 and stripped of
// NUL (which PostgreSQL TEXT refuses).
const (
	// MaxPieces bounds a swarm's piece count (2^24 pieces is 4 TiB at
	// 256 KiB pieces).
	MaxPieces   = 1 << 24
	maxShort    = 128     // enum-like strings: outcome, encryption, event, source
	maxText     = 1024    // client names, user agents, keys, error details
	maxJSON     = 1 << 20 // probe results, configs, verdict reasons
	maxSources  = 16
	maxSnapBase = 100_000 // peers whose last snapshot is kept for deltas
)

// Option adjusts Open.
type Option func(*options)

type options struct {
	fullEvery     int
	haveBatch     int
	haveInterval  time.Duration
	haveMaxQueued int
	busyTimeout   time.Duration
	log           *slog.Logger
}

// WithFullSnapshotEvery stores every nth snapshot of a peer whole (default
// 32), bounding how many deltas a reconstruction applies.
func WithFullSnapshotEvery(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.fullEvery = n
		}
	}
}

// WithHaveBatch sets the HAVE batch: flush when n events are queued or every
// interval (defaults 1,000 and 1s: the second is what bounds a batch unless
// HAVEs arrive faster than 1,000 a second).
func WithHaveBatch(n int, interval time.Duration) Option {
	return func(o *options) {
		if n > 0 {
			o.haveBatch = n
		}
		if interval > 0 {
			o.haveInterval = interval
		}
	}
}

// WithLogger sets the logger for background flush failures and migrations
// (default: none; like every package here, a nil or absent logger discards).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// Store is an open observation database. Its methods are safe for concurrent
// use.
type Store struct {
	w, r *sql.DB
	d    dialect
	opt  options
	log  *slog.Logger
	path string

	// wmu orders write transactions and guards the caches below, which only
	// ever reflect committed rows.
	wmu      sync.Mutex
	base     map[int64]snapBase // peer row id -> last snapshot written by this Store
	prepared map[string]*sql.Stmt

	smu    sync.Mutex
	swarms map[SwarmID]SwarmInfo // read-through cache for validation
	byHash map[infohash.T]SwarmID

	haves haveQueue
	// writeObserver, when set, is told how long each write transaction
	// took, waiting for the write lock included (ObserveWrites).
	writeObserver atomic.Pointer[func(time.Duration)]

	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
	closeErr  error
}

// Open opens (creating if needed) the SQLite database at path — or, when
// path is a postgres:// or postgresql:// URL, the PostgreSQL database it
// names — upgrades its schema, and starts the HAVE flusher. Close it when
// done. Errors never show a URL's password.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := options{
		fullEvery:    32,
		haveBatch:    1000,
		haveInterval: time.Second,
		busyTimeout:  10 * time.Second,
		log:          slog.New(slog.DiscardHandler),
	}
	for _, f := range opts {
		f(&o)
	}
	o.haveMaxQueued = 10 * o.haveBatch
	if path == "" {
		return nil, fmt.Errorf("open store: %w: empty path", ErrInvalid)
	}
	if IsPostgresURL(path) {
		return openPostgres(ctx, path, o)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := newStore(sqliteDialect, o, abs)
	if err := s.openSQLite(ctx); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	go s.flushLoop()
	return s, nil
}

// newStore is a Store before its database is opened.
func newStore(d dialect, o options, name string) *Store {
	return &Store{
		d:      d,
		opt:    o,
		log:    o.log,
		path:   name,
		base:   make(map[int64]snapBase),
		swarms: make(map[SwarmID]SwarmInfo),
		byHash: make(map[infohash.T]SwarmID),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// sqliteURI builds the driver DSN. The path becomes a file: URI (so '?' and
// '#' in it cannot be mistaken for parameters).
func sqliteURI(path string, params ...string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(path))
	return "file:" + esc + "?" + strings.Join(params, "&")
}

func (s *Store) openSQLite(ctx context.Context) (err error) {
	busy := fmt.Sprintf("_pragma=busy_timeout(%d)", s.opt.busyTimeout.Milliseconds())
	// The writer: foreign keys on, WAL, synchronous=NORMAL (see the package
	// documentation for why that is crash-safe), and BEGIN IMMEDIATE so a
	// write transaction takes the write lock up front instead of failing
	// with SQLITE_BUSY when it upgrades from a read.
	s.w, err = sql.Open("sqlite", sqliteURI(s.path, busy,
		"_pragma=foreign_keys(1)", "_pragma=journal_mode(WAL)", "_pragma=synchronous(NORMAL)", "_txlock=immediate"))
	if err != nil {
		return err
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxIdleTime(0)
	defer func() {
		if err != nil {
			err = errors.Join(err, s.w.Close())
			if s.r != nil {
				err = errors.Join(err, s.r.Close())
			}
		}
	}()
	var mode string
	if err := s.w.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, not WAL (is the file on a filesystem without shared memory?)", mode)
	}
	applied, err := migrate(ctx, s.w, s.d, migrations)
	if err != nil {
		return err
	}
	switch {
	case len(applied) > 0 && applied[0] == 1:
		s.log.Debug("store: new database", "path", s.path, "version", schemaVersion(migrations))
	case len(applied) > 0:
		s.log.Info("store: database upgraded", "path", s.path, "applied", applied, "version", schemaVersion(migrations))
	}
	if err := s.prepareHot(ctx); err != nil {
		return err
	}
	s.r, err = sql.Open("sqlite", sqliteURI(s.path, busy, "_pragma=query_only(1)"))
	if err != nil {
		return err
	}
	s.r.SetMaxOpenConns(4)
	s.r.SetMaxIdleConns(4)
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("open reader: %w", err)
	}
	return nil
}

// Close flushes queued HAVE events (waiting at most 10 s), stops the flusher
// and closes the database. Later calls return the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.haves.close() // no new events; the ones queued are flushed now
		err := s.Flush(ctx)
		for _, st := range s.prepared {
			err = errors.Join(err, st.Close())
		}
		if s.r != s.w {
			err = errors.Join(err, s.r.Close())
		}
		err = errors.Join(err, s.w.Close())
		if err != nil {
			s.closeErr = fmt.Errorf("close store %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// Check runs SQLite's integrity check and the foreign key check and returns
// nil only if both pass.
func (s *Store) Check(ctx context.Context) error {
	if err := s.Flush(ctx); err != nil {
		return err
	}
	if s.d.name == postgresDialect.name {
		return s.checkPostgres(ctx)
	}
	rows, err := s.r.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return fmt.Errorf("integrity check: %w", err)
		}
		if line != "ok" && len(problems) < 20 {
			problems = append(problems, line)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: integrity check: %s", ErrCorrupt, strings.Join(problems, "; "))
	}
	fk, err := s.r.QueryContext(ctx, `PRAGMA foreign_key_check`)
	if err != nil {
		return fmt.Errorf("foreign key check: %w", err)
	}
	bad := fk.Next()
	if err := errors.Join(fk.Err(), fk.Close()); err != nil {
		return fmt.Errorf("foreign key check: %w", err)
	}
	if bad {
		return fmt.Errorf("%w: foreign key check failed", ErrCorrupt)
	}
	return nil
}

// hotQueries are the statements run per observation. They are prepared once
// on the writer connection and bound to each transaction with
// tx.StmtContext: compiling them on every call cost more than the write.
var hotQueries = []string{qResolvePeer, qInsertSnapshot, qInsertHaveBatch, qInsertConn, qUpdateBeat, qInsertAnnounce}

func (s *Store) prepareHot(ctx context.Context) error {
	s.prepared = make(map[string]*sql.Stmt, len(hotQueries))
	for _, q := range hotQueries {
		st, err := s.w.PrepareContext(ctx, s.d.q(q))
		if err != nil {
			return fmt.Errorf("prepare %.40q: %w", q, err)
		}
		s.prepared[q] = st
	}
	return nil
}

// txStmt returns a hot statement bound to tx. The statement is closed with
// the transaction.
func (s *Store) txStmt(ctx context.Context, tx *sql.Tx, q string) *sql.Stmt {
	st, ok := s.prepared[q]
	if !ok {
		panic("store: query not in hotQueries: " + q) // a programming error, caught by every test
	}
	return tx.StmtContext(ctx, st)
}

// ObserveWrites has f told the duration of every later write transaction
// (lock wait included), for a service's write-latency metric; nil stops it.
func (s *Store) ObserveWrites(f func(time.Duration)) {
	if f == nil {
		s.writeObserver.Store(nil)
		return
	}
	s.writeObserver.Store(&f)
}

// writeTx runs fn in a write transaction under the write mutex; after a
// successful commit it runs after (still under the mutex) so caches follow
// only committed state.
func (s *Store) writeTx(ctx context.Context, what string, fn func(*sql.Tx) error, after func()) (err error) {
	if obs := s.writeObserver.Load(); obs != nil {
		start := time.Now()
		defer func() { (*obs)(time.Since(start)) }()
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", what, err)
	}
	if err := fn(tx); err != nil {
		return fmt.Errorf("%s: %w", what, errors.Join(err, rollback(tx)))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", what, err)
	}
	if after != nil {
		after()
	}
	return nil
}

// Time helpers: BIGINT microseconds, read back in UTC.

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// cleanText bounds a hostile string: valid UTF-8, no NUL, at most max bytes
// (cut on a rune boundary).
func cleanText(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// normAddr validates a peer address and unmaps IPv4-in-IPv6 so one peer has
// one row.
func normAddr(a netip.AddrPort) (netip.AddrPort, error) {
	if !a.IsValid() {
		return a, fmt.Errorf("%w: peer address %v", ErrInvalid, a)
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), nil
}

func parseAddr(s string) (netip.AddrPort, error) {
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		return a, fmt.Errorf("%w: stored peer address %q: %v", ErrCorrupt, s, err)
	}
	return a, nil
}

func checkTime(what string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("%w: %s time is zero", ErrInvalid, what)
	}
	return nil
}

func checkFloat(what string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%w: %s is %v", ErrInvalid, what, v)
	}
	return nil
}
