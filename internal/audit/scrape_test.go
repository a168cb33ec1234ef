package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

func TestCheckScrapes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	snap := func(at time.Duration, pieces ...int) timeline.Observation {
		bf := bitfield.New(4)
		for _, p := range pieces {
			bf.Set(p)
		}
		return timeline.Observation{At: t0.Add(at), Kind: timeline.KindBitfield, Pieces: bf}
	}
	rep := &verdict.Report{}
	for _, obs := range [][]timeline.Observation{
		{snap(0, 0, 1, 2, 3)},                       // seeder from the start
		{snap(0, 0), snap(time.Minute, 0, 1, 2, 3)}, // completed while watched
		{snap(0, 1)},                           // leecher
		{{At: t0, Kind: timeline.KindRefused}}, // never seen: no piece info
	} {
		rep.Addresses = append(rep.Addresses, verdict.AddrBounds{Timeline: timeline.Build(4, obs)})
	}
	got := CheckScrapes([]trackerclient.Status{
		{URL: "http://a/announce", Scrape: &trackerclient.Scrape{Seeders: 7, Leechers: 1, Completed: 3}},
		{URL: "udp://b/announce"}, // no scrape: no check
		{URL: "http://c/announce", Scrape: &trackerclient.Scrape{Seeders: 2, Leechers: 1, Completed: 1}},
	}, rep)
	if len(got) != 2 {
		t.Fatalf("%d checks", len(got))
	}
	a, c := got[0], got[1]
	if a.ObservedSeeders != 2 || a.ObservedLeechers != 1 || a.ObservedCompletions != 1 {
		t.Fatalf("observed %+v", a)
	}
	if !strings.Contains(a.Note, "5 seeders") || c.Note != "" {
		t.Fatalf("notes %q / %q", a.Note, c.Note)
	}
}
