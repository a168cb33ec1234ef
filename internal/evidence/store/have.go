package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"slices"
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

// AddHave queues a HAVE event. It is committed within a second, after 1,000
// queued events (the call that fills a batch writes it), or on Flush, Close
// and the read-back methods. An error from that write leaves the events
// queued for the next attempt; once 10 batches are queued AddHave refuses
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

const qInsertHaveBatch = `INSERT INTO obs_have_batches (swarm_id, at_us, events, data) VALUES (?, ?, ?, ?)`

// writeHaves commits one batch: one peer upsert per peer, then one packed
// row per swarm (havebatch.go); a duplicate event is kept once.
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
	return s.writeTx(ctx, fmt.Sprintf("write %d HAVE events", len(batch)), func(tx *sql.Tx) error {
		ids := make(map[key]int64, len(keys))
		for _, k := range keys {
			sp := spans[k]
			id, err := s.resolvePeer(ctx, tx, k.swarm, k.addr, fromMicros(sp.first), fromMicros(sp.last))
			if err != nil {
				return err
			}
			ids[k] = id
		}
		bySwarm := map[SwarmID][]haveEvent{}
		base := map[SwarmID]int64{}
		for _, h := range batch {
			if b, ok := base[h.swarm]; !ok || h.atUS < b {
				base[h.swarm] = h.atUS
			}
			bySwarm[h.swarm] = append(bySwarm[h.swarm], haveEvent{peer: ids[key{h.swarm, h.addr}], atUS: h.atUS, piece: h.piece})
		}
		swarms := make([]SwarmID, 0, len(bySwarm))
		for sw := range bySwarm {
			swarms = append(swarms, sw)
		}
		slices.Sort(swarms)
		stmt := s.txStmt(ctx, tx, qInsertHaveBatch)
		for _, sw := range swarms {
			data, n := encodeHaveBatch(bySwarm[sw], base[sw])
			if _, err := stmt.ExecContext(ctx, sw, base[sw], n, data); err != nil {
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

// Haves returns the swarm's HAVE events per peer in time order (a
// duplicate event once), after committing the queued ones.
func (s *Store) Haves(ctx context.Context, swarm SwarmID) (map[netip.AddrPort][]Have, error) {
	if err := s.Flush(ctx); err != nil {
		return nil, fmt.Errorf("HAVEs of swarm %d: %w", swarm, err)
	}
	fail := func(err error) (map[netip.AddrPort][]Have, error) {
		return nil, fmt.Errorf("HAVEs of swarm %d: %w", swarm, err)
	}
	addrs := map[int64]netip.AddrPort{}
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT id, addr FROM peers WHERE swarm_id = ?`), swarm)
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var id int64
		var text string
		if err := rows.Scan(&id, &text); err != nil {
			rows.Close()
			return fail(err)
		}
		a, err := parseAddr(text)
		if err != nil {
			rows.Close()
			return fail(err)
		}
		addrs[id] = a
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	var evs []haveEvent
	// Rows of schema versions before 6, one event each.
	rows, err = s.r.QueryContext(ctx, s.d.q(`SELECT h.peer_id, h.at_us, h.piece
		FROM obs_haves h JOIN peers p ON p.id = h.peer_id WHERE p.swarm_id = ?`), swarm)
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var e haveEvent
		var piece int64
		if err := rows.Scan(&e.peer, &e.atUS, &piece); err != nil {
			rows.Close()
			return fail(err)
		}
		e.piece = int(piece)
		evs = append(evs, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	rows, err = s.r.QueryContext(ctx, s.d.q(`SELECT id, at_us, data FROM obs_have_batches WHERE swarm_id = ? ORDER BY id`), swarm)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, atUS int64
		var data []byte
		if err := rows.Scan(&id, &atUS, &data); err != nil {
			return fail(err)
		}
		batch, err := decodeHaveBatch(data, atUS)
		if err != nil {
			return fail(fmt.Errorf("batch %d: %w", id, err))
		}
		evs = append(evs, batch...)
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	slices.SortFunc(evs, compareHaves)
	evs = slices.Compact(evs)
	out := make(map[netip.AddrPort][]Have)
	for _, e := range evs {
		a, ok := addrs[e.peer]
		if !ok {
			return fail(fmt.Errorf("%w: a HAVE of unknown peer %d", ErrInvalid, e.peer))
		}
		out[a] = append(out[a], Have{At: fromMicros(e.atUS), Piece: e.piece})
	}
	return out, nil
}
