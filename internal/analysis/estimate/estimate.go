// Package estimate bounds what each peer of a swarm can have uploaded and
// must have downloaded in any time interval, from the per-peer timelines
// (package timeline), bandwidth probes, and an allowance for peers that were
// never observed. It does no I/O; docs/estimation.md gives the model, its
// assumptions and its failure modes.
//
// For peer P and interval [from, to):
//
//   - DownloadedLower: bytes of the pieces P gained entirely inside the
//     interval (its gain interval, from the last snapshot lacking the piece to
//     the first evidence holding it, lies inside). Pieces held at first sight
//     never count.
//   - UploadUpper: min(capacity bound, availability bound). The availability
//     bound counts, for every other observed peer Q and piece i that Q may
//     have been receiving during the interval while P may have held i, the
//     piece's size; plus what unobserved peers could have gained (capped by
//     what P may have held) and the bytes our own probes took from P. The
//     capacity bound is the probe-derived upper upload rate times the time P
//     was not known to be absent.
//   - UploadLower: bytes of pieces others gained in the interval when P was
//     the only observed peer that could have held them. It assumes every
//     holder is observed.
//
// Upper bounds are taken over the interval widened by Config.ClockSlack on
// both sides, lower bounds over the interval narrowed by it.
//
// The plausible tier (plausible.go) bounds uploads again under stated
// assumptions; its sliced bound is a maximum flow (maxflow.go) of what the
// others absorbed into the slices of the interval. Joint (joint.go) puts
// the claims of the whole swarm into one such network.
package estimate

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/bytesize"
	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
)

// Sentinel errors.
var (
	// ErrTorrent: the torrent geometry is impossible.
	ErrTorrent = errors.New("invalid torrent geometry")
	// ErrConfig: a configuration value is out of range.
	ErrConfig = errors.New("invalid estimate config")
	// ErrInterval: the interval ends before it starts.
	ErrInterval = errors.New("interval ends before it starts")
	// ErrNoPeer: the peer index is out of range.
	ErrNoPeer = errors.New("no such peer")
	// ErrTimeline: a timeline does not match the torrent.
	ErrTimeline = errors.New("timeline does not match the torrent")
)

const (
	negInf = timeline.NegInf
	posInf = timeline.PosInf
)

// Torrent is the piece geometry.
type Torrent struct {
	NumPieces   int
	PieceLength int64
	TotalLength int64
	// Sizes holds each piece's size when they are not all PieceLength but
	// the last: in a v2-only torrent (BEP 52) every file starts on a piece
	// boundary, so the last piece of each file may be short. Nil
	// otherwise.
	Sizes []int64
}

// Validate checks that the geometry is consistent: NumPieces is
// ceil(TotalLength/PieceLength), or, with Sizes, the count of pieces of at
// most PieceLength each that sum to TotalLength.
func (t Torrent) Validate() error {
	if t.NumPieces <= 0 || t.PieceLength <= 0 || t.TotalLength <= 0 {
		return fmt.Errorf("%w: %d pieces of %d bytes, %d bytes in all", ErrTorrent, t.NumPieces, t.PieceLength, t.TotalLength)
	}
	if t.Sizes != nil {
		if len(t.Sizes) != t.NumPieces {
			return fmt.Errorf("%w: %d piece sizes for %d pieces", ErrTorrent, len(t.Sizes), t.NumPieces)
		}
		var sum int64
		for i, n := range t.Sizes {
			if n <= 0 || n > t.PieceLength {
				return fmt.Errorf("%w: piece %d of %d bytes, piece length %d", ErrTorrent, i, n, t.PieceLength)
			}
			sum += n
		}
		if sum != t.TotalLength {
			return fmt.Errorf("%w: pieces sum to %d bytes, not %d", ErrTorrent, sum, t.TotalLength)
		}
		return nil
	}
	if want := (t.TotalLength + t.PieceLength - 1) / t.PieceLength; want != int64(t.NumPieces) {
		return fmt.Errorf("%w: %d bytes in %d-byte pieces is %d pieces, not %d", ErrTorrent, t.TotalLength, t.PieceLength, want, t.NumPieces)
	}
	return nil
}

// PieceSize is the size of piece i (the last one may be short, or with
// Sizes any); 0 out of range.
func (t Torrent) PieceSize(i int) int64 {
	if i < 0 || i >= t.NumPieces {
		return 0
	}
	if t.Sizes != nil {
		return t.Sizes[i]
	}
	if i == t.NumPieces-1 {
		return t.TotalLength - int64(t.NumPieces-1)*t.PieceLength
	}
	return t.PieceLength
}

// Bytes is the total size of the pieces in a set given as indices.
func (t Torrent) Bytes(pieces []int) int64 {
	var n int64
	for _, i := range pieces {
		n += t.PieceSize(i)
	}
	return n
}

// Sample is one bandwidth probe of a peer: the throughput of its upload to
// us, the spread of that throughput over the probe (a standard deviation in
// bytes/s), and the payload bytes it sent us. A probe in which the peer kept
// us choked has BytesPerSec 0: it says nothing about capacity.
type Sample struct {
	At          time.Time
	BytesPerSec float64
	Spread      float64
	Bytes       int64
	// Duration is how long the probe ran from At; 0 when unknown (then
	// Bytes / BytesPerSec).
	Duration time.Duration
}

