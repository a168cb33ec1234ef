package verdict

import (
	"fmt"
	"math"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/bytesize"
	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

// The evidence tiers (docs/estimation.md, "Evidence tiers"): proofs hold
// whatever unobserved identities did and may be misreporting; plausible
// findings hold under the assumptions they list and are suspect at most.
// This file holds the plausible tier's checks and the checks of reports
// against themselves.

// thrP is the plausible tier's threshold: bound×SuspectFactor + its slack.
func (j *judge) thrP(bound int64) float64 {
	return float64(bound)*j.cfg.SuspectFactor + float64(j.pslack)
}

// thrCap is thrP for a bound of probed capacity, which carries its own
// headroom: bound×CapacitySuspectFactor + the plausible slack.
func (j *judge) thrCap(bound int64) float64 {
	return float64(bound)*j.cfg.CapacitySuspectFactor + float64(j.pslack)
}

// plausibleReasons are the plausible tier's upload findings for one
// interval.
func (j *judge) plausibleReasons(up float64, b estimate.Bounds, base func(map[string]float64) map[string]float64, when string) []Reason {
	var out []Reason
	pl := b.Plausible
	if t := j.thrP(pl.AvailabilityBound); up > t && float64(pl.AvailabilityBound) < float64(b.Explain.AvailabilityBound) {
		out = append(out, Reason{Code: CodeUploadExceedsAvailability, Status: StatusSuspect, Tier: TierPlausible,
			Assumptions: []string{estimate.AssumeOwnDownloads, estimate.AssumePromptHaves}, Confidence: conf(up, t),
			Message: fmt.Sprintf("reported %s uploaded %s, but the other peers reported downloading %s and could have gained at most %s of it from pieces it may have held",
				bytesize.Format(up), when, bytesize.Format(float64(pl.ReportedDownloads)), bytesize.Format(float64(pl.AvailabilityBound))),
			Numbers: base(map[string]float64{"bound": float64(pl.AvailabilityBound), "threshold": t, "reported_downloads": float64(pl.ReportedDownloads),
				"observed_gains": float64(pl.Observed), "unobserved_allowance": float64(pl.Unobserved), "slack": float64(j.pslack)})})
	}
	if pl.Capacity.Known {
		burst := int64(pl.Capacity.Upper * j.cfg.BurstWindow.Seconds())
		capB := pl.CapacityBound + burst
		t := j.thrCap(capB)
		if pl.SlicedBound >= 0 {
			// Slice by slice, the smaller of capacity and what the others
			// absorbed, each side with its own tolerance (the estimate
			// scales them: Estimate.Sliced*Factor).
			if ts := float64(pl.SlicedThreshold) + float64(burst)*j.cfg.CapacitySuspectFactor + float64(j.pslack); ts < t {
				capB, t = pl.SlicedBound+burst, ts
			}
		}
		if up > t {
			as := []string{estimate.AssumeIdleNoCompetitors, estimate.AssumePromptHaves}
			if pl.Capacity.Quiet {
				as = append(as, estimate.AssumeQuietProbeWhole)
			} else {
				as = append(as, AssumeProbeShare)
			}
			out = append(out, Reason{Code: CodeUploadExceedsCapacity, Status: StatusSuspect, Tier: TierPlausible, Assumptions: as, Confidence: conf(up, t),
				Message: fmt.Sprintf("reported %s uploaded %s, more than its probed capacity allows while others were downloading (%s/s upper estimate over %s of demand: %s)",
					bytesize.Format(up), when, bytesize.Format(pl.Capacity.Upper), pl.DemandTime.Round(time.Second), bytesize.Format(float64(capB))),
				Numbers: base(map[string]float64{"bound": float64(capB), "threshold": t, "capacity_upper_bps": pl.Capacity.Upper,
					"capacity_share": pl.Capacity.Share, "demand_seconds": pl.DemandTime.Seconds(), "slack": float64(j.pslack)})})
		}
	}
	return out
}

// downloadReason checks a reported download against the pieces the wire
// saw the identity complete: a proof with the worst case's slack, else a
// plausible finding with the plausible slack (both allow InFlightPieces
// pieces partly downloaded before the interval).
func (j *judge) downloadReason(k int, b estimate.Bounds, down float64, base func(map[string]float64) map[string]float64, when string) (Reason, bool) {
	id := &j.ids[k]
	if id.group < 0 || !b.Explain.Observed {
		return Reason{}, false
	}
	gr := &j.grps[id.group]
	if _, lost := gr.raw.LostPiecesAt(); lost || gr.discounted {
		return Reason{}, false
	}
	inflight := int64(j.cfg.InFlightPieces) * j.tor.PieceLength
	lower := float64(b.DownloadedLower - inflight)
	r := Reason{Code: CodeDownloadUnderreported, Tier: TierProof,
		Message: fmt.Sprintf("reported %s downloaded %s, but it was seen completing %d pieces (%s) in that time",
			bytesize.Format(down), when, b.Explain.GainedPieces, bytesize.Format(float64(b.DownloadedLower)))}
	var t float64
	switch {
	case lower > down*j.cfg.MisreportFactor+float64(j.slack):
		r.Status, t = StatusMisreporting, down*j.cfg.MisreportFactor+float64(j.slack)
	case lower > down*j.cfg.SuspectFactor+float64(j.slack):
		r.Status, t = StatusSuspect, down*j.cfg.SuspectFactor+float64(j.slack)
	case lower > down*j.cfg.SuspectFactor+float64(j.pslack):
		r.Status, r.Tier, r.Assumptions, t = StatusSuspect, TierPlausible, []string{AssumeNoRecheck}, down*j.cfg.SuspectFactor+float64(j.pslack)
	default:
		return Reason{}, false
	}
	r.Confidence = conf(lower, t)
	r.Numbers = base(map[string]float64{"bound": float64(b.DownloadedLower), "in_flight_allowance": float64(inflight), "threshold": t,
		"gained_pieces": float64(b.Explain.GainedPieces)})
	return r, true
}

// reportReasons are the contradictions inside an identity's own reports:
// `left` falling further than `downloaded` rose (with InFlightPieces
// pieces of allowance), and a counter going down without a `started`.
func (j *judge) reportReasons(id *identity) []Reason {
	var out []Reason
	inflight := int64(j.cfg.InFlightPieces) * j.tor.PieceLength
	known := func(left int64) bool { return left >= 0 && left <= j.tor.TotalLength }
	var worst *Reason
	for _, s := range id.sessions {
		pairs := make([][2]reported.Announce, 0, len(s.ann))
		for i := 1; i < len(s.ann); i++ {
			pairs = append(pairs, [2]reported.Announce{s.ann[i-1], s.ann[i]})
		}
		if len(s.ann) > 2 {
			pairs = append(pairs, [2]reported.Announce{s.ann[0], s.ann[len(s.ann)-1]})
		}
		for _, p := range pairs {
			a1, a2 := p[0], p[1]
			if !known(a1.Left) || !known(a2.Left) {
				continue
			}
			drop, got := float64(a1.Left-a2.Left), float64(a2.Downloaded-a1.Downloaded)
			t := got + float64(inflight+j.pslack)
			if drop <= t || (worst != nil && drop-t <= worst.Numbers["excess"]) {
				continue
			}
			worst = &Reason{Code: CodeLeftWithoutDownload, Status: StatusSuspect, Tier: TierPlausible, Assumptions: []string{AssumeNoRecheck},
				Confidence: conf(drop, t),
				Message: fmt.Sprintf("its left fell by %s between %s and %s while its downloaded rose by %s: it completed data it says it did not download",
					bytesize.Format(drop), a1.At.UTC().Format(time.RFC3339), a2.At.UTC().Format(time.RFC3339), bytesize.Format(got)),
				Numbers: map[string]float64{"from_unix": float64(a1.At.Unix()), "to_unix": float64(a2.At.Unix()), "left_drop": drop,
					"reported_downloaded": got, "in_flight_allowance": float64(inflight), "threshold": t, "excess": drop - t}}
		}
	}
	if worst != nil {
		out = append(out, *worst)
	}
	for i := 1; i < len(id.ann); i++ {
		a1, a2 := id.ann[i-1], id.ann[i]
		if a2.Event == reported.EventStarted || a1.Event == reported.EventStopped || a2.At.Sub(a1.At) > j.cfg.MaxAnnounceGap {
			continue
		}
		if a2.Uploaded < a1.Uploaded || a2.Downloaded < a1.Downloaded {
			out = append(out, Reason{Code: CodeCounterDecreased, Status: StatusSuspect, Tier: TierPlausible, Confidence: 0.5,
				Message: fmt.Sprintf("its counters went down between %s and %s (uploaded %s → %s, downloaded %s → %s) without a restart (no started)",
					a1.At.UTC().Format(time.RFC3339), a2.At.UTC().Format(time.RFC3339), bytesize.Format(float64(a1.Uploaded)), bytesize.Format(float64(a2.Uploaded)),
					bytesize.Format(float64(a1.Downloaded)), bytesize.Format(float64(a2.Downloaded))),
				Numbers: map[string]float64{"from_unix": float64(a1.At.Unix()), "to_unix": float64(a2.At.Unix())}})
			break
		}
	}
	return out
}

// trust decides, with the worst-case estimator, whose download reports the
// plausible tier may use (estimate.AssumeOwnDownloads): not an identity
// the wire contradicts (download under-reported, `left` against its piece
// set) or whose reports contradict themselves.
func (j *judge) trust() error {
	j.untrusted = make([]bool, len(j.ids))
	for k := range j.ids {
		id := &j.ids[k]
		if len(j.reportReasons(id)) > 0 {
			j.untrusted[k] = true
			continue
		}
		if id.group < 0 {
			continue
		}
		gr := &j.grps[id.group]
		if len(j.leftReasons(id, gr)) > 0 {
			j.untrusted[k] = true
			continue
		}
		if gr.est < 0 {
			continue
		}
	pairs:
		for _, s := range id.sessions {
			for i := 1; i < len(s.ann); i++ {
				for _, a1 := range []reported.Announce{s.ann[0], s.ann[i-1]} {
					a2 := s.ann[i]
					b, err := j.est.Peer(gr.est, a1.At, a2.At)
					if err != nil {
						return err
					}
					if _, bad := j.downloadReason(k, b, float64(a2.Downloaded-a1.Downloaded), func(m map[string]float64) map[string]float64 { return m }, ""); bad {
						j.untrusted[k] = true
						break pairs
					}
				}
			}
		}
	}
	return nil
}

// reportsOf is identity k's reported downloads as the estimate reads them,
// or nil when its reports are not to be trusted.
func (j *judge) reportsOf(k int) []estimate.ReportedSpan {
	if j.untrusted[k] {
		return nil
	}
	var spans []estimate.ReportedSpan
	for _, s := range j.ids[k].sessions {
		first, last := s.ann[0], s.ann[len(s.ann)-1]
		if first.Downloaded > 0 {
			// Downloaded before its first announce: since the client
			// started (a grace before a `started`), or at any time.
			var from time.Time
			if first.Event == reported.EventStarted {
				from = first.At.Add(-j.cfg.AnnounceGrace)
			}
			spans = append(spans, estimate.ReportedSpan{From: from, To: first.At, Downloaded: first.Downloaded})
		}
		for i := 1; i < len(s.ann); i++ {
			spans = append(spans, estimate.ReportedSpan{From: s.ann[i-1].At, To: s.ann[i].At, Downloaded: max(0, s.ann[i].Downloaded-s.ann[i-1].Downloaded)})
		}
		if last.Event != reported.EventStopped {
			// After its last announce it may still download what it
			// lacked.
			left := last.Left
			if left < 0 || left > j.tor.TotalLength {
				left = j.tor.TotalLength
			}
			spans = append(spans, estimate.ReportedSpan{From: last.At, To: s.end, Downloaded: left})
		}
	}
	return spans
}

// reported is the estimate's Reported for a group: the spans of every
// identity linked to it, or nil when one of them is untrusted or none is
// linked.
func (j *judge) groupReported(g int) *estimate.Reported {
	var r *estimate.Reported
	for k := range j.ids {
		if j.ids[k].group != g {
			continue
		}
		if j.untrusted[k] {
			return nil
		}
		if r == nil {
			r = &estimate.Reported{}
		}
		r.Spans = append(r.Spans, j.reportsOf(k)...)
	}
	return r
}

// sessionWindows are the spans of an identity's sessions with at least
// two announces.
func sessionWindows(id *identity) []timeline.Interval {
	var ws []timeline.Interval
	for _, s := range id.sessions {
		if len(s.ann) > 1 {
			ws = append(ws, timeline.Interval{From: s.ann[0].At, To: s.ann[len(s.ann)-1].At})
		}
	}
	return ws
}

// identityReason checks an identity's claims summed over all its sessions
// against what the rest of the swarm plausibly absorbed over their union:
// claims spread over many short sessions (restart bursts) meet the whole
// swarm's downloads once.
func (j *judge) identityReason(k int, uploaded int64) (Reason, bool) {
	id := &j.ids[k]
	ws := sessionWindows(id)
	if len(ws) < 2 {
		return Reason{}, false // one session: the session check covers it
	}
	i, u := -1, id.unobs
	if id.group >= 0 && j.grps[id.group].est >= 0 {
		i, u = j.grps[id.group].est, -1
	}
	pl, err := j.est.PlausibleOver(i, u, ws)
	if err != nil {
		return Reason{}, false
	}
	up := float64(uploaded)
	t := j.thrP(pl.AvailabilityBound)
	if up <= t {
		return Reason{}, false
	}
	return Reason{Code: CodeUploadExceedsAvailability, Status: StatusSuspect, Tier: TierPlausible,
		Assumptions: []string{estimate.AssumeOwnDownloads, estimate.AssumePromptHaves}, Confidence: conf(up, t),
		Message: fmt.Sprintf("reported %s uploaded over %d sessions, but the other peers reported downloading %s in them and could have gained at most %s of it",
			bytesize.Format(up), len(ws), bytesize.Format(float64(pl.ReportedDownloads)), bytesize.Format(float64(pl.AvailabilityBound))),
		Numbers: map[string]float64{"reported_uploaded": up, "sessions": float64(len(ws)), "bound": float64(pl.AvailabilityBound), "threshold": t,
			"reported_downloads": float64(pl.ReportedDownloads), "slack": float64(j.pslack)}}, true
}

// neverUnchoked reports whether a group showed pieces but kept us choked in
// at least MinChokedProbes bandwidth probes and unchoked none.
func (j *judge) neverUnchoked(gr *group) bool {
	return gr.raw.HasPieceInfo() && len(gr.probes) == 0 && gr.choked >= j.cfg.MinChokedProbes
}

// unserved is the second pass for identities that never unchoked us: their
// claims get only the residual that the claims of honest-looking measured
// identities (probed with data, not flagged by the first pass; each claim
// capped at its own plausible bound) leave of what the swarm plausibly
// absorbed over their sessions (AssumeUnservedResidual). A flagged
// identity's claims earn no credit: crediting an inflated claim would take
// the residual from an honest peer that happened to choke us.
func (j *judge) unserved(rep *Report) error {
	measured := func(k int) bool {
		id := &j.ids[k]
		return id.group >= 0 && len(j.grps[id.group].probes) > 0 && rep.Verdicts[k].Status == StatusOK
	}
	for k := range j.ids {
		id := &j.ids[k]
		if id.group < 0 || !j.neverUnchoked(&j.grps[id.group]) || j.grps[id.group].est < 0 {
			continue
		}
		v := &rep.Verdicts[k]
		if v.Uploaded <= j.pslack {
			continue
		}
		ws := sessionWindows(id)
		if len(ws) == 0 {
			continue
		}
		// Widen each window over the measured peers' announce pairs that
		// overlap it, so that their claims count whole: what the swarm
		// absorbed over the wider window, less what they claimed in it,
		// bounds what this peer can have sent in its own.
		for q := range rep.Verdicts {
			if q == k || !measured(q) {
				continue
			}
			for _, c := range rep.Verdicts[q].Checks {
				for i := range ws {
					if !c.Session && c.From.Before(ws[i].To) && c.To.After(ws[i].From) {
						ws[i].From, ws[i].To = earlier(ws[i].From, c.From), later(ws[i].To, c.To)
					}
				}
			}
		}
		pl, err := j.est.PlausibleOver(j.grps[id.group].est, -1, ws)
		if err != nil {
			return err
		}
		var credit int64
		for q := range rep.Verdicts {
			if q == k || !measured(q) {
				continue
			}
			for _, c := range rep.Verdicts[q].Checks {
				if c.Session || !inside(c.From, c.To, ws, j.cfg.Estimate.ClockSlack) {
					continue
				}
				credit += min(max(c.Uploaded, 0), max(c.Bounds.Plausible.UploadUpper, 0))
			}
		}
		residual := max(0, pl.AvailabilityBound-credit)
		up := float64(v.Uploaded)
		t := j.thrP(residual)
		if up <= t {
			continue
		}
		rep.addFinding(v, Reason{Code: CodeNeverUnchoked, Status: StatusSuspect, Tier: TierPlausible,
			Assumptions: []string{estimate.AssumeOwnDownloads, estimate.AssumePromptHaves, AssumeUnservedResidual}, Confidence: conf(up, t),
			Message: fmt.Sprintf("reported %s uploaded, but it kept us choked in all %d bandwidth probes, so it served no verifiable byte; of the %s the swarm plausibly absorbed in its sessions, measured peers' claims leave %s",
				bytesize.Format(up), j.grps[id.group].choked, bytesize.Format(float64(pl.AvailabilityBound)), bytesize.Format(float64(residual))),
			Numbers: map[string]float64{"reported_uploaded": up, "choked_probes": float64(j.grps[id.group].choked), "absorbed": float64(pl.AvailabilityBound),
				"measured_credit": float64(credit), "bound": float64(residual), "threshold": t}})
	}
	return nil
}

// inside reports whether [from, to] lies within one of the windows, widened
// by slack.
func inside(from, to time.Time, ws []timeline.Interval, slack time.Duration) bool {
	for _, w := range ws {
		if !from.Before(w.From.Add(-slack)) && !to.After(w.To.Add(slack)) {
			return true
		}
	}
	return false
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// pairSumReasons check an identity's claims summed over runs of its
// announce pairs against the sum of the pairs' bounds. Each pair's true
// upload is at most its bound, so a run's is at most the sum of its
// pairs' bounds; checked pair by pair, every pair gets the slack and the
// burst allowance, while a run needs the slack once (announce-time bursts
// move bytes between neighbouring pairs, they do not add any). The
// worst-case availability, summed over every pair, gives a proof; the
// plausible bounds give a plausible finding over the run whose claims
// exceed their bounds most (planRun).
func (j *judge) pairSumReasons(checks []Check) []Reason {
	var pairs []Check
	for _, c := range checks {
		if !c.Session {
			pairs = append(pairs, c)
		}
	}
	if len(pairs) < 2 {
		return nil // one pair: its own check covers it
	}
	var out []Reason
	// Sums in float64: bounds may saturate at MaxInt64.
	var up, avail float64
	for _, c := range pairs {
		up += float64(max(c.Uploaded, 0))
		avail += float64(max(c.Bounds.Explain.AvailabilityBound, 0))
	}
	if t := avail*j.cfg.MisreportFactor + float64(j.slack); up > t {
		out = append(out, Reason{Code: CodeUploadExceedsAvailability, Status: StatusMisreporting, Tier: TierProof, Confidence: conf(up, t),
			Message: fmt.Sprintf("reported %s uploaded over %d announce intervals, but in those intervals the peers that gained pieces it may have held could have received at most %s",
				bytesize.Format(up), len(pairs), bytesize.Format(avail)),
			Numbers: map[string]float64{"reported_uploaded": up, "pairs": float64(len(pairs)), "bound": avail, "threshold": t}})
	}
	if r, ok := j.runReason(pairs); ok {
		out = append(out, r)
	}
	return out
}

// pairRun is a run of consecutive announce pairs, pairs[from:to].
type pairRun struct {
	from, to int
	// up is Σ claims; bound Σ plausible bounds, capPart the part of it
	// that is probed capacity; edges what may have moved in across its
	// ends; threshold what the claims may reach.
	up, bound, capPart, edges, threshold float64
}

// runThreshold is the plausible threshold of one pair's bound, without
// slack: the capacity factor where the bound is probed capacity, the
// suspect factor where it is what others absorbed.
func (j *judge) runThreshold(c Check) (t, capPart float64) {
	b := float64(max(c.Bounds.Plausible.UploadUpper, 0))
	if c.Bounds.Plausible.Limit != estimate.LimitAvailability {
		return b * j.cfg.CapacitySuspectFactor, b
	}
	return b * j.cfg.SuspectFactor, 0
}

// runEdge is what may have moved into a run across its end at pair k from
// the neighbouring pair nb (counters read a little before or after the
// announce): at most what nb's bound lets it have uploaded, and at most a
// BurstWindow at k's plausible capacity. Nothing moves in across a gap (a
// session's start or end).
func (j *judge) runEdge(pairs []Check, k, nb int) float64 {
	if nb < 0 || nb >= len(pairs) {
		return 0
	}
	a, b := pairs[k], pairs[nb]
	if !a.From.Equal(b.To) && !a.To.Equal(b.From) {
		return 0
	}
	t, _ := j.runThreshold(b)
	if c := a.Bounds.Plausible.Capacity; c.Known {
		t = min(t, c.Upper*j.cfg.BurstWindow.Seconds()*j.cfg.CapacitySuspectFactor)
	}
	return t
}

// planRun finds the run of at least two consecutive pairs whose claims
// exceed their threshold by the most: Σ (claim − pair threshold) − what
// may have moved in across its two ends, in one pass (the best left end
// for each right end is kept as the pass goes). The threshold is the
// pairs' thresholds, the edges and the plausible slack once.
func (j *judge) planRun(pairs []Check) (pairRun, bool) {
	n := len(pairs)
	ex := make([]float64, n+1) // prefix sums of claim − threshold
	for k, c := range pairs {
		t, _ := j.runThreshold(c)
		ex[k+1] = ex[k] + float64(max(c.Uploaded, 0)) - t
	}
	best, bestI, bestJ := math.Inf(-1), -1, -1
	// minLeft is min over i ≤ j−1 of ex[i] + left edge at i.
	minLeft, minI := math.Inf(1), -1
	for jj := 1; jj < n; jj++ {
		i := jj - 1
		if v := ex[i] + j.runEdge(pairs, i, i-1); v < minLeft {
			minLeft, minI = v, i
		}
		if v := ex[jj+1] - minLeft - j.runEdge(pairs, jj, jj+1); v > best {
			best, bestI, bestJ = v, minI, jj
		}
	}
	if bestI < 0 {
		return pairRun{}, false
	}
	r := pairRun{from: bestI, to: bestJ + 1}
	for k := r.from; k < r.to; k++ {
		t, cp := j.runThreshold(pairs[k])
		r.up += float64(max(pairs[k].Uploaded, 0))
		r.bound += float64(max(pairs[k].Bounds.Plausible.UploadUpper, 0))
		r.capPart += cp
		r.threshold += t
	}
	r.edges = j.runEdge(pairs, r.from, r.from-1) + j.runEdge(pairs, r.to-1, r.to)
	r.threshold += r.edges + float64(j.pslack)
	return r, true
}

// runReason is the plausible finding of the run planRun found, if its
// claims exceed its threshold.
func (j *judge) runReason(pairs []Check) (Reason, bool) {
	r, ok := j.planRun(pairs)
	if !ok || r.up <= r.threshold {
		return Reason{}, false
	}
	code, as := CodeUploadExceedsAvailability, []string{estimate.AssumeOwnDownloads, estimate.AssumePromptHaves}
	if 2*r.capPart > r.bound {
		code, as = CodeUploadExceedsCapacity, []string{estimate.AssumeOwnDownloads, estimate.AssumeIdleNoCompetitors, estimate.AssumeQuietProbeWhole, estimate.AssumePromptHaves}
	}
	from, to := pairs[r.from].From, pairs[r.to-1].To
	return Reason{Code: code, Status: StatusSuspect, Tier: TierPlausible, Assumptions: as, Confidence: conf(r.up, r.threshold),
		Message: fmt.Sprintf("reported %s uploaded over %d consecutive announce intervals between %s and %s, more than the %s their plausible bounds (probed capacity while others downloaded, and what they reported downloading) add up to",
			bytesize.Format(r.up), r.to-r.from, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), bytesize.Format(r.bound)),
		Numbers: map[string]float64{"reported_uploaded": r.up, "pairs": float64(r.to - r.from), "bound": r.bound, "threshold": r.threshold,
			"edge_allowance": r.edges, "slack": float64(j.pslack), "from_unix": float64(from.Unix()), "to_unix": float64(to.Unix())}}, true
}

// addFinding adds a swarm-wide pass's finding to verdict v (one of rep's)
// and moves it between the summary's counts if its status changes.
func (rep *Report) addFinding(v *Verdict, r Reason) {
	v.Reasons = Strongest(append(v.Reasons, r))
	rep.Summary.Counts[v.Status]--
	v.Status, v.Confidence = statusOf(v.Reasons)
	rep.Summary.Counts[v.Status]++
}
