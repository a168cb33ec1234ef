// Package timeline turns what the auditor saw of one peer on the wire
// (bitfields, HAVE messages, connection outcomes) into a per-peer timeline:
// which pieces it held when, the interval in which it gained each piece, and
// when it was in the swarm. It does no I/O.
//
// The model rests on one assumption: a peer's piece set only grows. A later
// snapshot that shows fewer pieces is kept as an anomaly, never as a loss, so
// "held at t" means "seen held at or before t".
//
// Evidence has two signs. Positive evidence (a bitfield bit, HaveAll, HAVE)
// says the peer held a piece at that instant. Negative evidence comes only
// from full snapshots (bitfield, HaveAll, HaveNone, or a connection whose
// first message carried no piece set) and says it lacked the piece then. A
// missing HAVE is never negative evidence here, because a client may
// suppress HAVEs. PromptLacked reads it as such under an assumption, for
// the estimate's plausible tier only: that a peer which announces its gains
// on a watched connection announces each within a delay.
package timeline

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/bytesize"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// Kind is what one observation recorded.
type Kind uint8

// The observation kinds.
const (
	// KindBitfield is the peer's bitfield message; Pieces holds it. It is a
	// full snapshot: a clear bit is negative evidence.
	KindBitfield Kind = iota + 1
	// KindHave is a HAVE message for Piece.
	KindHave
	// KindHaveAll is a BEP 6 HaveAll message: a snapshot of every piece.
	KindHaveAll
	// KindHaveNone is a BEP 6 HaveNone message: a snapshot of no piece.
	KindHaveNone
	// KindNoBitfield records a connection whose first message after the
	// handshake was not a bitfield, HaveAll or HaveNone (or that sent nothing
	// while the collector waited). BEP 3 allows that only for a peer with no
	// pieces, so it is read as an empty snapshot. The collector must emit it
	// only after it actually waited for the first message.
	KindNoBitfield
	// KindConnected is a completed BitTorrent handshake.
	KindConnected
	// KindDisconnected is the end of an established connection.
	KindDisconnected
	// KindRefused is a connection attempt refused at the TCP level: nothing
	// listened on the address.
	KindRefused
	// KindUnreachable is a connection attempt that timed out or found no
	// route: the peer may be absent, firewalled or behind NAT.
	KindUnreachable
	// KindHandshakeFailed is a TCP connection on which no valid BitTorrent
	// handshake for the torrent completed (closed, garbage, wrong infohash,
	// MSE failure, timeout).
	KindHandshakeFailed
	// KindHeartbeat is a watch's connection seen still established (the
	// collector records one every snapshot interval). It is a contact and
	// counts in Counts.Connected like KindConnected, but it starts no new
	// connection.
	KindHeartbeat
	// KindWatch is the start of a watch: from now on the connection, whose
	// piece set is already in (read by the watch's hello or by the probe
	// that lent it), reports every message it carries. It counts like
	// KindConnected.
	KindWatch
	kindEnd
)

var kindNames = [...]string{
	KindBitfield:        "bitfield",
	KindHave:            "have",
	KindHaveAll:         "have_all",
	KindHaveNone:        "have_none",
	KindNoBitfield:      "no_bitfield",
	KindConnected:       "connected",
	KindDisconnected:    "disconnected",
	KindRefused:         "refused",
	KindUnreachable:     "unreachable",
	KindHandshakeFailed: "handshake_failed",
	KindHeartbeat:       "heartbeat",
	KindWatch:           "watch",
}