// Capacity is what the probes of one peer measured.
type Capacity struct {
	Samples []Sample
}

// CapacityEstimate is the capacity derived from the probes.
type CapacityEstimate struct {
	Known   bool // at least one probe got data
	Samples int  // probes that got data
	// Central (bytes/s) is the median throughput to us over the quiet
	// probes if there are any (Quiet), else over all probes.
	Central float64
	// MeasuredUpper is the largest probe throughput plus SpreadZ spreads
	// (bytes/s): the most the peer gave us.
	MeasuredUpper float64
	// Share is the multiplier for the peers that may have shared the
	// peer's upload with us when the probe that set Upper ran.
	Share float64
	// Upper is the upper estimate of the peer's whole upload rate (bytes/s):
	// (throughput + SpreadZ×spread) × Share × Headroom, maximised over the
	// quiet probes if there are any (Quiet), else over all probes.
	Upper float64
	// Quiet says Upper comes from probes during which nobody else may have
	// been downloading (Share 1): they measured the whole capacity.
	Quiet bool
}

// Peer is one observed peer.
type Peer struct {
	ID       string
	Timeline *timeline.Timeline
	Capacity Capacity
	// PresentUntil is the latest time the peer may have been in the swarm
	// (e.g. its last announce plus an announce interval); zero when unknown.
	// Pieces it still lacked at its last snapshot may have been gained until
	// max(last contact + UnresolvedTail, PresentUntil).
	PresentUntil time.Time
	// Reported is what the peer's identity reported downloading, for the
	// plausible tier; nil when it reported nothing usable (no announces, or
	// reports the wire contradicted): the worst case applies to it.
	Reported *Reported
}

// Unobserved is a peer known (from the tracker) but never observed on the
// wire: it may have gained up to MaxGain bytes (negative: the whole torrent)
// while present.
type Unobserved struct {
	ID      string
	Present []timeline.Interval
	MaxGain int64
	// Seeding says the peer reported itself complete (left=0) throughout:
	// it is not counted among the downloaders that may have shared another
	// peer's upload with a probe. That trusts an unverified report, so it
	// only tightens capacity bounds (whose findings stay suspect), never
	// the availability bound, which still allows MaxGain.
	Seeding bool
	// Reported is what it reported downloading (see Peer.Reported).
	Reported *Reported
}

// Input is the swarm to estimate.
type Input struct {
	Torrent    Torrent
	Peers      []Peer
	Unobserved []Unobserved
}

// Config holds the model's tunables; DefaultConfig documents the defaults.
type Config struct {
	// Headroom multiplies the probe-derived upload rate: a probe measures the
	// capacity available to us, which can be less than the peer's whole
	// capacity (other torrents, client-side per-peer limits, TCP variance).
	Headroom float64
	// SpreadZ is how many spreads above a probe's throughput its upper
	// value lies.
	SpreadZ float64
	// MaxShare caps the sharing multiplier: a probe running while n other
	// peers were downloading is scaled by min(1+n, MaxShare), since the peer
	// may have split its upload among them (clients unchoke a limited number
	// of peers at once).
	MaxShare float64
	// TransferLead is how long before the last snapshot lacking a piece its
	// blocks may already have been arriving (a piece in flight when the
	// snapshot was taken).
	TransferLead time.Duration
	// UnresolvedTail is how long after the last contact a peer may still
	// have been gaining the pieces it lacked then, unless Peer.PresentUntil
	// says longer.
	UnresolvedTail time.Duration
	// PresenceGap is the largest gap between contacts (or refusals) still
	// read as continuous presence (or absence).
	PresenceGap time.Duration
	// ClockSlack widens intervals for upper bounds and narrows them for lower
	// bounds, covering timestamp granularity and clock offsets between the
	// tracker and the auditor.
	ClockSlack time.Duration
	// UnobservedRate caps how fast one unobserved peer can gain (bytes/s);
	// 0 means no cap (it may gain MaxGain in any interval it was present in).
	UnobservedRate float64
	// PlausibleHeadroom replaces Headroom in the plausible tier's capacity
	// (AssumeQuietProbeWhole).
	PlausibleHeadroom float64
	// PlausibleMinPieceRate (bytes/s) bounds a piece's transfer time in the
	// plausible tier (AssumeMinPieceRate): TransferLead there is at most
	// PieceLength / PlausibleMinPieceRate. 0 keeps TransferLead.
	PlausibleMinPieceRate float64
	// ReportLatency is how long before an announce the client may have read
	// the counters it reports: a reported span starts that much earlier.
	ReportLatency time.Duration
	// PlausibleHaveDelay is how soon after completing a piece a peer
	// announces it on an established connection (AssumePromptHaves): the
	// plausible tier reads a watched peer's silence as lacking
	// (timeline.PromptLacked). 0 keeps only snapshots as negative evidence.
	PlausibleHaveDelay time.Duration
	// SlicedCapacityFactor and SlicedAvailabilityFactor scale the two sides
	// of the sliced bound for Plausible.SlicedThreshold: each slice's
	// capacity bound, and what the others absorbed (counters exceed the
	// payload others kept by protocol waste: blocks sent twice or cancelled
	// late, pieces failing their hash). The verdict sets them to its
	// tolerances. 0 means 1.
	SlicedCapacityFactor     float64
	SlicedAvailabilityFactor float64
}

