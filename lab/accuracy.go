package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/reports"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// Targets from issue #6.
const (
	TargetBWMedian     = 0.10 // bandwidth estimate, median relative error
	TargetBWP90        = 0.20 // and 90th percentile
	TargetDownloadP90  = 0.10 // observed download vs the client's counter, 60-s windows
	TargetRecall       = 1.0  // every cheater caught
	TargetProbed       = 1.0  // every connectable peer probed, per encryption policy
	TargetAuditorShare = 0.02 // auditor's wire bytes / swarm's sent wire bytes, at the audit's default intervals
)

// Window is the length of the download-accuracy windows.
const Window = 60 * time.Second

// TCP payload per Ethernet frame at MTU 1500 with timestamps: 1448 of 1514
// bytes. tbf caps frames, so a cap of C KiB/s carries C×1024×1448/1514
// bytes/s of payload.
const (
	payloadPerFrame = 1448
	framePerFrame   = 1514
)

// Goodput is the payload rate a tc cap of kib KiB/s allows, bytes/s.
func Goodput(kib int) float64 { return float64(kib) * 1024 * payloadPerFrame / framePerFrame }

// PeerResult is the accuracy of the audit for one lab host.
type PeerResult struct {
	Host       string  `json:"host"`
	Role       string  `json:"role"`
	Kind       string  `json:"kind"`
	Encryption string  `json:"encryption"`
	UpKiB      int     `json:"up_kib"`
	Proxy      float64 `json:"proxy_factor"`
	Rewrite    string  `json:"rewrite,omitempty"`
	Cheater    bool    `json:"cheater"`
	// Rows are the report rows matched to the host (by IP); Addr the main
	// one (the peer port's).
	Rows int    `json:"rows"`
	Addr string `json:"addr"`
	// Verdict is the worst verdict of its rows ("" when it is in no row),
	// Flagged when that is suspect or misreporting; Reasons the codes.
	Verdict string   `json:"verdict"`
	Flagged bool     `json:"flagged"`
	Reasons []string `json:"reasons"`
	// Confidence is the confidence of its worst verdict.
	Confidence float64 `json:"confidence"`
	// ReportedUp is the upload its identities reported (Σ of its rows),
	// UploadBound the verdicts' bound for it, Limit which bound set the
	// main row's upper bound; TrueUp the client's own upload counter at the
	// end (clients only).
	ReportedUp  int64 `json:"reported_up"`
	UploadBound int64 `json:"upload_bound"`
	// PlausibleBound is the same under the plausible tier.
	PlausibleBound int64  `json:"plausible_bound"`
	Limit          string `json:"limit"`
	TrueUp         int64  `json:"true_up"`
	// Bandwidth: the cap's payload goodput against the report's
	// capacity.central (both bytes/s); BWErr is (central-goodput)/goodput,
	// set only with a cap and a known capacity.
	Goodput       float64  `json:"goodput"`
	CapacityKnown bool     `json:"capacity_known"`
	Quiet         bool     `json:"quiet"` // the estimate comes from quiet probes only
	Samples       int      `json:"samples"`
	Central       float64  `json:"central"`
	BWErr         *float64 `json:"bw_err"`
	// Upper is the report's capacity.upper, the bound the verdicts use:
	// it must not be below the goodput, or an honest peer could be accused.
	Upper float64 `json:"upper"`
	// PlausibleUpper is capacity.plausible_upper, the same under the
	// plausible tier (the suspect findings'); 0 when the report has none.
	PlausibleUpper float64 `json:"plausible_upper,omitempty"`
	// Probe success, for real clients (Connectable): the auditor connected
	// and learnt its pieces.
	Connectable bool `json:"connectable"`
	// CrashedAfter is how long after its first sample the client's process
	// was found gone (0: it was not). A crashed client is not connectable:
	// it is left out of the probe and capacity counts.
	CrashedAfter time.Duration `json:"crashed_after,omitempty"`
	Connected    bool          `json:"connected"`
	PiecesKnown  bool          `json:"pieces_known"`
	// Reach is how the auditor reached it, over all its rows ("direct",
	// "incoming", "holepunch"; reports.Peer.Reach), and Transport over
	// what ("tcp", "utp"; reports.Peer.Transport).
	Reach     []string `json:"reach"`
	Transport []string `json:"transport,omitempty"`
	// NAT: a client behind a NAT (HostInfo.NAT), which is not connectable
	// and counts in its own row.
	NAT bool `json:"nat,omitempty"`
	// Download windows: pieces the auditor saw it gain against its own
	// counter. Spurious counts windows where the auditor saw at least two
	// pieces (beyond its lag) while the client downloaded or verified less
	// than one.
	Windows  []WindowResult `json:"windows"`
	Spurious int            `json:"spurious"`
	Counter  string         `json:"counter"` // "downloaded", or "have" (aria2: no downloaded counter)
}

