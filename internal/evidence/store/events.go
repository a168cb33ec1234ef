package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// ConnOutcome is how a connection attempt to a peer ended.
type ConnOutcome string

// Usual outcomes; other short strings are stored as given.
const (
	ConnOK              ConnOutcome = "ok"
	ConnRefused         ConnOutcome = "refused"
	ConnTimeout         ConnOutcome = "timeout"
	ConnHandshakeFailed ConnOutcome = "handshake_failed"
	ConnNoBitfield      ConnOutcome = "no_bitfield"
	// ConnDisconnected is the end of an established connection (an idle
	// watch the peer or the auditor closed).
	ConnDisconnected ConnOutcome = "disconnected"
)

// Details of ConnOK events that say which connection it was; any other
// detail (or none) is a probe's connection, which the auditor opened.
const (
	DetailWatch         = "watch"          // a watch the auditor opened
	DetailIncomingWatch = "incoming watch" // a watch on a connection the peer opened
	DetailHeartbeat     = "watching"       // a watch of either kind still connected (AddBeat)
	// Connections through a hole a relay's introduction punched in the
	// peer's NAT (BEP 55): a probe's, and a watch of either direction.
	DetailHolepunch      = "holepunch"
	DetailHolepunchWatch = "holepunch watch"
)

// ConnEvent is one connection attempt and its outcome.
type ConnEvent struct {
	Addr       netip.AddrPort
	At         time.Time
	Outcome    ConnOutcome
	Encryption string // e.g. "plaintext", "rc4"; empty if not reached
	// Transport is what the connection ran over: "utp" (BEP 29), or
	// TCP ("" or "tcp"; read back as "").
	Transport string
	Detail    string // error text; truncated to 1 KiB
}

const qInsertConn = `INSERT INTO obs_conn (peer_id, at_us, outcome, encryption, transport, detail) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`

// maxBeatsExpanded bounds a run's beats read back: a year of one a second.
const maxBeatsExpanded = 366 * 24 * 3600

// AddConnEvent records a connection outcome.
func (s *Store) AddConnEvent(ctx context.Context, swarm SwarmID, ev ConnEvent) error {
	_, err := s.addConnEvent(ctx, swarm, ev)
	return err
}

func (s *Store) addConnEvent(ctx context.Context, swarm SwarmID, ev ConnEvent) (int64, error) {
	addr, err := normAddr(ev.Addr)
	if err == nil {
		err = checkTime("connection event", ev.At)
	}
	outcome := cleanText(string(ev.Outcome), maxShort)
	if err == nil && outcome == "" {
		err = fmt.Errorf("%w: empty outcome", ErrInvalid)
	}
	if err == nil {
		_, err = s.swarmInfo(ctx, swarm)
	}
	if err != nil {
		return 0, fmt.Errorf("add connection event: %w", err)
	}
	var id int64
	err = s.writeTx(ctx, "add connection event for "+addr.String(), func(tx *sql.Tx) error {
		peer, err := s.resolvePeer(ctx, tx, swarm, addr, ev.At, ev.At)
		if err != nil {
			return err
		}
		return s.txStmt(ctx, tx, qInsertConn).QueryRowContext(ctx, peer, micros(ev.At), outcome, cleanText(ev.Encryption, maxShort), storedTransport(ev.Transport), cleanText(ev.Detail, maxText)).Scan(&id)
	}, nil)
	return id, err
}

// Beats is a run of heartbeats (see AddBeat); its zero value starts one.
// It belongs to one caller.
type Beats struct {
	id          int64
	first, last int64 // µs
	n           int64
}

