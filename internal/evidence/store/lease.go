package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Lease is one piece of work held by one node until it expires.
type Lease struct {
	Name    string    `json:"name"`
	Node    string    `json:"node"`
	Expires time.Time `json:"expires"`
}

// AcquireLease takes the lease called name for node until now+ttl, or
// renews it if node holds it; it fails (false, nil) while another node
// holds it unexpired. Several nodes on one PostgreSQL database share work
// this way: one row per lease, taken in one statement, so no two nodes
// hold it at once, and a node that dies without a word loses it when it
// expires.
func (s *Store) AcquireLease(ctx context.Context, name, node string, ttl time.Duration) (bool, error) {
	now := time.Now()
	var holder string
	err := s.writeTx(ctx, "acquire lease", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, s.d.q(`INSERT INTO leases (name, node, expires_us) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET node = excluded.node, expires_us = excluded.expires_us
			WHERE leases.node = excluded.node OR leases.expires_us < ?
			RETURNING node`), name, node, micros(now.Add(ttl)), micros(now)).Scan(&holder)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // held by another node: the conflict's WHERE kept it
		}
		return err
	}, nil)
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	return holder == node, nil
}

// ReleaseLease gives up node's lease called name (no error when it holds
// none).
func (s *Store) ReleaseLease(ctx context.Context, name, node string) error {
	return s.writeTx(ctx, "release lease", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.d.q(`DELETE FROM leases WHERE name = ? AND node = ?`), name, node)
		return err
	}, nil)
}

// Leases lists the unexpired leases.
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT name, node, expires_us FROM leases WHERE expires_us >= ? ORDER BY name`), micros(time.Now()))
	if err != nil {
		return nil, fmt.Errorf("leases: %w", err)
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		var us int64
		if err := rows.Scan(&l.Name, &l.Node, &us); err != nil {
			return nil, fmt.Errorf("leases: %w", err)
		}
		l.Expires = fromMicros(us)
		out = append(out, l)
	}
	return out, rows.Err()
}

// TakeTurn claims the turn called name until now+gap if no one (this node
// or another) took it within the last gap: true when the caller may go
// ahead. Nodes sharing a database use it for per-peer politeness (a peer in
// swarms on two nodes is probed no more often than in one).
func (s *Store) TakeTurn(ctx context.Context, name, node string, gap time.Duration) (bool, error) {
	now := time.Now()
	var taken bool
	err := s.writeTx(ctx, "take turn", func(tx *sql.Tx) error {
		var holder string
		err := tx.QueryRowContext(ctx, s.d.q(`INSERT INTO leases (name, node, expires_us) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET node = excluded.node, expires_us = excluded.expires_us
			WHERE leases.expires_us < ?
			RETURNING node`), name, node, micros(now.Add(gap)), micros(now)).Scan(&holder)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		taken = err == nil
		return err
	}, nil)
	if err != nil {
		return false, fmt.Errorf("turn %s: %w", name, err)
	}
	return taken, nil
}
