package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Have is one HAVE message a peer sent.
type Have struct {
	At    time.Time
	Piece int
}

type pendingHave struct {
	swarm SwarmID
	addr  netip.AddrPort
	atUS  int64
	piece int
}

// haveQueue holds HAVE events not yet committed.
type haveQueue struct {
	mu      sync.Mutex
	pending []pendingHave
	closed  bool
	lastErr error // of the last failed flush, for ErrBacklog's message

	// flushMu serialises flushes so that Flush returns only once every
	// event queued before it was called is committed.
	flushMu sync.Mutex
}

func (q *haveQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// AddHave queues a HAVE event. It is committed within a second, after 100
// queued events (the call that fills a batch writes it), or on Flush, Close
// and the read-back methods. An error from that write leaves the events
// queued for the next attempt; once 100 batches are queued AddHave refuses
// new events with ErrBacklog.
func (s *Store) AddHave(ctx context.Context, swarm SwarmID, addr netip.AddrPort, at time.Time, piece int) error {
	addr, err := normAddr(addr)
	if err == nil {
		err = checkTime("HAVE", at)
	}
	if err != nil {
		return fmt.Errorf("add HAVE: %w", err)
	}
	si, err := s.swarmInfo(ctx, swarm)
	if err != nil {
		return fmt.Errorf("add HAVE from %s: %w", addr, err)
	}
	limit := si.NumPieces
	if limit == 0 {
		limit = MaxPieces
	}
	if piece < 0 || piece >= limit {
		return fmt.Errorf("add HAVE from %s: %w: piece %d of %d", addr, ErrInvalid, piece, limit)
	}
	q := &s.haves
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return fmt.Errorf("add HAVE from %s: %w", addr, ErrClosed)
	case len(q.pending) >= s.opt.haveMaxQueued:
		last := q.lastErr
		q.mu.Unlock()
		return fmt.Errorf("add HAVE from %s: %w (%d queued; last flush: %v)", addr, ErrBacklog, s.opt.haveMaxQueued, last)
	}
	q.pending = append(q.pending, pendingHave{swarm, addr, micros(at), piece})
	full := len(q.pending) >= s.opt.haveBatch
	q.mu.Unlock()
	if full {
		return s.Flush(ctx)
	}
	return nil
}

// Flush commits every HAVE event queued before the call.
func (s *Store) Flush(ctx context.Context) error {
	q := &s.haves
	q.flushMu.Lock()
	defer q.flushMu.Unlock()
	q.mu.Lock()
	batch := q.pending
	q.pending = nil
	q.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := s.writeHaves(ctx, batch)
	q.mu.Lock()
	q.lastErr = err
	if err != nil {
		q.pending = append(batch, q.pending...) // retried by the next flush
	}
	q.mu.Unlock()
	return err
}

const qInsertHave = `INSERT INTO obs_haves (peer_id, at_us, piece) VALUES (?, ?, ?)
	ON CONFLICT (peer_id, at_us, piece) DO NOTHING`

// writeHaves commits one batch: one peer upsert per peer, then the events
// (duplicates, same peer, time and piece, are kept once).
func (s *Store) writeHaves(ctx context.Context, batch []pendingHave) error {
	type key struct {
		swarm SwarmID
		addr  netip.AddrPort
	}
	type span struct{ first, last int64 }
	spans := make(map[key]span)
	for _, h := range batch {
		k := key{h.swarm, h.addr}
		sp, ok := spans[k]
		if !ok {
			sp = span{h.atUS, h.atUS}
		}
		spans[k] = span{min(sp.first, h.atUS), max(sp.last, h.atUS)}
	}
	keys := make([]key, 0, len(spans))
	for k := range spans {
		keys = append(keys, k)
	}
	// A fixed order keeps the B-tree writes local and the run reproducible.
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].swarm != keys[j].swarm {
			return keys[i].swarm < keys[j].swarm
		}
		return keys[i].addr.Compare(keys[j].addr) < 0
	})
	return s.writeConnTx(ctx, fmt.Sprintf("write %d HAVE events", len(batch)), func(conn *sql.Conn, tx *sql.Tx) error {
		ids := make(map[key]int64, len(keys))
		for _, k := range keys {
			sp := spans[k]
			id, err := s.resolvePeer(ctx, tx, k.swarm, k.addr, fromMicros(sp.first), fromMicros(sp.last))
			if err != nil {
				return err
			}
			ids[k] = id
		}
		if s.d.name == postgresDialect.name {
			rows := make([][]any, len(batch))
			for i, h := range batch {
				rows[i] = []any{ids[key{h.swarm, h.addr}], h.atUS, int64(h.piece)}
			}
			return copyHaves(ctx, conn, tx, rows)
		}
		stmt := s.txStmt(ctx, tx, qInsertHave)
		for _, h := range batch {
			if _, err := stmt.ExecContext(ctx, ids[key{h.swarm, h.addr}], h.atUS, h.piece); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

// flushLoop commits queued HAVE events every interval until Close.
func (s *Store) flushLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opt.haveInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := s.Flush(ctx); err != nil {
				s.log.Warn("store: flushing HAVE events failed; will retry", "err", err)
			}
			cancel()
		}
	}
}

// Haves returns the swarm's HAVE events per peer in time order, after
// committing the queued ones.
func (s *Store) Haves(ctx context.Context, swarm SwarmID) (map[netip.AddrPort][]Have, error) {
	if err := s.Flush(ctx); err != nil {
		return nil, fmt.Errorf("HAVEs of swarm %d: %w", swarm, err)
	}
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT p.addr, h.at_us, h.piece
		FROM obs_haves h JOIN peers p ON p.id = h.peer_id
		WHERE p.swarm_id = ? ORDER BY h.peer_id, h.at_us, h.piece`), swarm)
	if err != nil {
		return nil, fmt.Errorf("HAVEs of swarm %d: %w", swarm, err)
	}
	defer rows.Close()
	out := make(map[netip.AddrPort][]Have)
	addrs := make(map[string]netip.AddrPort)
	for rows.Next() {
		var addrText string
		var atUS, piece int64
		if err := rows.Scan(&addrText, &atUS, &piece); err != nil {
			return nil, fmt.Errorf("HAVEs of swarm %d: %w", swarm, err)
		}
		addr, ok := addrs[addrText]
		if !ok {
			if addr, err = parseAddr(addrText); err != nil {
				return nil, fmt.Errorf("HAVEs of swarm %d: %w", swarm, err)
			}
			addrs[addrText] = addr
		}
		out[addr] = append(out[addr], Have{At: fromMicros(atUS), Piece: int(piece)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("HAVEs of swarm %d: %w", swarm, err)
	}
	return out, nil
}
