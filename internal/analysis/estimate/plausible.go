package estimate

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/bytesize"
	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
)

// The plausible tier (docs/estimation.md, "Evidence tiers"). The bounds in
// Bounds and SwarmBounds hold under worst-case assumptions: any peer may
// have downloaded anything it could, whatever it reported. The plausible
// tier adds assumptions an honest swarm satisfies and a cheater cannot use
// to hide, and bounds uploads again under them:
//
//   - AssumeOwnDownloads: an identity's reports of its own downloads are
//     true unless the wire contradicts them (the caller leaves Reported nil
//     for identities whose reports the wire contradicted, and for peers that
//     reported nothing). Cheaters inflate uploads; an identity that hides
//     downloads is flagged for that and gets the worst case here. So an
//     identity absorbed at most what it reported downloading in the window,
//     and a self-declared seeder that reported no download absorbed nothing.
//   - AssumeIdleNoCompetitors: peers not downloading (by their own reports,
//     or, without reports, never seen completing a piece) took no share of
//     anyone's upload: they neither extend the time the swarm was
//     downloading nor compete with a probe.
//   - AssumeMinPieceRate: a piece in flight arrives at PlausibleMinPieceRate
//     or faster, so a piece a snapshot saw lacking began to arrive at most
//     a piece's transfer time before it (the worst case allows
//     TransferLead).
//   - AssumeQuietProbeWhole: a probe nobody else competed with measured the
//     peer's whole upload; PlausibleHeadroom (smaller than Headroom) covers
//     TCP variance and rate-limiter granularity only.
//   - AssumePromptHaves: a peer announces each piece it completes within
//     PlausibleHaveDelay on an established connection (BEP 3 HAVE; clients
//     send them at once, to a peer lacking the piece as we do), so a piece
//     a continuous watch heard nothing of was lacked PlausibleHaveDelay
//     before (timeline.PromptLacked). Pieces an uploader gains after that
//     are not its to send before; what a watched leecher gains starts then.
const (
	AssumeOwnDownloads      = "own_downloads_as_reported"
	AssumeIdleNoCompetitors = "idle_peers_no_competitors"
	AssumeQuietProbeWhole   = "quiet_probe_measures_capacity"
	AssumeMinPieceRate      = "pieces_arrive_at_a_minimum_rate"
	AssumePromptHaves       = "haves_are_prompt"
)

// Reported is what an identity told the tracker about its own downloads:
// during each span (From, To] it downloaded at most Downloaded bytes, and
// nothing outside the spans. The caller states the spans: consecutive
// announces, the counter of a first announce (downloaded before it), and
// `left` after a last announce without `stopped` (what it may still have
// downloaded).
type Reported struct {
	Spans []ReportedSpan
}

// ReportedSpan is one span of Reported.
type ReportedSpan struct {
	From, To   time.Time
	Downloaded int64
}

// Plausible are one peer's upload bounds under the plausible tier, over
// the same windows as the Bounds that hold it.
type Plausible struct {
	// UploadUpper = min(AvailabilityBound, CapacityBound); Limit says which.
	UploadUpper int64 `json:"upload_upper"`
	Limit       Limit `json:"limit"`
	// AvailabilityBound = Observed + Unobserved + ProbeBytes. Observed is
	// the worst-case observed availability, capped by what the observed
	// peers reported downloading (each at most what it may have gained);
	// Unobserved is what unobserved identities reported downloading (the
	// worst-case allowance for those without usable reports).
	AvailabilityBound int64 `json:"availability_bound"`
	Observed          int64 `json:"observed"`
	Unobserved        int64 `json:"unobserved"`
	// ReportedDownloads is Σ over the other identities with usable reports
	// of what they reported downloading in the window.
	ReportedDownloads int64 `json:"reported_downloads"`
	// Capacity is the capacity estimate with plausible competitors and
	// PlausibleHeadroom; CapacityBound = Capacity.Upper × min(present,
	// DemandTime) + the probe bytes beyond what that rate carried in the
	// probes' own demand seconds, or −1 without a capacity.
	Capacity      CapacityEstimate `json:"capacity"`
	CapacityBound int64            `json:"capacity_bound"`
	DemandTime    time.Duration    `json:"demand_time"`
	// SlicedBound cuts the window at the swarm's announces (at most
	// MaxSlices slices) and adds, slice by slice, the smaller of the
	// availability and the capacity bounds: a peer cannot upload at full
	// rate into a slice in which the others downloaded little. −1 without
	// a capacity.
	SlicedBound int64 `json:"sliced_bound"`
	Slices      int   `json:"slices"`
	// SlicedThreshold is SlicedBound with each slice's capacity bound
	// scaled by Config.SlicedCapacityFactor and what the others absorbed by
	// Config.SlicedAvailabilityFactor: the most a report may claim before
	// it exceeds one side or the other beyond its tolerance. −1 without a
	// capacity.
	SlicedThreshold int64 `json:"sliced_threshold"`
}

