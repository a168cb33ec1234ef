package timeline

import (
	"slices"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// at is t0 plus s seconds.
func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func bf(n int, pieces ...int) bitfield.Bitfield {
	b := bitfield.New(n)
	for _, p := range pieces {
		b.Set(p)
	}
	return b
}

func snap(s float64, n int, pieces ...int) Observation {
	return Observation{At: at(s), Kind: KindBitfield, Pieces: bf(n, pieces...)}
}

func have(s float64, p int) Observation { return Observation{At: at(s), Kind: KindHave, Piece: p} }

func ev(s float64, k Kind) Observation { return Observation{At: at(s), Kind: k} }

// gainSec is a Gain in seconds after t0; lacked < 0 means unknown.
type gainSec struct {
	piece        int
	lacked, had  float64
	atFirstSight bool
}

func gainsSec(gs []Gain) []gainSec {
	var out []gainSec
	for _, g := range gs {
		l := -1.0
		if !g.AtFirstSight() {
			l = g.Lacked.Sub(t0).Seconds()
		}
		out = append(out, gainSec{g.Piece, l, g.Had.Sub(t0).Seconds(), g.AtFirstSight()})
	}
	return out
}

func TestGains(t *testing.T) {
	const n = 10
	tests := []struct {
		name      string
		n         int
		obs       []Observation
		opt       *Options
		want      []gainSec
		anomalies []AnomalyKind
	}{
		{name: "no observations", n: n},
		{
			name: "seeder at first sight",
			n:    4,
			obs:  []Observation{ev(0, KindConnected), ev(0, KindHaveAll), ev(60, KindHaveAll)},
			want: []gainSec{{0, -1, 0, true}, {1, -1, 0, true}, {2, -1, 0, true}, {3, -1, 0, true}},
		},
		{
			name: "two snapshots give a closed interval",
			n:    n,
			obs:  []Observation{snap(0, n, 1), snap(60, n, 1, 2, 3), snap(120, n, 1, 2, 3, 9)},
			want: []gainSec{{1, -1, 0, true}, {2, 0, 60, false}, {3, 0, 60, false}, {9, 60, 120, false}},
		},
		{
			name: "out of order and duplicated",
			n:    n,
			obs:  []Observation{snap(120, n, 1, 2, 3, 9), snap(0, n, 1), snap(60, n, 1, 2, 3), snap(0, n, 1), snap(60, n, 1, 2, 3)},
			want: []gainSec{{1, -1, 0, true}, {2, 0, 60, false}, {3, 0, 60, false}, {9, 60, 120, false}},
		},
		{
			name:      "a later snapshot with fewer pieces is an anomaly, not a loss",
			n:         n,
			obs:       []Observation{snap(0, n), snap(60, n, 1, 2), snap(120, n, 2), snap(180, n, 1, 2, 5)},
			want:      []gainSec{{1, 0, 60, false}, {2, 0, 60, false}, {5, 120, 180, false}},
			anomalies: []AnomalyKind{AnomalyLostPieces},
		},
		{
			name: "HAVE after the settle window closes the interval",
			n:    n,
			obs:  []Observation{snap(0, n, 1), have(30, 4), have(95, 5)},
			want: []gainSec{{1, -1, 0, true}, {4, 0, 30, false}, {5, 0, 95, false}},
		},
		{
			name: "lazy bitfield: HAVE right after the bitfield voids its negative evidence",
			n:    n,
			obs:  []Observation{snap(0, n), snap(600, n, 1), have(601, 4), have(700, 5)},
			want: []gainSec{{1, 0, 600, false}, {4, 0, 601, false}, {5, 600, 700, false}},
		},
		{
			name: "lazy bitfield at first sight: gain time unknown",
			n:    n,
			obs:  []Observation{snap(0, n, 1), have(2, 4)},
			want: []gainSec{{1, -1, 0, true}, {4, -1, 2, true}},
		},
		{
			name: "settle disabled: HAVE right after the bitfield is a gain",
			n:    n,
			obs:  []Observation{snap(0, n, 1), have(2, 4)},
			opt:  &Options{HaveSettle: 0},
			want: []gainSec{{1, -1, 0, true}, {4, 0, 2, false}},
		},
		{
			name: "HAVE suppression: only snapshots",
			n:    n,
			obs:  []Observation{snap(0, n), ev(1, KindDisconnected), snap(300, n, 0, 1, 2), snap(600, n, 0, 1, 2, 3)},
			want: []gainSec{{0, 0, 300, false}, {1, 0, 300, false}, {2, 0, 300, false}, {3, 300, 600, false}},
		},
		{
			name: "HAVE-only peer: no negative evidence",
			n:    n,
			obs:  []Observation{have(10, 3), have(20, 4)},
			want: []gainSec{{3, -1, 10, true}, {4, -1, 20, true}},
		},
		{
			name: "HaveNone then HAVEs",
			n:    n,
			obs:  []Observation{ev(0, KindHaveNone), have(50, 7), have(51, 7)},
			want: []gainSec{{7, 0, 50, false}},
		},
		{
			name: "no-bitfield connection is an empty snapshot",
			n:    n,
			obs:  []Observation{ev(0, KindNoBitfield), snap(100, n, 2)},
			want: []gainSec{{2, 0, 100, false}},
		},
		{
			name: "same-instant conflict: held wins, interval stays open-ended below",
			n:    n,
			obs:  []Observation{snap(0, n), snap(60, n), snap(60, n, 3)},
			want: []gainSec{{3, 0, 60, false}},
		},
		{
			name:      "malformed observations are skipped",
			n:         n,
			obs:       []Observation{snap(0, n), {At: at(10), Kind: KindBitfield, Pieces: bf(n+1, 0)}, have(20, n), have(21, -1), {Kind: KindHave, Piece: 1}, {At: at(30), Kind: 0}, {At: at(31), Kind: 200}, have(40, 2)},
			want:      []gainSec{{2, 0, 40, false}},
			anomalies: []AnomalyKind{AnomalyBadTime, AnomalyBadLength, AnomalyBadPiece, AnomalyBadPiece, AnomalyBadKind, AnomalyBadKind},
		},
		{
			name: "one piece",
			n:    1,
			obs:  []Observation{snap(0, 1), snap(10, 1, 0)},
			want: []gainSec{{0, 0, 10, false}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opt := DefaultOptions()
			if tc.opt != nil {
				opt = *tc.opt
			}
			tl := BuildWith(tc.n, tc.obs, opt)
			if got := gainsSec(tl.Gains()); !slices.Equal(got, tc.want) {
				t.Errorf("gains\n got %v\nwant %v", got, tc.want)
			}
			var kinds []AnomalyKind
			for _, a := range tl.Anomalies() {
				kinds = append(kinds, a.Kind)
			}
			slices.Sort(kinds)
			want := slices.Clone(tc.anomalies)
			slices.Sort(want)
			if !slices.Equal(kinds, want) {
				t.Errorf("anomalies %v, want %v", kinds, want)
			}
			// Invariant: every gain's interval is non-empty and Final matches.
			final := tl.Final()
			for _, g := range tl.Gains() {
				if !g.AtFirstSight() && !g.Lacked.Before(g.Had) {
					t.Errorf("piece %d: lacked %v not before had %v", g.Piece, g.Lacked, g.Had)
				}
				if !final.Has(g.Piece) {
					t.Errorf("piece %d gained but not in Final", g.Piece)
				}
			}
			if final.Count() != len(tl.Gains()) {
				t.Errorf("Final has %d pieces, %d gains", final.Count(), len(tl.Gains()))
			}
		})
	}
}

func TestHaveAtAndLackingFrom(t *testing.T) {
	const n = 8
	obs := []Observation{snap(100, n, 0), have(200, 1), snap(300, n, 0, 1, 2), snap(400, n, 0, 1, 2)}
	tl := Build(n, obs)
	tests := []struct {
		at      float64
		ok      bool
		have    []int
		lacking []int
	}{
		{at: 0, ok: false, have: nil, lacking: []int{1, 2, 3, 4, 5, 6, 7}},
		{at: 99.9, ok: false, have: nil, lacking: []int{1, 2, 3, 4, 5, 6, 7}},
		{at: 100, ok: true, have: []int{0}, lacking: []int{1, 2, 3, 4, 5, 6, 7}},
		{at: 199, ok: true, have: []int{0}, lacking: []int{3, 4, 5, 6, 7}},
		{at: 200, ok: true, have: []int{0, 1}, lacking: []int{3, 4, 5, 6, 7}},
		{at: 300, ok: true, have: []int{0, 1, 2}, lacking: []int{3, 4, 5, 6, 7}},
		{at: 400, ok: true, have: []int{0, 1, 2}, lacking: []int{3, 4, 5, 6, 7}},
		{at: 400.1, ok: true, have: []int{0, 1, 2}, lacking: nil},
	}
	for _, tc := range tests {
		got, ok := tl.HaveAt(at(tc.at))
		if ok != tc.ok || !slices.Equal(got.Indices(), tc.have) {
			t.Errorf("HaveAt(%v) = %v, %v; want %v, %v", tc.at, got.Indices(), ok, tc.have, tc.ok)
		}
		if l := tl.LackingFrom(at(tc.at)).Indices(); !slices.Equal(l, tc.lacking) {
			t.Errorf("LackingFrom(%v) = %v; want %v", tc.at, l, tc.lacking)
		}
	}
	if _, ok := tl.HaveAt(time.Time{}); ok {
		t.Error("HaveAt(zero time) ok")
	}
	if got, _ := tl.HaveAt(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); got.Count() != 3 {
		t.Errorf("HaveAt(far future) = %v", got.Indices())
	}
}

func ivSec(ivs []Interval) [][2]float64 {
	var out [][2]float64
	for _, iv := range ivs {
		out = append(out, [2]float64{iv.From.Sub(t0).Seconds(), iv.To.Sub(t0).Seconds()})
	}
	return out
}

func TestPresenceAndAbsence(t *testing.T) {
	tests := []struct {
		name     string
		obs      []Observation
		gap      time.Duration
		presence [][2]float64
		absence  [][2]float64
	}{
		{name: "nothing", gap: time.Minute},
		{
			name:     "seen once",
			obs:      []Observation{ev(5, KindConnected), ev(5, KindHaveAll), ev(5, KindDisconnected)},
			gap:      time.Minute,
			presence: [][2]float64{{5, 5}},
		},
		{
			name:     "contacts within the gap merge, a larger gap splits",
			obs:      []Observation{ev(0, KindConnected), ev(50, KindConnected), ev(100, KindConnected), ev(300, KindConnected)},
			gap:      time.Minute,
			presence: [][2]float64{{0, 100}, {300, 300}},
		},
		{
			name:     "a long connection is presence whatever the gap",
			obs:      []Observation{ev(0, KindConnected), ev(1, KindNoBitfield), ev(3600, KindDisconnected), ev(3650, KindConnected)},
			gap:      time.Minute,
			presence: [][2]float64{{0, 3650}},
		},
		{
			name:     "a refusal splits presence and is absence",
			obs:      []Observation{ev(0, KindConnected), ev(20, KindRefused), ev(40, KindConnected)},
			gap:      time.Minute,
			presence: [][2]float64{{0, 0}, {40, 40}},
			absence:  [][2]float64{{20, 20}},
		},
		{
			name:    "refusal runs merge within the gap",
			obs:     []Observation{ev(0, KindRefused), ev(50, KindRefused), ev(100, KindRefused), ev(400, KindRefused), ev(420, KindUnreachable)},
			gap:     time.Minute,
			absence: [][2]float64{{0, 100}, {400, 400}},
		},
		{
			name:     "a contact splits a refusal run",
			obs:      []Observation{ev(0, KindRefused), ev(20, KindConnected), ev(40, KindRefused)},
			gap:      time.Minute,
			presence: [][2]float64{{20, 20}},
			absence:  [][2]float64{{0, 0}, {40, 40}},
		},
		{
			name: "failures that are not refusals are neither",
			obs:  []Observation{ev(0, KindUnreachable), ev(10, KindHandshakeFailed)},
			gap:  time.Minute,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := Build(4, tc.obs)
			if got := ivSec(tl.Presence(tc.gap)); !slices.Equal(got, tc.presence) {
				t.Errorf("presence %v, want %v", got, tc.presence)
			}
			if got := ivSec(tl.Absence(tc.gap)); !slices.Equal(got, tc.absence) {
				t.Errorf("absence %v, want %v", got, tc.absence)
			}
		})
	}
}