// Probed reports whether the probe of a connectable peer succeeded.
func (p PeerResult) Probed() bool { return p.Connected && p.PiecesKnown }

// HonestMisreporting reports an honest host called misreporting.
func (p PeerResult) HonestMisreporting() bool { return !p.Cheater && p.Verdict == "misreporting" }

// WindowResult is one download window.
type WindowResult struct {
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Observed int64     `json:"observed"` // pieces the auditor saw gained × piece length
	Truth    int64     `json:"truth"`    // the client's own counter's delta
	Err      float64   `json:"err"`      // (observed-truth)/truth
	// Have is the delta of the client's verified bytes (size − left) and
	// HaveErr the error against it: the counter also counts bytes the client
	// received twice or discarded (end-game duplicates, failed pieces).
	Have    int64   `json:"have"`
	HaveErr float64 `json:"have_err"`
	// KnownStart is what the auditor knew the client held at the window's
	// start (pieces × piece length), HaveStart what the client had verified
	// then: a gap is the auditor's lag, which moves gain across windows.
	KnownStart int64 `json:"known_start"`
	HaveStart  int64 `json:"have_start"`
}

// ScenarioResult is the accuracy of one run.
type ScenarioResult struct {
	Scenario string       `json:"scenario"`
	Peers    []PeerResult `json:"peers"`
	// AuditorWire: the auditor host's wire bytes, both ways; SwarmWire:
	// what the client hosts sent; AuditorShare their ratio.
	AuditorWire  uint64  `json:"auditor_wire"`
	SwarmWire    uint64  `json:"swarm_wire"`
	AuditorShare float64 `json:"auditor_share"`
	// DefaultIntervals: the auditor ran at `swarmaudit audit`'s default
	// snapshot and probe intervals (or sparser), so its share of the
	// traffic is the one a real audit has. The other scenarios probe every
	// few tens of seconds, to get quiet probes in swarms that finish in
	// minutes.
	DefaultIntervals bool `json:"default_intervals"`
	// ReportAuditorBytes is what the auditor counted itself (payload and
	// protocol, in and out).
	ReportAuditorBytes int64 `json:"report_auditor_bytes"`
	Buckets            int   `json:"buckets"`
	// GainUnobserved sums the windows' allowance for unobserved peers;
	// UnobservedPeers is the most unobserved peers of a window.
	GainUnobserved  int64 `json:"gain_unobserved"`
	UnobservedPeers int   `json:"unobserved_peers"`
	// Opentracker is how the scenario's opentracker tier did (nil without
	// one).
	Opentracker *TrackerResult `json:"opentracker,omitempty"`
	// Transfers holds the transfer matrix against the clients' counters.
	Transfers TransferCheck `json:"transfers"`
	// CountersUploaded sums the real clients' own upload counters at their
	// last sample; CountersGained what they completed over the run (a
	// leecher's size − left at its last sample; seeds start full); ProbeBytes
	// the auditor's probe payload (the report's windows). Their ratio is
	// how far honest claims summed over a swarm exceed what it absorbed
	// (verdict.Config.JointAvailabilityFactor).
	CountersUploaded int64 `json:"counters_uploaded"`
	CountersGained   int64 `json:"counters_gained"`
	ProbeBytes       int64 `json:"probe_bytes"`
}

// TrackerResult is what an external tracker gave the audit: the clients it
// listed to the auditor (a report row of the client's IP has it among its
// sources), and its last scrape against the wire.
type TrackerResult struct {
	URL     string             `json:"url"`
	Listed  []string           `json:"listed"` // client hosts
	Clients int                `json:"clients"`
	Scrape  *audit.ScrapeCheck `json:"scrape,omitempty"`
}

