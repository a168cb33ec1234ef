package verdict

import (
	"errors"
	"fmt"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/bytesize"
	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
)

// joint is the last pass (docs/estimation.md, "Claims that fit together").
// Each check so far held one identity's claim against what the others
// absorbed while it could send, and let it take all of that. Here the
// claims of every identity whose uploads no finding contradicts go into
// one flow network (estimate.Joint): each announce pair's claim into its
// own slices, each identity forgiven the plausible slack once per session,
// the receivers' side scaled by JointAvailabilityFactor. An identity
// caught misreporting its uploads without the wire seeing it download is
// no receiver: its reported downloads are as unsupported as its uploads.
// When the claims do not fit together and exactly one identity's removal
// makes the rest fit, that identity is suspect under AssumeOneOverclaimer,
// provided its claim over a whole session also exceeds its own plausible
// bound before any tolerance.
func (j *judge) joint(rep *Report) error {
	if j.est == nil || j.cfg.JointAvailabilityFactor == 0 {
		return nil
	}
	var sets []estimate.ClaimSet
	var owners []int // the verdict of each set
	var from, to time.Time
	notUnobs := map[int]bool{}
	for k := range j.ids {
		v, id := &rep.Verdicts[k], &j.ids[k]
		if !uploadsUncontradicted(v) {
			if id.unobs >= 0 {
				notUnobs[id.unobs] = true
			}
			continue
		}
		set := estimate.ClaimSet{Peer: -1, Unobserved: id.unobs, Tolerance: int64(max(len(id.sessions), 1)) * j.pslack}
		if id.group >= 0 {
			set.Peer = j.grps[id.group].est
		}
		for _, c := range v.Checks {
			if c.Session || c.Uploaded <= 0 {
				continue
			}
			set.Intervals = append(set.Intervals, estimate.ClaimInterval{From: c.From, To: c.To, Bytes: c.Uploaded})
			if from.IsZero() || c.From.Before(from) {
				from = c.From
			}
			if c.To.After(to) {
				to = c.To
			}
		}
		if len(set.Intervals) > 0 {
			sets = append(sets, set)
			owners = append(owners, k)
		}
	}
	if len(sets) < 2 {
		return nil
	}
	jt, err := j.est.Joint(from, to, sets, estimate.JointConfig{CapacityFactor: j.cfg.CapacitySuspectFactor,
		AvailabilityFactor: j.cfg.JointAvailabilityFactor, Widen: j.cfg.BurstWindow, NotUnobserved: notUnobs})
	if errors.Is(err, estimate.ErrJointTooLarge) {
		rep.Summary.Skipped = append(rep.Summary.Skipped, fmt.Sprintf("%s: %v", CodeClaimsDoNotFit, err))
		return nil
	}
	if err != nil {
		return err
	}
	unmet := jt.Unmet(-1)
	if unmet <= 0 {
		return nil
	}
	culprit := -1
	for s := range sets {
		// a set within its tolerance passes nothing the others need
		if jt.Claimed(s) <= sets[s].Tolerance || jt.Unmet(s) > 0 {
			continue
		}
		if culprit >= 0 {
			return nil // two single explanations: none is singled out
		}
		culprit = s
	}
	if culprit < 0 {
		return nil
	}
	v := &rep.Verdicts[owners[culprit]]
	var over *Check
	for c := range v.Checks {
		ch := &v.Checks[c]
		if pl := ch.Bounds.Plausible; wholeSession(v.Checks, ch) && pl.UploadUpper >= 0 && ch.Uploaded > pl.UploadUpper &&
			(over == nil || ch.Uploaded-pl.UploadUpper > over.Uploaded-over.Bounds.Plausible.UploadUpper) {
			over = ch
		}
	}
	if over == nil {
		return nil
	}
	claimed := float64(jt.Claimed(culprit))
	t := claimed - float64(unmet)
	rep.addFinding(v, Reason{Code: CodeClaimsDoNotFit, Status: StatusSuspect, Tier: TierPlausible,
		Assumptions: []string{estimate.AssumeOwnDownloads, estimate.AssumePromptHaves, AssumeOneOverclaimer}, Confidence: conf(claimed, t),
		Message: fmt.Sprintf("reported %s uploaded: the claims of the %d identities whose uploads no finding contradicts fit what the swarm plausibly absorbed, slice by slice, only without its claims (with them, %s is claimed that nobody can have absorbed); over %s–%s it claimed %s, above its own plausible bound of %s",
			bytesize.Format(float64(v.Uploaded)), len(sets), bytesize.Format(float64(unmet)), over.From.UTC().Format(time.RFC3339), over.To.UTC().Format(time.RFC3339),
			bytesize.Format(float64(over.Uploaded)), bytesize.Format(float64(over.Bounds.Plausible.UploadUpper))),
		Numbers: map[string]float64{"claimed": claimed, "unmet": float64(unmet), "threshold": t, "identities": float64(len(sets)),
			"tolerance": float64(sets[culprit].Tolerance), "session_bound": float64(over.Bounds.Plausible.UploadUpper),
			"session_uploaded": float64(over.Uploaded), "from_unix": float64(over.From.Unix()), "to_unix": float64(over.To.Unix())}})
	return nil
}

// uploadsUncontradicted reports whether no finding of the verdict
// contradicts its upload claims: it is ok or unverifiable, or flagged only
// for what it said about its downloads and `left`.
func uploadsUncontradicted(v *Verdict) bool {
	for _, r := range v.Reasons {
		switch r.Code {
		case CodeDownloadUnderreported, CodeLeftInconsistent, CodeLeftWithoutDownload:
		default:
			return false
		}
	}
	return true
}

// wholeSession reports whether check c covers a whole session: a session
// check, or an announce pair no session check contains (a session of two
// announces has no check of its own).
func wholeSession(cs []Check, c *Check) bool {
	if c.Session {
		return true
	}
	for k := range cs {
		if s := &cs[k]; s.Session && !c.From.Before(s.From) && !c.To.After(s.To) {
			return false
		}
	}
	return true
}
