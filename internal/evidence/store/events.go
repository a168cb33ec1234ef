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

// ConnEvent is one connection attempt and its outcome.
type ConnEvent struct {
	Addr       netip.AddrPort
	At         time.Time
	Outcome    ConnOutcome
	Encryption string // e.g. "plaintext", "rc4"; empty if not reached
	Detail     string // error text; truncated to 1 KiB
}

const qInsertConn = `INSERT INTO obs_conn (peer_id, at_us, outcome, encryption, detail) VALUES (?, ?, ?, ?, ?)`

// AddConnEvent records a connection outcome.
func (s *Store) AddConnEvent(ctx context.Context, swarm SwarmID, ev ConnEvent) error {
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
		return fmt.Errorf("add connection event: %w", err)
	}
	return s.writeTx(ctx, "add connection event for "+addr.String(), func(tx *sql.Tx) error {
		peer, err := s.resolvePeer(ctx, tx, swarm, addr, ev.At, ev.At)
		if err != nil {
			return err
		}
		_, err = s.txStmt(ctx, tx, qInsertConn).ExecContext(ctx, peer, micros(ev.At), outcome, cleanText(ev.Encryption, maxShort), cleanText(ev.Detail, maxText))
		return err
	}, nil)
}

// ConnEvents returns the swarm's connection events in the order recorded.
func (s *Store) ConnEvents(ctx context.Context, swarm SwarmID) ([]ConnEvent, error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT p.addr, c.at_us, c.outcome, c.encryption, c.detail
		FROM obs_conn c JOIN peers p ON p.id = c.peer_id WHERE p.swarm_id = ? ORDER BY c.id`), swarm)
	if err != nil {
		return nil, fmt.Errorf("connection events of swarm %d: %w", swarm, err)
	}
	defer rows.Close()
	var out []ConnEvent
	for rows.Next() {
		var ev ConnEvent
		var addr string
		var atUS int64
		if err := rows.Scan(&addr, &atUS, &ev.Outcome, &ev.Encryption, &ev.Detail); err != nil {
			return nil, fmt.Errorf("connection events of swarm %d: %w", swarm, err)
		}
		if ev.Addr, err = parseAddr(addr); err != nil {
			return nil, fmt.Errorf("connection events of swarm %d: %w", swarm, err)
		}
		ev.At = fromMicros(atUS)
		out = append(out, ev)
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
			bytes_downloaded, pieces_verified, pieces_failed, handshake_ms, result_json)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
			peer, micros(p.At), p.Outcome, p.Encryption, p.ThroughputBytesPerSec, p.ThroughputSpread,
			p.BytesDownloaded, p.PiecesVerified, p.PiecesFailed, p.HandshakeMS, string(p.Result)).Scan(&id)
	}, nil)
	return id, err
}

// Probes returns the swarm's probes in the order recorded.
func (s *Store) Probes(ctx context.Context, swarm SwarmID) ([]ProbeRecord, error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT r.id, p.addr, r.at_us, r.outcome, r.encryption, r.throughput_bps, r.spread,
		r.bytes_downloaded, r.pieces_verified, r.pieces_failed, r.handshake_ms, r.result_json
		FROM probes r JOIN peers p ON p.id = r.peer_id WHERE p.swarm_id = ? ORDER BY r.id`), swarm)
	if err != nil {
		return nil, fmt.Errorf("probes of swarm %d: %w", swarm, err)
	}
	defer rows.Close()
	var out []ProbeRecord
	for rows.Next() {
		var p ProbeRecord
		var addr, result string
		var atUS int64
		if err := rows.Scan(&p.ID, &addr, &atUS, &p.Outcome, &p.Encryption, &p.ThroughputBytesPerSec, &p.ThroughputSpread,
			&p.BytesDownloaded, &p.PiecesVerified, &p.PiecesFailed, &p.HandshakeMS, &result); err != nil {
			return nil, fmt.Errorf("probes of swarm %d: %w", swarm, err)
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
