package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Peer is what the audit knows of one peer address in one swarm. Empty
// strings and a nil PeerID mean unknown.
type Peer struct {
	Addr       netip.AddrPort
	PeerID     []byte // 20 bytes from the handshake, or nil
	Client     string // decoded client name
	Encryption string // what the last connection used, e.g. "plaintext", "rc4"
	FirstSeen  time.Time
	LastSeen   time.Time
	Sources    []string // where the address came from: "tracker", "dht", "pex", "incoming"...
}

// UpsertPeer records or updates a peer. FirstSeen and LastSeen widen the
// stored interval (a zero value leaves it alone; a new peer needs at least
// one), non-empty PeerID, Client and Encryption replace the stored ones, and
// Sources are added to the stored set.
func (s *Store) UpsertPeer(ctx context.Context, swarm SwarmID, p Peer) error {
	addr, err := normAddr(p.Addr)
	if err != nil {
		return fmt.Errorf("upsert peer: %w", err)
	}
	if p.PeerID != nil && len(p.PeerID) != 20 {
		return fmt.Errorf("upsert peer %s: %w: peer id of %d bytes", addr, ErrInvalid, len(p.PeerID))
	}
	first, last := p.FirstSeen, p.LastSeen
	switch {
	case first.IsZero():
		first = last
	case last.IsZero():
		last = first
	}
	if first.After(last) {
		first, last = last, first
	}
	p.Sources = cleanSources(p.Sources)
	p.Client = cleanText(p.Client, maxText)
	p.Encryption = cleanText(p.Encryption, maxShort)
	return s.writeTx(ctx, "upsert peer "+addr.String(), func(tx *sql.Tx) error {
		var cur Peer
		var id, firstUS, lastUS int64
		var sources string
		err := tx.QueryRowContext(ctx, s.d.q(`SELECT id, peer_id, client, encryption, first_seen_us, last_seen_us, sources
			FROM peers WHERE swarm_id = ? AND addr = ?`), swarm, addr.String()).
			Scan(&id, &cur.PeerID, &cur.Client, &cur.Encryption, &firstUS, &lastUS, &sources)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if first.IsZero() {
				return fmt.Errorf("%w: new peer without a seen time", ErrInvalid)
			}
			_, err = tx.ExecContext(ctx, s.d.q(`INSERT INTO peers (swarm_id, addr, peer_id, client, encryption, first_seen_us, last_seen_us, sources)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
				swarm, addr.String(), p.PeerID, p.Client, p.Encryption, micros(first), micros(last), strings.Join(p.Sources, ","))
			return err
		case err != nil:
			return err
		}
		if p.PeerID == nil {
			p.PeerID = cur.PeerID
		}
		if p.Client == "" {
			p.Client = cur.Client
		}
		if p.Encryption == "" {
			p.Encryption = cur.Encryption
		}
		if !first.IsZero() {
			firstUS = min(firstUS, micros(first))
			lastUS = max(lastUS, micros(last))
		}
		merged := cleanSources(append(splitSources(sources), p.Sources...))
		_, err = tx.ExecContext(ctx, s.d.q(`UPDATE peers SET peer_id = ?, client = ?, encryption = ?,
			first_seen_us = ?, last_seen_us = ?, sources = ? WHERE id = ?`),
			p.PeerID, p.Client, p.Encryption, firstUS, lastUS, strings.Join(merged, ","), id)
		return err
	}, nil)
}

const qResolvePeer = `INSERT INTO peers (swarm_id, addr, first_seen_us, last_seen_us) VALUES (?, ?, ?, ?)
	ON CONFLICT (swarm_id, addr) DO UPDATE SET
		first_seen_us = CASE WHEN excluded.first_seen_us < peers.first_seen_us THEN excluded.first_seen_us ELSE peers.first_seen_us END,
		last_seen_us = CASE WHEN excluded.last_seen_us > peers.last_seen_us THEN excluded.last_seen_us ELSE peers.last_seen_us END
	RETURNING id`

// resolvePeer returns the row id of a peer seen between first and last,
// creating the row or widening its seen interval.
func (s *Store) resolvePeer(ctx context.Context, tx *sql.Tx, swarm SwarmID, addr netip.AddrPort, first, last time.Time) (int64, error) {
	var id int64
	err := s.txStmt(ctx, tx, qResolvePeer).QueryRowContext(ctx, swarm, addr.String(), micros(first), micros(last)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("peer %s: %w", addr, err)
	}
	return id, nil
}

// Peers lists a swarm's peers ordered by address.
func (s *Store) Peers(ctx context.Context, swarm SwarmID) ([]Peer, error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT addr, peer_id, client, encryption, first_seen_us, last_seen_us, sources
		FROM peers WHERE swarm_id = ? ORDER BY addr`), swarm)
	if err != nil {
		return nil, fmt.Errorf("peers of swarm %d: %w", swarm, err)
	}
	defer rows.Close()
	var out []Peer
	for rows.Next() {
		var p Peer
		var addr, sources string
		var first, last int64
		if err := rows.Scan(&addr, &p.PeerID, &p.Client, &p.Encryption, &first, &last, &sources); err != nil {
			return nil, fmt.Errorf("peers of swarm %d: %w", swarm, err)
		}
		if p.Addr, err = parseAddr(addr); err != nil {
			return nil, fmt.Errorf("peers of swarm %d: %w", swarm, err)
		}
		if len(p.PeerID) == 0 {
			p.PeerID = nil
		}
		p.FirstSeen, p.LastSeen = fromMicros(first), fromMicros(last)
		p.Sources = splitSources(sources)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("peers of swarm %d: %w", swarm, err)
	}
	return out, nil
}

// cleanSources bounds, deduplicates and sorts source names; commas (the
// stored separator) are dropped.
func cleanSources(in []string) []string {
	var out []string
	for _, src := range in {
		src = strings.ReplaceAll(cleanText(src, maxShort), ",", "")
		if src != "" {
			out = append(out, src)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > maxSources {
		out = out[:maxSources]
	}
	return out
}

func splitSources(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