// Evaluate compares one run's report with its truth. It is a pure function
// of its inputs.
func Evaluate(info *RunInfo, rep *reports.Report, truth map[string][]Sample) ScenarioResult {
	res := ScenarioResult{Scenario: info.Scenario, Buckets: len(rep.Timeline.Times),
		ReportAuditorBytes: rep.Summary.AuditorBytesIn + rep.Summary.AuditorBytesOut,
		DefaultIntervals:   info.SnapshotInterval >= collect.DefaultSnapshotInterval && info.ProbeInterval >= collect.DefaultProbeInterval}
	for _, w := range rep.Windows {
		res.GainUnobserved += w.GainUnobserved
		res.UnobservedPeers = max(res.UnobservedPeers, w.UnobservedPeers)
		res.ProbeBytes += w.ProbeBytes
	}
	for _, h := range info.Hosts {
		if ss := truth[h.Name]; len(ss) > 0 {
			last := ss[len(ss)-1]
			switch {
			case h.Role == "auditor":
				res.AuditorWire = last.WireSent + last.WireRecv
			case h.Client():
				res.SwarmWire += last.WireSent
			}
		}
		if c, ok := lastClientSample(truth[h.Name]); ok && h.Client() {
			res.CountersUploaded += c.Uploaded
			if h.Role == "leech" {
				res.CountersGained += c.Size - c.Left
			}
		}
		if h.Role == "auditor" || h.Role == "tracker" {
			continue
		}
		res.Peers = append(res.Peers, evaluatePeer(h, info, rep, truth[h.Name]))
	}
	if res.SwarmWire > 0 {
		res.AuditorShare = float64(res.AuditorWire) / float64(res.SwarmWire)
	}
	if info.Opentracker != "" {
		res.Opentracker = evaluateTracker(info, rep)
	}
	res.Transfers = checkTransfers(info, rep, truth)
	return res
}

// lastClientSample is the last sample with the client's counters and the
// torrent's size.
func lastClientSample(ss []Sample) (Sample, bool) {
	for i := len(ss) - 1; i >= 0; i-- {
		if ss[i].Client && ss[i].Size > 0 {
			return ss[i], true
		}
	}
	return Sample{}, false
}

// evaluateTracker finds what the tracker at info.Opentracker gave the audit.
func evaluateTracker(info *RunInfo, rep *reports.Report) *TrackerResult {
	tr := &TrackerResult{URL: info.Opentracker, Listed: []string{}}
	source := "tracker:" + info.Opentracker
	for _, h := range info.Hosts {
		if !h.Client() {
			continue
		}
		tr.Clients++
		for i := range rep.Peers {
			if row := &rep.Peers[i]; rowOfIP(row, h.IP) && slices.Contains(row.Sources, source) {
				tr.Listed = append(tr.Listed, h.Name)
				break
			}
		}
	}
	for i := range rep.Scrape {
		if rep.Scrape[i].Tracker == info.Opentracker {
			tr.Scrape = &rep.Scrape[i]
		}
	}
	return tr
}

// crashedAfter finds the first sample that found the client's process gone
// (truth files from before Sample.Exited: by its error text), and how long
// after the first sample that was.
func crashedAfter(ss []Sample, leftAt time.Time) (time.Duration, bool) {
	for _, s := range ss {
		if !leftAt.IsZero() && !s.T.Before(leftAt) {
			break // it was asked to leave
		}
		if s.Exited || strings.Contains(s.Err, testclients.ErrExited.Error()) {
			return max(s.T.Sub(ss[0].T), time.Nanosecond), true
		}
	}
	return 0, false
}

var verdictRank = map[string]int{"": 0, reports.VerdictUnreported: 1, "ok": 2, "unverifiable": 3, "suspect": 4, "misreporting": 5}

