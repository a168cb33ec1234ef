package main

import (
	"fmt"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/reports"
)

// TransferCheck holds the report's transfer matrix (windows[].transfers)
// against the clients' own counters: in every window, what a client
// verifiably gained (its `left` falling) must lie between the sum of the
// matrix's lower bounds into it and the sum of its upper bounds plus what
// unobserved peers could have sent it (docs/estimation.md, "The swarm's
// interactions"). A client holds pieces only once they are hashed, so a
// window's end is read a piece late: the slack is one piece each side.
// The plausible matrix (plausible_upper) is held to the same test:
// PlausibleViolations are windows where a client gained more than it
// allows.
type TransferCheck struct {
	Receivers           int      `json:"receivers"` // client × window pairs checked
	Violations          []string `json:"violations,omitempty"`
	PlausibleViolations []string `json:"plausible_violations,omitempty"`
}

// checkTransfers evaluates the matrix of every window for every client
// host with `left` counters.
func checkTransfers(info *RunInfo, rep *reports.Report, truth map[string][]Sample) TransferCheck {
	var tc TransferCheck
	slack := rep.Swarm.PieceLength
	for _, w := range rep.Windows {
		lower, upper, plausible := map[string]int64{}, map[string]int64{}, map[string]int64{}
		for _, x := range w.Transfers {
			to := hostOf(x.To)
			lower[to] += x.Lower
			upper[to] += x.Upper
			plausible[to] += x.PlausibleUpper
		}
		for _, h := range info.Hosts {
			if !h.Client() {
				continue
			}
			a, okA := haveAt(truth[h.Name], w.From)
			b, okB := haveAt(truth[h.Name], w.To)
			if !okA || !okB {
				continue
			}
			gained := b - a
			tc.Receivers++
			hi := upper[h.IP] + w.GainUnobserved + slack
			if gained+slack < lower[h.IP] || gained > hi {
				tc.Violations = append(tc.Violations, fmt.Sprintf("%s, window %s–%s: gained %d bytes by its own counters, the matrix says %d to %d",
					h.Name, w.From.Format(time.TimeOnly), w.To.Format(time.TimeOnly), gained, lower[h.IP], upper[h.IP]+w.GainUnobserved))
			}
			if gained > plausible[h.IP]+w.GainUnobserved+slack {
				tc.PlausibleViolations = append(tc.PlausibleViolations, fmt.Sprintf("%s, window %s–%s: gained %d bytes by its own counters, the plausible matrix allows %d",
					h.Name, w.From.Format(time.TimeOnly), w.To.Format(time.TimeOnly), gained, plausible[h.IP]+w.GainUnobserved))
			}
		}
	}
	return tc
}

// haveAt is the payload the client held (verified) at t: its latest
// sample at or before t, or its first one when t precedes it (a leecher
// starts empty; a seed starts full).
func haveAt(ss []Sample, t time.Time) (int64, bool) {
	var last *Sample
	for i := range ss {
		s := &ss[i]
		if !s.Client || s.Size == 0 {
			continue
		}
		if s.T.After(t) {
			if last == nil {
				return s.Have(), true
			}
			break
		}
		last = s
	}
	if last == nil {
		return 0, false
	}
	return last.Have(), true
}