// MaxSlices caps how many slices SlicedBound cuts a window into.
const MaxSlices = 16

// LimitSliced names the sliced bound (see Plausible.SlicedBound).
const LimitSliced Limit = "sliced"

// repData is a Reported in nanoseconds: spans (from, to] sorted by from,
// with prefix sums of their bytes.
type repData struct {
	spans  [][2]int64
	bytes  []int64
	prefix []int64 // prefix[i] = Σ bytes[:i]
	// ordered: the spans' ends are sorted too (they do not nest), so a
	// window's spans are found by binary search.
	ordered bool
	// demand: the spans with bytes, merged.
	demand [][2]int64
}

// slices cuts window w at cutsIn: contiguous, in order, covering it.
func (e *Estimator) slices(w window) []window {
	cuts := e.cutsIn(w.uf, w.ut)
	sw := make([]window, len(cuts)+1)
	from := w.uf
	for k := range sw {
		to := w.ut
		if k < len(cuts) {
			to = cuts[k]
		}
		sw[k] = window{uf: from, ut: to}
		from = to
	}
	return sw
}

// cutsIn are the swarm's announce times inside (uf, ut), thinned evenly to
// at most MaxSlices−1.
func (e *Estimator) cutsIn(uf, ut int64) []int64 {
	lo := sort.Search(len(e.cuts), func(i int) bool { return e.cuts[i] > uf })
	hi := sort.Search(len(e.cuts), func(i int) bool { return e.cuts[i] >= ut })
	in := e.cuts[lo:max(lo, hi)]
	if len(in) < MaxSlices {
		return in
	}
	out := make([]int64, 0, MaxSlices-1)
	for k := 1; k < MaxSlices; k++ {
		out = append(out, in[k*len(in)/MaxSlices])
	}
	return out
}

func newRepData(r *Reported, latency int64) *repData {
	if r == nil {
		return nil
	}
	d := &repData{}
	type span struct {
		a, b int64
		n    int64
	}
	var ss []span
	for _, s := range r.Spans {
		if s.To.Before(s.From) {
			continue
		}
		a, _ := clampNanos(s.From)
		b, _ := clampNanos(s.To)
		if s.From.IsZero() {
			a = negInf
		}
		ss = append(ss, span{bytesize.Add(a, -latency), b, max(s.Downloaded, 0)})
	}
	slices.SortFunc(ss, func(x, y span) int { return cmpInt(x.a, y.a) })
	d.prefix = make([]int64, 1, len(ss)+1)
	d.ordered = true
	var dem [][2]int64
	for i, s := range ss {
		d.spans = append(d.spans, [2]int64{s.a, s.b})
		d.bytes = append(d.bytes, s.n)
		d.prefix = append(d.prefix, bytesize.Add(d.prefix[i], s.n))
		if i > 0 && s.b < ss[i-1].b {
			d.ordered = false
		}
		if s.n > 0 {
			dem = append(dem, [2]int64{s.a, s.b})
		}
	}
	d.demand = mergeSpans(dem)
	return d
}

// downloads is what the spans meeting [uf, ut) reported.
func (d *repData) downloads(uf, ut int64) int64 {
	if ut <= uf {
		return 0
	}
	if d.ordered {
		lo := sort.Search(len(d.spans), func(i int) bool { return d.spans[i][1] >= uf })
		hi := sort.Search(len(d.spans), func(i int) bool { return d.spans[i][0] >= ut })
		if hi <= lo {
			return 0
		}
		return d.prefix[hi] - d.prefix[lo]
	}
	var n int64
	for i, s := range d.spans {
		if s[0] < ut && s[1] >= uf {
			n = bytesize.Add(n, d.bytes[i])
		}
	}
	return n
}

