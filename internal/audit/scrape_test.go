package audit

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
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

// TestEvidenceSince: a window keeps each identity's reports in it and its
// last report before it (the base of its first delta), nothing older.
func TestEvidenceSince(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ann := func(pid byte, at time.Duration, up int64) reported.Announce {
		return reported.Announce{At: t0.Add(at), PeerID: [20]byte{pid}, Uploaded: up}
	}
	ev := &Evidence{Announces: []reported.Announce{
		ann(1, 0, 0), ann(1, time.Hour, 10), ann(1, 2*time.Hour, 20), ann(1, 3*time.Hour, 30),
		ann(2, 30*time.Minute, 5), // nothing in the window: dropped
		ann(3, 150*time.Minute, 7),
	}}
	got := ev.Since(t0.Add(2*time.Hour + time.Minute)).Announces
	var ups []int64
	for _, a := range got {
		ups = append(ups, a.Uploaded)
	}
	if fmt.Sprint(ups) != "[20 30 7]" {
		t.Fatalf("window kept uploads %v, want [20 30 7]", ups)
	}
	if all := ev.Since(time.Time{}); len(all.Announces) != len(ev.Announces) {
		t.Fatal("a zero since dropped reports")
	}
}