// SameClockSlack is the ClockSlack for announces stamped by this process
// (the embedded tracker): no clock offset, only the time between a client
// reading its counters and the tracker receiving the announce.
const SameClockSlack = 50 * time.Millisecond

// DefaultConfig returns the defaults: Headroom 1.5, SpreadZ 2, MaxShare 20,
// TransferLead 2 min, UnresolvedTail 45 min, PresenceGap 10 min, ClockSlack
// 2 s, UnobservedRate 0 (uncapped), PlausibleHeadroom 1.05,
// PlausibleMinPieceRate 16 KiB/s, ReportLatency 5 s, PlausibleHaveDelay
// 10 s.
func DefaultConfig() Config {
	return Config{
		PlausibleHeadroom:     1.05,
		PlausibleMinPieceRate: 16 << 10,
		ReportLatency:         5 * time.Second,
		PlausibleHaveDelay:    10 * time.Second,
		Headroom:              1.5,
		SpreadZ:               2,
		MaxShare:              20,
		TransferLead:          2 * time.Minute,
		UnresolvedTail:        45 * time.Minute,
		PresenceGap:           10 * time.Minute,
		ClockSlack:            2 * time.Second,
	}
}

// Validate checks the ranges.
func (c Config) Validate() error {
	switch {
	case !(c.Headroom >= 1) || math.IsInf(c.Headroom, 0):
		return fmt.Errorf("%w: Headroom %v must be >= 1", ErrConfig, c.Headroom)
	case !(c.PlausibleHeadroom >= 1) || c.PlausibleHeadroom > c.Headroom:
		return fmt.Errorf("%w: PlausibleHeadroom %v must be in [1, Headroom]", ErrConfig, c.PlausibleHeadroom)
	case !(c.SlicedCapacityFactor == 0 || c.SlicedCapacityFactor >= 1) || math.IsInf(c.SlicedCapacityFactor, 0):
		return fmt.Errorf("%w: SlicedCapacityFactor %v must be 0 or >= 1", ErrConfig, c.SlicedCapacityFactor)
	case !(c.SlicedAvailabilityFactor == 0 || c.SlicedAvailabilityFactor >= 1) || math.IsInf(c.SlicedAvailabilityFactor, 0):
		return fmt.Errorf("%w: SlicedAvailabilityFactor %v must be 0 or >= 1", ErrConfig, c.SlicedAvailabilityFactor)
	case !(c.PlausibleMinPieceRate >= 0) || math.IsInf(c.PlausibleMinPieceRate, 0):
		return fmt.Errorf("%w: PlausibleMinPieceRate %v must be >= 0 and finite", ErrConfig, c.PlausibleMinPieceRate)
	case c.ReportLatency < 0:
		return fmt.Errorf("%w: ReportLatency must not be negative", ErrConfig)
	case c.PlausibleHaveDelay < 0:
		return fmt.Errorf("%w: PlausibleHaveDelay must not be negative", ErrConfig)
	case !(c.SpreadZ >= 0) || math.IsInf(c.SpreadZ, 0):
		return fmt.Errorf("%w: SpreadZ %v must be >= 0", ErrConfig, c.SpreadZ)
	case !(c.MaxShare >= 1) || math.IsInf(c.MaxShare, 0):
		return fmt.Errorf("%w: MaxShare %v must be >= 1", ErrConfig, c.MaxShare)
	case c.TransferLead < 0 || c.UnresolvedTail < 0 || c.PresenceGap < 0 || c.ClockSlack < 0:
		return fmt.Errorf("%w: durations must not be negative", ErrConfig)
	case !(c.UnobservedRate >= 0) || math.IsInf(c.UnobservedRate, 0):
		return fmt.Errorf("%w: UnobservedRate %v must be >= 0 and finite", ErrConfig, c.UnobservedRate)
	}
	return nil
}

// Limit names the bound that set UploadUpper.
type Limit string

// The limits.
const (
	LimitAvailability Limit = "availability"
	LimitCapacity     Limit = "capacity"
)

// Bounds are one peer's bounds over [From, To).
type Bounds struct {
	From, To        time.Time
	DownloadedLower int64
	UploadUpper     int64
	// UploadLower assumes every peer that could have held the pieces was
	// observed (see Explanation.UnobservedPresent).
	UploadLower int64
	Explain     Explanation
	// Plausible bounds the upload under the plausible tier's assumptions
	// (see the constants Assume*).
	Plausible Plausible
}