// preparePlausible builds what the plausible tier needs once the
// worst-case index exists: the reports, each observed peer's sorted event
// ends (for its own possible gains), the plausible demand, and the
// plausible capacities.
func (e *Estimator) preparePlausible(in Input) {
	lat := int64(e.cfg.ReportLatency)
	for k, p := range in.Peers {
		e.peers[k].rep = newRepData(p.Reported, lat)
		e.anyRep = e.anyRep || p.Reported != nil
	}
	for j, u := range in.Unobserved {
		e.unobs[j].rep = newRepData(u.Reported, lat)
		e.anyRep = e.anyRep || u.Reported != nil
	}
	// Every observed peer's events again, with the plausible transfer lead
	// (the sliced bound's availability and plausibleCompetitors).
	plead := int64(e.cfg.TransferLead)
	if e.cfg.PlausibleMinPieceRate > 0 {
		plead = min(plead, int64(float64(e.tor.PieceLength)/e.cfg.PlausibleMinPieceRate*float64(time.Second)))
	}
	e.plead = plead
	for k := range e.peers {
		pd := &e.peers[k]
		if !pd.info {
			continue
		}
		// What it lacked when under AssumePromptHaves.
		pd.plk = pd.lacked
		if d := e.cfg.PlausibleHaveDelay; d > 0 {
			pd.plk = in.Peers[k].Timeline.PromptLacked(d)
		}
		// Its events again, with the plausible transfer lead, from when
		// it plausibly lacked each piece.
		pd.sa, pd.sb = make([]int64, len(pd.a)), slices.Clone(pd.b)
		for i := range pd.sa {
			pd.sa[i] = e.pstart(pd, i)
		}
		slices.Sort(pd.sa)
		slices.Sort(pd.sb)
	}
	var spans [][2]int64
	for k := range e.peers {
		pd := &e.peers[k]
		pd.pown = e.plausibleOwn(k)
		spans = append(spans, pd.pown...)
	}
	for _, u := range e.unobs {
		switch {
		case u.rep != nil:
			spans = append(spans, u.rep.demand...)
		case !u.seeding:
			spans = append(spans, u.present...)
		}
	}
	e.pdemand = newDemand(spans)
	var cuts []int64
	add := func(r *repData) {
		if r != nil {
			for _, s := range r.spans {
				cuts = append(cuts, s[1])
			}
		}
	}
	for k := range e.peers {
		add(e.peers[k].rep)
	}
	for _, u := range e.unobs {
		add(u.rep)
	}
	slices.Sort(cuts)
	e.cuts = slices.Compact(cuts)
	count := e.plausibleCompetitors
	if len(e.peers)+len(e.unobs) > MaxProbeCompetitorScan {
		count = func(k int, p probe) int {
			n := e.pdemand.at(p.at)
			if within(e.peers[k].pown, p.at) {
				n--
			}
			return max(n, 0)
		}
	}
	for k := range e.peers {
		e.peers[k].pcap = e.capacityWith(k, func(p probe) int { return count(k, p) }, e.cfg.PlausibleHeadroom)
	}
}

// pstart is the start of observed peer pd's possible-gain event for piece
// i under the plausible tier: a piece in flight began at most the
// plausible transfer lead (AssumeMinPieceRate) before the time it was
// plausibly lacked (AssumePromptHaves). posInf when it has no event.
func (e *Estimator) pstart(pd *peerData, i int) int64 {
	if l := pd.plk[i]; l != negInf && pd.a[i] != posInf {
		return min(bytesize.Add(l, -e.plead), pd.b[i]-1)
	}
	return pd.a[i]
}

// MaxProbeCompetitorScan caps the swarm size for which each probe's
// competitors are checked one by one (plausibleCompetitors); larger swarms
// count the plausible demand at the probe's start, which is never fewer.
const MaxProbeCompetitorScan = 1024

