package audit

import (
	"fmt"

	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
)

// ScrapeCheck sets what one tracker's scrape said next to what the wire
// showed. A tracker counting more seeders than the audit could see is
// counting peers behind NAT, peers that came and went between looks, or
// fake seeders (announcers claiming left=0); the per-identity verdicts say
// which.
type ScrapeCheck struct {
	Tracker             string `json:"tracker"`
	Seeders             int64  `json:"seeders"`
	Leechers            int64  `json:"leechers"`
	Completed           int64  `json:"completed"`
	ObservedSeeders     int    `json:"observed_seeders"`
	ObservedLeechers    int    `json:"observed_leechers"`
	ObservedCompletions int    `json:"observed_completions"`
	Note                string `json:"note,omitempty"`
}

// CheckScrapes compares each tracker's last scrape with the peers seen on
// the wire, as the verdict's analysis saw them (its per-address
// timelines): seeders and leechers by their last known piece set,
// completions by peers seen incomplete and later complete.
func CheckScrapes(trackers []trackerclient.Status, rep *verdict.Report) []ScrapeCheck {
	var seeders, leechers, completions int
	for _, a := range rep.Addresses {
		tl := a.Timeline
		if tl == nil || !tl.HasPieceInfo() {
			continue
		}
		final := tl.Final()
		if !final.Complete() {
			leechers++
			continue
		}
		seeders++
		for _, g := range tl.Gains() {
			if !g.AtFirstSight() {
				completions++
				break
			}
		}
	}
	var out []ScrapeCheck
	for _, tr := range trackers {
		if tr.Scrape == nil {
			continue
		}
		c := ScrapeCheck{Tracker: tr.URL, Seeders: tr.Scrape.Seeders, Leechers: tr.Scrape.Leechers, Completed: tr.Scrape.Completed,
			ObservedSeeders: seeders, ObservedLeechers: leechers, ObservedCompletions: completions}
		if extra := c.Seeders - int64(seeders); extra > 0 {
			c.Note = fmt.Sprintf("the tracker counts %d seeders the wire never showed complete (behind NAT, gone between looks, or fake)", extra)
		}
		out = append(out, c)
	}
	return out
}