// Explanation holds the numbers behind a Bounds.
type Explanation struct {
	// UpperFrom/UpperTo is the window of the upper bounds (widened by
	// ClockSlack); LowerFrom/LowerTo that of the lower bounds (narrowed),
	// LowerEmpty when narrowing left nothing.
	UpperFrom, UpperTo time.Time
	LowerFrom, LowerTo time.Time
	LowerEmpty         bool
	// Observed: the peer has piece observations; false for an unobserved
	// peer, whose only bound is what the whole swarm could absorb.
	Observed bool
	// ObservedPresent is how long we saw the peer in the swarm in the upper
	// window; KnownAbsent how long refusals showed it gone.
	ObservedPresent time.Duration
	KnownAbsent     time.Duration
	Capacity        CapacityEstimate
	// CapacityBound is Capacity.Upper × min(upper window − KnownAbsent,
	// DemandTime) + the probe bytes that rate did not carry in the probes'
	// own demand seconds (probeExcess), or −1 when the capacity is unknown
	// (never probed: no capacity bound).
	CapacityBound int64
	// DemandTime is how long in the upper window somebody else may have
	// been downloading: an observed peer within its possible-gain span, or
	// an unobserved peer present without reporting itself complete. A peer
	// uploads nothing to the swarm outside it (but to us: ProbeBytes).
	DemandTime time.Duration
	// AvailabilityBound = AvailabilityObserved + AvailabilityUnobserved +
	// ProbeBytes.
	AvailabilityBound      int64
	AvailabilityObserved   int64
	AvailabilityPairs      int // (peer, piece) gains counted in AvailabilityObserved
	AvailabilityUnobserved int64
	ProbeBytes             int64
	// PossiblyHeldBytes is the size of the pieces the peer may have held at
	// some time in the upper window; it caps each unobserved peer's share.
	PossiblyHeldBytes int64
	Limit             Limit
	// GainedPieces are counted in DownloadedLower; StraddlingPieces were
	// gained across the window's edges (not counted); FirstSightPieces were
	// held when first seen (never counted).
	GainedPieces, StraddlingPieces, FirstSightPieces int
	// SoleHolderPieces are the gains counted in UploadLower.
	SoleHolderPieces int
	// UnobservedPresent: unobserved peers were present in the window, so
	// UploadLower's assumption that every holder is observed may fail.
	UnobservedPresent bool
}

// SwarmBounds are swarm-wide sums over [From, To). Conservation: the bytes
// all peers uploaded (to each other and to us) equal the bytes all peers
// downloaded, so Σ uploads ≥ DownloadedLower and Σ uploads ≤ GainUpper up to
// protocol overhead and re-requests.
type SwarmBounds struct {
	From, To time.Time
	// DownloadedLower is Σ over observed peers of their DownloadedLower.
	DownloadedLower int64
	// GainUpper = GainObserved + GainUnobserved + ProbeBytes: the most the
	// swarm could have absorbed.
	GainUpper      int64
	GainObserved   int64
	GainUnobserved int64
	ProbeBytes     int64
	// UploadLower is Σ of the observed peers' UploadLower.
	UploadLower     int64
	ObservedPeers   int
	UnobservedPeers int
	// PlausibleGainUpper is GainUpper under the plausible tier: observed
	// gains capped by what the peers reported downloading, and what the
	// unobserved identities reported.
	PlausibleGainUpper int64
}

type probe struct {
	at    int64
	end   int64 // at + its duration
	rate  float64
	sprd  float64
	bytes int64
}

type transfer struct {
	start, end int64 // (start, end]
	bytes      int64
	to         int // the receiving peer
}

type peerData struct {
	id     string
	info   bool
	lacked []int64
	had    []int64
	a, b   []int64 // per piece: the possible-gain event (a, b]
	spanA  int64   // union of events: (spanA, spanB]
	spanB  int64
	// gained: some piece was seen lacking and later held. A peer that
	// never completed a piece while observed (a stalled or fake leecher)
	// is left out of the capacity bound's demand and of the probes'
	// competitors: it cannot have been taking much of anyone's upload.
	gained   bool
	probes   []probe // sorted by time
	capacity CapacityEstimate
	presence [][2]int64
	absence  [][2]int64
	sole     []transfer // sorted by start
	// the plausible tier (plausible.go)
	rep    *repData
	plk    []int64 // per piece: lacked under AssumePromptHaves (≥ lacked)
	sa, sb []int64 // this peer's plausible event starts (pstart) and ends, sorted
	pown   [][2]int64
	pcap   CapacityEstimate
}

type pieceIndex struct {
	a, b []int64 // sorted event starts and ends over observed peers
	// the three smallest "may hold after" times and owners of the first two
	c      [3]int64
	owner  [2]int32
	nOwner int
}

// demands says the peer's possible-gain span counts as demand (and
// competition for probes): it has one, and it completed a piece while
// observed.
func (pd *peerData) demands() bool { return pd.info && pd.gained && pd.spanA < pd.spanB }

type unobs struct {
	id      string
	present [][2]int64
	maxGain int64
	seeding bool
	rep     *repData
}

// Estimator answers bound queries over one swarm. It is immutable after New
// and safe for concurrent use.
type Estimator struct {
	cfg    Config
	tor    Torrent
	peers  []peerData
	pieces []pieceIndex
	unobs  []unobs
	demand demand
	nInfo  int
	// the plausible tier
	anyRep  bool
	pdemand demand
	cuts    []int64 // every reported span's end, sorted: the sliced bound's cuts
	plead   int64   // the plausible transfer lead (AssumeMinPieceRate)
}

