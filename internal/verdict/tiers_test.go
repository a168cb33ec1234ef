package verdict

import (
	"testing"

	"github.com/swarmaudit/swarmaudit/internal/estimate"
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