func TestFirstLastSeenAndCounts(t *testing.T) {
	obs := []Observation{
		ev(0, KindRefused), ev(10, KindUnreachable), ev(20, KindHandshakeFailed),
		ev(30, KindConnected), snap(30, 4, 1), have(40, 2), ev(50, KindDisconnected),
		ev(60, KindConnected), ev(60, KindHaveAll), ev(70, KindDisconnected),
		ev(80, KindConnected), ev(80, KindNoBitfield), ev(81, KindHaveNone),
	}
	tl := Build(4, obs)
	want := Counts{Bitfield: 1, Have: 1, HaveAll: 1, HaveNone: 1, NoBitfield: 1, Connected: 3, Disconnected: 2, Refused: 1, Unreachable: 1, HandshakeFailed: 1}
	if got := tl.Counts(); got != want {
		t.Errorf("counts %+v, want %+v", got, want)
	}
	if c := tl.Counts(); c.Attempts() != 6 || c.Failures() != 3 || c.PieceMessages() != 4 {
		t.Errorf("attempts %d failures %d piece messages %d", c.Attempts(), c.Failures(), c.PieceMessages())
	}
	if f, ok := tl.FirstSeen(); !ok || !f.Equal(at(30)) {
		t.Errorf("FirstSeen %v %v", f, ok)
	}
	if l, ok := tl.LastSeen(); !ok || !l.Equal(at(81)) {
		t.Errorf("LastSeen %v %v", l, ok)
	}
	if l, ok := tl.LastSnapshot(); !ok || !l.Equal(at(81)) {
		t.Errorf("LastSnapshot %v %v", l, ok)
	}
	if lp, ok := tl.LostPiecesAt(); !ok || !lp.Equal(at(80)) {
		t.Errorf("LostPiecesAt %v %v", lp, ok)
	}
	if !tl.HasPieceInfo() {
		t.Error("no piece info")
	}
	empty := Build(4, []Observation{ev(0, KindRefused)})
	if empty.HasPieceInfo() {
		t.Error("piece info from a refusal")
	}
	if _, ok := empty.FirstSeen(); ok {
		t.Error("FirstSeen from a refusal")
	}
}