// plausibleCompetitors counts the identities other than peer k that may
// have shared k's upload with probe p under AssumeIdleNoCompetitors and
// AssumeMinPieceRate: those downloading when it started (the plausible
// demand), less the observed peers whose pieces show they received none
// while it ran. Such a peer may have gained no piece from shortly before
// the probe (a piece in flight at PlausibleMinPieceRate) to shortly after
// it; the blocks it took from k would have completed one.
func (e *Estimator) plausibleCompetitors(k int, p probe) int {
	s := int64(e.cfg.ClockSlack)
	w := window{uf: bytesize.Add(p.at, -s), ut: bytesize.Add(max(p.end, p.at), s)}
	n := 0
	for q := range e.peers {
		pd := &e.peers[q]
		if q == k || !within(pd.pown, p.at) {
			continue
		}
		if pd.info && e.gains(pd, w) == 0 {
			continue // it was watched, and completed nothing it could have been sent
		}
		n++
	}
	for _, u := range e.unobs {
		switch {
		case u.rep != nil:
			if within(u.rep.demand, p.at) {
				n++
			}
		case !u.seeding:
			for _, iv := range u.present { // as given: not merged
				if iv[0] <= p.at && p.at < iv[1] {
					n++
					break
				}
			}
		}
	}
	return n
}

// plausibleOwn is observed peer k's demand under AssumeIdleNoCompetitors:
// the spans in which it reported downloading, or its span of possible
// gains when it has no usable reports.
func (e *Estimator) plausibleOwn(k int) [][2]int64 {
	pd := &e.peers[k]
	if pd.rep != nil && !pd.info {
		return pd.rep.demand
	}
	// The wire bounds when it can have been downloading: from its first
	// plausible gain to its last (completion, or its tail).
	a, b := pd.spanA, pd.spanB
	if len(pd.sa) > 0 {
		a = max(a, pd.sa[0]) // its first plausible start; no event sorts last
	}
	if pd.rep == nil {
		if pd.demands() && a < b {
			return [][2]int64{{a, b}}
		}
		return nil
	}
	var out [][2]int64
	for _, s := range pd.rep.demand {
		if x, y := max(s[0], a), min(s[1], b); x < y {
			out = append(out, [2]int64{x, y})
		}
	}
	return out
}

// gains is what observed peer pd may have gained in the window (every
// piece counted at the full piece length).
func (e *Estimator) gains(pd *peerData, w window) int64 {
	if !pd.info || w.ut <= w.uf {
		return 0
	}
	n := countGreater(pd.sb, w.uf-1) - countGreaterEq(pd.sa, w.ut)
	return int64(max(n, 0)) * e.tor.PieceLength
}

// plausibleObserved caps the worst-case observed availability worst by
// what the observed peers other than skip reported downloading in the
// window (each at most what it may have gained there); reported is Σ of
// those reports.
func (e *Estimator) plausibleObserved(skip int, w window, worst int64) (capped, reported int64) {
	if !e.anyRep {
		return worst, 0
	}
	var total int64
	for k := range e.peers {
		pd := &e.peers[k]
		if k == skip || !pd.info {
			continue
		}
		g := e.gains(pd, w)
		if pd.rep != nil {
			d := pd.rep.downloads(w.uf, w.ut)
			reported = bytesize.Add(reported, d)
			g = min(g, d)
		}
		total = bytesize.Add(total, g)
	}
	return min(worst, total), reported
}

// plausibleAllowance is what the unobserved identities other than skip
// could have gained in the window under AssumeOwnDownloads: what they
// reported downloading, each capped at perPeer; without usable reports,
// the worst-case allowance while present.
func (e *Estimator) plausibleAllowance(skip int, w window, perPeer int64) (bytes, reported int64) {
	if w.ut <= w.uf {
		return 0, 0
	}
	for j, u := range e.unobs {
		if j == skip {
			continue
		}
		if u.rep != nil {
			d := u.rep.downloads(w.uf, w.ut)
			reported = bytesize.Add(reported, d)
			bytes = bytesize.Add(bytes, min(d, u.maxGain, perPeer))
			continue
		}
		bytes = bytesize.Add(bytes, e.unobsAllowance(u, w, perPeer))
	}
	return bytes, reported
}

