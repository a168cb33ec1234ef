package reports

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/bytesize"
	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
)

// Bucket counts of the timeline.
const (
	DefaultBuckets = 60
	MaxBuckets     = 1000
)

// Options configure Build.
type Options struct {
	// Generator names the program (default "swarmaudit").
	Generator string
	// GeneratedAt defaults to now.
	GeneratedAt time.Time
	// Buckets is the number of timeline buckets (default DefaultBuckets,
	// at most MaxBuckets; buckets are at least a second long).
	Buckets int
	// Verdict holds the tolerances the audit was judged with; its timeline
	// and estimate settings are used for the per-peer numbers. The zero
	// value means verdict.DefaultConfig().
	Verdict verdict.Config
	// Truth, when set, adds the comparison with the known cheaters.
	Truth *Truth
	// HidePasskeys replaces passkeys in identity keys with a short keyed
	// hash (HidePasskey), so that a report can be shared without the
	// users' credentials. The key is PasskeyKey, or else the evidence's.
	HidePasskeys bool
	PasskeyKey   []byte
}

// Truth lists the peers known to cheat: wire addresses ("ip:port"), hex
// peer ids or identity keys.
type Truth struct {
	Cheaters []string
}

// row is a Peer under construction.
type row struct {
	p      Peer
	addr   netip.AddrPort
	wire   *verdict.WirePeer
	tl     *timeline.Timeline
	est    int // estimator peer index, or -1
	ids    []*verdict.Verdict
	sp     *store.Peer
	probed bool
}

// Build turns an audit result into a report.
func Build(res *audit.Result, opts Options) (*Report, error) {
	if res == nil || res.Evidence == nil || res.Evidence.Torrent == nil || res.Report == nil {
		return nil, fmt.Errorf("build report: %w: needs evidence, its torrent and verdicts", ErrInput)
	}
	ev := res.Evidence
	t := ev.Torrent
	tor := ev.Geometry()
	if err := tor.Validate(); err != nil {
		return nil, fmt.Errorf("build report: %w: %w", ErrInput, err)
	}
	cfg := opts.Verdict
	if cfg == (verdict.Config{}) {
		cfg = verdict.DefaultConfig()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("build report: %w", err)
	}
	buckets := opts.Buckets
	if buckets <= 0 {
		buckets = DefaultBuckets
	}
	buckets = min(buckets, MaxBuckets)
	rep := &Report{
		SchemaVersion: SchemaVersion,
		Generator:     opts.Generator,
		GeneratedAt:   opts.GeneratedAt,
		Swarm: Swarm{InfoHash: t.InfoHash.HexString(), Name: t.Name, Size: t.TotalLength, Pieces: t.NumPieces,
			PieceLength: t.PieceLength},
		Scrape: res.Scrapes,
	}
	if rep.Generator == "" {
		rep.Generator = "swarmaudit"
	}
	if rep.GeneratedAt.IsZero() {
		rep.GeneratedAt = time.Now()
	}
	rep.GeneratedAt = rep.GeneratedAt.UTC()

	b := &builder{res: res, ev: ev, cfg: cfg, tor: tor, opts: opts, rep: rep, byAddr: map[netip.AddrPort]*row{}}
	b.announcesByKey()
	b.rows()
	b.span(buckets)
	if err := b.estimate(); err != nil {
		return nil, fmt.Errorf("build report: %w", err)
	}
	b.timeline()
	b.finishRows()
	b.summary()
	b.truth()
	if opts.HidePasskeys {
		if err := b.hidePasskeys(); err != nil {
			return nil, fmt.Errorf("build report: %w", err)
		}
	}
	return rep, nil
}

type builder struct {
	res    *audit.Result
	ev     *audit.Evidence
	cfg    verdict.Config
	tor    estimate.Torrent
	opts   Options
	rep    *Report
	all    []*row
	byAddr map[netip.AddrPort]*row
	anns   map[string][]reported.Announce
	from   time.Time
	to     time.Time
	times  []time.Time
	bucket time.Duration
}