// AddBeat records ev as the next beat of run b: a connection event that
// repeats at a steady interval, as a watch's "still connected" heartbeat
// does. The first beat of a run inserts a row; each later one updates that
// row's end and count instead of adding one, so a run costs one row however
// long the connection lasts. ConnEvents returns the beats one by one, spread
// evenly between the first and the last. Every beat of a run must carry the
// same address, outcome, encryption and detail.
func (s *Store) AddBeat(ctx context.Context, swarm SwarmID, ev ConnEvent, b *Beats) error {
	if b.id == 0 {
		id, err := s.addConnEvent(ctx, swarm, ev)
		if err != nil {
			return err
		}
		at := micros(ev.At)
		*b = Beats{id: id, first: at, last: at, n: 1}
		return nil
	}
	if err := checkTime("heartbeat", ev.At); err != nil {
		return fmt.Errorf("add heartbeat: %w", err)
	}
	at := max(micros(ev.At), b.last) // a run's beats go forward
	return s.writeTx(ctx, "add heartbeat for "+ev.Addr.String(), func(tx *sql.Tx) error {
		_, err := s.txStmt(ctx, tx, qUpdateBeat).ExecContext(ctx, at, b.n+1, b.id)
		return err
	}, func() {
		b.last = at
		b.n++
	})
}

const qUpdateBeat = `UPDATE obs_conn SET until_us = ?, beats = ? WHERE id = ?`