// plausible fills the plausible tier of observed peer i's bounds.
func (e *Estimator) plausible(i int, w window, x *Explanation) Plausible {
	p := &e.peers[i]
	var pl Plausible
	var repObs, repUnobs int64
	pl.Observed, repObs = e.plausibleObserved(i, w, x.AvailabilityObserved)
	pl.Unobserved, repUnobs = e.plausibleAllowance(-1, w, x.PossiblyHeldBytes)
	pl.ReportedDownloads = bytesize.Add(repObs, repUnobs)
	pl.AvailabilityBound = bytesize.Add(bytesize.Add(pl.Observed, pl.Unobserved), x.ProbeBytes)
	pl.UploadUpper, pl.Limit = pl.AvailabilityBound, LimitAvailability
	pl.DemandTime = time.Duration(e.pdemand.busy(w.uf, w.ut, p.pown))
	pl.Capacity = p.pcap
	pl.CapacityBound = -1
	if p.pcap.Known {
		present := time.Duration(w.ut-w.uf) - x.KnownAbsent
		excess, _ := probeExcess(p, w.uf, w.ut, p.pcap.Upper, &e.pdemand, p.pown)
		pl.CapacityBound = bytesize.Add(bytesize.FromFloat(p.pcap.Upper*min(present, pl.DemandTime).Seconds()), excess)
		if pl.CapacityBound < pl.UploadUpper {
			pl.UploadUpper, pl.Limit = pl.CapacityBound, LimitCapacity
		}
		pl.SlicedBound, pl.SlicedThreshold, pl.Slices = e.sliced(i, w, x.PossiblyHeldBytes)
		if pl.SlicedBound < pl.UploadUpper {
			pl.UploadUpper, pl.Limit = pl.SlicedBound, LimitSliced
		}
	} else {
		pl.SlicedBound, pl.SlicedThreshold = -1, -1
	}
	return pl
}

// sliced is Plausible.SlicedBound for observed peer i (with a capacity).
//
// In each slice, i uploaded at most its capacity over the time others
// were downloading there, and at most what the others absorbed there. What
// another identity absorbed is not fixed per slice: a piece it gained may
// fall in any slice its possible-gain interval meets, and a reported span
// of its downloads may fall in any slice the span meets. So the bound is a
// maximum flow: each other identity's bytes (at most what it may have
// gained in the window, at most each reported span's bytes) flow into the
// slices they may fall in (at most what it may have gained in each), and
// each slice passes at most i's capacity bound there. Counting an
// identity's bytes in full in every slice they may fall in (slicedSum)
// counts a span of reports met by three slices three times; the flow
// counts it once. Swarms too large for the flow get that per-slice sum,
// which is never smaller.
func (e *Estimator) sliced(i int, w window, held int64) (bound, threshold int64, slices int) {
	sw := e.slices(w)
	cf, af := factorOr1(e.cfg.SlicedCapacityFactor), factorOr1(e.cfg.SlicedAvailabilityFactor)
	size := e.slicedFlowSize(i, len(sw))
	if size > MaxSlicedFlowEdges {
		return e.slicedSum(i, sw, held, 1, 1), e.slicedSum(i, sw, held, cf, af), len(sw)
	}
	bound = e.slicedFlow(i, w, sw, held, 1, 1, size)
	if cf == 1 && af == 1 {
		return bound, bound, len(sw)
	}
	return bound, e.slicedFlow(i, w, sw, held, cf, af, size), len(sw)
}

func factorOr1(f float64) float64 {
	if f == 0 {
		return 1
	}
	return f
}

// scale is n×f in bytes, saturating.
func scale(n int64, f float64) int64 {
	if f == 1 {
		return n
	}
	return bytesize.FromFloat(float64(n) * f)
}

// MaxSlicedFlowEdges caps the flow network of the sliced bound; larger
// swarms get the per-slice sum.
const MaxSlicedFlowEdges = 1 << 16

// MaxHeldFilterPeers caps the swarms (observed peers with piece
// information) in which the sliced bound counts, of what another peer
// gained, only the pieces the uploader may have held before it (a pass
// over the pieces per pair); larger swarms count every piece gained.
const MaxHeldFilterPeers = 64

// heldFilterPeers is MaxHeldFilterPeers; tests lower it to exercise the
// path of large swarms.
var heldFilterPeers = MaxHeldFilterPeers

