package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/reports"
)

// loadFixture reads a run directory kept from a real lab run.
func loadFixture(t *testing.T, name string) (*RunInfo, ScenarioResult) {
	t.Helper()
	dir := filepath.Join("testdata", name)
	b, err := os.ReadFile(filepath.Join(dir, runFile))
	if err != nil {
		t.Fatal(err)
	}
	var info RunInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	res, err := EvaluateDir(dir, &info)
	if err != nil {
		t.Fatal(err)
	}
	return &info, res
}

// The short-scenario fixture: a Transmission seed capped at 1024 KiB/s
// behind a ×3 proxy, a libtorrent leecher capped at 512 KiB/s that
// downloaded the whole 24 MiB payload in the first minute.
func TestEvaluateShortFixture(t *testing.T) {
	_, res := loadFixture(t, "short")
	if len(res.Peers) != 2 {
		t.Fatalf("%d peers, want 2 (the auditor is not a peer)", len(res.Peers))
	}
	byHost := map[string]PeerResult{}
	for _, p := range res.Peers {
		byHost[p.Host] = p
	}
	seed, leech := byHost["seed"], byHost["leech"]
	if !seed.Cheater || !seed.Flagged || seed.Verdict != "misreporting" || seed.Reasons[0] != "upload_exceeds_availability" {
		t.Errorf("seed: %+v", seed)
	}
	if leech.Cheater || leech.Flagged || leech.Verdict != "ok" {
		t.Errorf("leech: %+v", leech)
	}
	if want := 1024 * 1024 * 1448.0 / 1514; math.Abs(seed.Goodput-want) > 1e-6 {
		t.Errorf("seed goodput %v, want %v", seed.Goodput, want)
	}
	if seed.BWErr == nil || math.Abs(*seed.BWErr-(seed.Central-seed.Goodput)/seed.Goodput) > 1e-12 || math.Abs(*seed.BWErr) > 0.05 {
		t.Errorf("seed bandwidth error %v (central %v, goodput %v)", seed.BWErr, seed.Central, seed.Goodput)
	}
	if !seed.Probed() || !leech.Probed() {
		t.Errorf("probed: seed %v leech %v", seed.Probed(), leech.Probed())
	}
	if seed.Addr != "10.77.0.11:6881" || leech.Addr != "10.77.0.12:6881" {
		t.Errorf("addresses %s %s", seed.Addr, leech.Addr)
	}
	// the seed downloads nothing: no rated window; the leecher got all 96
	// pieces inside its first window
	if len(seed.Windows) != 0 || len(leech.Windows) != 1 {
		t.Fatalf("windows: seed %v, leech %v", seed.Windows, leech.Windows)
	}
	w := leech.Windows[0]
	if w.Observed != 24<<20 || w.Truth != 24<<20 || w.Err != 0 || w.To.Sub(w.From).Round(time.Second) != Window {
		t.Errorf("leech window %+v", w)
	}
	if res.AuditorWire == 0 || res.SwarmWire == 0 || math.Abs(res.AuditorShare-float64(res.AuditorWire)/float64(res.SwarmWire)) > 1e-12 {
		t.Errorf("auditor share %v = %d / %d", res.AuditorShare, res.AuditorWire, res.SwarmWire)
	}
	o := Aggregate([]ScenarioResult{res})
	if o.TP != 1 || o.FP != 0 || o.FN != 0 || o.TN != 1 || o.Recall != 1 || o.Precision != 1 || o.HonestMisrep != 0 {
		t.Errorf("confusion %+v", o)
	}
	if o.ByReach["unknown"] != 2 || len(o.ByReach) != 1 { // the fixture's report predates reach
		t.Errorf("by reach %v", o.ByReach)
	}
	if o.Probed["required"] != [2]int{1, 1} || o.Probed["preferred"] != [2]int{1, 1} {
		t.Errorf("probed %v", o.Probed)
	}
	var md bytes.Buffer
	WriteMarkdown(&md, Header{Date: time.Unix(0, 0), Machine: "m", Commit: "c", Command: "go run ./lab -all", Go: "go"},
		[]ScenarioRun{{Scenario: &Scenario{Name: "short"}, Result: res}}, o)
	// the fixture probes every 20 s: its traffic is explained in the notes,
	// and there is no run at the default intervals to hold to the target
	for _, want := range []string{"do not edit by hand", "| auditor traffic / swarm traffic, default intervals | n/a", "| no data |",
		"| seed | transmission via ×3 proxy |", "Auditor traffic in the accelerated scenarios", "short: "} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}