func evaluatePeer(h HostInfo, info *RunInfo, rep *reports.Report, samples []Sample) PeerResult {
	p := PeerResult{Host: h.Name, Role: h.Role, Kind: h.Kind, Encryption: h.Encryption, UpKiB: h.UpKiB,
		Proxy: h.Proxy, Rewrite: h.Rewrite, Cheater: h.Cheater, Connectable: h.Client() && !h.NAT, NAT: h.Client() && h.NAT, Reasons: []string{}, Windows: []WindowResult{}, Reach: []string{}}
	if after, crashed := crashedAfter(samples, info.LeftAt); crashed {
		p.CrashedAfter, p.Connectable = after, false
	}
	main := net.JoinHostPort(h.IP, itoa(h.Port))
	var best *reports.Peer
	for i := range rep.Peers {
		row := &rep.Peers[i]
		if !rowOfIP(row, h.IP) {
			continue
		}
		p.Rows++
		if r := verdictRank[row.Verdict]; r > verdictRank[p.Verdict] || (r == verdictRank[p.Verdict] && row.Confidence > p.Confidence) {
			p.Verdict, p.Confidence = row.Verdict, row.Confidence
		}
		for _, r := range row.Reasons {
			if !slices.Contains(p.Reasons, r.Code) {
				p.Reasons = append(p.Reasons, r.Code)
			}
		}
		if row.Reported != nil {
			p.ReportedUp += row.Reported.Uploaded
			p.UploadBound += row.Reported.UploadBound
			p.PlausibleBound += row.Reported.PlausibleUploadBound
		}
		if row.Connections.Connected > 0 {
			p.Connected = true
		}
		if row.Pieces.Known {
			p.PiecesKnown = true
		}
		for _, r := range row.Reach {
			if !slices.Contains(p.Reach, r) {
				p.Reach = append(p.Reach, r)
			}
		}
		for _, tr := range strings.Split(row.Transport, "+") {
			if tr != "" && !slices.Contains(p.Transport, tr) {
				p.Transport = append(p.Transport, tr)
			}
		}
		if best == nil || row.Address == main || (best.Address != main && row.Capacity.Samples > best.Capacity.Samples) {
			best = row
		}
	}
	p.Flagged = p.Verdict == "suspect" || p.Verdict == "misreporting"
	if best == nil {
		return p
	}
	p.Addr = best.Address
	if best.UploadBounds != nil {
		p.Limit = best.UploadBounds.Limit
	}
	for i := len(samples) - 1; i >= 0; i-- {
		if samples[i].Client {
			p.TrueUp = samples[i].Uploaded
			break
		}
	}
	p.CapacityKnown, p.Samples, p.Central, p.Quiet, p.Upper = best.Capacity.Known, best.Capacity.Samples, best.Capacity.Central, best.Capacity.Quiet, best.Capacity.Upper
	p.PlausibleUpper = best.Capacity.PlausibleUpper
	if h.UpKiB > 0 {
		p.Goodput = Goodput(h.UpKiB)
		if p.CapacityKnown {
			e := (p.Central - p.Goodput) / p.Goodput
			p.BWErr = &e
		}
	}
	if h.Client() {
		p.Counter = "downloaded"
		if len(samples) > 0 && hasUnknownDownloaded(samples) {
			p.Counter = "have"
		}
		p.Windows, p.Spurious = downloadWindows(rep, best.Pieces.Series, info.Size, info.PieceLength, samples, p.Counter)
	}
	return p
}