// heldGains is what observed peer q may have gained in window w from
// observed peer k: the pieces whose plausible possible-gain interval meets
// w and which k may have held before q had them (after k's last snapshot
// lacking them), each counted at its size. perSlice (len(sw)) receives the
// same for each slice.
func (e *Estimator) heldGains(k, q int, w window, sw []window, perSlice []int64) int64 {
	pk, pq := &e.peers[k], &e.peers[q]
	clear(perSlice)
	var total int64
	for i := range e.pieces {
		b := pq.b[i]
		if pq.a[i] == posInf || b <= pk.plk[i] {
			continue // q never gained it, or k could not have sent it in time
		}
		a := e.pstart(pq, i)
		if b < w.uf || a >= w.ut {
			continue
		}
		n := e.tor.PieceSize(i)
		total += n
		// the slices (a, b] meets: sw is sorted and contiguous
		lo := sort.Search(len(sw), func(s int) bool { return sw[s].ut > a })
		for s := lo; s < len(sw) && sw[s].uf <= b; s++ {
			perSlice[s] += n
		}
	}
	return total
}

// slicedFlowSize bounds the edges of peer i's flow network over m slices.
func (e *Estimator) slicedFlowSize(i, m int) int {
	n := 3 * m
	for q := range e.peers {
		if pd := &e.peers[q]; q != i && pd.info {
			n += 1 + 2*m
			if pd.rep != nil {
				n += len(pd.rep.spans) * (1 + m)
			}
		}
	}
	for _, u := range e.unobs {
		n += 1 + m
		if u.rep != nil {
			n += len(u.rep.spans) * (1 + m)
		}
	}
	return n
}

// sliceCapacity is peer i's capacity bound in slice sw (its probe bytes
// there included) and those probe bytes.
func (e *Estimator) sliceCapacity(i int, sw window) (capB, probes int64) {
	p := &e.peers[i]
	excess, probes := probeExcess(p, sw.uf, sw.ut, p.pcap.Upper, &e.pdemand, p.pown)
	present := time.Duration(sw.ut-sw.uf) - time.Duration(overlap(p.absence, sw.uf, sw.ut))
	busy := time.Duration(e.pdemand.busy(sw.uf, sw.ut, p.pown))
	return bytesize.Add(bytesize.FromFloat(p.pcap.Upper*min(present, busy).Seconds()), excess), probes
}

// slicedSum is the sliced bound with every identity's bytes counted in
// full in each slice they may fall in; cf and af scale the capacity and
// the availability sides.
func (e *Estimator) slicedSum(i int, sw []window, held int64, cf, af float64) int64 {
	var total int64
	for _, s := range sw {
		capB, probes := e.sliceCapacity(i, s)
		obs, _ := e.plausibleObserved(i, s, math.MaxInt64)
		unobs, _ := e.plausibleAllowance(-1, s, held)
		avail := bytesize.Add(bytesize.Add(obs, unobs), probes)
		total = bytesize.Add(total, min(scale(avail, af), scale(capB, cf)))
	}
	return total
}