// New indexes the swarm. Peers whose timeline has no piece information (or
// is nil) contribute no gains: list them in Unobserved as well if they may
// have downloaded.
func New(in Input, cfg Config) (*Estimator, error) {
	if err := in.Torrent.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := in.Torrent.NumPieces
	e := &Estimator{cfg: cfg, tor: in.Torrent, peers: make([]peerData, len(in.Peers)), pieces: make([]pieceIndex, n)}
	lead, tail := int64(cfg.TransferLead), int64(cfg.UnresolvedTail)
	for k, p := range in.Peers {
		pd := &e.peers[k]
		pd.id = p.ID
		tl := p.Timeline
		if tl != nil && tl.NumPieces() != n {
			return nil, fmt.Errorf("peer %q: %w: %d pieces, torrent has %d", p.ID, ErrTimeline, tl.NumPieces(), n)
		}
		pd.probes = probes(p.Capacity)
		if tl == nil {
			continue
		}
		pd.presence = toNanos(tl.Presence(cfg.PresenceGap))
		pd.absence = toNanos(tl.Absence(cfg.PresenceGap))
		if !tl.HasPieceInfo() {
			continue
		}
		pd.info = true
		e.nInfo++
		last, _ := tl.LastSeen()
		end := bytesize.Add(last.UnixNano(), tail)
		if until, ok := clampNanos(p.PresentUntil); ok && !p.PresentUntil.IsZero() && until > end {
			end = until
		}
		pd.lacked = make([]int64, n)
		pd.had = make([]int64, n)
		pd.a = make([]int64, n)
		pd.b = make([]int64, n)
		pd.spanA, pd.spanB = posInf, negInf
		for i := 0; i < n; i++ {
			l, h := tl.PieceNanos(i)
			pd.lacked[i], pd.had[i] = l, h
			a := negInf
			if l != negInf {
				a = bytesize.Add(l, -lead)
			}
			b := h
			if h == posInf {
				b = end
			}
			if b <= a {
				// No time to gain it (no tail, no lead): an event that
				// the index counts nowhere.
				pd.a[i], pd.b[i] = posInf, posInf
				continue
			}
			pd.a[i], pd.b[i] = a, b
			pd.spanA = min(pd.spanA, a)
			pd.spanB = max(pd.spanB, b)
			pd.gained = pd.gained || (l != negInf && h != posInf)
		}
	}
	for _, u := range in.Unobserved {
		mg := u.MaxGain
		if mg < 0 || mg > in.Torrent.TotalLength {
			mg = in.Torrent.TotalLength
		}
		var pr [][2]int64
		for _, iv := range u.Present {
			if iv.To.Before(iv.From) {
				continue
			}
			f, _ := clampNanos(iv.From)
			t, _ := clampNanos(iv.To)
			pr = append(pr, [2]int64{f, t})
		}
		e.unobs = append(e.unobs, unobs{id: u.ID, present: pr, maxGain: mg, seeding: u.Seeding})
	}
	e.indexPieces()
	var spans [][2]int64
	for k := range e.peers {
		if pd := &e.peers[k]; pd.demands() {
			spans = append(spans, [2]int64{pd.spanA, pd.spanB})
		}
	}
	for _, u := range e.unobs {
		if !u.seeding {
			spans = append(spans, u.present...)
		}
	}
	e.demand = newDemand(spans)
	for k := range e.peers {
		e.peers[k].capacity = e.capacity(k)
	}
	e.soleHolders()
	e.preparePlausible(in)
	return e, nil
}

func probes(c Capacity) []probe {
	var out []probe
	for _, s := range c.Samples {
		at, ok := clampNanos(s.At)
		if !ok || s.At.IsZero() {
			continue
		}
		p := probe{at: at, end: at, bytes: max(s.Bytes, 0)}
		if s.BytesPerSec > 0 && !math.IsInf(s.BytesPerSec, 0) {
			p.rate = s.BytesPerSec
			if s.Spread > 0 && !math.IsInf(s.Spread, 0) {
				p.sprd = s.Spread
			}
		}
		switch {
		case s.Duration > 0:
			p.end = bytesize.Add(at, int64(s.Duration))
		case p.rate > 0:
			p.end = bytesize.Add(at, bytesize.FromFloat(float64(p.bytes)/p.rate*float64(time.Second)))
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y probe) int { return cmpInt(x.at, y.at) })
	return out
}

func (e *Estimator) indexPieces() {
	n := e.tor.NumPieces
	flatA := make([]int64, 0, n*e.nInfo)
	flatB := make([]int64, 0, n*e.nInfo)
	for i := 0; i < n; i++ {
		pi := &e.pieces[i]
		pi.c = [3]int64{posInf, posInf, posInf}
		pi.owner = [2]int32{-1, -1}
		startA, startB := len(flatA), len(flatB)
		for k := range e.peers {
			pd := &e.peers[k]
			if !pd.info {
				continue
			}
			flatA = append(flatA, pd.a[i])
			flatB = append(flatB, pd.b[i])
			c := pd.lacked[i]
			switch {
			case c < pi.c[0]:
				pi.c[2], pi.c[1], pi.c[0] = pi.c[1], pi.c[0], c
				pi.owner[1], pi.owner[0] = pi.owner[0], int32(k)
			case c < pi.c[1]:
				pi.c[2], pi.c[1] = pi.c[1], c
				pi.owner[1] = int32(k)
			case c < pi.c[2]:
				pi.c[2] = c
			}
			pi.nOwner++
		}
		pi.a = flatA[startA:len(flatA):len(flatA)]
		pi.b = flatB[startB:len(flatB):len(flatB)]
		slices.Sort(pi.a)
		slices.Sort(pi.b)
	}
}

// competitors counts the peers other than peer k that may have been
// downloading at t: the demand coverage there, less k's own span.
func (e *Estimator) competitors(k int, t int64) int {
	n := e.demand.at(t)
	if pd := &e.peers[k]; pd.demands() && pd.spanA <= t && t < pd.spanB {
		n--
	}
	return max(n, 0)
}