// String is the kind's snake_case name.
func (k Kind) String() string {
	if k > 0 && k < kindEnd {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// snapshot reports whether the kind is a full piece-set snapshot.
func (k Kind) snapshot() bool {
	return k == KindBitfield || k == KindHaveAll || k == KindHaveNone || k == KindNoBitfield
}

// contact reports whether the kind proves a BitTorrent connection to the peer
// at that instant.
func (k Kind) contact() bool {
	return k.snapshot() || k == KindHave || k == KindConnected || k == KindDisconnected || k == KindHeartbeat || k == KindWatch
}

// Observation is one thing the auditor saw of a peer.
type Observation struct {
	At     time.Time
	Kind   Kind
	Pieces bitfield.Bitfield // KindBitfield only
	Piece  int               // KindHave only
}

// Options tune how observations are read.
type Options struct {
	// HaveSettle voids a snapshot's negative evidence for a piece when a HAVE
	// for that piece arrives within HaveSettle after the snapshot. "Lazy
	// bitfield" clients deliberately leave held pieces out of the bitfield and
	// send HAVEs for them right after; without this, those pieces would look
	// gained right after the snapshot. Voiding only widens gain intervals, so
	// lower bounds stay lower bounds.
	HaveSettle time.Duration
}

// DefaultOptions returns the documented defaults: HaveSettle 3 s (lazy
// HAVEs follow the bitfield in the same burst; a longer settle discards real
// gains seen on idle connections that deliver HAVEs in real time).
func DefaultOptions() Options { return Options{HaveSettle: 3 * time.Second} }

// AnomalyKind classifies an observation the timeline could not take at face
// value.
type AnomalyKind uint8

// The anomaly kinds.
const (
	// AnomalyLostPieces: a snapshot lacks pieces seen held earlier (a recheck,
	// deleted data, or a different client at the same address).
	AnomalyLostPieces AnomalyKind = iota + 1
	// AnomalyBadLength: a bitfield for a different number of pieces; ignored.
	AnomalyBadLength
	// AnomalyBadPiece: a HAVE for a piece index out of range; ignored.
	AnomalyBadPiece
	// AnomalyBadTime: an observation with a zero or absurd timestamp; ignored.
	AnomalyBadTime
	// AnomalyBadKind: an observation of unknown kind; ignored.
	AnomalyBadKind
)

var anomalyNames = [...]string{
	AnomalyLostPieces: "lost_pieces",
	AnomalyBadLength:  "bad_length",
	AnomalyBadPiece:   "bad_piece",
	AnomalyBadTime:    "bad_time",
	AnomalyBadKind:    "bad_kind",
}

// String is the anomaly kind's snake_case name.
func (k AnomalyKind) String() string {
	if k > 0 && int(k) < len(anomalyNames) {
		return anomalyNames[k]
	}
	return fmt.Sprintf("anomaly(%d)", uint8(k))
}

// Anomaly is one observation that contradicted the model or was malformed.
type Anomaly struct {
	At     time.Time
	Kind   AnomalyKind
	Pieces int // how many pieces it concerns (lost pieces), else 0
	Detail string
}

// maxAnomalies bounds the anomalies kept; the rest are only counted.
const maxAnomalies = 256

// Interval is a span of time [From, To].
type Interval struct {
	From, To time.Time
}

// Duration is To−From, or 0 when inverted.
func (iv Interval) Duration() time.Duration {
	if iv.To.Before(iv.From) {
		return 0
	}
	return iv.To.Sub(iv.From)
}

// Overlap is how much of [from, to) the interval covers.
func (iv Interval) Overlap(from, to time.Time) time.Duration {
	lo, hi := iv.From, iv.To
	if from.After(lo) {
		lo = from
	}
	if to.Before(hi) {
		hi = to
	}
	if !hi.After(lo) {
		return 0
	}
	return hi.Sub(lo)
}

// Gain is the interval in which a peer gained one piece: it lacked it at
// Lacked and held it at Had, so it completed the piece in (Lacked, Had].
// Lacked is the zero time when no valid snapshot lacked it (the piece was
// held at first sight), so the gain could have happened any time before Had.
type Gain struct {
	Piece  int
	Lacked time.Time
	Had    time.Time
}

// AtFirstSight reports whether the gain time is unknown (no earlier snapshot
// lacked the piece).
func (g Gain) AtFirstSight() bool { return g.Lacked.IsZero() }

// Counts tallies observations by kind (valid ones only).
type Counts struct {
	Bitfield, Have, HaveAll, HaveNone, NoBitfield int
	Connected, Disconnected                       int
	Refused, Unreachable, HandshakeFailed         int
}

// Attempts is the number of connection attempts we know the outcome of.
func (c Counts) Attempts() int { return c.Connected + c.Refused + c.Unreachable + c.HandshakeFailed }

// Failures is the number of failed connection attempts.
func (c Counts) Failures() int { return c.Refused + c.Unreachable + c.HandshakeFailed }

// PieceMessages is the number of observations that carried piece
// information sent by the peer (bitfield, HaveAll, HaveNone, HAVE).
func (c Counts) PieceMessages() int { return c.Bitfield + c.Have + c.HaveAll + c.HaveNone }

// Sentinel nanosecond times: unknown/minus infinity and never/plus infinity.
const (
	NegInf int64 = math.MinInt64
	PosInf int64 = math.MaxInt64
)

// Times outside this range are rejected (and fit in int64 nanoseconds).
var (
	minTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Timeline is the reading of one peer's observations. It is immutable after
// Build and safe for concurrent reads.
type Timeline struct {
	n        int
	settle   time.Duration
	had      []int64 // per piece: first positive evidence, PosInf if never
	lacked   []int64 // per piece: see LackedNanos
	snaps    []int64 // snapshot times, sorted
	contacts []int64 // contact times, sorted
	spans    [][2]int64
	refused  []int64 // refused attempt times, sorted
	// watched: runs [from, to] in which one connection stayed established
	// after its piece set arrived (see PromptLacked), sorted, disjoint.
	watched [][2]int64
	// runHaves counts HAVEs that came inside a run, HaveSettle or more
	// after its piece set: signs that the peer announces what it gains.
	runHaves int
	firstPI  int64 // first piece information, PosInf if none
	counts   Counts
	anoms    []Anomaly
	anomN    int
	lostAt   int64 // first lost-pieces anomaly, PosInf if none
}

// Build reads observations of a peer of a torrent with numPieces pieces with
// DefaultOptions.
func Build(numPieces int, obs []Observation) *Timeline {
	return BuildWith(numPieces, obs, DefaultOptions())
}

// BuildWith reads observations with the given options. Observations may be
// in any order and repeat; malformed ones are skipped and listed in
// Anomalies. The slice is not modified or retained.
func BuildWith(numPieces int, obs []Observation, opt Options) *Timeline {
	if numPieces < 0 {
		numPieces = 0
	}
	if opt.HaveSettle < 0 {
		opt.HaveSettle = 0
	}
	t := &Timeline{n: numPieces, settle: opt.HaveSettle, firstPI: PosInf, lostAt: PosInf}
	valid := make([]Observation, 0, len(obs))
	for _, o := range obs {
		switch {
		case o.At.Before(minTime) || !o.At.Before(maxTime):
			t.anomaly(Anomaly{At: o.At, Kind: AnomalyBadTime, Detail: fmt.Sprintf("%s at %s", o.Kind, o.At.Format(time.RFC3339))})
		case o.Kind == 0 || o.Kind >= kindEnd:
			t.anomaly(Anomaly{At: o.At, Kind: AnomalyBadKind, Detail: o.Kind.String()})
		case o.Kind == KindBitfield && o.Pieces.Len() != numPieces:
			t.anomaly(Anomaly{At: o.At, Kind: AnomalyBadLength, Detail: fmt.Sprintf("bitfield of %d pieces, torrent has %d", o.Pieces.Len(), numPieces)})
		case o.Kind == KindHave && (o.Piece < 0 || o.Piece >= numPieces):
			t.anomaly(Anomaly{At: o.At, Kind: AnomalyBadPiece, Detail: fmt.Sprintf("have %d of %d pieces", o.Piece, numPieces)})
		default:
			valid = append(valid, o)
		}
	}
	sort.SliceStable(valid, func(i, j int) bool { return valid[i].At.Before(valid[j].At) })

	t.had = make([]int64, numPieces)
	for i := range t.had {
		t.had[i] = PosInf
	}
	byHave := make([]bool, numPieces)
	held := bitfield.New(numPieces)
	full := bitfield.Full(numPieces)
	empty := bitfield.New(numPieces)
	connStart := NegInf
	// The run of the connection being watched: from its first piece set
	// (run[0] ≥ 0 once it arrived) to the last sign it was still up.
	run := [2]int64{NegInf, NegInf}
	awaitSet := false // a connection is up whose piece set has not come
	endRun := func() {
		if run[0] != NegInf && run[1] > run[0] {
			t.watched = append(t.watched, run)
		}
		run = [2]int64{NegInf, NegInf}
	}
	for _, o := range valid {
		at := o.At.UnixNano()
		if o.Kind.contact() {
			t.contacts = append(t.contacts, at)
		}
		switch {
		case o.Kind == KindConnected:
			endRun()
			awaitSet = true
		case o.Kind == KindWatch:
			// The watch of the connection whose piece set just arrived
			// goes on with its run; any other starts one now.
			if run[0] == NegInf || run[1] != run[0] || at-run[0] > int64(t.settle) {
				endRun()
				run = [2]int64{at, at}
			}
			awaitSet = false
		case o.Kind.snapshot() && awaitSet:
			run, awaitSet = [2]int64{at, at}, false
		case o.Kind == KindDisconnected:
			if run[0] != NegInf {
				run[1] = at
			}
			endRun()
			awaitSet = false
		case o.Kind == KindHeartbeat && run[0] != NegInf:
			run[1] = at
		case o.Kind == KindHave && run[0] != NegInf && at-run[0] >= int64(t.settle):
			t.runHaves++
		}
		switch o.Kind {
		case KindBitfield, KindHaveAll, KindHaveNone, KindNoBitfield:
			snap := o.Pieces
			switch o.Kind {
			case KindBitfield:
				t.counts.Bitfield++
			case KindHaveAll:
				t.counts.HaveAll++
				snap = full
			case KindHaveNone:
				t.counts.HaveNone++
				snap = empty
			case KindNoBitfield:
				t.counts.NoBitfield++
				snap = empty
			}
			if lost := len(held.Gained(snap)); lost > 0 {
				t.anomaly(Anomaly{At: o.At, Kind: AnomalyLostPieces, Pieces: lost,
					Detail: fmt.Sprintf("%s lacks %d pieces seen held before", o.Kind, lost)})
				if at < t.lostAt {
					t.lostAt = at
				}
			}
			for _, i := range snap.Gained(held) {
				t.had[i] = at
			}
			held.Union(snap)
			t.snaps = append(t.snaps, at)
			t.firstPI = min(t.firstPI, at)
		case KindHave:
			t.counts.Have++
			if !held.Has(o.Piece) {
				held.Set(o.Piece)
				t.had[o.Piece] = at
				byHave[o.Piece] = true
			}
			t.firstPI = min(t.firstPI, at)
		case KindConnected, KindWatch:
			t.counts.Connected++
			connStart = at
		case KindHeartbeat:
			t.counts.Connected++
		case KindDisconnected:
			t.counts.Disconnected++
			if connStart != NegInf {
				t.spans = append(t.spans, [2]int64{connStart, at})
				connStart = NegInf
			}
		case KindRefused:
			t.counts.Refused++
			t.refused = append(t.refused, at)
		case KindUnreachable:
			t.counts.Unreachable++
		case KindHandshakeFailed:
			t.counts.HandshakeFailed++
		}
	}

	endRun()

	// Negative evidence. Pieces only grow, so every snapshot before the first
	// positive evidence lacked the piece: the latest one is the gain
	// interval's start. A HAVE within HaveSettle of a snapshot voids that
	// snapshot for the piece (lazy bitfield).
	t.lacked = make([]int64, numPieces)
	settle := int64(t.settle)
	for i := range t.lacked {
		limit := t.had[i]
		if limit != PosInf && byHave[i] {
			limit -= settle
		}
		t.lacked[i] = latestBefore(t.snaps, limit)
	}
	return t
}

func (t *Timeline) anomaly(a Anomaly) {
	t.anomN++
	if len(t.anoms) < maxAnomalies {
		t.anoms = append(t.anoms, a)
	}
}

// latestBefore returns the largest element of sorted s that is < limit, or
// NegInf.
func latestBefore(s []int64, limit int64) int64 {
	k := sort.Search(len(s), func(j int) bool { return s[j] >= limit })
	if k == 0 {
		return NegInf
	}
	return s[k-1]
}

func fromNanos(ns int64) time.Time {
	if ns == NegInf || ns == PosInf {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// NumPieces is the number of pieces of the torrent.
func (t *Timeline) NumPieces() int { return t.n }

// HasPieceInfo reports whether anything said which pieces the peer held.
func (t *Timeline) HasPieceInfo() bool { return t.firstPI != PosInf }

// Counts tallies the valid observations by kind.
func (t *Timeline) Counts() Counts { return t.counts }

// Anomalies lists (up to 256) observations that were malformed or
// contradicted the model; AnomalyCount counts all of them.
func (t *Timeline) Anomalies() []Anomaly { return slices.Clone(t.anoms) }

// AnomalyCount is the number of anomalies, including those not kept.
func (t *Timeline) AnomalyCount() int { return t.anomN }

// LostPiecesAt is the time of the first snapshot that lacked pieces seen
// held before, if any.
func (t *Timeline) LostPiecesAt() (time.Time, bool) {
	return fromNanos(t.lostAt), t.lostAt != PosInf
}

// FirstSeen is the first time a BitTorrent connection showed the peer
// present.
func (t *Timeline) FirstSeen() (time.Time, bool) {
	if len(t.contacts) == 0 {
		return time.Time{}, false
	}
	return fromNanos(t.contacts[0]), true
}

// LastSeen is the last time a BitTorrent connection showed the peer present.
func (t *Timeline) LastSeen() (time.Time, bool) {
	if len(t.contacts) == 0 {
		return time.Time{}, false
	}
	return fromNanos(t.contacts[len(t.contacts)-1]), true
}

// LastSnapshot is the time of the last full snapshot (negative evidence for
// every piece not held then).
func (t *Timeline) LastSnapshot() (time.Time, bool) {
	if len(t.snaps) == 0 {
		return time.Time{}, false
	}
	return fromNanos(t.snaps[len(t.snaps)-1]), true
}

// HaveAt is the last known piece set at `at`: every piece seen held at or
// before it. ok is false before the first piece information (the state is
// unknown then, not empty).
func (t *Timeline) HaveAt(at time.Time) (bf bitfield.Bitfield, ok bool) {
	bf = bitfield.New(t.n)
	ns, inRange := nanos(at)
	if !inRange {
		if at.Before(minTime) {
			return bf, false
		}
		ns = PosInf - 1
	}
	if t.firstPI == PosInf || ns < t.firstPI {
		return bf, false
	}
	for i, h := range t.had {
		if h <= ns {
			bf.Set(i)
		}
	}
	return bf, true
}

// LackingFrom is the set of pieces some snapshot at or after `at` lacked:
// pieces the peer surely did not hold at `at`.
func (t *Timeline) LackingFrom(at time.Time) bitfield.Bitfield {
	bf := bitfield.New(t.n)
	ns, inRange := nanos(at)
	if !inRange {
		if !at.Before(maxTime) {
			return bf
		}
		ns = NegInf + 1
	}
	for i, l := range t.lacked {
		if l != NegInf && l >= ns {
			bf.Set(i)
		}
	}
	return bf
}

// Final is every piece ever seen held.
func (t *Timeline) Final() bitfield.Bitfield {
	bf := bitfield.New(t.n)
	for i, h := range t.had {
		if h != PosInf {
			bf.Set(i)
		}
	}
	return bf
}

// Gains lists every piece ever seen held with its gain interval, by piece
// index.
func (t *Timeline) Gains() []Gain {
	var out []Gain
	for i, h := range t.had {
		if h == PosInf {
			continue
		}
		out = append(out, Gain{Piece: i, Lacked: fromNanos(t.lacked[i]), Had: fromNanos(h)})
	}
	return out
}

// PieceNanos returns piece i's evidence as Unix nanoseconds for callers
// that index many pieces: had is the first time it was seen held (PosInf if
// never); lacked is the last valid snapshot lacking it — before `had` for a
// held piece (NegInf when held at first sight), or the last snapshot at all
// for a piece never held (NegInf when there was none). After `lacked` the
// peer may hold the piece; at or before it, it surely did not.
func (t *Timeline) PieceNanos(i int) (lacked, had int64) {
	if i < 0 || i >= t.n {
		return NegInf, PosInf
	}
	return t.lacked[i], t.had[i]
}

// PromptLacked is, per piece, the latest time at which the peer lacked it
// if it announces every piece it completes within delay on a connection
// that stays up (BEP 3 HAVEs; the plausible tier's AssumePromptHaves):
// the later of PieceNanos's lacked and, over the runs in which one
// connection stayed established after its piece set arrived, min(had,
// run end) − delay, when that is still inside the run. A piece held at
// such a time would have been announced on that connection by the time
// plus delay, before it first was. NegInf where nothing says more. A peer
// that never announced a piece inside such a run (later than HaveSettle
// after its piece set) shows no sign of announcing what it gains: for it
// the rule says nothing. The slice is new on each call.
func (t *Timeline) PromptLacked(delay time.Duration) []int64 {
	out := slices.Clone(t.lacked)
	if t.runHaves == 0 {
		return out
	}
	d := int64(max(delay, 0))
	for i, h := range t.had {
		// The runs starting before h, latest first: the first one the
		// rule holds in gives the latest time.
		k := sort.Search(len(t.watched), func(j int) bool { return t.watched[j][0] >= h })
		stop := k - maxPromptRuns
		for k--; k >= max(stop, 0); k-- {
			w := t.watched[k]
			if c := min(h, w[1]) - d; c >= w[0] {
				out[i] = max(out[i], c)
				break
			}
		}
	}
	return out
}

// maxPromptRuns bounds how many runs PromptLacked looks back through per
// piece.
const maxPromptRuns = 64

// Presence lists the spans in which the peer was seen in the swarm:
// established connections, and runs of successful contacts no more than
// maxGap apart that no refused connection interrupts. A peer seen once has a
// zero-length span. Spans are sorted and disjoint.
func (t *Timeline) Presence(maxGap time.Duration) []Interval {
	ivs := make([][2]int64, 0, len(t.contacts)+len(t.spans))
	for _, c := range t.contacts {
		ivs = append(ivs, [2]int64{c, c})
	}
	ivs = append(ivs, t.spans...)
	slices.SortFunc(ivs, func(a, b [2]int64) int {
		switch {
		case a[0] < b[0]:
			return -1
		case a[0] > b[0]:
			return 1
		}
		return 0
	})
	gap := int64(max(maxGap, 0))
	var out []Interval
	var cur [2]int64
	for k, iv := range ivs {
		if k > 0 && iv[0] <= bytesize.Add(cur[1], gap) && !anyIn(t.refused, cur[1], iv[0]) {
			cur[1] = max(cur[1], iv[1])
			continue
		}
		if k > 0 {
			out = append(out, Interval{fromNanos(cur[0]), fromNanos(cur[1])})
		}
		cur = iv
	}
	if len(ivs) > 0 {
		out = append(out, Interval{fromNanos(cur[0]), fromNanos(cur[1])})
	}
	return out
}

// Absence lists the spans in which the peer was seen gone: runs of refused
// connection attempts (nothing listening) no more than maxGap apart with no
// contact in between. A single refusal is a zero-length span. Refusal is
// good but not conclusive evidence: a client whose port mapping lapsed is
// also refused.
func (t *Timeline) Absence(maxGap time.Duration) []Interval {
	gap := int64(max(maxGap, 0))
	var out []Interval
	for k := 0; k < len(t.refused); {
		from, to := t.refused[k], t.refused[k]
		k++
		for k < len(t.refused) && t.refused[k] <= bytesize.Add(to, gap) && !t.contactWithin(to, t.refused[k]) {
			to = t.refused[k]
			k++
		}
		if t.contactWithin(from, from) {
			continue // refused while a connection was established: contradictory
		}
		out = append(out, Interval{fromNanos(from), fromNanos(to)})
	}
	return out
}

// contactWithin reports whether a contact or an established connection lies
// in [a, b].
func (t *Timeline) contactWithin(a, b int64) bool {
	k := sort.Search(len(t.contacts), func(j int) bool { return t.contacts[j] >= a })
	if k < len(t.contacts) && t.contacts[k] <= b {
		return true
	}
	for _, s := range t.spans {
		if s[0] <= b && s[1] >= a {
			return true
		}
	}
	return false
}

// anyIn reports whether sorted s has an element strictly between a and b.
func anyIn(s []int64, a, b int64) bool {
	k := sort.Search(len(s), func(j int) bool { return s[j] > a })
	return k < len(s) && s[k] < b
}

// DownloadRate estimates how fast the peer gained pieces in [from, to):
// pieces whose gain completed in the window and whose gain start is known,
// per second. HAVE suppression and sparse snapshots make it a low estimate.
// ok is false for an empty window or when no snapshot precedes the window
// (gains in it could not be seen).
func (t *Timeline) DownloadRate(from, to time.Time) (piecesPerSec float64, ok bool) {
	f, okf := nanos(from)
	e, oke := nanos(to)
	if !okf || !oke || e <= f || len(t.snaps) == 0 || t.snaps[0] > f {
		return 0, false
	}
	n := 0
	for i, h := range t.had {
		if h != PosInf && t.lacked[i] != NegInf && h >= f && h < e {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds(), true
}

// nanos converts a time in the accepted range to Unix nanoseconds.
func nanos(t time.Time) (int64, bool) {
	if t.Before(minTime) || !t.Before(maxTime) {
		return 0, false
	}
	return t.UnixNano(), true
}