func ip(v int) *int { return &v }

// series and samples for downloadWindows: a 120-s timeline of 2-s buckets.
func TestDownloadWindows(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const plen, size = 1 << 20, 100 << 20
	rep := &reports.Report{Timeline: reports.Timeline{Bucket: 2}}
	for i := range 60 {
		rep.Timeline.Times = append(rep.Timeline.Times, t0.Add(time.Duration(2*(i+1))*time.Second))
	}
	// client downloads 1 MiB/s from t0+10s; samples every second
	var samples []Sample
	for s := 0; s <= 125; s++ {
		d := max(int64(s-10), 0) << 20
		samples = append(samples, Sample{T: t0.Add(time.Duration(s) * time.Second), Client: true,
			Downloaded: d, Size: size, Left: size - d})
	}
	tests := []struct {
		name     string
		series   func(i int, end time.Time) *int // pieces held at bucket i's end
		counter  string
		want     []float64 // window errors
		spurious int
	}{
		{"exact", func(i int, end time.Time) *int {
			return ip(int(max(end.Sub(t0)/time.Second-10, 0)))
		}, "downloaded", []float64{0}, 0},
		{"unknown until 20 s, then exact", func(i int, end time.Time) *int {
			if end.Before(t0.Add(20 * time.Second)) {
				return nil
			}
			return ip(int(end.Sub(t0)/time.Second - 10))
		}, "downloaded", []float64{0}, 0},
		{"auditor sees half", func(i int, end time.Time) *int {
			return ip(int(max(end.Sub(t0)/time.Second-10, 0) / 2))
		}, "downloaded", []float64{-0.5}, 0},
		{"have counter", func(i int, end time.Time) *int {
			return ip(int(max(end.Sub(t0)/time.Second-10, 0)))
		}, "have", []float64{0}, 0},
		{"never known", func(int, time.Time) *int { return nil }, "downloaded", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			series := make([]*int, 60)
			for i, end := range rep.Timeline.Times {
				series[i] = tc.series(i, end)
			}
			ws, sp := downloadWindows(rep, series, size, plen, samples, tc.counter)
			if len(ws) != len(tc.want) || sp != tc.spurious {
				t.Fatalf("windows %+v spurious %d, want errors %v spurious %d", ws, sp, tc.want, tc.spurious)
			}
			for i, w := range ws {
				if math.Abs(w.Err-tc.want[i]) > 1e-9 {
					t.Errorf("window %d: err %v, want %v (%+v)", i, w.Err, tc.want[i], w)
				}
				if w.To.Sub(w.From) != Window {
					t.Errorf("window %d spans %v", i, w.To.Sub(w.From))
				}
			}
		})
	}
	t.Run("spurious", func(t *testing.T) {
		flat := make([]Sample, len(samples))
		for i, s := range samples {
			s.Downloaded, s.Left = 0, size
			flat[i] = s
		}
		series := make([]*int, 60)
		for i := range series {
			series[i] = ip(i)
		}
		ws, sp := downloadWindows(rep, series, size, plen, flat, "downloaded")
		if len(ws) != 0 || sp != 1 {
			t.Fatalf("windows %+v spurious %d, want none and 1", ws, sp)
		}
	})
}