// rowOfIP reports whether a report row is the host's: its wire address or
// one of its identities' announced addresses has the host's IP.
func rowOfIP(row *reports.Peer, ip string) bool {
	if hostOf(row.Address) == ip {
		return true
	}
	if row.Reported != nil {
		for _, id := range row.Reported.Identities {
			for _, a := range id.Addrs {
				if hostOf(a) == ip {
					return true
				}
			}
		}
	}
	return false
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

func hasUnknownDownloaded(ss []Sample) bool {
	for _, s := range ss {
		if s.Client && s.Downloaded < 0 {
			return true
		}
	}
	return false
}

// downloadWindows cuts the timeline into consecutive Window-long spans from
// the first bucket where the peer's pieces are known, and compares in each
// the pieces the auditor saw it gain (× piece length, the last piece
// counted at its real size) with the delta of the client's own counter
// (interpolated at the bucket ends). Windows where the client downloaded
// less than a piece, or verified less than a piece (its counter then grew
// only by blocks received twice or discarded), are not rated: there was no
// download to see. Of those, the ones where the auditor saw two or more
// pieces beyond its lag at the window's start (pieces the client had
// verified before the window and announced late: Transmission sends HAVEs
// in 10-s batches) are counted as spurious.
func downloadWindows(rep *reports.Report, series []*int, size, plen int64, samples []Sample, counter string) ([]WindowResult, int) {
	times := rep.Timeline.Times
	out := []WindowResult{}
	if rep.Timeline.Bucket <= 0 || len(series) != len(times) || plen <= 0 {
		return out, 0
	}
	step := int(math.Round(Window.Seconds() / rep.Timeline.Bucket))
	step = max(step, 1)
	first := slices.IndexFunc(series, func(v *int) bool { return v != nil })
	if first < 0 {
		return out, 0
	}
	held := func(i int) int64 { return min(int64(*series[i])*plen, size) }
	spurious := 0
	for a := first; a+step < len(times); a += step {
		b := a + step
		if series[a] == nil || series[b] == nil {
			continue
		}
		ta, oka := counterAt(samples, times[a], counter)
		tb, okb := counterAt(samples, times[b], counter)
		if !oka || !okb {
			continue
		}
		obs, tru := held(b)-held(a), int64(math.Round(tb-ta))
		ha, okHa := counterAt(samples, times[a], "have")
		hb, okHb := counterAt(samples, times[b], "have")
		haveKnown := okHa && okHb
		if tru < plen || haveKnown && hb-ha < float64(plen) {
			lag := int64(0)
			if haveKnown {
				lag = max(int64(math.Round(ha))-held(a), 0)
			}
			if obs-lag >= 2*plen {
				spurious++
			}
			continue
		}
		w := WindowResult{From: times[a], To: times[b], Observed: obs, Truth: tru, Err: float64(obs-tru) / float64(tru)}
		w.KnownStart, w.HaveStart = held(a), int64(math.Round(ha))
		if w.Have = int64(math.Round(hb - ha)); w.Have > 0 {
			w.HaveErr = float64(obs-w.Have) / float64(w.Have)
		}
		out = append(out, w)
	}
	return out, spurious
}

// counterAt interpolates the client's counter ("downloaded" or "have") at t
// between the samples around it; false outside the samples' span. Before
// the client's first sample, while its host was already sampled, the client
// was still starting: a leecher's counters were zero then (fresh data
// directory), so that is 0 (its first sample is at most a second later).
func counterAt(ss []Sample, t time.Time, counter string) (float64, bool) {
	val := func(s Sample) float64 {
		if counter == "have" {
			return float64(s.Have())
		}
		return float64(s.Downloaded)
	}
	var prev *Sample
	for i := range ss {
		s := &ss[i]
		if !s.Client {
			continue
		}
		if !s.T.Before(t) {
			if s.T.Equal(t) {
				return val(*s), true
			}
			if prev == nil {
				if i == 0 || ss[0].T.After(t) || counter == "have" && s.Seeding {
					return 0, false
				}
				return 0, true // not started yet: see above
			}
			f := float64(t.Sub(prev.T)) / float64(s.T.Sub(prev.T))
			return val(*prev) + f*(val(*s)-val(*prev)), true
		}
		prev = s
	}
	return 0, false
}

// Overall is the accuracy across scenarios.
type Overall struct {
	// BWErrs: |relative error| per capped peer measured by quiet probes
	// (taken while nobody else could download from it: the probe sees its
	// whole upload); BusyErrs the same for the others, whose probes shared
	// the upload with the swarm and measure the auditor's share of it.
	BWErrs     []float64 `json:"bw_errs"`
	BWMedian   float64   `json:"bw_median"`
	BWP90      float64   `json:"bw_p90"`
	BusyErrs   []float64 `json:"busy_errs"`
	BusyMedian float64   `json:"busy_median"`
	BusyMax    float64   `json:"busy_max"`
	// UpperHolds counts the capped, measured peers whose capacity upper
	// bound is at least the cap's goodput, of UpperRated.
	UpperHolds int `json:"upper_holds"`
	UpperRated int `json:"upper_rated"`
	// PlausibleUpperHolds and PlausibleUpperRated: the same for the
	// plausible capacity upper bound, where the report has one.
	PlausibleUpperHolds int       `json:"plausible_upper_holds"`
	PlausibleUpperRated int       `json:"plausible_upper_rated"`
	Capped              int       `json:"capped"`       // real clients with an upload cap
	CappedKnown         int       `json:"capped_known"` // of those, with a capacity estimate
	DLErrs              []float64 `json:"dl_errs"`      // |relative error| per window
	DLMedian            float64   `json:"dl_median"`
	DLP90               float64   `json:"dl_p90"`
	DLMax               float64   `json:"dl_max"`
	HaveErrs            []float64 `json:"have_errs"` // |relative error| per window against verified bytes
	HaveMedian          float64   `json:"have_median"`
	HaveP90             float64   `json:"have_p90"`
	Spurious            int       `json:"spurious"`
	TP                  int       `json:"tp"`
	FP                  int       `json:"fp"`
	FN                  int       `json:"fn"`
	TN                  int       `json:"tn"`
	Precision           float64   `json:"precision"` // NaN (null in JSON) when nothing was flagged
	Recall              float64   `json:"recall"`    // NaN (null in JSON) without cheaters
	HonestMisrep        int       `json:"honest_misreporting"`
	// Probed counts probed and connectable peers per encryption policy;
	// ByReach the probed ones by how they were reached ("direct",
	// "incoming only"), and the connectable ones not probed ("not probed").
	Probed       map[string][2]int `json:"probed"`
	ByReach      map[string]int    `json:"by_reach"`
	AuditorWire  uint64            `json:"auditor_wire"`
	SwarmWire    uint64            `json:"swarm_wire"`
	AuditorShare float64           `json:"auditor_share"`
	// The same over the scenarios run at the audit's default intervals:
	// the one the target is about.
	DefaultAuditorWire  uint64  `json:"default_auditor_wire"`
	DefaultSwarmWire    uint64  `json:"default_swarm_wire"`
	DefaultAuditorShare float64 `json:"default_auditor_share"`
	// CounterRatios: per scenario, the clients' upload counters over what
	// they completed plus the auditor's probes (ScenarioResult.Counters*).
	CounterRatios []float64 `json:"counter_ratios"`
	CounterMedian float64   `json:"counter_median"`
	CounterMax    float64   `json:"counter_max"`
}

// MarshalJSON writes the statistics that have no data (NaN) as null:
// encoding/json refuses NaN. Every float64 field is covered, by reflection,
// so a new statistic needs no change here.
func (o Overall) MarshalJSON() ([]byte, error) {
	type plain Overall
	cp := plain(o)
	v := reflect.ValueOf(&cp).Elem()
	var nulls []string
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() != reflect.Float64 || !math.IsNaN(f.Float()) {
			continue
		}
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		nulls = append(nulls, name)
		f.SetFloat(0)
	}
	b, err := json.Marshal(cp)
	if err != nil || len(nulls) == 0 {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, name := range nulls {
		m[name] = json.RawMessage("null")
	}
	return json.Marshal(m)
}

// Aggregate computes the overall numbers from the scenarios' results.
func Aggregate(rs []ScenarioResult) Overall {
	o := Overall{Probed: map[string][2]int{}, ByReach: map[string]int{}, BWErrs: []float64{}, BusyErrs: []float64{}, DLErrs: []float64{}, HaveErrs: []float64{}, CounterRatios: []float64{}}
	for _, r := range rs {
		o.AuditorWire += r.AuditorWire
		o.SwarmWire += r.SwarmWire
		if d := r.CountersGained + r.ProbeBytes; d > 0 && r.CountersUploaded > 0 {
			o.CounterRatios = append(o.CounterRatios, float64(r.CountersUploaded)/float64(d))
		}
		if r.DefaultIntervals {
			o.DefaultAuditorWire += r.AuditorWire
			o.DefaultSwarmWire += r.SwarmWire
		}
		for _, p := range r.Peers {
			if p.BWErr != nil {
				if p.Quiet {
					o.BWErrs = append(o.BWErrs, math.Abs(*p.BWErr))
				} else {
					o.BusyErrs = append(o.BusyErrs, math.Abs(*p.BWErr))
				}
				o.UpperRated++
				if p.Upper >= p.Goodput {
					o.UpperHolds++
				}
				if p.PlausibleUpper > 0 {
					o.PlausibleUpperRated++
					if p.PlausibleUpper >= p.Goodput {
						o.PlausibleUpperHolds++
					}
				}
			}
			if p.Connectable && p.UpKiB > 0 {
				o.Capped++
				if p.CapacityKnown {
					o.CappedKnown++
				}
			}
			for _, w := range p.Windows {
				o.DLErrs = append(o.DLErrs, math.Abs(w.Err))
				if w.Have > 0 {
					o.HaveErrs = append(o.HaveErrs, math.Abs(w.HaveErr))
				}
			}
			o.Spurious += p.Spurious
			switch {
			case p.Cheater && p.Flagged:
				o.TP++
			case p.Cheater:
				o.FN++
			case p.Flagged:
				o.FP++
			default:
				o.TN++
			}
			if p.HonestMisreporting() {
				o.HonestMisrep++
			}
			if p.Connectable {
				c := o.Probed[p.Encryption]
				c[1]++
				if p.Probed() {
					c[0]++
				}
				o.Probed[p.Encryption] = c
				switch {
				case !p.Probed():
					o.ByReach["not probed"]++
				case slices.Contains(p.Reach, "direct"):
					o.ByReach["direct"]++
				case slices.Contains(p.Reach, "incoming"):
					o.ByReach["incoming only"]++
				case slices.Contains(p.Reach, "holepunch"):
					o.ByReach["holepunch only"]++
				default:
					o.ByReach["unknown"]++ // a report from before reach was recorded
				}
				if p.Probed() {
					for _, tr := range p.Transport {
						o.ByReach["over "+tr]++
					}
				}
			}
			if p.NAT {
				switch {
				case !p.Probed():
					o.ByReach["nat: not probed"]++
				case slices.Contains(p.Reach, "holepunch"):
					o.ByReach["nat: holepunch"]++
				default:
					o.ByReach["nat: incoming"]++
				}
			}
		}
	}
	o.BWMedian, o.BWP90 = Quantile(o.BWErrs, 0.5), Quantile(o.BWErrs, 0.9)
	o.BusyMedian, o.BusyMax = Quantile(o.BusyErrs, 0.5), Quantile(o.BusyErrs, 1)
	o.DLMedian, o.DLP90, o.DLMax = Quantile(o.DLErrs, 0.5), Quantile(o.DLErrs, 0.9), Quantile(o.DLErrs, 1)
	o.HaveMedian, o.HaveP90 = Quantile(o.HaveErrs, 0.5), Quantile(o.HaveErrs, 0.9)
	o.CounterMedian, o.CounterMax = Quantile(o.CounterRatios, 0.5), Quantile(o.CounterRatios, 1)
	o.Precision = ratio(o.TP, o.TP+o.FP)
	o.Recall = ratio(o.TP, o.TP+o.FN)
	o.AuditorShare = ratio(o.AuditorWire, o.SwarmWire)
	o.DefaultAuditorShare = ratio(o.DefaultAuditorWire, o.DefaultSwarmWire)
	return o
}

// ratio is a/b, NaN when b is 0 (no data).
func ratio[T int | int64 | uint64](a, b T) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// Quantile is the q-quantile of xs, interpolated linearly between order
// statistics (NaN for no data).
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (pos-float64(lo))*(s[hi]-s[lo])
}