var (
	minTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// announcesByKey groups the announces by identity, keeping those the
// verdicts kept (see verdict.Judge), sorted by time.
func (b *builder) announcesByKey() {
	b.anns = map[string][]reported.Announce{}
	ih := b.ev.Torrent.InfoHash
	for _, a := range b.ev.Announces {
		if a.InfoHash != ih || a.At.Before(minTime) || !a.At.Before(maxTime) || a.Uploaded < 0 || a.Downloaded < 0 {
			continue
		}
		k := verdict.KeyOf(a)
		b.anns[k] = append(b.anns[k], a)
	}
	for _, list := range b.anns {
		sort.SliceStable(list, func(i, j int) bool { return list[i].At.Before(list[j].At) })
	}
}

func (b *builder) rowAt(a netip.AddrPort) *row {
	if r := b.byAddr[a]; r != nil {
		return r
	}
	r := &row{addr: a, est: -1, p: Peer{Address: a.String()}}
	b.byAddr[a] = r
	b.all = append(b.all, r)
	return r
}

// rows makes one row per wire or stored address and attaches every
// identity to one row: the wire address it announced from, else its first
// wire peer, else the stored address it announced from, else a row of its
// own.
func (b *builder) rows() {
	tls := map[netip.AddrPort]*timeline.Timeline{}
	for _, a := range b.res.Report.Addresses {
		tls[a.Addr] = a.Timeline // the verdict's own, never rebuilt here
	}
	for i := range b.ev.Wire {
		w := &b.ev.Wire[i]
		r := b.rowAt(w.Addr)
		r.wire = w
		r.tl = tls[w.Addr]
	}
	for i := range b.ev.Peers {
		sp := &b.ev.Peers[i]
		if !sp.Addr.IsValid() {
			continue
		}
		b.rowAt(sp.Addr).sp = sp
	}
	for _, p := range b.ev.Probes {
		if r := b.byAddr[p.Addr]; r != nil {
			r.probed = true
		}
	}
	for i := range b.res.Report.Verdicts {
		v := &b.res.Report.Verdicts[i]
		var target *row
		for _, a := range v.Identity.Addrs {
			if r := b.byAddr[a]; r != nil && r.wire != nil && slices.Contains(v.WirePeers, a) {
				target = r
				break
			}
		}
		if target == nil {
			for _, a := range v.WirePeers {
				if r := b.byAddr[a]; r != nil {
					target = r
					break
				}
			}
		}
		if target == nil {
			for _, a := range v.Identity.Addrs {
				if r := b.byAddr[a]; r != nil {
					target = r
					break
				}
			}
		}
		if target == nil {
			target = &row{est: -1}
			if len(v.Identity.Addrs) > 0 {
				target.p.Address = v.Identity.Addrs[0].String()
			}
			b.all = append(b.all, target)
		}
		target.ids = append(target.ids, v)
	}
}

// span sets the report's time span and the bucket times: the run, widened
// to every wire observation (earlier runs on the same database count).
func (b *builder) span(buckets int) {
	from, to := b.res.Started, b.res.Ended
	widen := func(at time.Time) {
		if at.Before(minTime) || !at.Before(maxTime) {
			return
		}
		if from.IsZero() || at.Before(from) {
			from = at
		}
		if to.IsZero() || at.After(to) {
			to = at
		}
	}
	for _, w := range b.ev.Wire {
		for _, o := range w.Observations {
			widen(o.At)
		}
	}
	if from.IsZero() {
		for _, list := range b.anns {
			for _, a := range list {
				widen(a.At)
			}
		}
	}
	if from.IsZero() {
		from = b.rep.GeneratedAt
	}
	if !to.After(from) {
		to = from.Add(time.Second)
	}
	b.from, b.to = from.UTC(), to.UTC()
	span := to.Sub(from)
	buckets = max(1, min(buckets, int(math.Ceil(span.Seconds()))))
	b.bucket = (span + time.Duration(buckets) - 1) / time.Duration(buckets)
	for k := 1; k <= buckets; k++ {
		b.times = append(b.times, from.Add(time.Duration(k)*b.bucket).UTC())
	}
	b.rep.Swarm.Started, b.rep.Swarm.Ended = b.from, b.to
	b.rep.Swarm.Duration = secs(span)
	b.rep.Timeline.Bucket = secs(b.bucket)
	b.rep.Timeline.Times = b.times
}

// estimate takes every wire row's capacity and bounds from the verdicts'
// own analysis (verdict.Report.Addresses): the report shows exactly what
// was judged, with the peers grouped as the verdicts grouped them.
func (b *builder) estimate() error {
	byAddr := map[netip.AddrPort]*verdict.AddrBounds{}
	for i := range b.res.Report.Addresses {
		a := &b.res.Report.Addresses[i]
		byAddr[a.Addr] = a
	}
	for _, r := range b.all {
		if r.wire == nil {
			continue
		}
		ab := byAddr[r.wire.Addr]
		if ab == nil || !ab.PieceInfo {
			continue
		}
		ce := ab.Capacity
		var spreads []float64
		for _, s := range r.wire.Probes {
			if s.BytesPerSec > 0 && finite(s.Spread) {
				spreads = append(spreads, s.Spread)
			}
		}
		r.p.Capacity = Capacity{Known: ce.Known, Samples: ce.Samples, Central: fin(ce.Central), Spread: fin(median(spreads)),
			MeasuredUpper: fin(ce.MeasuredUpper), Share: fin(ce.Share), Upper: fin(ce.Upper), Quiet: ce.Quiet}
		bd := ab.Bounds
		if pc := bd.Plausible.Capacity; pc.Known {
			r.p.Capacity.PlausibleUpper, r.p.Capacity.PlausibleShare, r.p.Capacity.PlausibleQuiet = fin(pc.Upper), fin(pc.Share), pc.Quiet
		}
		r.p.ObservedDownloaded = bd.DownloadedLower
		r.p.UploadBounds = &UploadBounds{Lower: bd.UploadLower, Upper: bd.UploadUpper, Limit: string(bd.Explain.Limit),
			PlausibleUpper: bd.Plausible.UploadUpper, PlausibleLimit: string(bd.Plausible.Limit)}
	}
	return nil
}

// held is a piece and when it was seen held.
type held struct {
	at    time.Time
	piece int
}

// announceBurst groups the pieces a peer announced together: HAVEs read
// within this long of the first one of a group, or one later bitfield.
const announceBurst = 100 * time.Millisecond

// completionTimes estimates when the peer completed each gained piece
// (gains sorted by Had), in increasing order, for its series. Clients announce in bursts:
// Transmission sends its HAVEs every 10 s, aria2 a whole bitfield for 20
// or more new pieces, and a snapshot after a gap shows everything gained
// in it. Every piece of a burst was completed after the previous burst
// (or else it would have been in it) and after the last snapshot that
// lacked it, so the burst's pieces are spread evenly over that span, the
// last at the burst. A burst of one piece stays where it was seen, as do
// pieces held at first sight. Only the series uses this central estimate:
// availability and the estimates use the times pieces were seen held.
func completionTimes(gs []timeline.Gain) []time.Time {
	out := make([]time.Time, 0, len(gs))
	var prev time.Time
	for i := 0; i < len(gs); {
		j := i + 1
		for j < len(gs) && gs[j].Had.Sub(gs[i].Had) <= announceBurst {
			j++
		}
		burst, end := gs[i:j], gs[j-1].Had
		from := prev
		for _, g := range burst {
			if g.Lacked.After(from) {
				from = g.Lacked
			}
		}
		for k, g := range burst {
			at := g.Had
			if !g.AtFirstSight() && !from.IsZero() && from.Before(end) {
				at = from.Add(time.Duration(float64(end.Sub(from)) * float64(k+1) / float64(len(burst))))
			}
			out = append(out, at)
		}
		prev, i = end, j
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// timeline fills the swarm series and each row's pieces series.
func (b *builder) timeline() {
	n := b.tor.NumPieces
	nb := len(b.times)
	tl := &b.rep.Timeline
	tl.Peers, tl.Seeders, tl.Announcing = make([]int, nb), make([]int, nb), make([]int, nb)
	tl.PiecesAvailable, tl.Copies = make([]int, nb), make([]float64, nb)
	avail := make([]bitfield.Bitfield, nb)
	for k := range avail {
		avail[k] = bitfield.New(n)
	}
	copies := make([]int64, nb)
	for _, r := range b.all {
		if r.tl == nil {
			continue
		}
		// Present in bucket k when a presence span overlaps it.
		present := make([]bool, nb)
		for _, iv := range r.tl.Presence(b.cfg.Estimate.PresenceGap) {
			lo, hi := b.bucketOf(iv.From), b.bucketOf(iv.To)
			for k := max(lo, 0); k <= min(hi, nb-1); k++ {
				present[k] = true
			}
		}
		for k := range present {
			if present[k] {
				tl.Peers[k]++
			}
		}
		if !r.tl.HasPieceInfo() {
			r.p.Pieces.Series = make([]*int, nb)
			continue
		}
		// Pieces by the time they were first seen held (availability is
		// evidence), and by when they were most likely completed (the
		// peer's own series).
		gains := r.tl.Gains()
		sort.Slice(gains, func(i, j int) bool { return gains[i].Had.Before(gains[j].Had) })
		hs := make([]held, 0, len(gains))
		for _, g := range gains {
			hs = append(hs, held{g.Had, g.Piece})
		}
		done := completionTimes(gains)
		// The state is unknown before the first piece information: find
		// the first bucket where it is known (HaveAt costs O(pieces)).
		known := sort.Search(nb, func(k int) bool {
			_, ok := r.tl.HaveAt(b.times[k])
			return ok
		})
		bf := bitfield.New(n)
		cnt, next, completed, nextDone := 0, 0, 0, 0
		series := make([]*int, nb)
		for k, at := range b.times {
			for next < len(hs) && !hs[next].at.After(at) {
				bf.Set(hs[next].piece)
				cnt++
				next++
			}
			for nextDone < len(done) && !done[nextDone].After(at) {
				completed++
				nextDone++
			}
			if k >= known {
				c := completed
				series[k] = &c
			}
			if present[k] && series[k] != nil {
				avail[k].Union(bf)
				copies[k] += int64(cnt)
				if cnt == n {
					tl.Seeders[k]++
				}
			}
		}
		r.p.Pieces.Series = series
	}
	for k := range b.times {
		tl.PiecesAvailable[k] = avail[k].Count()
		tl.Copies[k] = fin(float64(copies[k]) / float64(n))
	}
	// Identities announcing: a bucket holds an announce, or lies between
	// two announces of one session.
	for _, list := range b.anns {
		on := make([]bool, nb)
		for i, a := range list {
			if k := b.bucketOf(a.At); k >= 0 && k < nb {
				on[k] = true
			}
			if i == 0 {
				continue
			}
			p := list[i-1]
			if p.Event == reported.EventStopped || a.Event == reported.EventStarted || a.At.Sub(p.At) > b.cfg.MaxAnnounceGap {
				continue
			}
			for k := max(b.bucketOf(p.At), 0); k <= min(b.bucketOf(a.At), nb-1); k++ {
				on[k] = true
			}
		}
		for k := range on {
			if on[k] {
				tl.Announcing[k]++
			}
		}
	}
}

// bucketOf is the index of the bucket holding at; -1 before the span,
// len(times) after it.
func (b *builder) bucketOf(at time.Time) int {
	if at.Before(b.from) {
		return -1
	}
	k := int(at.Sub(b.from) / b.bucket)
	if at.Sub(b.from)%b.bucket == 0 && k > 0 {
		k-- // bucket ends are inclusive
	}
	return min(k, len(b.times))
}

// finishRows fills the rest of each row and sorts them, worst first.
func (b *builder) finishRows() {
	n := b.tor.NumPieces
	for _, r := range b.all {
		p := &r.p
		p.Sources = []string{}
		p.Reach = []string{}
		p.Reasons = []Reason{}
		p.Verdict = VerdictUnreported
		if sp := r.sp; sp != nil {
			p.Client, p.Encryption = sp.Client, sp.Encryption
			p.Sources = append(p.Sources, sp.Sources...)
			if len(sp.PeerID) == 20 {
				p.PeerID = hex.EncodeToString(sp.PeerID)
				p.PeerIDText = printable(sp.PeerID)
			}
			if !sp.FirstSeen.IsZero() {
				p.DiscoveredAt = timePtr(sp.FirstSeen)
			}
		}
		if w := r.wire; w != nil {
			p.OnWire = len(w.Observations) > 0
			p.Reach, p.Transport = w.Reach.Ways(), w.Reach.Transport()
			if p.PeerID == "" && len(w.PeerIDs) > 0 {
				p.PeerID = hex.EncodeToString(w.PeerIDs[0][:])
				p.PeerIDText = printable(w.PeerIDs[0][:])
			}
			set := map[int]bool{}
			for _, bp := range w.BadPieces {
				if bp.Piece >= 0 && bp.Piece < n {
					set[bp.Piece] = true
				}
			}
			p.BadPieces = len(set)
		}
		if tl := r.tl; tl != nil {
			c := tl.Counts()
			p.Connections = Connections{Attempts: c.Attempts(), Connected: c.Connected, Refused: c.Refused,
				Unreachable: c.Unreachable, HandshakeFailed: c.HandshakeFailed, NoBitfield: c.NoBitfield}
			if at, ok := tl.FirstSeen(); ok {
				p.FirstSeen = timePtr(at)
			}
			if at, ok := tl.LastSeen(); ok {
				p.LastSeen = timePtr(at)
			}
			if tl.HasPieceInfo() {
				p.Pieces.Known = true
				p.Pieces.Held = tl.Final().Count()
				for _, g := range tl.Gains() {
					if !g.AtFirstSight() {
						p.Pieces.Gained++
					}
				}
			}
		}
		if p.Pieces.Series == nil {
			p.Pieces.Series = make([]*int, len(b.times))
		}
		if len(r.ids) > 0 {
			b.reported(r)
		}
		if p.PeerID == "" && len(r.ids) > 0 {
			if list := b.anns[r.ids[0].Identity.Key]; len(list) > 0 && list[0].PeerID != ([20]byte{}) {
				p.PeerID = hex.EncodeToString(list[0].PeerID[:])
				p.PeerIDText = printable(list[0].PeerID[:])
			}
		}
		if p.Client == "" && len(p.PeerID) == 40 {
			var id [20]byte
			if _, err := hex.Decode(id[:], []byte(p.PeerID)); err == nil {
				p.Client = peerid.ClientName(id)
			}
		}
	}
	slices.SortStableFunc(b.all, func(x, y *row) int {
		if d := rank(x.p.Verdict) - rank(y.p.Verdict); d != 0 {
			return d
		}
		if x.p.Confidence != y.p.Confidence {
			if x.p.Confidence > y.p.Confidence {
				return -1
			}
			return 1
		}
		if c := x.addr.Compare(y.addr); c != 0 {
			return c
		}
		return strings.Compare(x.p.Address, y.p.Address)
	})
	b.rep.Peers = make([]Peer, 0, len(b.all))
	for _, r := range b.all {
		b.rep.Peers = append(b.rep.Peers, r.p)
	}
}

// reported joins a row's identities: sums, worst verdict, strongest reason
// of each code.
func (b *builder) reported(r *row) {
	p := &r.p
	slices.SortFunc(r.ids, func(x, y *verdict.Verdict) int { return strings.Compare(x.Identity.Key, y.Identity.Key) })
	rp := &Reported{LastLeft: -1}
	var lastAt time.Time
	var reasons []verdict.Reason
	worst := verdict.Status("")
	for _, v := range r.ids {
		id := Identity{Key: v.Identity.Key, Addrs: []string{}, Verdict: string(v.Status), Confidence: fin(v.Confidence),
			Announces: v.Announces, Sessions: v.Sessions, Uploaded: v.Uploaded, Downloaded: v.Downloaded, NegativeDiscounted: v.NegativeDiscounted}
		for _, a := range v.Identity.Addrs {
			id.Addrs = append(id.Addrs, a.String())
		}
		rp.Identities = append(rp.Identities, id)
		rp.Announces += v.Announces
		rp.Sessions += v.Sessions
		rp.Uploaded = bytesize.Add(rp.Uploaded, v.Uploaded)
		rp.Downloaded = bytesize.Add(rp.Downloaded, v.Downloaded)
		for _, c := range v.Checks {
			if c.Session {
				continue
			}
			rp.UploadBound = bytesize.Add(rp.UploadBound, c.Bounds.UploadUpper)
			rp.PlausibleUploadBound = bytesize.Add(rp.PlausibleUploadBound, c.Bounds.Plausible.UploadUpper)
			rp.Seconds += c.To.Sub(c.From).Seconds()
		}
		if list := b.anns[v.Identity.Key]; len(list) > 0 && !list[len(list)-1].At.Before(lastAt) {
			lastAt = list[len(list)-1].At
			rp.LastLeft = list[len(list)-1].Left
		}
		if worst == "" || v.Status.Severity() > worst.Severity() || (v.Status == worst && v.Confidence > p.Confidence) {
			worst, p.Confidence = v.Status, fin(v.Confidence)
		}
		reasons = append(reasons, v.Reasons...)
	}
	if rp.Seconds > 0 {
		rp.UploadRate = fin(float64(rp.Uploaded) / rp.Seconds)
	}
	rp.Seconds = fin(rp.Seconds)
	p.Reported = rp
	p.Verdict = string(worst)
	p.Flagged = worst == verdict.StatusSuspect || worst == verdict.StatusMisreporting
	for _, r := range verdict.Strongest(reasons) {
		p.Reasons = append(p.Reasons, convReason(r))
	}
}

// summary fills the swarm-wide counts and the windows.
func (b *builder) summary() {
	s := &b.rep.Summary
	vr := b.res.Report
	s.Verdicts = VerdictCounts{Misreporting: vr.Summary.Counts[verdict.StatusMisreporting], Suspect: vr.Summary.Counts[verdict.StatusSuspect],
		OK: vr.Summary.Counts[verdict.StatusOK], Unverifiable: vr.Summary.Counts[verdict.StatusUnverifiable]}
	s.Identities = len(vr.Verdicts)
	s.Sources = map[string]int{}
	for _, v := range vr.Verdicts {
		if !v.Observed {
			s.Unobserved++
		}
	}
	for _, r := range b.all {
		if r.p.Flagged {
			s.FlaggedPeers++
		}
		if r.sp != nil || r.wire != nil {
			s.PeersDiscovered++
		}
		if r.p.Connections.Connected > 0 {
			s.PeersReached++
		}
		if r.probed {
			s.PeersProbed++
		}
		for _, src := range r.p.Sources {
			s.Sources[sourceKind(src)]++
		}
	}
	s.AuditorBytesIn, s.AuditorBytesOut = b.res.Progress.BytesIn, b.res.Progress.BytesOut
	s.DroppedAnnounces = vr.Summary.DroppedAnnounces
	s.SkippedChecks = append([]string{}, vr.Summary.Skipped...)
	s.Reasons = []Reason{}
	for _, r := range vr.Summary.Reasons {
		s.Reasons = append(s.Reasons, convReason(r))
	}
	b.rep.Windows = []Window{}
	for _, w := range vr.Summary.Windows {
		x := Window{From: w.From.UTC(), To: w.To.UTC(), ReportedUploaded: w.ReportedUploaded, ReportedDownloaded: w.ReportedDownloaded,
			ObservedDownloaded: w.Swarm.DownloadedLower, GainUpper: w.Swarm.GainUpper, GainObserved: w.Swarm.GainObserved,
			GainUnobserved: w.Swarm.GainUnobserved, ProbeBytes: w.Swarm.ProbeBytes, ObservedPeers: w.Swarm.ObservedPeers,
			UnobservedPeers: w.Swarm.UnobservedPeers, Status: string(w.Status), Reasons: []Reason{}, Contributors: []string{}, Transfers: []Transfer{}}
		for _, t := range w.Transfers {
			x.Transfers = append(x.Transfers, Transfer{From: addrString(t.From), To: addrString(t.To), Lower: t.Lower, Upper: t.Upper, PlausibleUpper: t.PlausibleUpper})
		}
		for _, r := range w.Reasons {
			x.Reasons = append(x.Reasons, convReason(r))
		}
		x.Contributors = append(x.Contributors, w.Contributors...)
		b.rep.Windows = append(b.rep.Windows, x)
		s.ReportedUploaded = bytesize.Add(s.ReportedUploaded, w.ReportedUploaded)
		s.ReportedDownloaded = bytesize.Add(s.ReportedDownloaded, w.ReportedDownloaded)
		s.ObservedDownloaded = bytesize.Add(s.ObservedDownloaded, w.Swarm.DownloadedLower)
		s.GainUpper = bytesize.Add(s.GainUpper, w.Swarm.GainUpper)
	}
}

// sourceKind shortens an address book source to its kind: "tracker:URL"
// becomes "tracker", "pex:ADDR" becomes "pex".
func sourceKind(s string) string {
	if s == audit.SourceEmbeddedTracker {
		return s
	}
	if i := strings.IndexByte(s, ':'); i > 0 {
		return s[:i]
	}
	return s
}

// truth compares the rows' verdicts with Options.Truth.
func (b *builder) truth() {
	if b.opts.Truth == nil {
		return
	}
	want := map[string]bool{}
	for _, c := range b.opts.Truth.Cheaters {
		want[strings.ToLower(strings.TrimSpace(c))] = true
	}
	tr := &TruthReport{Cheaters: append([]string{}, b.opts.Truth.Cheaters...), UnreportedCheaters: []string{}}
	matched := map[string]bool{}
	for i, r := range b.all {
		keys := []string{strings.ToLower(r.p.Address), strings.ToLower(r.p.PeerID)}
		for _, v := range r.ids {
			keys = append(keys, strings.ToLower(v.Identity.Key), hex.EncodeToString(v.Identity.PeerID[:]))
			for _, a := range v.Identity.Addrs {
				keys = append(keys, a.String())
			}
		}
		cheat := false
		for _, k := range keys {
			if k != "" && want[k] {
				cheat = true
				if r.p.Verdict != VerdictUnreported {
					matched[k] = true
				}
			}
		}
		b.rep.Peers[i].Cheater = &cheat
		switch {
		case r.p.Verdict == VerdictUnreported:
		case r.p.Verdict == string(verdict.StatusUnverifiable) && cheat:
			tr.UnverifiableCheaters++
			tr.Matrix.FalseNegative++
		case r.p.Verdict == string(verdict.StatusUnverifiable):
			tr.UnverifiableHonest++
			tr.Matrix.TrueNegative++
		case r.p.Flagged && cheat:
			tr.Matrix.TruePositive++
		case r.p.Flagged:
			tr.Matrix.FalsePositive++
		case cheat:
			tr.Matrix.FalseNegative++
		default:
			tr.Matrix.TrueNegative++
		}
	}
	for _, c := range b.opts.Truth.Cheaters {
		if !matched[strings.ToLower(strings.TrimSpace(c))] {
			tr.UnreportedCheaters = append(tr.UnreportedCheaters, c)
		}
	}
	m := tr.Matrix
	if d := m.TruePositive + m.FalsePositive; d > 0 {
		v := float64(m.TruePositive) / float64(d)
		tr.Precision = &v
	}
	if d := m.TruePositive + m.FalseNegative; d > 0 {
		v := float64(m.TruePositive) / float64(d)
		tr.Recall = &v
	}
	b.rep.Truth = tr
}

// HidePasskey replaces the passkey part of an identity key (verdict.KeyOf:
// "...|passkey") with a short keyed hash of it (HMAC-SHA-256 with the
// database's key, see store.Secret), so that reports still group a user's
// identities without showing the credential, and hashes from different
// databases cannot be matched. A tracker's user id ("uid:N", from the
// tracker's database or logs) is no credential and stays as it is: the
// operator acts on it.
func HidePasskey(key string, hmacKey []byte) string {
	i := strings.LastIndexByte(key, '|')
	if i < 0 || i == len(key)-1 || IsUserID(key[i+1:]) {
		return key
	}
	m := hmac.New(sha256.New, hmacKey)
	m.Write([]byte(key[i+1:]))
	return key[:i+1] + "hmac:" + hex.EncodeToString(m.Sum(nil)[:6])
}

// IsUserID reports whether an identity's user is a tracker user id
// ("uid:" and digits) rather than a passkey.
func IsUserID(user string) bool {
	id, ok := strings.CutPrefix(user, "uid:")
	if !ok || id == "" || len(id) > 20 {
		return false
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// hidePasskeys replaces the passkey part of every identity key.
func (b *builder) hidePasskeys() error {
	k := b.opts.PasskeyKey
	if k == nil && b.ev != nil {
		k = b.ev.PasskeyKey
	}
	if len(k) < 16 {
		return errors.New("hiding passkeys needs the database's key (store.Secret)")
	}
	hide := func(s string) string { return HidePasskey(s, k) }
	for i := range b.rep.Peers {
		if rp := b.rep.Peers[i].Reported; rp != nil {
			for k := range rp.Identities {
				rp.Identities[k].Key = hide(rp.Identities[k].Key)
			}
		}
	}
	for i := range b.rep.Windows {
		for k, c := range b.rep.Windows[i].Contributors {
			b.rep.Windows[i].Contributors[k] = hide(c)
		}
	}
	return nil
}

func convReason(r verdict.Reason) Reason {
	x := Reason{Code: string(r.Code), Status: string(r.Status), Tier: string(r.Tier), Assumptions: append([]string{}, r.Assumptions...),
		Confidence: fin(r.Confidence), Message: r.Message, Numbers: map[string]float64{}}
	for k, v := range r.Numbers {
		if finite(v) {
			x.Numbers[k] = v
		}
	}
	return x
}

// rank orders rows: flagged first, then unverifiable, ok, unreported.
func rank(v string) int { return verdict.Status(v).Rank() }

func printable(id []byte) string {
	out := make([]byte, len(id))
	for i, c := range id {
		if c < 0x20 || c > 0x7e {
			c = '.'
		}
		out[i] = c
	}
	return string(out)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 1 {
		return v[m]
	}
	return (v[m-1] + v[m]) / 2
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// fin maps NaN and infinities, which JSON cannot carry, to 0.
func fin(f float64) float64 {
	if !finite(f) {
		return 0
	}
	return f
}

func secs(d time.Duration) float64 { return d.Seconds() }

func timePtr(t time.Time) *time.Time {
	u := t.UTC()
	return &u
}

// addrString is an address as the report's peer rows write it ("" when
// unknown).
func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