// slicedFlow is the sliced bound as a maximum flow: source → identity (what
// it may have absorbed in the window) → its reported spans (their bytes) →
// the slices they meet (what it may have gained in each) → sink (i's
// capacity bound in each); i's own probe bytes go straight to their slice.
// cf scales the capacity side, af every byte the others absorbed; size
// bounds the edges (slicedFlowSize).
func (e *Estimator) slicedFlow(i int, w window, sw []window, held int64, cf, af float64, size int) int64 {
	m := len(sw)
	f := newFlowNet(2+m, size)
	defer f.release()
	slice := func(s int) int { return 2 + s }
	meets := func(span [2]int64, s window) bool { return span[0] < s.ut && span[1] >= s.uf }
	for s := range sw {
		capB, probes := e.sliceCapacity(i, sw[s])
		f.edge(slice(s), flowSink, scale(capB, cf))
		f.edge(flowSource, slice(s), scale(probes, af))
	}
	// spansTo connects an identity's node to its reported spans in the
	// window, each to the nodes of the slices it meets.
	spansTo := func(from int, rep *repData, into []int) {
		for r, span := range rep.spans {
			if rep.bytes[r] <= 0 || !meets(span, w) {
				continue
			}
			rn := f.node()
			f.edge(from, rn, scale(rep.bytes[r], af))
			for s := range sw {
				if into[s] >= 0 && meets(span, sw[s]) {
					f.edge(rn, into[s], flowInf)
				}
			}
		}
	}
	atoms := make([]int, m)
	pairwise := e.nInfo <= heldFilterPeers && e.peers[i].info
	perSlice := make([]int64, m)
	for q := range e.peers {
		pd := &e.peers[q]
		if q == i || !pd.info {
			continue
		}
		var total int64
		if pairwise {
			total = e.heldGains(i, q, w, sw, perSlice)
		} else {
			total = e.gains(pd, w)
			if len(sw) == 1 {
				perSlice[0] = total // the one slice is the window
			} else {
				for s := range sw {
					perSlice[s] = e.gains(pd, sw[s])
				}
			}
		}
		if total <= 0 {
			continue
		}
		qn := f.node()
		f.edge(flowSource, qn, scale(total, af))
		for s := range sw {
			atoms[s] = -1
			if g := scale(perSlice[s], af); g > 0 {
				if pd.rep == nil {
					f.edge(qn, slice(s), g)
					continue
				}
				atoms[s] = f.node()
				f.edge(atoms[s], slice(s), g)
			}
		}
		if pd.rep != nil {
			spansTo(qn, pd.rep, atoms)
		}
	}
	direct := make([]int, m)
	for s := range direct {
		direct[s] = slice(s)
	}
	for _, u := range e.unobs {
		un := f.node()
		f.edge(flowSource, un, scale(min(u.maxGain, held), af))
		if u.rep != nil {
			spansTo(un, u.rep, direct)
			continue
		}
		for s := range sw {
			f.edge(un, slice(s), scale(e.unobsAllowance(u, sw[s], held), af))
		}
	}
	return f.max()
}

// plausibleUnobserved fills the plausible tier of unobserved identity j's
// bounds: what the rest of the swarm plausibly absorbed.
func (e *Estimator) plausibleUnobserved(j int, w window, x *Explanation) Plausible {
	var pl Plausible
	var repObs, repUnobs int64
	pl.Observed, repObs = e.plausibleObserved(-1, w, x.AvailabilityObserved)
	pl.Unobserved, repUnobs = e.plausibleAllowance(j, w, e.tor.TotalLength)
	pl.ReportedDownloads = bytesize.Add(repObs, repUnobs)
	pl.AvailabilityBound = bytesize.Add(pl.Observed, pl.Unobserved)
	pl.UploadUpper, pl.Limit = pl.AvailabilityBound, LimitAvailability
	pl.CapacityBound = -1
	return pl
}

// PlausibleOver bounds, under the plausible tier, what one identity could
// have uploaded over the union of windows (its sessions, say): observed
// peer i when i >= 0, else unobserved identity j. Each reported span of
// another identity counts once however many windows it meets, so claims
// spread over many short sessions meet the downloads of the whole union.
// Only the availability bound is computed.
func (e *Estimator) PlausibleOver(i, j int, windows []timeline.Interval) (Plausible, error) {
	if i >= len(e.peers) || j >= len(e.unobs) || (i < 0 && j < 0) {
		return Plausible{}, fmt.Errorf("%w: peer %d, unobserved %d", ErrNoPeer, i, j)
	}
	var ws []window
	for _, iv := range windows {
		w, _, err := e.window(iv.From, iv.To)
		if err != nil {
			return Plausible{}, err
		}
		ws = append(ws, w)
	}
	var pl Plausible
	var worst, probes, held int64
	for _, w := range ws {
		if i >= 0 {
			obs, _, h := e.availability(&e.peers[i], w)
			worst = bytesize.Add(worst, obs)
			held = max(held, h)
			for _, pr := range e.peers[i].probes {
				if pr.at >= w.uf && pr.at < w.ut {
					probes += pr.bytes
				}
			}
		} else {
			worst = bytesize.Add(worst, e.gainObserved(w))
			held = e.tor.TotalLength
		}
	}
	total := worst // without reports, no cap
	if e.anyRep {
		total = 0
		for k := range e.peers {
			pd := &e.peers[k]
			if k == i || !pd.info {
				continue
			}
			var g int64
			for _, w := range ws {
				g = bytesize.Add(g, e.gains(pd, w))
			}
			if pd.rep != nil {
				d := pd.rep.downloadsOver(ws)
				pl.ReportedDownloads = bytesize.Add(pl.ReportedDownloads, d)
				g = min(g, d)
			}
			total = bytesize.Add(total, g)
		}
	}
	pl.Observed = min(worst, total)
	for k, u := range e.unobs {
		if k == j {
			continue
		}
		if u.rep != nil {
			d := u.rep.downloadsOver(ws)
			pl.ReportedDownloads = bytesize.Add(pl.ReportedDownloads, d)
			pl.Unobserved = bytesize.Add(pl.Unobserved, min(d, u.maxGain, held))
			continue
		}
		var g int64
		for _, w := range ws {
			g = bytesize.Add(g, e.unobsAllowance(u, w, held))
		}
		pl.Unobserved = bytesize.Add(pl.Unobserved, min(g, u.maxGain))
	}
	pl.AvailabilityBound = bytesize.Add(bytesize.Add(pl.Observed, pl.Unobserved), probes)
	pl.UploadUpper, pl.Limit, pl.CapacityBound = pl.AvailabilityBound, LimitAvailability, -1
	return pl, nil
}

