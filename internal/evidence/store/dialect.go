package store

import (
	"strconv"
	"strings"
)

// dialect is everything that differs between the SQL engines the store can
// sit on. The queries elsewhere in the package are written once, in the
// subset SQLite and PostgreSQL share (`?` placeholders, ON CONFLICT upserts,
// RETURNING, CASE instead of two-argument max/min, BIGINT microsecond
// timestamps, TEXT JSON), and pass through a dialect before use.
type dialect struct {
	name string
	// ddl maps the {{token}}s of the schema to the engine's spelling.
	ddl *strings.Replacer
	// dollarParams rewrites `?` to `$1, $2, ...` (PostgreSQL).
	dollarParams bool
	// migrationLock, when set, runs first in each migration transaction.
	migrationLock string
}

// sqliteDialect is the default engine's. An INTEGER PRIMARY KEY
// is SQLite's rowid alias; WITHOUT ROWID stores small composite-key tables
// (HAVE events) in the key's B-tree alone, which roughly halves their size.
var sqliteDialect = dialect{
	name: "sqlite",
	ddl: strings.NewReplacer(
		"{{id}}", "INTEGER PRIMARY KEY",
		"{{blob}}", "BLOB",
		"{{without_rowid}}", " WITHOUT ROWID",
	),
}

// postgresDialect is what the schema and queries become on PostgreSQL
// (Open with a postgres:// URL, driver pgx).
var postgresDialect = dialect{
	name: "postgres",
	ddl: strings.NewReplacer(
		"{{id}}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
		"{{blob}}", "BYTEA",
		"{{without_rowid}}", "",
	),
	dollarParams:  true,
	migrationLock: "SELECT pg_advisory_xact_lock(7231978)",
}

// schema expands the DDL tokens of a migration statement.
func (d dialect) schema(stmt string) string { return d.ddl.Replace(stmt) }

// q rewrites a query written with `?` placeholders for the engine. The
// package's queries contain no `?` inside string literals, so a plain scan is
// enough.
func (d dialect) q(query string) string {
	if !d.dollarParams {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}