// ownSpan is peer k's own worst-case demand span (none when it does not
// count as demand).
func (e *Estimator) ownSpan(k int) [][2]int64 {
	if pd := &e.peers[k]; pd.demands() {
		return [][2]int64{{pd.spanA, pd.spanB}}
	}
	return nil
}

func (e *Estimator) capacity(k int) CapacityEstimate {
	return e.capacityWith(k, func(p probe) int { return e.competitors(k, p.at) }, e.cfg.Headroom)
}

// capacityWith estimates peer k's capacity from its probes, with competitors
// counting the other peers that may have shared its upload during a probe.
func (e *Estimator) capacityWith(k int, competitors func(probe) int, headroom float64) CapacityEstimate {
	var ce CapacityEstimate
	var rates, quietRates []float64
	quietUpper := 0.0
	for _, p := range e.peers[k].probes {
		if p.rate <= 0 {
			continue
		}
		rates = append(rates, p.rate)
		mu := p.rate + e.cfg.SpreadZ*p.sprd
		n := competitors(p)
		share := min(1+float64(n), e.cfg.MaxShare)
		up := mu * share * headroom
		ce.MeasuredUpper = max(ce.MeasuredUpper, mu)
		if up > ce.Upper {
			ce.Upper, ce.Share = up, share
		}
		if n == 0 {
			quietUpper = max(quietUpper, up)
			quietRates = append(quietRates, p.rate)
		}
	}
	if len(rates) == 0 {
		return CapacityEstimate{}
	}
	ce.Known = true
	ce.Samples = len(rates)
	ce.Central = median(rates)
	if quietUpper > 0 {
		// A probe nobody else competed with measured the peer's whole
		// upload; the sharing multipliers of busy probes are only guesses
		// (clients unchoke unevenly, and favour peers that upload to them),
		// so quiet probes alone set Upper and Central.
		ce.Upper, ce.Share, ce.Quiet = quietUpper, 1, true
		ce.Central = median(quietRates)
	}
	return ce
}

