package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Verdict is the audit's conclusion about one identity (a peer id, an
// address, a tracker user...) over a time window.
type Verdict struct {
	Run         RunID // 0 if not tied to a run
	Identity    string
	WindowStart time.Time
	WindowEnd   time.Time
	Status      string
	Confidence  float64 // 0..1
	Reasons     json.RawMessage
	Computed    time.Time // zero: now
}

func (v *Verdict) validate() error {
	v.Identity = cleanText(v.Identity, maxText)
	v.Status = cleanText(v.Status, maxShort)
	switch {
	case v.Identity == "":
		return fmt.Errorf("%w: verdict without identity", ErrInvalid)
	case v.Status == "":
		return fmt.Errorf("%w: verdict without status", ErrInvalid)
	case v.WindowStart.IsZero() || v.WindowEnd.IsZero() || v.WindowEnd.Before(v.WindowStart):
		return fmt.Errorf("%w: verdict window %v..%v", ErrInvalid, v.WindowStart, v.WindowEnd)
	case checkFloat("confidence", v.Confidence) != nil || v.Confidence < 0 || v.Confidence > 1:
		return fmt.Errorf("%w: confidence %v outside 0..1", ErrInvalid, v.Confidence)
	}
	if v.Computed.IsZero() {
		v.Computed = time.Now()
	}
	return checkJSON("verdict reasons", &v.Reasons, "[]")
}

// SaveVerdicts stores verdicts in one transaction. A verdict for the same
// identity and window as a stored one replaces it (verdicts are recomputed as
// evidence accumulates).
func (s *Store) SaveVerdicts(ctx context.Context, swarm SwarmID, vs []Verdict) error {
	vs = append([]Verdict(nil), vs...)
	for i := range vs {
		if err := vs[i].validate(); err != nil {
			return fmt.Errorf("save verdicts: verdict %d: %w", i, err)
		}
	}
	if _, err := s.swarmInfo(ctx, swarm); err != nil {
		return fmt.Errorf("save verdicts: %w", err)
	}
	return s.writeTx(ctx, fmt.Sprintf("save %d verdicts", len(vs)), func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, s.d.q(`INSERT INTO verdicts (swarm_id, run_id, identity, window_start_us, window_end_us,
			status, confidence, reasons_json, computed_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (swarm_id, identity, window_start_us, window_end_us) DO UPDATE SET
				run_id = excluded.run_id, status = excluded.status, confidence = excluded.confidence,
				reasons_json = excluded.reasons_json, computed_us = excluded.computed_us`))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, v := range vs {
			run := sql.NullInt64{Int64: int64(v.Run), Valid: v.Run != 0}
			if _, err := stmt.ExecContext(ctx, swarm, run, v.Identity, micros(v.WindowStart), micros(v.WindowEnd),
				v.Status, v.Confidence, string(v.Reasons), micros(v.Computed)); err != nil {
				return fmt.Errorf("verdict for %q: %w", v.Identity, err)
			}
		}
		return nil
	}, nil)
}

// Verdicts returns the swarm's verdicts ordered by identity and window.
func (s *Store) Verdicts(ctx context.Context, swarm SwarmID) ([]Verdict, error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT run_id, identity, window_start_us, window_end_us, status, confidence, reasons_json, computed_us
		FROM verdicts WHERE swarm_id = ? ORDER BY identity, window_start_us, window_end_us`), swarm)
	if err != nil {
		return nil, fmt.Errorf("verdicts of swarm %d: %w", swarm, err)
	}
	defer rows.Close()
	var out []Verdict
	for rows.Next() {
		var v Verdict
		var run sql.NullInt64
		var start, end, computed int64
		var reasons string
		if err := rows.Scan(&run, &v.Identity, &start, &end, &v.Status, &v.Confidence, &reasons, &computed); err != nil {
			return nil, fmt.Errorf("verdicts of swarm %d: %w", swarm, err)
		}
		v.Run = RunID(run.Int64)
		v.WindowStart, v.WindowEnd, v.Computed = fromMicros(start), fromMicros(end), fromMicros(computed)
		v.Reasons = json.RawMessage(reasons)
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verdicts of swarm %d: %w", swarm, err)
	}
	return out, nil
}

// RunID is an audit run's row id.
type RunID int64

// Run is one audit run: a process auditing a swarm from Started until
// Stopped (zero if it is running or died without stopping).
type Run struct {
	ID      RunID
	Swarm   SwarmID
	Started time.Time
	Stopped time.Time
	Config  json.RawMessage
}

// StartRun records the start of an audit run with its configuration.
func (s *Store) StartRun(ctx context.Context, swarm SwarmID, at time.Time, config json.RawMessage) (RunID, error) {
	if err := checkTime("run start", at); err != nil {
		return 0, fmt.Errorf("start run: %w", err)
	}
	if err := checkJSON("run config", &config, "{}"); err != nil {
		return 0, fmt.Errorf("start run: %w", err)
	}
	if _, err := s.swarmInfo(ctx, swarm); err != nil {
		return 0, fmt.Errorf("start run: %w", err)
	}
	var id RunID
	err := s.writeTx(ctx, "start run", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, s.d.q(`INSERT INTO runs (swarm_id, started_us, config_json) VALUES (?, ?, ?) RETURNING id`),
			swarm, micros(at), string(config)).Scan(&id)
	}, nil)
	return id, err
}

// StopRun records the end of a run.
func (s *Store) StopRun(ctx context.Context, run RunID, at time.Time) error {
	if err := checkTime("run stop", at); err != nil {
		return fmt.Errorf("stop run %d: %w", run, err)
	}
	return s.writeTx(ctx, fmt.Sprintf("stop run %d", run), func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(`UPDATE runs SET stopped_us = ? WHERE id = ?`), micros(at), run)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	}, nil)
}

const selectRun = `SELECT id, swarm_id, started_us, stopped_us, config_json FROM runs`

func scanRun(row interface{ Scan(...any) error }) (Run, error) {
	var r Run
	var started int64
	var stopped sql.NullInt64
	var config string
	if err := row.Scan(&r.ID, &r.Swarm, &started, &stopped, &config); err != nil {
		return r, err
	}
	r.Started, r.Stopped, r.Config = fromMicros(started), fromNullMicros(stopped), json.RawMessage(config)
	return r, nil
}

// Runs lists the runs of a swarm (all swarms if swarm is 0), oldest first.
func (s *Store) Runs(ctx context.Context, swarm SwarmID) ([]Run, error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(selectRun+` WHERE ? = 0 OR swarm_id = ? ORDER BY started_us, id`), swarm, swarm)
	if err != nil {
		return nil, fmt.Errorf("runs: %w", err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("runs: %w", err)
	}
	return out, nil
}

// LatestRun returns the most recently started run of any swarm (what a
// restart continues), or ErrNotFound.
func (s *Store) LatestRun(ctx context.Context) (Run, error) {
	r, err := scanRun(s.r.QueryRowContext(ctx, selectRun+` ORDER BY started_us DESC, id DESC LIMIT 1`))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("latest run: %w", ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("latest run: %w", err)
	}
	return r, nil
}
