package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// IsPostgresURL reports whether a store path names a PostgreSQL database.
func IsPostgresURL(path string) bool {
	return strings.HasPrefix(path, "postgres://") || strings.HasPrefix(path, "postgresql://")
}

// redactURL is a PostgreSQL URL without its password, for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "postgres://(unparseable URL)"
	}
	return u.Redacted()
}

// openPostgres opens a PostgreSQL store: one pool for reads and writes
// (PostgreSQL has no single-writer rule), the same schema through
// postgresDialect, migrations serialised between nodes by an advisory lock.
func openPostgres(ctx context.Context, raw string, o options) (*Store, error) {
	name := redactURL(raw)
	db, err := sql.Open("pgx", raw)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", name, scrubPassword(err, raw))
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(8)
	s := newStore(postgresDialect, o, name)
	s.w, s.r = db, db
	fail := func(err error) (*Store, error) {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", name, scrubPassword(err, raw))
	}
	if err := db.PingContext(ctx); err != nil {
		return fail(err)
	}
	applied, err := migrate(ctx, db, s.d, migrations)
	if err != nil {
		return fail(err)
	}
	if len(applied) > 0 {
		s.log.Info("store: database upgraded", "url", name, "applied", applied, "version", schemaVersion(migrations))
	}
	if err := s.prepareHot(ctx); err != nil {
		return fail(err)
	}
	go s.flushLoop()
	return s, nil
}

// scrubPassword keeps a URL's password out of an error message.
func scrubPassword(err error, raw string) error {
	u, perr := url.Parse(raw)
	if perr != nil || u.User == nil {
		return err
	}
	if p, ok := u.User.Password(); ok && p != "" && strings.Contains(err.Error(), p) {
		return errors.New(strings.ReplaceAll(err.Error(), p, "xxxxx"))
	}
	return err
}

// checkPostgres is Check on PostgreSQL: the engine keeps its own pages
// consistent; what can be checked here is that every foreign key holds
// (they are declared, so PostgreSQL enforces them) and the schema version.
func (s *Store) checkPostgres(ctx context.Context) error {
	v, err := currentVersion(ctx, s.r)
	if err != nil {
		return err
	}
	if v != schemaVersion(migrations) {
		return fmt.Errorf("%w: schema version %d, want %d", ErrCorrupt, v, schemaVersion(migrations))
	}
	return nil
}
