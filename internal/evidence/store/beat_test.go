package store

import (
	"path/filepath"
	"testing"
	"time"
)

// TestBeatRuns: a run of heartbeats is one row whatever its length, read
// back beat by beat between its first and last time, in the place its
// first beat was recorded; two runs of one peer stay apart.
func TestBeatRuns(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "beats.db"))
	ctx := testCtx(t)
	sw := mustSwarm(t, s, SwarmInfo{InfoHash: ih(5), NumPieces: 8})
	a := addr("127.0.0.1:6881")
	beat := func(at time.Time) ConnEvent {
		return ConnEvent{Addr: a, At: at, Outcome: ConnOK, Encryption: "rc4", Detail: "watching"}
	}
	var run1, run2 Beats
	for k := range 5 {
		if err := s.AddBeat(ctx, sw, beat(t0.Add(time.Duration(k)*time.Minute)), &run1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddConnEvent(ctx, sw, ConnEvent{Addr: a, At: t0.Add(5 * time.Minute), Outcome: ConnDisconnected}); err != nil {
		t.Fatal(err)
	}
	for k := range 2 {
		if err := s.AddBeat(ctx, sw, beat(t0.Add(time.Hour+time.Duration(k)*time.Minute)), &run2); err != nil {
			t.Fatal(err)
		}
	}
	var rows int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM obs_conn`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 3 {
		t.Fatalf("%d rows for two runs and an event, want 3", rows)
	}
	got, err := s.ConnEvents(ctx, sw)
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute, time.Hour, time.Hour + time.Minute}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(got), len(want), got)
	}
	for i, ev := range got {
		if !ev.At.Equal(t0.Add(want[i])) {
			t.Errorf("event %d at %v, want %v", i, ev.At.Sub(t0), want[i])
		}
		if (ev.Outcome == ConnDisconnected) != (i == 5) || ev.Outcome == ConnOK && ev.Detail != "watching" {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
}