// Check is one number against its target.
type Check struct {
	Name   string
	Value  string
	Target string
	Pass   bool
	NoData bool
}

// Checks lists the overall numbers next to the targets.
func (o Overall) Checks() []Check {
	le := func(name string, v, target float64, n int, unit string) Check {
		c := Check{Name: name, Value: pct(v), Target: "≤ " + pct(target)}
		if unit != "" {
			c.Value += unit
		}
		c.NoData = n == 0 || math.IsNaN(v)
		c.Pass = !c.NoData && v <= target
		return c
	}
	cs := []Check{
		le("bandwidth error, quiet probes, median", o.BWMedian, TargetBWMedian, len(o.BWErrs), fmtN(len(o.BWErrs), "peers")),
		le("bandwidth error, quiet probes, p90", o.BWP90, TargetBWP90, len(o.BWErrs), ""),
		{Name: "bandwidth error, busy probes (the auditor's share of a shared upload)",
			Value:  pct(o.BusyMedian) + " median, " + pct(o.BusyMax) + " max" + fmtN(len(o.BusyErrs), "peers"),
			Target: "—", Pass: true, NoData: len(o.BusyErrs) == 0},
		{Name: "capacity upper bound ≥ the cap's goodput", Value: pct(ratio(o.UpperHolds, o.UpperRated)) + " (" + itoa(o.UpperHolds) + "/" + itoa(o.UpperRated) + ")",
			Target: "100%", Pass: o.UpperRated > 0 && o.UpperHolds == o.UpperRated, NoData: o.UpperRated == 0},
		{Name: "plausible capacity upper bound ≥ the cap's goodput", Value: pct(ratio(o.PlausibleUpperHolds, o.PlausibleUpperRated)) + " (" + itoa(o.PlausibleUpperHolds) + "/" + itoa(o.PlausibleUpperRated) + ")",
			Target: "100%", Pass: o.PlausibleUpperRated > 0 && o.PlausibleUpperHolds == o.PlausibleUpperRated, NoData: o.PlausibleUpperRated == 0},
		{Name: "capped clients with a bandwidth estimate", Value: pct(ratio(o.CappedKnown, o.Capped)) + " (" + itoa(o.CappedKnown) + "/" + itoa(o.Capped) + ")",
			Target: "—", Pass: true, NoData: o.Capped == 0},
		le("download error per 60-s window, p90", o.DLP90, TargetDownloadP90, len(o.DLErrs),
			" (median "+pct(o.DLMedian)+", max "+pct(o.DLMax)+", "+itoa(len(o.DLErrs))+" windows)"),
	}
	cs = append(cs, Check{Name: "download error vs verified bytes (size − left), p90",
		Value:  pct(o.HaveP90) + " (median " + pct(o.HaveMedian) + ", " + itoa(len(o.HaveErrs)) + " windows)",
		Target: "—", Pass: true, NoData: len(o.HaveErrs) == 0})
	cs = append(cs, Check{Name: "clients' upload counters summed over a swarm, over what its leechers completed plus the auditor's probes",
		Value:  fmt.Sprintf("×%.3f median, ×%.3f max (%d scenarios)", o.CounterMedian, o.CounterMax, len(o.CounterRatios)),
		Target: "—", Pass: true, NoData: len(o.CounterRatios) == 0})
	rc := Check{Name: "recall (cheaters flagged)", Value: pct(o.Recall) + " (" + itoa(o.TP) + "/" + itoa(o.TP+o.FN) + ")", Target: "100%"}
	rc.NoData = math.IsNaN(o.Recall)
	rc.Pass = !rc.NoData && o.Recall >= TargetRecall
	cs = append(cs, rc)
	cs = append(cs, Check{Name: "precision (flagged are cheaters)", Value: pct(o.Precision) + " (" + itoa(o.TP) + "/" + itoa(o.TP+o.FP) + ")",
		Target: "—", Pass: true, NoData: math.IsNaN(o.Precision)})
	cs = append(cs, Check{Name: "honest peers called misreporting", Value: itoa(o.HonestMisrep), Target: "0", Pass: o.HonestMisrep == 0})
	encs := make([]string, 0, len(o.Probed))
	for e := range o.Probed {
		encs = append(encs, e)
	}
	sort.Strings(encs)
	for _, e := range encs {
		c := o.Probed[e]
		v := ratio(c[0], c[1])
		cs = append(cs, Check{Name: "connectable peers probed, " + e, Value: pct(v) + " (" + itoa(c[0]) + "/" + itoa(c[1]) + ")",
			Target: "100%", Pass: c[1] > 0 && v >= TargetProbed, NoData: c[1] == 0})
	}
	if n := o.ByReach["direct"] + o.ByReach["incoming only"] + o.ByReach["holepunch only"] + o.ByReach["unknown"] + o.ByReach["not probed"]; n > 0 {
		v := fmt.Sprintf("direct %d, incoming only %d, holepunch only %d, not probed %d (of %d); over TCP %d, over uTP %d",
			o.ByReach["direct"], o.ByReach["incoming only"], o.ByReach["holepunch only"], o.ByReach["not probed"], n, o.ByReach["over tcp"], o.ByReach["over utp"])
		if u := o.ByReach["unknown"]; u > 0 {
			v += fmt.Sprintf("; %d probed in runs from before reach was recorded", u)
		}
		cs = append(cs, Check{Name: "connectable peers probed, by reach and transport", Value: v, Target: "—", Pass: true})
	}
	if n := o.ByReach["nat: holepunch"] + o.ByReach["nat: incoming"] + o.ByReach["nat: not probed"]; n > 0 {
		v := fmt.Sprintf("holepunch %d, incoming %d, not probed %d (of %d)", o.ByReach["nat: holepunch"], o.ByReach["nat: incoming"], o.ByReach["nat: not probed"], n)
		cs = append(cs, Check{Name: "clients behind a NAT probed, by reach", Value: v, Target: "—", Pass: true})
	}
	sh := Check{Name: "auditor traffic / swarm traffic, default intervals", Value: pct2(o.DefaultAuditorShare) + " (" + mib(o.DefaultAuditorWire) + " of " + mib(o.DefaultSwarmWire) + ")",
		Target: "< " + pct(TargetAuditorShare)}
	sh.NoData = math.IsNaN(o.DefaultAuditorShare)
	sh.Pass = !sh.NoData && o.DefaultAuditorShare < TargetAuditorShare
	cs = append(cs, sh, Check{Name: "auditor traffic / swarm traffic, all scenarios (most probe every 20–40 s)",
		Value: pct2(o.AuditorShare) + " (" + mib(o.AuditorWire) + " of " + mib(o.SwarmWire) + ")", Target: "—", Pass: true, NoData: math.IsNaN(o.AuditorShare)})
	return cs
}
