package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SecretPasskeyKey names the key of the passkey HMAC (see Secret).
const SecretPasskeyKey = "passkey-hmac-key"

// Secret returns the database's secret called name, creating 32 random
// bytes the first time. Reports key their passkey hashes with it: the same
// passkey hashes alike in every report from one database, so a user's
// identities still group, and differently in another database, so hashes
// cannot be matched across operators; whoever holds the database can map a
// hash back by hashing the passkeys they know. The value never leaves the
// store in a report, log or error.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.writeTx(ctx, "secret", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, s.d.q(`SELECT value FROM secrets WHERE name = ?`), name).Scan(&v)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		v = make([]byte, 32)
		rand.Read(v)
		_, err = tx.ExecContext(ctx, s.d.q(`INSERT INTO secrets (name, value, created_us) VALUES (?, ?, ?)`), name, v, micros(time.Now()))
		return err
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	return v, nil
}
