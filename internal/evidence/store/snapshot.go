package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// Snapshot kinds as stored.
const (
	kindFullWire = 0 // data is the wire bitfield
	kindFullRuns = 1 // data is the run encoding of the set pieces
	kindDelta    = 2 // data is the run encoding of pieces gained since base_id
	// kindDeltaMissing: data has a bit for each piece base_id lacked, in
	// order, set for those gained (delta.go).
	kindDeltaMissing = 3
)

// TimedBitfield is one snapshot of a peer's pieces.
type TimedBitfield struct {
	At       time.Time
	Bitfield bitfield.Bitfield
}

// snapBase is the last snapshot this Store wrote for a peer: the base of the
// next delta.
type snapBase struct {
	id        int64
	bf        bitfield.Bitfield
	sinceFull int
}

const qInsertSnapshot = `INSERT INTO obs_snapshots (peer_id, at_us, kind, num_pieces, base_id, data)
	VALUES (?, ?, ?, ?, ?, ?) RETURNING id`

// AddSnapshot records that the peer at addr held bf at time at. If the swarm's
// piece count is known, bf must range over exactly that many pieces.
func (s *Store) AddSnapshot(ctx context.Context, swarm SwarmID, addr netip.AddrPort, at time.Time, bf bitfield.Bitfield) error {
	addr, err := normAddr(addr)
	if err == nil {
		err = checkTime("snapshot", at)
	}
	if err != nil {
		return fmt.Errorf("add snapshot: %w", err)
	}
	si, err := s.swarmInfo(ctx, swarm)
	if err != nil {
		return fmt.Errorf("add snapshot for %s: %w", addr, err)
	}
	if bf.Len() > MaxPieces || (si.NumPieces > 0 && bf.Len() != si.NumPieces) {
		return fmt.Errorf("add snapshot for %s: %w: bitfield of %d pieces for a swarm of %d", addr, ErrInvalid, bf.Len(), si.NumPieces)
	}
	bf = bf.Clone() // the caller may keep mutating theirs
	var next snapBase
	var peer int64
	return s.writeTx(ctx, "add snapshot for "+addr.String(), func(tx *sql.Tx) error {
		var err error
		if peer, err = s.resolvePeer(ctx, tx, swarm, addr, at, at); err != nil {
			return err
		}
		kind, base, data := s.encodeSnapshot(peer, bf)
		next = snapBase{bf: bf}
		if kind == kindDelta || kind == kindDeltaMissing {
			next.sinceFull = s.base[peer].sinceFull + 1
		}
		return s.txStmt(ctx, tx, qInsertSnapshot).QueryRowContext(ctx, peer, micros(at), kind, bf.Len(), base, data).Scan(&next.id)
	}, func() {
		if _, ok := s.base[peer]; !ok && len(s.base) >= maxSnapBase {
			for k := range s.base { // evict one arbitrary peer: it gets a full snapshot next
				delete(s.base, k)
				break
			}
		}
		s.base[peer] = next
	})
}

// encodeSnapshot picks the smallest safe encoding of bf. Called under wmu.
func (s *Store) encodeSnapshot(peer int64, bf bitfield.Bitfield) (kind int, base sql.NullInt64, data []byte) {
	wire := bf.Bytes()
	prev, ok := s.base[peer]
	if ok && prev.bf.Len() == bf.Len() && prev.sinceFull+1 < s.opt.fullEvery && len(prev.bf.Gained(bf)) == 0 {
		// A delta that is not smaller than the wire form is not worth a
		// link in the chain.
		base := sql.NullInt64{Int64: prev.id, Valid: true}
		runs, missing := encodeRuns(nil, bf, prev.bf), encodeMissing(bf, prev.bf)
		switch {
		case len(missing) < len(runs) && len(missing) < len(wire):
			return kindDeltaMissing, base, missing
		case len(runs) < len(wire):
			return kindDelta, base, runs
		}
	}
	if runs := encodeRuns(nil, bf, bitfield.Bitfield{}); len(runs) < len(wire) {
		return kindFullRuns, sql.NullInt64{}, runs
	}
	if wire == nil {
		wire = []byte{}
	}
	return kindFullWire, sql.NullInt64{}, wire
}

