package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// On PostgreSQL a batch of HAVE events goes in with COPY (one round trip
// and no per-row statement, whatever the batch's size) through a staging
// table, from which one INSERT … ON CONFLICT DO NOTHING keeps a duplicate
// event once, as the row-by-row insert does on SQLite. Both run in the
// batch's transaction, on its connection: the batch commits whole or not
// at all.

// Statements of the staging table: a temporary table of the connection,
// emptied at every commit.
const (
	qStageHaves = `CREATE TEMPORARY TABLE IF NOT EXISTS haves_in (peer_id BIGINT, at_us BIGINT, piece BIGINT) ON COMMIT DELETE ROWS`
	qMoveHaves  = `INSERT INTO obs_haves (peer_id, at_us, piece) SELECT peer_id, at_us, piece FROM haves_in
		ON CONFLICT (peer_id, at_us, piece) DO NOTHING`
)

// copyHaves writes rows of (peer row id, at_us, piece) into obs_haves
// within tx, which runs on conn.
func copyHaves(ctx context.Context, conn *sql.Conn, tx *sql.Tx, rows [][]any) error {
	if _, err := tx.ExecContext(ctx, qStageHaves); err != nil {
		return fmt.Errorf("staging table: %w", err)
	}
	err := conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("COPY needs a pgx connection")
		}
		n, err := c.Conn().CopyFrom(ctx, pgx.Identifier{"haves_in"}, []string{"peer_id", "at_us", "piece"}, pgx.CopyFromRows(rows))
		if err == nil && n != int64(len(rows)) {
			err = fmt.Errorf("copied %d of %d rows", n, len(rows))
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("COPY: %w", err)
	}
	if _, err := tx.ExecContext(ctx, qMoveHaves); err != nil {
		return fmt.Errorf("from the staging table: %w", err)
	}
	return nil
}
