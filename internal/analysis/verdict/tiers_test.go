package verdict

import (
	"slices"
	"testing"

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