// median sorts xs (non-empty) and returns its median.
func median(xs []float64) float64 {
	slices.Sort(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}

// soleHolders finds, for every gain with a known interval, whether exactly
// one other observed peer could have held the piece before the gain
// completed; that peer must have sent it (if every holder is observed).
func (e *Estimator) soleHolders() {
	lead := int64(e.cfg.TransferLead)
	for q := range e.peers {
		pq := &e.peers[q]
		if !pq.info {
			continue
		}
		for i, h := range pq.had {
			l := pq.lacked[i]
			if h == posInf || l == negInf {
				continue
			}
			pi := &e.pieces[i]
			// Exactly two peers (q and one other) may hold i before h.
			if !(pi.c[1] < h && pi.c[2] >= h) {
				continue
			}
			r := pi.owner[0]
			if int(r) == q {
				r = pi.owner[1]
			}
			if r < 0 || int(r) == q {
				continue
			}
			pr := &e.peers[r]
			if pr.had[i] == posInf {
				continue // never seen holding it: too weak to attribute
			}
			start := max(pr.lacked[i], bytesize.Add(l, -lead))
			pr.sole = append(pr.sole, transfer{start: start, end: h, bytes: e.tor.PieceSize(i), to: q})
		}
	}
	for k := range e.peers {
		slices.SortFunc(e.peers[k].sole, func(x, y transfer) int { return cmpInt(x.start, y.start) })
	}
}

// NumPeers is the number of observed peers (len(Input.Peers)).
func (e *Estimator) NumPeers() int { return len(e.peers) }

// NumUnobserved is len(Input.Unobserved).
func (e *Estimator) NumUnobserved() int { return len(e.unobs) }

// Capacity is peer i's capacity estimate.
func (e *Estimator) Capacity(i int) (CapacityEstimate, error) {
	if i < 0 || i >= len(e.peers) {
		return CapacityEstimate{}, fmt.Errorf("%w: %d of %d", ErrNoPeer, i, len(e.peers))
	}
	return e.peers[i].capacity, nil
}

type window struct {
	uf, ut int64 // upper window [uf, ut)
	lf, lt int64 // lower window [lf, lt), empty if lt <= lf
}

func (e *Estimator) window(from, to time.Time) (window, Explanation, error) {
	if to.Before(from) {
		return window{}, Explanation{}, fmt.Errorf("%w: [%s, %s)", ErrInterval, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	f, _ := clampNanos(from)
	t, _ := clampNanos(to)
	s := int64(e.cfg.ClockSlack)
	w := window{uf: bytesize.Add(f, -s), ut: bytesize.Add(t, s), lf: bytesize.Add(f, s), lt: bytesize.Add(t, -s)}
	x := Explanation{
		UpperFrom: time.Unix(0, w.uf).UTC(), UpperTo: time.Unix(0, w.ut).UTC(),
		LowerFrom: time.Unix(0, w.lf).UTC(), LowerTo: time.Unix(0, w.lt).UTC(),
		LowerEmpty: w.lt <= w.lf,
	}
	return w, x, nil
}

// Peer bounds observed peer i (an index into Input.Peers) over [from, to).
func (e *Estimator) Peer(i int, from, to time.Time) (Bounds, error) {
	if i < 0 || i >= len(e.peers) {
		return Bounds{}, fmt.Errorf("%w: %d of %d", ErrNoPeer, i, len(e.peers))
	}
	w, x, err := e.window(from, to)
	if err != nil {
		return Bounds{}, err
	}
	p := &e.peers[i]
	b := Bounds{From: from, To: to}
	x.Observed = p.info

	x.AvailabilityObserved, x.AvailabilityPairs, x.PossiblyHeldBytes = e.availability(p, w)
	x.AvailabilityUnobserved, x.UnobservedPresent = e.allowance(-1, w, x.PossiblyHeldBytes)
	for _, pr := range p.probes {
		if pr.at >= w.uf && pr.at < w.ut {
			x.ProbeBytes += pr.bytes
		}
	}
	x.AvailabilityBound = bytesize.Add(bytesize.Add(x.AvailabilityObserved, x.AvailabilityUnobserved), x.ProbeBytes)

	x.ObservedPresent = time.Duration(overlap(p.presence, w.uf, w.ut))
	x.KnownAbsent = time.Duration(overlap(p.absence, w.uf, w.ut))
	x.Capacity = p.capacity
	x.CapacityBound = -1
	b.UploadUpper, x.Limit = x.AvailabilityBound, LimitAvailability
	x.DemandTime = time.Duration(e.demand.busy(w.uf, w.ut, e.ownSpan(i)))
	if p.capacity.Known {
		present := time.Duration(w.ut-w.uf) - x.KnownAbsent
		excess, _ := probeExcess(p, w.uf, w.ut, p.capacity.Upper, &e.demand, e.ownSpan(i))
		x.CapacityBound = bytesize.Add(bytesize.FromFloat(p.capacity.Upper*min(present, x.DemandTime).Seconds()), excess)
		if x.CapacityBound < b.UploadUpper {
			b.UploadUpper, x.Limit = x.CapacityBound, LimitCapacity
		}
	}

	b.DownloadedLower, b.UploadLower = e.lower(p, w, &x)
	b.Explain = x
	b.Plausible = e.plausible(i, w, &x)
	return b, nil
}

// lower computes DownloadedLower and UploadLower over the lower window and
// fills their explanation counts.
func (e *Estimator) lower(p *peerData, w window, x *Explanation) (downloaded, uploaded int64) {
	if !p.info || w.lt <= w.lf {
		return 0, 0
	}
	for piece, h := range p.had {
		if h == posInf {
			continue
		}
		l := p.lacked[piece]
		switch {
		case l == negInf:
			x.FirstSightPieces++
		case l >= w.lf && h < w.lt:
			x.GainedPieces++
			downloaded += e.tor.PieceSize(piece)
		case l < w.lt && h >= w.lf:
			x.StraddlingPieces++
		}
	}
	k := sort.Search(len(p.sole), func(j int) bool { return p.sole[j].start >= w.lf })
	for ; k < len(p.sole) && p.sole[k].start < w.lt; k++ {
		if p.sole[k].end < w.lt {
			x.SoleHolderPieces++
			uploaded += p.sole[k].bytes
		}
	}
	return downloaded, uploaded
}

// availability sums, over pieces peer p may have held in the window, the
// sizes of the other observed peers' possible gains of that piece that
// overlap both the window and the time p may have held it.
func (e *Estimator) availability(p *peerData, w window) (bytes int64, pairs int, held int64) {
	if w.ut <= w.uf {
		return 0, 0, 0
	}
	for i := range e.pieces {
		c := negInf
		if p.info {
			c = p.lacked[i]
		}
		if c >= w.ut {
			continue // p surely lacked i throughout the window
		}
		size := e.tor.PieceSize(i)
		held += size
		// Events (a, b] meeting (c, ∞) ∩ [uf, ut): b > m = max(c, uf−1ns)
		// and a < ut. Every event has a < b (empty ones are (+∞, +∞]) and
		// m < ut, so those with a >= ut all have b > m.
		m := max(c, w.uf-1)
		pi := &e.pieces[i]
		n := countGreater(pi.b, m) - countGreaterEq(pi.a, w.ut)
		if p.info && p.b[i] > m && p.a[i] < w.ut {
			n-- // p's own gain
		}
		if n > 0 {
			pairs += n
			bytes += int64(n) * size
		}
	}
	return bytes, pairs, held
}

// allowance is what unobserved peers other than skip could have gained in
// the window, each capped at perPeer; present reports whether any was there.
func (e *Estimator) allowance(skip int, w window, perPeer int64) (bytes int64, present bool) {
	if w.ut <= w.uf {
		return 0, false
	}
	for j, u := range e.unobs {
		if j == skip || !u.presentIn(w) {
			continue
		}
		present = true
		bytes = bytesize.Add(bytes, e.unobsAllowance(u, w, perPeer))
	}
	return bytes, present
}

// presentIn reports whether the unobserved peer was present in the window.
func (u *unobs) presentIn(w window) bool {
	for _, iv := range u.present {
		if iv[0] < w.ut && iv[1] >= w.uf {
			return true
		}
	}
	return false
}

// unobsAllowance is what one unobserved peer could have gained in the
// window (0 when it was not present), capped at perPeer.
func (e *Estimator) unobsAllowance(u unobs, w window, perPeer int64) int64 {
	if !u.presentIn(w) {
		return 0
	}
	g := u.maxGain
	if e.cfg.UnobservedRate > 0 {
		var ov int64
		for _, iv := range u.present {
			ov += max(0, min(iv[1], w.ut)-max(iv[0], w.uf))
		}
		g = min(g, bytesize.FromFloat(e.cfg.UnobservedRate*time.Duration(ov).Seconds()))
	}
	return min(g, perPeer)
}

// gainObserved is what all observed peers may have gained in the window.
func (e *Estimator) gainObserved(w window) int64 {
	var total int64
	if w.ut <= w.uf {
		return 0
	}
	for i := range e.pieces {
		pi := &e.pieces[i]
		n := countGreater(pi.b, w.uf-1) - countGreaterEq(pi.a, w.ut)
		total += int64(n) * e.tor.PieceSize(i)
	}
	return total
}

// Unobserved bounds unobserved peer j (an index into Input.Unobserved) over
// [from, to): it could have uploaded no more than everything the rest of the
// swarm could have gained. There is no capacity bound and no lower bound.
func (e *Estimator) Unobserved(j int, from, to time.Time) (Bounds, error) {
	if j < 0 || j >= len(e.unobs) {
		return Bounds{}, fmt.Errorf("%w: unobserved %d of %d", ErrNoPeer, j, len(e.unobs))
	}
	w, x, err := e.window(from, to)
	if err != nil {
		return Bounds{}, err
	}
	x.AvailabilityObserved = e.gainObserved(w)
	x.PossiblyHeldBytes = e.tor.TotalLength
	x.AvailabilityUnobserved, x.UnobservedPresent = e.allowance(j, w, e.tor.TotalLength)
	x.AvailabilityBound = bytesize.Add(x.AvailabilityObserved, x.AvailabilityUnobserved)
	x.CapacityBound = -1
	x.Limit = LimitAvailability
	return Bounds{From: from, To: to, UploadUpper: x.AvailabilityBound, Explain: x, Plausible: e.plausibleUnobserved(j, w, &x)}, nil
}

// Swarm sums the bounds over all peers for [from, to).
func (e *Estimator) Swarm(from, to time.Time) (SwarmBounds, error) {
	w, _, err := e.window(from, to)
	if err != nil {
		return SwarmBounds{}, err
	}
	s := SwarmBounds{From: from, To: to, ObservedPeers: e.nInfo, UnobservedPeers: len(e.unobs)}
	s.GainObserved = e.gainObserved(w)
	s.GainUnobserved, _ = e.allowance(-1, w, e.tor.TotalLength)
	for k := range e.peers {
		for _, pr := range e.peers[k].probes {
			if pr.at >= w.uf && pr.at < w.ut {
				s.ProbeBytes += pr.bytes
			}
		}
		var x Explanation
		d, u := e.lower(&e.peers[k], w, &x)
		s.DownloadedLower += d
		s.UploadLower += u
	}
	s.GainUpper = bytesize.Add(bytesize.Add(s.GainObserved, s.GainUnobserved), s.ProbeBytes)
	obs, _ := e.plausibleObserved(-1, w, s.GainObserved)
	unobs, _ := e.plausibleAllowance(-1, w, e.tor.TotalLength)
	s.PlausibleGainUpper = bytesize.Add(bytesize.Add(obs, unobs), s.ProbeBytes)
	return s, nil
}

// helpers

// countLess is the number of elements of sorted s below v.
func countLess(s []int64, v int64) int {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m] < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// countGreater is the number of elements of sorted s above v.
func countGreater(s []int64, v int64) int {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m] <= v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return len(s) - lo
}

func countGreaterEq(s []int64, v int64) int { return len(s) - countLess(s, v) }

// overlap is the total length of the intervals' intersection with [f, t).
func overlap(ivs [][2]int64, f, t int64) int64 {
	var d int64
	for _, iv := range ivs {
		lo, hi := max(iv[0], f), min(iv[1], t)
		if hi > lo {
			d += hi - lo
		}
	}
	return d
}

func toNanos(ivs []timeline.Interval) [][2]int64 {
	out := make([][2]int64, 0, len(ivs))
	for _, iv := range ivs {
		f, _ := clampNanos(iv.From)
		t, _ := clampNanos(iv.To)
		out = append(out, [2]int64{f, t})
	}
	return out
}

var (
	minNanos = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	maxNanos = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
)

// clampNanos converts t to Unix nanoseconds within [1980, 2200); ok is false
// when it had to clamp.
func clampNanos(t time.Time) (int64, bool) {
	switch {
	case t.Before(time.Unix(0, minNanos)):
		return minNanos, false
	case !t.Before(time.Unix(0, maxNanos)):
		return maxNanos, false
	}
	return t.UnixNano(), true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// probeExcess is what peer p's probes starting in [uf, ut) add to a
// capacity bound of rate × demand time: a probe's bytes beyond what rate
// carries in the probe's own seconds of demand, which that bound counts
// already. While others downloaded during a probe, one link carried the
// probe's bytes and theirs, at most rate × those seconds together; a probe
// in a quiet moment adds all its bytes. bytes is all those probes' bytes.
func probeExcess(p *peerData, uf, ut int64, rate float64, d *demand, own [][2]int64) (excess, bytes int64) {
	for _, pr := range p.probes {
		if pr.at < uf || pr.at >= ut {
			continue
		}
		bytes = bytesize.Add(bytes, pr.bytes)
		ov := d.busy(pr.at, min(pr.end, ut), own)
		excess = bytesize.Add(excess, max(0, pr.bytes-bytesize.FromFloat(rate*ov/float64(time.Second))))
	}
	return excess, bytes
}
