package verdict

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

// TestPairSums: claims each within a pair's slack still add up past the
// sum of the pairs' bounds, which needs the slack once.
func TestPairSums(t *testing.T) {
	j := &judge{cfg: DefaultConfig(), slack: 32 * mib, pslack: 4 * mib}
	pair := func(up, plausible, avail int64, limit estimate.Limit) Check {
		var b estimate.Bounds
		b.Plausible.UploadUpper, b.Plausible.Limit = plausible, limit
		b.Explain.AvailabilityBound = avail
		return Check{Uploaded: up, Bounds: b}
	}
	for _, tc := range []struct {
		name   string
		checks []Check
		want   []Code
		status Status
	}{
		{"within every pair and in sum", []Check{pair(5*mib, 7*mib, 100*mib, estimate.LimitCapacity), pair(5*mib, 7*mib, 100*mib, estimate.LimitCapacity)}, nil, ""},
		{"within every pair, not in sum", []Check{pair(10*mib, 7*mib, 100*mib, estimate.LimitCapacity), pair(10*mib, 7*mib, 100*mib, estimate.LimitCapacity),
			pair(10*mib, 7*mib, 100*mib, estimate.LimitSliced), pair(10*mib, 7*mib, 100*mib, estimate.LimitCapacity), pair(10*mib, 7*mib, 100*mib, estimate.LimitCapacity)},
			[]Code{CodeUploadExceedsCapacity}, StatusSuspect},
		{"availability in sum: a proof", []Check{pair(40*mib, 20*mib, 20*mib, estimate.LimitAvailability), pair(40*mib, 20*mib, 20*mib, estimate.LimitAvailability),
			pair(40*mib, 20*mib, 20*mib, estimate.LimitAvailability), pair(40*mib, 20*mib, 20*mib, estimate.LimitAvailability)},
			[]Code{CodeUploadExceedsAvailability, CodeUploadExceedsAvailability}, StatusMisreporting},
		{"one pair: its own check", []Check{pair(100*mib, 7*mib, 7*mib, estimate.LimitCapacity)}, nil, ""},
		{"sessions are not pairs", []Check{pair(10*mib, 7*mib, 100*mib, estimate.LimitCapacity), {Session: true, Uploaded: 1 << 40}}, nil, ""},
		// 4 × 110 MiB against 4 × 100 MiB of bounds: over the capacity
		// factor (×1.05 + 4 MiB = 424 MiB), within the availability one
		// (×1.15 + 4 MiB = 464 MiB).
		{"capacity bounds take the capacity factor", []Check{pair(110*mib, 100*mib, 1000*mib, estimate.LimitCapacity), pair(110*mib, 100*mib, 1000*mib, estimate.LimitCapacity),
			pair(110*mib, 100*mib, 1000*mib, estimate.LimitCapacity), pair(110*mib, 100*mib, 1000*mib, estimate.LimitCapacity)},
			[]Code{CodeUploadExceedsCapacity}, StatusSuspect},
		{"availability bounds keep the suspect factor", []Check{pair(110*mib, 100*mib, 1000*mib, estimate.LimitAvailability), pair(110*mib, 100*mib, 1000*mib, estimate.LimitAvailability),
			pair(110*mib, 100*mib, 1000*mib, estimate.LimitAvailability), pair(110*mib, 100*mib, 1000*mib, estimate.LimitAvailability)},
			nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := j.pairSumReasons(tc.checks)
			if len(rs) != len(tc.want) {
				t.Fatalf("%d reasons, want %v: %+v", len(rs), tc.want, rs)
			}
			worst := Status("")
			for i, r := range rs {
				if r.Code != tc.want[i] {
					t.Errorf("reason %d: %s, want %s", i, r.Code, tc.want[i])
				}
				if r.Status.Severity() > worst.Severity() {
					worst = r.Status
				}
			}
			if worst != tc.status {
				t.Errorf("worst status %q, want %q", worst, tc.status)
			}
		})
	}
}

// TestUnservedIgnoresFlaggedCredit: an honest seeder that happened to keep
// us choked is not accused because a measured cheater beside it claimed
// the swarm's downloads for itself: flagged identities earn no credit.
func TestUnservedIgnoresFlaggedCredit(t *testing.T) {
	s := base()
	s.in.Peers[0].Probes, s.in.Peers[0].ChokedProbes = nil, 5 // S, honest, never unchoked us
	const cheat = 50
	s.wire(cheat, looks(-600, 7200, haveAll), estimate.Sample{At: at(600), BytesPerSec: 0.5 * mib, Spread: 0.01 * mib, Bytes: 2 * mib})
	for k, tm := range []float64{0, 1800, 3600, 5400, 7200} {
		ev := reported.EventNone
		if k == 0 {
			ev = reported.EventStarted
		}
		s.announce(cheat, tm, int64(k)*200*mib, 0, 0, ev)
	}
	rep := judgeSim(t, s, DefaultConfig())
	if v := verdictOf(t, rep, cheat); v.Status.Severity() < StatusSuspect.Severity() {
		t.Fatalf("the inflating seeder is %s: %v", v.Status, codes(v))
	}
	if v := verdictOf(t, rep, 1); slices.Contains(codes(v), CodeNeverUnchoked) {
		t.Fatalf("honest S accused of never unchoking: %s %v", v.Status, codes(v))
	}
}

