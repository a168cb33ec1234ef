package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/anacrolix/torrent/types/infohash"
)

// SwarmID is a swarm's row id.
type SwarmID int64

// SwarmInfo describes a torrent. Zero numeric fields and an empty name mean
// "unknown" (a swarm first seen through an announce has only its info hash);
// EnsureSwarm fills them in later.
type SwarmInfo struct {
	InfoHash    infohash.T
	Name        string
	PieceLength int64
	TotalLength int64
	NumPieces   int
}

// Swarm is a stored swarm.
type Swarm struct {
	ID      SwarmID
	Created time.Time
	SwarmInfo
}

func (si SwarmInfo) validate() error {
	switch {
	case si.InfoHash == (infohash.T{}):
		return fmt.Errorf("%w: zero info hash", ErrInvalid)
	case si.PieceLength < 0, si.TotalLength < 0, si.NumPieces < 0:
		return fmt.Errorf("%w: negative swarm size", ErrInvalid)
	case si.NumPieces > MaxPieces:
		return fmt.Errorf("%w: %d pieces exceeds %d", ErrInvalid, si.NumPieces, MaxPieces)
	case si.PieceLength > 0 && si.TotalLength > 0 && si.NumPieces > 0 &&
		int64(si.NumPieces) != (si.TotalLength+si.PieceLength-1)/si.PieceLength:
		return fmt.Errorf("%w: %d pieces of %d bytes do not make %d bytes", ErrInvalid, si.NumPieces, si.PieceLength, si.TotalLength)
	}
	return nil
}

// merge fills unknown fields of cur from si; it fails if a known field
// differs.
func (si SwarmInfo) merge(cur SwarmInfo) (SwarmInfo, bool, error) {
	out, changed := cur, false
	pick := func(name string, have, want int64, set func(int64)) error {
		switch {
		case want == 0 || want == have:
		case have == 0:
			set(want)
			changed = true
		default:
			return fmt.Errorf("%w: %s: stored %d, given %d", ErrSwarmMismatch, name, have, want)
		}
		return nil
	}
	if err := errors.Join(
		pick("piece length", cur.PieceLength, si.PieceLength, func(v int64) { out.PieceLength = v }),
		pick("total length", cur.TotalLength, si.TotalLength, func(v int64) { out.TotalLength = v }),
		pick("piece count", int64(cur.NumPieces), int64(si.NumPieces), func(v int64) { out.NumPieces = int(v) }),
	); err != nil {
		return cur, false, err
	}
	if si.Name != "" && si.Name != cur.Name {
		out.Name = si.Name // names are cosmetic; the latest wins
		changed = true
	}
	return out, changed, out.validate()
}

// EnsureSwarm returns the id of the swarm with si's info hash, creating it or
// filling in metadata that was unknown. Metadata that contradicts the stored
// swarm fails with ErrSwarmMismatch.
func (s *Store) EnsureSwarm(ctx context.Context, si SwarmInfo) (SwarmID, error) {
	si.Name = cleanText(si.Name, maxText)
	if err := si.validate(); err != nil {
		return 0, fmt.Errorf("ensure swarm %s: %w", si.InfoHash.HexString(), err)
	}
	var id SwarmID
	var stored SwarmInfo
	err := s.writeTx(ctx, "ensure swarm "+si.InfoHash.HexString(), func(tx *sql.Tx) error {
		var err error
		id, stored, err = s.ensureSwarmTx(ctx, tx, si)
		return err
	}, func() { s.cacheSwarm(id, stored) })
	return id, err
}