// TestDownloadWindowsAfterCompletion: a client whose counter still grows
// after it verified its last piece (duplicate blocks), seen by an auditor
// 15 s late (batched HAVEs): the window with no verified download is not
// rated, and the pieces learnt late in it are not spurious.
func TestDownloadWindowsAfterCompletion(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const plen, size = 1 << 20, 55 << 20
	rep := &reports.Report{Timeline: reports.Timeline{Bucket: 2}}
	series := make([]*int, 90)
	for i := range 90 {
		end := t0.Add(time.Duration(2*(i+1)) * time.Second)
		rep.Timeline.Times = append(rep.Timeline.Times, end)
		series[i] = ip(min(max(int(end.Sub(t0)/time.Second)-15, 0), 55))
	}
	// 1 MiB/s verified until complete at 55 s, then 100 KiB/s of duplicates
	var samples []Sample
	counter := func(s int64) int64 { return min(s, 55)<<20 + max(s-55, 0)*100<<10 }
	for s := int64(0); s <= 185; s++ {
		samples = append(samples, Sample{T: t0.Add(time.Duration(s) * time.Second), Client: true,
			Downloaded: counter(s), Size: size, Left: size - min(s, 55)<<20})
	}
	ws, sp := downloadWindows(rep, series, size, plen, samples, "downloaded")
	obs, tru := int64(62-15)<<20, counter(62)-counter(2)
	want := float64(obs-tru) / float64(tru)
	if len(ws) != 1 || sp != 0 {
		t.Fatalf("windows %+v spurious %d, want one window and none spurious", ws, sp)
	}
	if math.Abs(ws[0].Err-want) > 1e-9 || ws[0].KnownStart != 0 {
		t.Fatalf("window %+v, want err %v", ws[0], want)
	}
}

func TestCounterAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ss := []Sample{
		{T: t0.Add(-2 * time.Second), Client: false}, // host up, client starting
		{T: t0, Client: true, Downloaded: 0},
		{T: t0.Add(time.Second), Client: false}, // API error: skipped
		{T: t0.Add(2 * time.Second), Client: true, Downloaded: 200},
	}
	tests := []struct {
		at   time.Duration
		want float64
		ok   bool
	}{
		{-3 * time.Second, 0, false}, {-time.Second, 0, true}, {0, 0, true}, {500 * time.Millisecond, 50, true}, {2 * time.Second, 200, true}, {3 * time.Second, 0, false},
	}
	for _, tc := range tests {
		got, ok := counterAt(ss, t0.Add(tc.at), "downloaded")
		if ok != tc.ok || (ok && math.Abs(got-tc.want) > 1e-9) {
			t.Errorf("at %v: %v %v, want %v %v", tc.at, got, ok, tc.want, tc.ok)
		}
	}
}

func TestQuantile(t *testing.T) {
	tests := []struct {
		xs   []float64
		q    float64
		want float64
	}{
		{[]float64{3, 1, 2}, 0.5, 2},
		{[]float64{4, 1, 2, 3}, 0.5, 2.5},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.9, 9.1},
		{[]float64{5}, 0.9, 5},
		{[]float64{1, 9}, 1, 9},
	}
	for _, tc := range tests {
		if got := Quantile(tc.xs, tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Quantile(%v, %v) = %v, want %v", tc.xs, tc.q, got, tc.want)
		}
	}
	if !math.IsNaN(Quantile(nil, 0.5)) {
		t.Error("Quantile of nothing is not NaN")
	}
}