// ConnEvents returns the swarm's connection events in the order recorded
// (the beats of a run where its first beat was recorded).
func (s *Store) ConnEvents(ctx context.Context, swarm SwarmID) ([]ConnEvent, error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT p.addr, c.at_us, c.outcome, c.encryption, c.transport, c.detail, c.until_us, c.beats
		FROM obs_conn c JOIN peers p ON p.id = c.peer_id WHERE p.swarm_id = ? ORDER BY c.id`), swarm)
	if err != nil {
		return nil, fmt.Errorf("connection events of swarm %d: %w", swarm, err)
	}
	defer rows.Close()
	var out []ConnEvent
	for rows.Next() {
		var ev ConnEvent
		var addr string
		var atUS, beats int64
		var untilUS sql.NullInt64
		if err := rows.Scan(&addr, &atUS, &ev.Outcome, &ev.Encryption, &ev.Transport, &ev.Detail, &untilUS, &beats); err != nil {
			return nil, fmt.Errorf("connection events of swarm %d: %w", swarm, err)
		}
		if ev.Addr, err = parseAddr(addr); err != nil {
			return nil, fmt.Errorf("connection events of swarm %d: %w", swarm, err)
		}
		ev.At = fromMicros(atUS)
		out = append(out, ev)
		if beats > 1 && untilUS.Valid && untilUS.Int64 >= atUS {
			if beats > maxBeatsExpanded {
				return nil, fmt.Errorf("connection events of swarm %d: %w: a run of %d heartbeats", swarm, ErrInvalid, beats)
			}
			step := float64(untilUS.Int64-atUS) / float64(beats-1)
			for k := int64(1); k < beats; k++ {
				ev.At = fromMicros(atUS + int64(step*float64(k)))
				out = append(out, ev)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("connection events of swarm %d: %w", swarm, err)
	}
	return out, nil
}

// ProbeRecord is one bandwidth probe of a peer: the numbers the verdicts use
// as columns, everything else in Result (the probe's JSON form).
type ProbeRecord struct {
	ID                    int64 // set by Probes
	Addr                  netip.AddrPort
	At                    time.Time // when the probe started
	Outcome               string
	Encryption            string
	ThroughputBytesPerSec float64
	ThroughputSpread      float64
	BytesDownloaded       int64
	PiecesVerified        int
	PiecesFailed          int
	HandshakeMS           float64
	Result                json.RawMessage // at most 1 MiB; nil stores {}
}

func (p *ProbeRecord) validate() error {
	if err := checkTime("probe", p.At); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"throughput", p.ThroughputBytesPerSec}, {"spread", p.ThroughputSpread}, {"handshake time", p.HandshakeMS}} {
		if err := checkFloat(f.name, f.v); err != nil {
			return err
		}
	}
	if p.BytesDownloaded < 0 || p.PiecesVerified < 0 || p.PiecesFailed < 0 {
		return fmt.Errorf("%w: negative probe count", ErrInvalid)
	}
	if p.Outcome = cleanText(p.Outcome, maxShort); p.Outcome == "" {
		return fmt.Errorf("%w: empty probe outcome", ErrInvalid)
	}
	p.Encryption = cleanText(p.Encryption, maxShort)
	return checkJSON("probe result", &p.Result, "{}")
}

// checkJSON bounds and validates a JSON blob; nil becomes def.
func checkJSON(what string, v *json.RawMessage, def string) error {
	if len(*v) == 0 {
		*v = json.RawMessage(def)
		return nil
	}
	if len(*v) > maxJSON {
		return fmt.Errorf("%w: %s is %d bytes (limit %d)", ErrInvalid, what, len(*v), maxJSON)
	}
	if !json.Valid(*v) {
		return fmt.Errorf("%w: %s is not valid JSON", ErrInvalid, what)
	}
	return nil
}

// AddProbe records a probe result and returns its id.
func (s *Store) AddProbe(ctx context.Context, swarm SwarmID, p ProbeRecord) (int64, error) {
	addr, err := normAddr(p.Addr)
	if err == nil {
		err = p.validate()
	}
	if err == nil {
		_, err = s.swarmInfo(ctx, swarm)
	}
	if err != nil {
		return 0, fmt.Errorf("add probe: %w", err)
	}
	var id int64
	err = s.writeTx(ctx, "add probe of "+addr.String(), func(tx *sql.Tx) error {
		peer, err := s.resolvePeer(ctx, tx, swarm, addr, p.At, p.At)
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, s.d.q(`INSERT INTO probes (peer_id, at_us, outcome, encryption, throughput_bps, spread,
			bytes_downloaded, pieces_verified, pieces_failed, handshake_ms, result_json, result_z)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?) RETURNING id`),
			peer, micros(p.At), p.Outcome, p.Encryption, p.ThroughputBytesPerSec, p.ThroughputSpread,
			p.BytesDownloaded, p.PiecesVerified, p.PiecesFailed, p.HandshakeMS, deflateProbe(p.Result)).Scan(&id)
	}, nil)
	return id, err
}

// Probes returns the swarm's probes in the order recorded.
func (s *Store) Probes(ctx context.Context, swarm SwarmID) ([]ProbeRecord, error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT r.id, p.addr, r.at_us, r.outcome, r.encryption, r.throughput_bps, r.spread,
		r.bytes_downloaded, r.pieces_verified, r.pieces_failed, r.handshake_ms, r.result_json, r.result_z
		FROM probes r JOIN peers p ON p.id = r.peer_id WHERE p.swarm_id = ? ORDER BY r.id`), swarm)
	if err != nil {
		return nil, fmt.Errorf("probes of swarm %d: %w", swarm, err)
	}
	defer rows.Close()
	var out []ProbeRecord
	for rows.Next() {
		var p ProbeRecord
		var addr, result string
		var deflated []byte
		var atUS int64
		if err := rows.Scan(&p.ID, &addr, &atUS, &p.Outcome, &p.Encryption, &p.ThroughputBytesPerSec, &p.ThroughputSpread,
			&p.BytesDownloaded, &p.PiecesVerified, &p.PiecesFailed, &p.HandshakeMS, &result, &deflated); err != nil {
			return nil, fmt.Errorf("probes of swarm %d: %w", swarm, err)
		}
		if deflated != nil {
			record, err := inflateProbe(deflated)
			if err != nil {
				return nil, fmt.Errorf("probes of swarm %d: probe %d: %w", swarm, p.ID, err)
			}
			result = string(record)
		}
		if p.Addr, err = parseAddr(addr); err != nil {
			return nil, fmt.Errorf("probes of swarm %d: %w", swarm, err)
		}
		p.At = fromMicros(atUS)
		p.Result = json.RawMessage(result)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("probes of swarm %d: %w", swarm, err)
	}
	return out, nil
}

// storedTransport is how a connection's transport is stored: "" for TCP,
// nearly every connection, which then costs no byte.
func storedTransport(t string) string {
	if t == "tcp" {
		return ""
	}
	return cleanText(t, maxShort)
}