// TestPairRuns: the plausible sum is taken over the run of consecutive
// pairs whose claims exceed their bounds most, with what may have moved in
// across the run's two ends allowed once.
func TestPairRuns(t *testing.T) {
	j := &judge{cfg: DefaultConfig(), slack: 32 * mib, pslack: 4 * mib}
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	type p struct {
		up, bound int64
		capBps    float64 // plausible capacity upper, 0 unknown
		gap       bool    // a session boundary before this pair
	}
	build := func(ps []p) []Check {
		var out []Check
		at := t0
		for _, q := range ps {
			if q.gap {
				at = at.Add(time.Hour)
			}
			var b estimate.Bounds
			b.Plausible.UploadUpper, b.Plausible.Limit = q.bound, estimate.LimitAvailability
			b.Explain.AvailabilityBound = 1 << 40
			if q.capBps > 0 {
				b.Plausible.Capacity = estimate.CapacityEstimate{Known: true, Upper: q.capBps}
			}
			out = append(out, Check{From: at, To: at.Add(30 * time.Second), Uploaded: q.up, Bounds: b})
			at = at.Add(30 * time.Second)
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		pairs     []p
		flagged   bool
		from, to  int // the run found
		edgeBytes float64
	}{
		// Three probes of 2 MiB claimed as 5 MiB, between pairs whose
		// claims sit well under their bounds: the sum of every pair hides
		// them, the run does not. Each pair alone is within its slack.
		{"an inflated run between honest pairs", []p{{10 * mib, 40 * mib, 0.05 * mib, false}, {5 * mib, 2 * mib, 0.05 * mib, false}, {0, 0, 0.05 * mib, false},
			{5 * mib, 2 * mib, 0.05 * mib, false}, {0, 0, 0.05 * mib, false}, {5 * mib, 2 * mib, 0.05 * mib, false}, {5 * mib, 30 * mib, 0.05 * mib, false}},
			true, 1, 6, 2 * 0.05 * mib * 10 * 1.05},
		// 5 MiB counted one pair late: the run after it may have received
		// them across its left end, so nothing is flagged.
		{"bytes moved across an end", []p{{0, 5 * mib, 0, false}, {5 * mib, 0, 0, false}, {0, 0, 0, false}}, false, -1, -1, 0},
		// The same with 6 MiB, but a burst at its capacity bounds what
		// can move.
		{"at most a burst moves", []p{{0, 6 * mib, 0, false}, {6 * mib, 0, 0.1 * mib, false}, {0, 0, 0, false}}, true, 1, 3, 0.1 * mib * 10 * 1.05},
		// Nothing moves in across a session boundary.
		{"nothing across a gap", []p{{0, 5 * mib, 0, false}, {5 * mib, 0, 0, true}, {0, 0, 0, false}}, true, 1, 3, 0},
		{"one pair is no run", []p{{100 * mib, 0, 0, false}}, false, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checks := build(tc.pairs)
			r, ok := j.planRun(checks)
			if len(checks) < 2 {
				if ok {
					t.Fatalf("a run of %d pairs", len(checks))
				}
				return
			}
			if !ok {
				t.Fatal("no run")
			}
			if tc.from >= 0 && (r.from != tc.from || r.to != tc.to) {
				t.Fatalf("run [%d, %d), want [%d, %d)", r.from, r.to, tc.from, tc.to)
			}
			if tc.from >= 0 && math.Abs(r.edges-tc.edgeBytes) > 1 {
				t.Errorf("edge allowance %.0f, want %.0f", r.edges, tc.edgeBytes)
			}
			_, flagged := j.runReason(checks)
			if flagged != tc.flagged {
				t.Errorf("flagged %v, want %v (claims %.0f, threshold %.0f)", flagged, tc.flagged, r.up, r.threshold)
			}
			var sum float64
			for _, c := range checks[r.from:r.to] {
				sum += float64(c.Uploaded)
			}
			if sum != r.up {
				t.Errorf("claims %.0f, want %.0f", r.up, sum)
			}
		})
	}
}

// TestPlanRunBruteForce: the one-pass search finds the largest excess over
// every run of at least two pairs, enumerated.
func TestPlanRunBruteForce(t *testing.T) {
	j := &judge{cfg: DefaultConfig(), slack: 32 * mib, pslack: 4 * mib}
	rng := rand.New(rand.NewPCG(18, 7))
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	for trial := range 2000 {
		n := 2 + rng.IntN(9)
		var checks []Check
		at := t0
		for range n {
			if rng.IntN(5) == 0 {
				at = at.Add(time.Hour) // a session boundary
			}
			var b estimate.Bounds
			b.Plausible.UploadUpper = rng.Int64N(20 * mib)
			b.Plausible.Limit = []estimate.Limit{estimate.LimitAvailability, estimate.LimitCapacity, estimate.LimitSliced}[rng.IntN(3)]
			if rng.IntN(2) == 0 {
				b.Plausible.Capacity = estimate.CapacityEstimate{Known: true, Upper: rng.Float64() * mib}
			}
			checks = append(checks, Check{From: at, To: at.Add(time.Minute), Uploaded: rng.Int64N(30 * mib), Bounds: b})
			at = at.Add(time.Minute)
		}
		excess := func(from, to int) float64 {
			var e float64
			for k := from; k < to; k++ {
				th, _ := j.runThreshold(checks[k])
				e += float64(checks[k].Uploaded) - th
			}
			return e - j.runEdge(checks, from, from-1) - j.runEdge(checks, to-1, to)
		}
		want := math.Inf(-1)
		for from := 0; from < n; from++ {
			for to := from + 2; to <= n; to++ {
				want = max(want, excess(from, to))
			}
		}
		r, ok := j.planRun(checks)
		if !ok {
			t.Fatalf("trial %d: no run of %d pairs", trial, n)
		}
		got := r.up - (r.threshold - float64(j.pslack))
		if math.Abs(got-want) > 1 || math.Abs(excess(r.from, r.to)-want) > 1 {
			t.Fatalf("trial %d: run [%d, %d) exceeds by %.0f, the best run by %.0f", trial, r.from, r.to, got, want)
		}
	}
}