func TestAggregateAndChecks(t *testing.T) {
	e := func(v float64) *float64 { return &v }
	rs := []ScenarioResult{{
		Peers: []PeerResult{
			{Host: "a", Encryption: "required", Connectable: true, Connected: true, PiecesKnown: true, BWErr: e(-0.05), Quiet: true, Goodput: 100, Upper: 150,
				Windows: []WindowResult{{Err: 0.02}, {Err: -0.3}}},
			{Host: "b", Encryption: "required", Connectable: true, Connected: true, BWErr: e(0.3), Quiet: true, Goodput: 100, Upper: 200,
				Cheater: true, Verdict: "misreporting", Flagged: true},
			// busy probes: measured a share; one upper bound below the truth
			{Host: "d", BWErr: e(-0.8), Goodput: 100, Upper: 90},
			{Host: "e", BWErr: e(-0.6), Goodput: 100, Upper: 400},
			{Host: "c", Encryption: "disabled", Connectable: true, Verdict: "misreporting", Flagged: true},
			{Host: "g", Cheater: true, Verdict: "unverifiable"},
		},
		AuditorWire: 10, SwarmWire: 1000, DefaultIntervals: true,
	}, {
		// probed every few seconds: left out of the traffic target
		AuditorWire: 500, SwarmWire: 1000,
	}}
	o := Aggregate(rs)
	if o.TP != 1 || o.FP != 1 || o.FN != 1 || o.TN != 3 || o.HonestMisrep != 1 || o.Precision != 0.5 || o.Recall != 0.5 {
		t.Errorf("confusion %+v", o)
	}
	if o.Probed["required"] != [2]int{1, 2} || o.Probed["disabled"] != [2]int{0, 1} {
		t.Errorf("probed %v", o.Probed)
	}
	if math.Abs(o.BWMedian-0.175) > 1e-9 || math.Abs(o.DLMax-0.3) > 1e-9 || o.AuditorShare != 0.255 || o.DefaultAuditorShare != 0.01 {
		t.Errorf("bw median %v, dl max %v, share %v", o.BWMedian, o.DLMax, o.AuditorShare)
	}
	if math.Abs(o.BusyMedian-0.7) > 1e-9 || math.Abs(o.BusyMax-0.8) > 1e-9 || o.UpperHolds != 3 || o.UpperRated != 4 {
		t.Errorf("busy median %v max %v, upper bound holds %d/%d", o.BusyMedian, o.BusyMax, o.UpperHolds, o.UpperRated)
	}
	pass := map[string]bool{}
	for _, c := range o.Checks() {
		pass[c.Name] = c.Pass
	}
	for name, want := range map[string]bool{
		"bandwidth error, quiet probes, median": false, "bandwidth error, quiet probes, p90": false,
		"bandwidth error, busy probes (the auditor's share of a shared upload)": true,
		"capacity upper bound ≥ the cap's goodput":                              false,
		"recall (cheaters flagged)":                                             false,
		"honest peers called misreporting":                                      false, "connectable peers probed, required": false,
		"auditor traffic / swarm traffic, default intervals": true,
	} {
		got, ok := pass[name]
		if !ok {
			t.Errorf("no check %q", name)
		} else if got != want {
			t.Errorf("check %q pass = %v, want %v", name, got, want)
		}
	}
}