// Snapshots returns every snapshot of the swarm's peers, per peer in the
// order they were recorded, with full bitfields reconstructed from deltas.
func (s *Store) Snapshots(ctx context.Context, swarm SwarmID) (map[netip.AddrPort][]TimedBitfield, error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT s.id, p.addr, s.at_us, s.kind, s.num_pieces, s.base_id, s.data
		FROM obs_snapshots s JOIN peers p ON p.id = s.peer_id
		WHERE p.swarm_id = ? ORDER BY s.id`), swarm)
	if err != nil {
		return nil, fmt.Errorf("snapshots of swarm %d: %w", swarm, err)
	}
	defer rows.Close()
	out := make(map[netip.AddrPort][]TimedBitfield)
	byID := make(map[int64]decoded)
	addrs := make(map[string]netip.AddrPort)
	for rows.Next() {
		var id, atUS, n int64
		var kind int
		var base sql.NullInt64
		var addrText string
		var data []byte
		if err := rows.Scan(&id, &addrText, &atUS, &kind, &n, &base, &data); err != nil {
			return nil, fmt.Errorf("snapshots of swarm %d: %w", swarm, err)
		}
		addr, ok := addrs[addrText]
		if !ok {
			if addr, err = parseAddr(addrText); err != nil {
				return nil, fmt.Errorf("snapshots of swarm %d: %w", swarm, err)
			}
			addrs[addrText] = addr
		}
		bf, err := decodeSnapshot(addrText, kind, int(n), base, data, byID)
		if err != nil {
			return nil, fmt.Errorf("snapshots of swarm %d: snapshot %d: %w", swarm, id, err)
		}
		byID[id] = decoded{addrText, bf}
		out[addr] = append(out[addr], TimedBitfield{At: fromMicros(atUS), Bitfield: bf})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("snapshots of swarm %d: %w", swarm, err)
	}
	return out, nil
}

// decoded is a reconstructed snapshot, kept as the base of later deltas.
type decoded struct {
	addr string
	bf   bitfield.Bitfield
}

// decodeSnapshot rebuilds one stored snapshot of the peer at addr; deltas
// look their base up in byID (snapshots of the same swarm decoded so far) and
// must extend a snapshot of the same peer.
func decodeSnapshot(addr string, kind, n int, base sql.NullInt64, data []byte, byID map[int64]decoded) (bitfield.Bitfield, error) {
	if n < 0 || n > MaxPieces {
		return bitfield.Bitfield{}, fmt.Errorf("%w: %d pieces", ErrCorrupt, n)
	}
	switch kind {
	case kindFullWire:
		bf, err := bitfield.FromWire(data, n)
		if err != nil {
			return bf, fmt.Errorf("%w: %w", ErrCorruptDelta, err)
		}
		return bf, nil
	case kindFullRuns:
		bf := bitfield.New(n)
		return bf, applyRuns(bf, data)
	case kindDelta, kindDeltaMissing:
		prev, ok := byID[base.Int64]
		switch {
		case !base.Valid || !ok:
			return bitfield.Bitfield{}, fmt.Errorf("%w: delta base %d missing", ErrCorrupt, base.Int64)
		case prev.addr != addr:
			return bitfield.Bitfield{}, fmt.Errorf("%w: delta base %d is another peer's", ErrCorrupt, base.Int64)
		case prev.bf.Len() != n:
			return bitfield.Bitfield{}, fmt.Errorf("%w: delta of %d pieces on a base of %d", ErrCorrupt, n, prev.bf.Len())
		}
		bf := prev.bf.Clone()
		if kind == kindDeltaMissing {
			return bf, applyMissing(bf, prev.bf, data)
		}
		return bf, applyRuns(bf, data)
	default:
		return bitfield.Bitfield{}, fmt.Errorf("%w: unknown snapshot kind %d", ErrCorrupt, kind)
	}
}