// downloadsOver is what the spans meeting any of the windows reported, each
// span once.
func (d *repData) downloadsOver(ws []window) int64 {
	var n int64
	for i, s := range d.spans {
		for _, w := range ws {
			if s[0] < w.ut && s[1] >= w.uf {
				n = bytesize.Add(n, d.bytes[i])
				break
			}
		}
	}
	return n
}

// Transfer bounds what observed peer From could have sent observed peer To
// (indices into Input.Peers) over a window: Upper counts the pieces To may
// have gained in the window that From may have held before To had them,
// capped by From's own upload bound; Lower the pieces To gained in the
// window of which From was the only observed possible source (assuming
// every holder is observed, as UploadLower does). PlausibleUpper is Upper
// under the plausible tier: To's possible gains with the plausible
// transfer lead, capped by From's plausible upload bound and by what To
// reported downloading in the window (when its reports are usable).
type Transfer struct {
	From, To     int
	Lower, Upper int64
	// PlausibleUpper ≤ Upper.
	PlausibleUpper int64
}

// MaxTransferPeers caps the observed peers Transfers pairs up (the cost is
// peers² × pieces).
const MaxTransferPeers = 256

// ErrTooMany is returned by Transfers for swarms above MaxTransferPeers.
var ErrTooMany = fmt.Errorf("more than %d observed peers: no transfer matrix", MaxTransferPeers)

// Transfers is the swarm's transfer matrix over [from, to): every ordered
// pair of observed peers with a non-zero upper bound.
func (e *Estimator) Transfers(from, to time.Time) ([]Transfer, error) {
	if e.nInfo > MaxTransferPeers {
		return nil, ErrTooMany
	}
	w, _, err := e.window(from, to)
	if err != nil {
		return nil, err
	}
	var out []Transfer
	for pi := range e.peers {
		p := &e.peers[pi]
		if !p.info {
			continue
		}
		b, err := e.Peer(pi, from, to)
		if err != nil {
			return nil, err
		}
		for qi := range e.peers {
			q := &e.peers[qi]
			if qi == pi || !q.info {
				continue
			}
			t := Transfer{From: pi, To: qi}
			for i := range e.pieces {
				// q's possible gain (a, b] meets the window and the time
				// p may have held i: after lacked_p(i).
				m := max(p.lacked[i], w.uf-1)
				if q.a[i] == posInf || q.b[i] <= m || q.a[i] >= w.ut {
					continue
				}
				n := e.tor.PieceSize(i)
				t.Upper += n
				if q.b[i] <= max(p.plk[i], w.uf-1) {
					continue // p plausibly did not hold it in time
				}
				if e.pstart(q, i) < w.ut {
					t.PlausibleUpper += n
				}
			}
			t.Upper = min(t.Upper, b.UploadUpper)
			t.PlausibleUpper = min(t.PlausibleUpper, t.Upper, max(b.Plausible.UploadUpper, 0))
			if q.rep != nil {
				t.PlausibleUpper = min(t.PlausibleUpper, q.rep.downloads(w.uf, w.ut))
			}
			for _, s := range p.sole {
				if s.to == qi && s.start >= w.lf && s.end < w.lt {
					t.Lower += s.bytes
				}
			}
			if t.Upper > 0 || t.Lower > 0 {
				out = append(out, t)
			}
		}
	}
	return out, nil
}