func TestParseScenario(t *testing.T) {
	good := `{"name":"x","description":"d","payload_mib":8,"piece_kib":256,"duration":"60s","snapshot_interval":"10s","probe_interval":"20s",
	"clients":[{"name":"s","kind":"transmission","role":"seed","encryption":"required","up_kib":1024,"down_kib":0}],
	"cheaters":[{"name":"g","kind":"ghost","rate_kib":500}]}`
	if _, err := ParseScenario(strings.NewReader(good)); err != nil {
		t.Fatalf("good scenario: %v", err)
	}
	bad := []struct{ name, from, to string }{
		{"unknown field", `"payload_mib"`, `"payload_mb":8,"payload_mib"`},
		{"unknown client field", `"up_kib":1024`, `"upkib":1,"up_kib":1024`},
		{"bad kind", `"transmission"`, `"utorrent"`},
		{"bad role", `"seed"`, `"server"`},
		{"bad encryption", `"required"`, `"rc4"`},
		{"bad duration", `"60s"`, `"sixty"`},
		{"too short", `"60s"`, `"5s"`},
		{"snapshot beyond duration", `"10s"`, `"2m"`},
		{"piece not a power of two", `"piece_kib":256`, `"piece_kib":300`},
		{"auditor name taken", `"name":"s"`, `"name":"aud"`},
		{"duplicate host", `"name":"g"`, `"name":"s"`},
		{"bad cheat kind", `"ghost"`, `"vampire"`},
		{"proxy factor 1", `"down_kib":0`, `"down_kib":0,"proxy_factor":1`},
		{"no seed", `"role":"seed"`, `"role":"leech"`},
		{"auditor flag the lab sets", `"probe_interval":"20s"`, `"probe_interval":"20s","auditor_args":["--duration=1h"]`},
		{"auditor arg not a flag", `"probe_interval":"20s"`, `"probe_interval":"20s","auditor_args":["-v"]`},
		{"trailing data", `"rate_kib":500}]}`, `"rate_kib":500}]} {}`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(good, tc.from, tc.to, 1)
			if in == good {
				t.Fatalf("replacement %q not found", tc.from)
			}
			if _, err := ParseScenario(strings.NewReader(in)); err == nil {
				t.Errorf("accepted: %s", in)
			}
		})
	}
}

// Every shipped scenario parses.
func TestShippedScenarios(t *testing.T) {
	scs, err := AllScenarios("scenarios")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range scs {
		if s.Description == "" {
			t.Errorf("scenario %s has no description", s.Name)
		}
	}
}