func (s *Store) ensureSwarmTx(ctx context.Context, tx *sql.Tx, si SwarmInfo) (SwarmID, SwarmInfo, error) {
	sw, err := scanSwarm(tx.QueryRowContext(ctx, s.d.q(selectSwarm+` WHERE info_hash = ?`), si.InfoHash[:]))
	switch {
	case errors.Is(err, ErrNotFound):
		var id SwarmID
		err := tx.QueryRowContext(ctx, s.d.q(`INSERT INTO swarms (info_hash, name, piece_length, total_length, num_pieces, created_us)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`),
			si.InfoHash[:], si.Name, si.PieceLength, si.TotalLength, si.NumPieces, micros(time.Now())).Scan(&id)
		if err != nil {
			return 0, si, fmt.Errorf("insert: %w", err)
		}
		return id, si, nil
	case err != nil:
		return 0, si, err
	}
	merged, changed, err := si.merge(sw.SwarmInfo)
	if err != nil || !changed {
		return sw.ID, sw.SwarmInfo, err
	}
	if _, err := tx.ExecContext(ctx, s.d.q(`UPDATE swarms SET name = ?, piece_length = ?, total_length = ?, num_pieces = ? WHERE id = ?`),
		merged.Name, merged.PieceLength, merged.TotalLength, merged.NumPieces, sw.ID); err != nil {
		return 0, si, fmt.Errorf("update: %w", err)
	}
	return sw.ID, merged, nil
}

const selectSwarm = `SELECT id, info_hash, name, piece_length, total_length, num_pieces, created_us FROM swarms`

func scanSwarm(row interface{ Scan(...any) error }) (Swarm, error) {
	var sw Swarm
	var ih []byte
	var created int64
	err := row.Scan(&sw.ID, &ih, &sw.Name, &sw.PieceLength, &sw.TotalLength, &sw.NumPieces, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return sw, ErrNotFound
	}
	if err != nil {
		return sw, fmt.Errorf("read swarm: %w", err)
	}
	if len(ih) != len(sw.InfoHash) {
		return sw, fmt.Errorf("%w: swarm %d info hash is %d bytes", ErrCorrupt, sw.ID, len(ih))
	}
	if sw.NumPieces < 0 || sw.NumPieces > MaxPieces {
		return sw, fmt.Errorf("%w: swarm %d has %d pieces", ErrCorrupt, sw.ID, sw.NumPieces)
	}
	copy(sw.InfoHash[:], ih)
	sw.Created = fromMicros(created)
	return sw, nil
}

// Swarm returns the swarm with the given id, or ErrNotFound.
func (s *Store) Swarm(ctx context.Context, id SwarmID) (Swarm, error) {
	sw, err := scanSwarm(s.r.QueryRowContext(ctx, s.d.q(selectSwarm+` WHERE id = ?`), id))
	if err != nil {
		return sw, fmt.Errorf("swarm %d: %w", id, err)
	}
	return sw, nil
}

// LookupSwarm returns the swarm with the given info hash, or ErrNotFound.
func (s *Store) LookupSwarm(ctx context.Context, ih infohash.T) (Swarm, error) {
	sw, err := scanSwarm(s.r.QueryRowContext(ctx, s.d.q(selectSwarm+` WHERE info_hash = ?`), ih[:]))
	if err != nil {
		return sw, fmt.Errorf("swarm %s: %w", ih.HexString(), err)
	}
	return sw, nil
}

// cacheSwarm remembers committed swarm metadata. Swarms are never deleted,
// so a cached id stays valid.
func (s *Store) cacheSwarm(id SwarmID, si SwarmInfo) {
	s.smu.Lock()
	s.swarms[id] = si
	s.byHash[si.InfoHash] = id
	s.smu.Unlock()
}

func (s *Store) swarmByHash(h infohash.T) (SwarmID, bool) {
	s.smu.Lock()
	defer s.smu.Unlock()
	id, ok := s.byHash[h]
	return id, ok
}

// swarmInfo returns a swarm's metadata, from cache or the database.
func (s *Store) swarmInfo(ctx context.Context, id SwarmID) (SwarmInfo, error) {
	s.smu.Lock()
	si, ok := s.swarms[id]
	s.smu.Unlock()
	if ok {
		return si, nil
	}
	sw, err := s.Swarm(ctx, id)
	if err != nil {
		return si, err
	}
	s.cacheSwarm(id, sw.SwarmInfo)
	return sw.SwarmInfo, nil
}