func TestPieceNanos(t *testing.T) {
	tl := Build(3, []Observation{snap(0, 3, 0), snap(10, 3, 0, 1)})
	tests := []struct {
		piece       int
		lacked, had int64
	}{
		{0, NegInf, at(0).UnixNano()},
		{1, at(0).UnixNano(), at(10).UnixNano()},
		{2, at(10).UnixNano(), PosInf},
		{3, NegInf, PosInf},
		{-1, NegInf, PosInf},
	}
	for _, tc := range tests {
		l, h := tl.PieceNanos(tc.piece)
		if l != tc.lacked || h != tc.had {
			t.Errorf("piece %d: %d,%d want %d,%d", tc.piece, l, h, tc.lacked, tc.had)
		}
	}
}

func TestDownloadRate(t *testing.T) {
	const n = 100
	var obs []Observation
	var held []int
	for k := 0; k <= 10; k++ {
		obs = append(obs, snap(float64(k*60), n, held...))
		held = append(held, k*2, k*2+1) // two pieces a minute
	}
	tl := Build(n, obs)
	tests := []struct {
		name     string
		from, to float64
		want     float64
		ok       bool
	}{
		{"steady", 0, 600, 18.0 / 600, true}, // the gain seen at 600 is outside [0, 600)
		{"sub-window", 60, 180, 4.0 / 120, true},
		{"empty window", 60, 60, 0, false},
		{"inverted", 120, 60, 0, false},
		{"before first snapshot", -60, 600, 0, false},
	}
	for _, tc := range tests {
		got, ok := tl.DownloadRate(at(tc.from), at(tc.to))
		if ok != tc.ok || (ok && (got < tc.want*0.999 || got > tc.want*1.001)) {
			t.Errorf("%s: %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestIntervalOverlap(t *testing.T) {
	iv := Interval{at(10), at(20)}
	tests := []struct {
		from, to float64
		want     time.Duration
	}{
		{0, 30, 10 * time.Second},
		{15, 30, 5 * time.Second},
		{0, 12, 2 * time.Second},
		{20, 30, 0},
		{12, 12, 0},
		{18, 12, 0},
	}
	for _, tc := range tests {
		if got := iv.Overlap(at(tc.from), at(tc.to)); got != tc.want {
			t.Errorf("Overlap(%v,%v) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
	if d := (Interval{at(5), at(1)}).Duration(); d != 0 {
		t.Errorf("inverted duration %v", d)
	}
}

func TestInputNotModified(t *testing.T) {
	obs := []Observation{snap(60, 4, 1, 2), snap(0, 4, 1)}
	before := obs[0].Pieces.Clone()
	Build(4, obs)
	if !obs[0].At.Equal(at(60)) || !obs[0].Pieces.Equal(before) {
		t.Error("Build modified its input")
	}
}

func TestAnomalyCap(t *testing.T) {
	var obs []Observation
	for i := 0; i < 1000; i++ {
		obs = append(obs, have(float64(i), 99))
	}
	tl := Build(4, obs)
	if len(tl.Anomalies()) != maxAnomalies || tl.AnomalyCount() != 1000 {
		t.Errorf("kept %d anomalies, counted %d", len(tl.Anomalies()), tl.AnomalyCount())
	}
}

func TestKindStrings(t *testing.T) {
	for k := KindBitfield; k < kindEnd; k++ {
		if s := k.String(); s == "" || s[0] == 'k' {
			t.Errorf("kind %d has no name: %q", k, s)
		}
	}
	if Kind(99).String() != "kind(99)" || AnomalyKind(99).String() != "anomaly(99)" || AnomalyLostPieces.String() != "lost_pieces" {
		t.Error("fallback names")
	}
}

// TestPromptLacked: under prompt HAVEs (delay 10 s), a piece first
// announced at h was lacked at min(h, run end) − 10 s for the latest run of
// one established connection that began before h, when that time lies in
// the run; otherwise PieceNanos's lacked stands.
func TestPromptLacked(t *testing.T) {
	const n = 3
	never := -1.0 // NegInf
	for _, tc := range []struct {
		name string
		obs  []Observation
		want [n]float64 // seconds after t0, never for NegInf
	}{
		{"a watch with heartbeats", []Observation{ev(0, KindConnected), snap(1, n), ev(15, KindHeartbeat), ev(30, KindHeartbeat), have(40, 0),
			ev(45, KindHeartbeat), ev(50, KindDisconnected)},
			[n]float64{30, 40, 40}},
		{"a connection that only ended", []Observation{ev(0, KindConnected), snap(1, n, 2), have(40, 0), ev(50, KindDisconnected)},
			[n]float64{30, 40, never}},
		{"a peer that never announced a gain", []Observation{ev(0, KindConnected), snap(1, n), ev(30, KindHeartbeat), ev(50, KindDisconnected),
			ev(60, KindConnected), snap(61, n, 0), ev(90, KindDisconnected)},
			[n]float64{1, 61, 61}},
		{"no heartbeat, no end: no run", []Observation{ev(0, KindConnected), snap(1, n), have(40, 0)},
			[n]float64{1, 1, 1}},
		{"lazy HAVEs right after the bitfield", []Observation{ev(0, KindConnected), snap(1, n), have(2, 0), have(25, 2), ev(30, KindHeartbeat)},
			[n]float64{never, 20, 15}},
		{"a heartbeat before the piece set starts no run", []Observation{ev(0, KindConnected), ev(5, KindHeartbeat), snap(6, n), ev(20, KindHeartbeat),
			have(30, 1), ev(40, KindDisconnected)},
			[n]float64{30, 20, 30}},
		{"an earlier connection speaks for a later bitfield", []Observation{ev(0, KindConnected), snap(1, n), have(15, 1), ev(20, KindDisconnected),
			ev(100, KindConnected), snap(101, n, 0, 1)},
			[n]float64{10, 5, 101}},
		{"a watch on the connection whose bitfield just came", []Observation{ev(0, KindConnected), snap(1, n), ev(1.01, KindWatch), have(30, 0),
			ev(45, KindHeartbeat)},
			[n]float64{20, 35, 35}},
		{"a watch whose piece set a probe read", []Observation{ev(0, KindConnected), snap(1, n), ev(9, KindDisconnected), ev(50, KindWatch), have(70, 0),
			ev(80, KindHeartbeat)},
			[n]float64{60, 70, 70}},
		{"a new connection ends the run", []Observation{ev(0, KindConnected), snap(1, n), have(10, 2), ev(15, KindHeartbeat), ev(20, KindConnected),
			ev(30, KindHeartbeat), have(60, 0)},
			[n]float64{5, 5, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := Build(n, tc.obs)
			got := tl.PromptLacked(10 * time.Second)
			for i, w := range tc.want {
				want := NegInf
				if w != never {
					want = at(w).UnixNano()
				}
				if got[i] != want {
					t.Errorf("piece %d: %s, want %s", i, fromNanos(got[i]).Format(time.TimeOnly), fromNanos(want).Format(time.TimeOnly))
				}
				if l, _ := tl.PieceNanos(i); got[i] < l {
					t.Errorf("piece %d: earlier than the snapshot's lacked", i)
				}
			}
		})
	}
}