// A run without cheaters, capped peers or windows still writes its overall
// numbers: the statistics without data are null, the others are kept.
func TestOverallJSONWithoutData(t *testing.T) {
	o := Aggregate([]ScenarioResult{{AuditorWire: 10, SwarmWire: 1000, Peers: []PeerResult{{Host: "a", Encryption: "preferred", Connectable: true}}}})
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"recall", "precision", "bw_median", "dl_p90"} {
		if v, ok := got[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
	if got["auditor_share"] != 0.01 || got["tn"] != 1.0 {
		t.Errorf("auditor_share %v tn %v, want 0.01 and 1: %s", got["auditor_share"], got["tn"], b)
	}
}

// TestEvaluateTracker: the clients an external tracker listed to the auditor
// are the client hosts with a report row naming it among its sources; the
// scrape is the report's check of that tracker.
func TestEvaluateTracker(t *testing.T) {
	const ot = "http://10.77.0.2:6969/announce"
	info := &RunInfo{Opentracker: ot, Hosts: []HostInfo{
		{Name: "aud", IP: "10.77.0.1", Role: "auditor"},
		{Name: "otracker", IP: "10.77.0.2", Role: "tracker"},
		{Name: "s", IP: "10.77.0.3", Port: 6881, Role: "seed"},
		{Name: "l", IP: "10.77.0.4", Port: 6881, Role: "leech"},
		{Name: "g", IP: "10.77.0.5", Role: "cheater"},
	}}
	rep := &reports.Report{
		Peers: []reports.Peer{
			{Address: "10.77.0.3:6881", Sources: []string{"tracker:embedded", "tracker:" + ot}},
			{Address: "10.77.0.4:6881", Sources: []string{"tracker:embedded"}},
			{Address: "10.77.0.5:6881", Sources: []string{"tracker:" + ot}},
		},
		Scrape: []audit.ScrapeCheck{{Tracker: "udp://other:1/announce"}, {Tracker: ot, Seeders: 2, ObservedSeeders: 2}},
	}
	got := evaluateTracker(info, rep)
	if got.URL != ot || !slices.Equal(got.Listed, []string{"s"}) || got.Clients != 2 || got.Scrape == nil || got.Scrape.Seeders != 2 {
		t.Fatalf("%+v", got)
	}
	if !strings.Contains(trackerStr(got), "listed 1 of 2 clients to the auditor (s); its last scrape: 2 seeders") {
		t.Errorf("trackerStr: %s", trackerStr(got))
	}
	// the tracker host is not a peer
	res := Evaluate(info, rep, nil)
	for _, p := range res.Peers {
		if p.Host == "otracker" || p.Host == "aud" {
			t.Errorf("%s evaluated as a peer", p.Host)
		}
	}
	if res.Opentracker == nil || len(res.Opentracker.Listed) != 1 {
		t.Errorf("scenario result opentracker %+v", res.Opentracker)
	}
}

// TestCrashedClient: a client whose process was found gone is marked, and
// left out of the probe and capacity counts.
func TestCrashedClient(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	info := &RunInfo{Hosts: []HostInfo{{Name: "lt", IP: "10.77.0.3", Port: 6881, Role: "leech", Kind: "libtorrent", Encryption: "preferred", UpKiB: 512}}}
	truth := map[string][]Sample{"lt": {
		{T: t0, Host: "lt", Client: true, Size: 100, Left: 100},
		{T: t0.Add(time.Second), Host: "lt", Err: "libtorrent stats: client process exited"}, // before Sample.Exited
		{T: t0.Add(2 * time.Second), Host: "lt", Err: "libtorrent stats: client process exited", Exited: true},
	}}
	res := Evaluate(info, &reports.Report{}, truth)
	p := res.Peers[0]
	if p.CrashedAfter != time.Second || p.Connectable || probedStr(p) != "crashed" {
		t.Fatalf("crashed after %v, connectable %v, probed %q", p.CrashedAfter, p.Connectable, probedStr(p))
	}
	o := Aggregate([]ScenarioResult{res})
	if o.Capped != 0 || len(o.Probed) != 0 {
		t.Errorf("a crashed client counted: capped %d, probed %v", o.Capped, o.Probed)
	}
	var md bytes.Buffer
	WriteMarkdown(&md, Header{Date: t0}, []ScenarioRun{{Scenario: &Scenario{Name: "s"}, Result: res}}, o)
	if !strings.Contains(md.String(), "A client crashed:** s/lt (libtorrent) was gone 1s after its first sample") {
		t.Errorf("markdown does not say the client crashed")
	}
}

// TestTransferMatrixAgreesWithClients: the transfer matrix of a real lab
// run (the short scenario, judged by this tree's predecessor and kept in
// testdata), summed per receiver, holds what each client gained by its own
// counters; and a matrix that claims less than a client gained is caught.
func TestTransferMatrixAgreesWithClients(t *testing.T) {
	info, res := loadFixture(t, "short-transfers")
	if res.Transfers.Receivers == 0 || len(res.Transfers.Violations) > 0 || len(res.Transfers.PlausibleViolations) > 0 {
		t.Fatalf("transfer check: %+v", res.Transfers)
	}
	dir := filepath.Join("testdata", "short-transfers")
	b, err := os.ReadFile(filepath.Join(dir, reportFile))
	if err != nil {
		t.Fatal(err)
	}
	var rep reports.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, truthFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	truth, err := ReadTruth(f)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rep.Windows {
		for k := range rep.Windows[i].Transfers {
			rep.Windows[i].Transfers[k].Upper /= 4 // a matrix too small for what the leecher got
		}
	}
	if tc := checkTransfers(info, &rep, truth); len(tc.Violations) == 0 || len(tc.PlausibleViolations) > 0 {
		t.Fatalf("a shrunk matrix passed, or the plausible one failed: %+v", tc)
	}
	for i := range rep.Windows {
		for k := range rep.Windows[i].Transfers {
			rep.Windows[i].Transfers[k].PlausibleUpper /= 4
		}
	}
	if tc := checkTransfers(info, &rep, truth); len(tc.PlausibleViolations) == 0 {
		t.Fatalf("a shrunk plausible matrix passed: %+v", tc)
	}
}
