// Package verdict judges what each reporting identity told the tracker
// against what the wire showed: for every pair of consecutive announces and
// every session it compares the reported upload and download with the bounds
// of package estimate, checks `left` against the observed bitfield, and
// flags addresses that never speak BitTorrent, serve no pieces or serve bad
// data. Passes over the whole swarm follow: the claims of peers that never
// unchoked us (tiers.go), the swarm's claims checked together (joint.go),
// and conservation per window. It does no I/O. docs/estimation.md explains
// the reasons and the tolerances.
package verdict

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/analysis/bytesize"
	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// ErrConfig is returned for a configuration value out of range.
var ErrConfig = errors.New("invalid verdict config")

// Status is the outcome for an identity, an interval or a window.
type Status string

// The statuses, from least to most severe (unverifiable sits apart: nothing
// could be checked).
const (
	StatusOK           Status = "ok"
	StatusUnverifiable Status = "unverifiable"
	StatusSuspect      Status = "suspect"
	StatusMisreporting Status = "misreporting"
)

// Severity orders statuses by what they accuse: misreporting 3, suspect
// 2, ok 1, unverifiable (and anything else) 0.
func (s Status) Severity() int {
	switch s {
	case StatusMisreporting:
		return 3
	case StatusSuspect:
		return 2
	case StatusOK:
		return 1
	}
	return 0
}

// Rank is the order in which reports list statuses: misreporting 0,
// suspect 1, unverifiable 2, ok 3, anything else (a row nobody reported
// for) 4.
func (s Status) Rank() int {
	switch s {
	case StatusMisreporting:
		return 0
	case StatusSuspect:
		return 1
	case StatusUnverifiable:
		return 2
	case StatusOK:
		return 3
	}
	return 4
}

// Code names a reason.
type Code string

// The reason codes (docs/estimation.md describes each).
const (
	CodeUploadExceedsCapacity     Code = "upload_exceeds_capacity"
	CodeUploadExceedsAvailability Code = "upload_exceeds_availability"
	CodeDownloadUnderreported     Code = "download_underreported"
	CodeLeftInconsistent          Code = "left_inconsistent"
	CodeNeverHandshaked           Code = "never_handshaked"
	CodeNoBitfield                Code = "no_bitfield"
	CodeUploadWhileAbsent         Code = "upload_while_absent"
	CodeBadData                   Code = "bad_data"
	CodeSwarmConservation         Code = "swarm_conservation"
	// The reports contradict themselves or the wire (tiers.go).
	CodeLeftWithoutDownload Code = "left_without_download"
	CodeCounterDecreased    Code = "counter_decreased"
	CodeNeverUnchoked       Code = "never_unchoked"
	// The swarm's claims fit together only without this one (joint.go).
	CodeClaimsDoNotFit Code = "claims_do_not_fit"
)

// Tier says under which assumptions a finding holds.
type Tier string

// The tiers (docs/estimation.md, "Evidence tiers").
const (
	// TierProof: impossible under worst-case assumptions (any unobserved
	// identity may have downloaded anything). Only proofs are
	// misreporting.
	TierProof Tier = "proof"
	// TierPlausible: impossible under the assumptions the reason lists,
	// which honest swarms satisfy and cheaters cannot use to hide. At most
	// suspect.
	TierPlausible Tier = "plausible"
)

// Assumptions a plausible finding may rest on besides estimate.Assume*.
const (
	// AssumeReachableAnswers: a peer in the swarm completes some of our
	// connection attempts (NAT'd peers do not).
	AssumeReachableAnswers = "reachable_peers_answer"
	// AssumeSeederShowsPieces: a peer with pieces says so after the
	// handshake (BEP 3).
	AssumeSeederShowsPieces = "seeders_show_their_pieces"
	// AssumeProbeShare: a busy probe saw at least a 1/MaxShare share of the
	// peer's upload.
	AssumeProbeShare = "probe_sees_a_fair_share"
	// AssumeUnservedResidual: a peer that never served a verifiable byte
	// gets credit only for downloads that measured peers' claims leave.
	AssumeUnservedResidual = "unserved_claims_get_the_residual"
	// AssumeNoRecheck: a client does not hash-check data copied in from
	// disk while it runs (cross-seeding tools do).
	AssumeNoRecheck = "no_data_from_disk"
	// AssumeOneOverclaimer: of the identities no other finding flagged, at
	// most one over-reports its uploads.
	AssumeOneOverclaimer = "one_overclaimer"
)

// Reason is one finding with the numbers behind it. Status is what the
// finding alone implies (suspect or misreporting).
type Reason struct {
	Code   Code   `json:"code"`
	Status Status `json:"status"`
	// Tier and Assumptions say what the finding rests on.
	Tier        Tier               `json:"tier"`
	Assumptions []string           `json:"assumptions,omitempty"`
	Confidence  float64            `json:"confidence"`
	Message     string             `json:"message"`
	Numbers     map[string]float64 `json:"numbers,omitempty"`
}

// BadPiece is a piece a peer sent us that failed its hash check.
type BadPiece struct {
	At    time.Time
	Piece int
}

// WirePeer is everything the auditor saw of one address.
type WirePeer struct {
	// Addr is the address we dialled (zero for a peer seen only on
	// incoming connections).
	Addr netip.AddrPort
	// PeerIDs are the peer ids its handshakes carried.
	PeerIDs      [][20]byte
	Observations []timeline.Observation
	Probes       []estimate.Sample
	BadPieces    []BadPiece
	// ChokedProbes is how many bandwidth probes it kept choked throughout
	// (allowed-fast blocks aside).
	ChokedProbes int
	// Reach is how the auditor got handshakes from it.
	Reach Reach
}

// Reach is how the auditor reached a peer: Direct, a connection the
// auditor opened completed a handshake; Incoming, one the peer opened to
// the auditor's listener did (a peer behind NAT is reached only so);
// Holepunch, one through a hole a relay's introduction punched in the
// peer's NAT did (BEP 55). TCP and UTP say which transports those
// connections ran over (BEP 29).
type Reach struct {
	Direct, Incoming, Holepunch bool
	TCP, UTP                    bool
}

// Transport names the transports of the reach: "tcp", "utp", "tcp+utp",
// or "" when the peer was never reached.
func (r Reach) Transport() string {
	switch {
	case r.TCP && r.UTP:
		return "tcp+utp"
	case r.UTP:
		return "utp"
	case r.TCP:
		return "tcp"
	}
	return ""
}

// Ways lists the reach's ways by name ("direct", "incoming"), empty when
// the peer was never reached.
func (r Reach) Ways() []string {
	out := []string{}
	if r.Direct {
		out = append(out, "direct")
	}
	if r.Incoming {
		out = append(out, "incoming")
	}
	if r.Holepunch {
		out = append(out, "holepunch")
	}
	return out
}

// Input is one torrent's evidence.
type Input struct {
	// InfoHash, when non-zero, drops announces for other torrents.
	InfoHash  infohash.T
	Torrent   estimate.Torrent
	Announces []reported.Announce
	Peers     []WirePeer
	// Windows are the conservation windows; empty means one window over
	// the whole span of the announces.
	Windows []timeline.Interval
	// Span is the interval Report.Addresses bounds each wire peer over;
	// zero means the span of all announces and observations.
	Span timeline.Interval
}

// Config holds the tolerances. DefaultConfig documents the defaults, chosen
// so that honest clients are never called misreporting.
type Config struct {
	Timeline timeline.Options
	Estimate estimate.Config
	// A reported upload is suspect above bound×SuspectFactor + slack and
	// misreporting above bound×MisreportFactor + slack (symmetrically for
	// downloads below a lower bound); slack = max(SlackBytes, SlackPieces ×
	// piece length). Counters include protocol overhead and re-requests
	// (+5–10%).
	SuspectFactor   float64
	MisreportFactor float64
	// CapacitySuspectFactor replaces SuspectFactor where the plausible
	// bound is probed capacity: that bound carries its own headroom
	// (Estimate.PlausibleHeadroom on a quiet probe, the probe's share on a
	// busy one) and BurstWindow, so the factor covers only what counters
	// add to payload.
	CapacitySuspectFactor float64
	SlackBytes            int64
	SlackPieces           int
	// BurstWindow is added to the time in capacity bounds: rates are
	// bursty over 5–10 s and counters are read at announce time.
	BurstWindow time.Duration
	// CapacityMisreportFactor: exceeding the capacity bound by this factor
	// (plus slack) is misreporting; 0 means capacity alone never is, because
	// a probe sees only the capacity spared for us.
	CapacityMisreportFactor float64
	// MaxRate (bytes/s) is a physical ceiling for any client; uploading
	// faster is misreporting. 0 disables.
	MaxRate float64
	// InFlightPieces pieces may be partly downloaded before an interval
	// starts (or partly counted in `left` by clients that count blocks).
	InFlightPieces int
	// LeftSlackPieces is the rounding tolerance on `left`.
	LeftSlackPieces int
	// AnnounceLatency is how long before an announce's timestamp the client
	// may have read the counters it reports (building the request, sending
	// it, a loaded tracker): pieces seen held within it need not be in
	// `left` yet. It only matters when it exceeds the estimate's ClockSlack.
	AnnounceLatency time.Duration
	// ShortSession: a started→stopped session no longer than this is
	// checked for uploads it had no time to make.
	ShortSession time.Duration
	// AnnounceGrace is how long an identity may stay in the swarm after
	// its last announce when it sent no `stopped` (one announce interval).
	AnnounceGrace time.Duration
	// MaxAnnounceGap: consecutive announces further apart belong to
	// different sessions (a restart whose `started` was lost).
	MaxAnnounceGap time.Duration
	// MinFailedAttempts failed connection attempts, and no handshake, make
	// never_handshaked.
	MinFailedAttempts int
	// BadDataMisreportPieces distinct pieces failing their hash make
	// bad_data misreporting; fewer are suspect.
	BadDataMisreportPieces int
	// PlausibleSlackBytes and PlausibleSlackPieces are the slack of the
	// plausible tier, whose bounds do not carry the worst case's
	// allowances: max(PlausibleSlackBytes, PlausibleSlackPieces × piece
	// length).
	PlausibleSlackBytes  int64
	PlausibleSlackPieces int
	// MinChokedProbes probes that kept us choked, and none that got data,
	// make a peer that showed pieces "never unchoked".
	MinChokedProbes int
	// JointAvailabilityFactor scales what the receivers absorbed when the
	// swarm's claims are checked together (joint.go): the whole swarm's
	// demand counts once there, and real clients' upload counters summed
	// over a swarm exceed the pieces completed plus the auditor's payload
	// by a few percent at most (docs/estimation.md). 0 disables the check.
	JointAvailabilityFactor float64
}

// DefaultConfig returns the defaults: SuspectFactor 1.15, CapacitySuspectFactor 1.05, MisreportFactor
// 1.5, SlackBytes 32 MiB, SlackPieces 8, BurstWindow 10 s,
// CapacityMisreportFactor 0 (off), MaxRate 1.25e9 B/s (10 Gbit/s),
// InFlightPieces 32, LeftSlackPieces 1, AnnounceLatency 5 s, ShortSession 2 min, AnnounceGrace
// 45 min, MaxAnnounceGap 3 h, MinFailedAttempts 3, BadDataMisreportPieces 8, JointAvailabilityFactor 1.05,
// and the timeline and estimate defaults.
func DefaultConfig() Config {
	return Config{
		Timeline:                timeline.DefaultOptions(),
		Estimate:                estimate.DefaultConfig(),
		SuspectFactor:           1.15,
		CapacitySuspectFactor:   1.05,
		MisreportFactor:         1.5,
		SlackBytes:              32 << 20,
		SlackPieces:             8,
		BurstWindow:             10 * time.Second,
		MaxRate:                 1.25e9,
		InFlightPieces:          32,
		LeftSlackPieces:         1,
		AnnounceLatency:         5 * time.Second,
		ShortSession:            2 * time.Minute,
		AnnounceGrace:           45 * time.Minute,
		MaxAnnounceGap:          3 * time.Hour,
		MinFailedAttempts:       3,
		BadDataMisreportPieces:  8,
		PlausibleSlackBytes:     4 << 20,
		PlausibleSlackPieces:    4,
		MinChokedProbes:         3,
		JointAvailabilityFactor: 1.05,
	}
}

// Validate checks the ranges.
func (c Config) Validate() error {
	fin := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	switch {
	case !fin(c.SuspectFactor) || c.SuspectFactor < 1:
		return fmt.Errorf("%w: SuspectFactor %v must be >= 1", ErrConfig, c.SuspectFactor)
	case !fin(c.CapacitySuspectFactor) || c.CapacitySuspectFactor < 1 || c.CapacitySuspectFactor > c.MisreportFactor:
		return fmt.Errorf("%w: CapacitySuspectFactor %v must be in [1, MisreportFactor]", ErrConfig, c.CapacitySuspectFactor)
	case !fin(c.MisreportFactor) || c.MisreportFactor < c.SuspectFactor:
		return fmt.Errorf("%w: MisreportFactor %v must be >= SuspectFactor", ErrConfig, c.MisreportFactor)
	case !fin(c.JointAvailabilityFactor) || (c.JointAvailabilityFactor != 0 && (c.JointAvailabilityFactor < 1 || c.JointAvailabilityFactor > c.SuspectFactor)):
		return fmt.Errorf("%w: JointAvailabilityFactor %v must be 0 or in [1, SuspectFactor]", ErrConfig, c.JointAvailabilityFactor)
	case !fin(c.CapacityMisreportFactor) || (c.CapacityMisreportFactor != 0 && c.CapacityMisreportFactor < c.SuspectFactor):
		return fmt.Errorf("%w: CapacityMisreportFactor %v must be 0 or >= SuspectFactor", ErrConfig, c.CapacityMisreportFactor)
	case !fin(c.MaxRate) || c.MaxRate < 0:
		return fmt.Errorf("%w: MaxRate %v must be >= 0", ErrConfig, c.MaxRate)
	case c.PlausibleSlackBytes < 0 || c.PlausibleSlackPieces < 0 || c.MinChokedProbes < 1:
		return fmt.Errorf("%w: plausible slack must not be negative, MinChokedProbes >= 1", ErrConfig)
	case c.SlackBytes < 0 || c.SlackPieces < 0 || c.InFlightPieces < 0 || c.LeftSlackPieces < 0 || c.AnnounceLatency < 0 || c.MinFailedAttempts < 1 || c.BadDataMisreportPieces < 1:
		return fmt.Errorf("%w: counts must not be negative (MinFailedAttempts, BadDataMisreportPieces >= 1)", ErrConfig)
	case c.BurstWindow < 0 || c.ShortSession < 0 || c.AnnounceGrace < 0 || c.MaxAnnounceGap <= 0:
		return fmt.Errorf("%w: durations must not be negative (MaxAnnounceGap > 0)", ErrConfig)
	}
	return nil
}

// Identity is one reporting identity: a peer_id and passkey, or, when the
// announces carry no peer_id, an address and passkey.
type Identity struct {
	Key    string   `json:"key"`
	PeerID [20]byte `json:"-"`
	// Passkey is the user the identity reported as: the announce's
	// passkey, or "uid:N" for records that name the tracker's user id
	// instead (tracker databases, logs with a user column).
	Passkey string           `json:"passkey,omitempty"`
	Addrs   []netip.AddrPort `json:"addrs"`
}

// KeyOf is the identity key of an announce: its peer_id (or address)
// and its user.
func KeyOf(a reported.Announce) string {
	if a.PeerID != ([20]byte{}) {
		return "pid:" + hex.EncodeToString(a.PeerID[:]) + "|" + userOf(a)
	}
	return "addr:" + a.AddrPort().String() + "|" + userOf(a)
}

// userOf is the user an announce reported as: its passkey, or the
// tracker's user id when the record has no passkey.
func userOf(a reported.Announce) string {
	if a.Passkey == "" && a.UserID != "" {
		return "uid:" + a.UserID
	}
	return a.Passkey
}

// Check is the judgement of one interval of an identity: a pair of
// consecutive announces, or a whole session.
type Check struct {
	From       time.Time       `json:"from"`
	To         time.Time       `json:"to"`
	Session    bool            `json:"session"`
	Uploaded   int64           `json:"uploaded"`   // reported Δ
	Downloaded int64           `json:"downloaded"` // reported Δ
	Bounds     estimate.Bounds `json:"bounds"`
	Status     Status          `json:"status"`
	Confidence float64         `json:"confidence"`
	Reasons    []Reason        `json:"reasons,omitempty"`
}

// Verdict is the judgement of one identity.
type Verdict struct {
	Identity   Identity `json:"identity"`
	Status     Status   `json:"status"`
	Confidence float64  `json:"confidence"`
	// Reasons holds the strongest finding of each code.
	Reasons    []Reason `json:"reasons,omitempty"`
	Announces  int      `json:"announces"`
	Sessions   int      `json:"sessions"`
	Uploaded   int64    `json:"uploaded"`   // Σ reported Δ within sessions
	Downloaded int64    `json:"downloaded"` // Σ reported Δ within sessions
	Observed   bool     `json:"observed"`   // any wire observation of it
	PieceInfo  bool     `json:"piece_info"` // its pieces were seen
	// NegativeDiscounted: its snapshots understated its pieces
	// (super-seeding, a recheck, lost data), so they were read only as
	// evidence of what it held, never of what it lacked.
	NegativeDiscounted bool             `json:"negative_discounted,omitempty"`
	WirePeers          []netip.AddrPort `json:"wire_peers,omitempty"`
	Checks             []Check          `json:"checks,omitempty"`
}

// Window is the swarm conservation check over one window.
type Window struct {
	From               time.Time            `json:"from"`
	To                 time.Time            `json:"to"`
	ReportedUploaded   int64                `json:"reported_uploaded"`
	ReportedDownloaded int64                `json:"reported_downloaded"`
	Swarm              estimate.SwarmBounds `json:"swarm"`
	Status             Status               `json:"status"`
	Reasons            []Reason             `json:"reasons,omitempty"`
	// Contributors are the identities whose claims in the window most
	// exceed their own per-interval upload bounds, largest first (at most
	// 5).
	Contributors []string `json:"contributors,omitempty"`
	// Transfers is the window's transfer matrix between observed peers
	// (estimate.Transfers), by wire address; empty above
	// estimate.MaxTransferPeers observed peers.
	Transfers []Transfer `json:"transfers,omitempty"`
}

// Transfer bounds what one observed peer could have sent another in a
// window: Lower from sole-holder attributions, Upper from the pieces the
// receiver gained that the sender may have held, capped by the sender's
// upload bound.
type Transfer struct {
	From           netip.AddrPort `json:"from"`
	To             netip.AddrPort `json:"to"`
	Lower          int64          `json:"lower"`
	Upper          int64          `json:"upper"`
	PlausibleUpper int64          `json:"plausible_upper"`
}

// Summary is the swarm-wide outcome.
type Summary struct {
	Windows          []Window       `json:"windows"`
	Reasons          []Reason       `json:"reasons,omitempty"`
	Counts           map[Status]int `json:"counts"`
	DroppedAnnounces int            `json:"dropped_announces"`
	// Skipped names the swarm-wide checks this swarm was too large for,
	// and why.
	Skipped []string `json:"skipped,omitempty"`
}

// Report is the outcome of Judge.
type Report struct {
	Verdicts []Verdict `json:"verdicts"`
	Summary  Summary   `json:"summary"`
	// Addresses are the bounds of every wire peer over Span, from the same
	// estimator the verdicts used (a peer's bounds are its group's: the
	// addresses linked to one identity are one peer), so that every report
	// shows exactly what was judged.
	Addresses []AddrBounds      `json:"addresses"`
	Span      timeline.Interval `json:"span"`
}

// AddrBounds is what the analysis knows of one wire address over the span.
type AddrBounds struct {
	Addr netip.AddrPort `json:"addr"`
	// Group lists the addresses judged as one peer with it.
	Group []netip.AddrPort `json:"group"`
	// PieceInfo: its group's pieces were seen, so it has bounds.
	PieceInfo bool                      `json:"piece_info"`
	Capacity  estimate.CapacityEstimate `json:"capacity"`
	Bounds    estimate.Bounds           `json:"bounds"`
	// Timeline is this address's own timeline, built with the verdict's
	// timeline settings: reports and scrape checks read it instead of
	// building their own.
	Timeline *timeline.Timeline `json:"-"`
}

// session is a run of announces with counters since one start.
type session struct {
	ann []reported.Announce
	end time.Time // last time it may have been present
}

type identity struct {
	id       Identity
	ann      []reported.Announce
	sessions []session
	group    int // -1: no wire peer
	unobs    int // index into estimate Unobserved, or -1
}

type group struct {
	members []int // wire peer indices
	obs     []timeline.Observation
	raw     *timeline.Timeline // all observations: counts, presence, absence
	tl      *timeline.Timeline // piece evidence used for bounds (see discount)
	// discounted: snapshots were read as positive evidence only (see
	// Verdict.NegativeDiscounted).
	discounted bool
	probes     []estimate.Sample
	choked     int
	bad        map[int]bool
	est        int // estimate peer index, or -1
	until      time.Time
}

var (
	minTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Judge judges every identity of one torrent.
func Judge(in Input, cfg Config) (*Report, error) {
	if err := in.Torrent.Validate(); err != nil {
		return nil, fmt.Errorf("judge: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("judge: %w", err)
	}
	j := &judge{in: in, cfg: cfg, tor: in.Torrent}
	j.slack = max(cfg.SlackBytes, int64(cfg.SlackPieces)*in.Torrent.PieceLength)
	j.pslack = max(cfg.PlausibleSlackBytes, int64(cfg.PlausibleSlackPieces)*in.Torrent.PieceLength)
	j.identities()
	j.groups()
	// The worst case first, to find whose reports the wire contradicts;
	// then both tiers, with the others' reports.
	j.untrusted = make([]bool, len(j.ids))
	for k := range j.untrusted {
		j.untrusted[k] = true
	}
	if err := j.estimate(); err != nil {
		return nil, fmt.Errorf("judge: %w", err)
	}
	if err := j.trust(); err != nil {
		return nil, fmt.Errorf("judge: %w", err)
	}
	if err := j.estimate(); err != nil {
		return nil, fmt.Errorf("judge: %w", err)
	}
	rep := &Report{Summary: Summary{Counts: map[Status]int{}, DroppedAnnounces: j.dropped}}
	for k := range j.ids {
		v, err := j.verdict(k)
		if err != nil {
			return nil, fmt.Errorf("judge %s: %w", j.ids[k].id.Key, err)
		}
		rep.Verdicts = append(rep.Verdicts, v)
		rep.Summary.Counts[v.Status]++
	}
	if err := j.unserved(rep); err != nil {
		return nil, fmt.Errorf("judge: %w", err)
	}
	if err := j.joint(rep); err != nil {
		return nil, fmt.Errorf("judge: joint claims: %w", err)
	}
	if err := j.addresses(rep); err != nil {
		return nil, fmt.Errorf("judge: %w", err)
	}
	if err := j.conservation(rep); err != nil {
		return nil, fmt.Errorf("judge: conservation: %w", err)
	}
	return rep, nil
}

type judge struct {
	in     Input
	cfg    Config
	tor    estimate.Torrent
	slack  int64
	pslack int64 // the plausible tier's slack
	// untrusted: the identity's download reports are not used by the
	// plausible tier (the wire or its own reports contradict them).
	untrusted []bool
	estAddr   []netip.AddrPort // estimate peer index → its group's address
	ids       []identity
	grps      []group
	est       *estimate.Estimator
	dropped   int
}

// identities groups the announces and splits them into sessions.
func (j *judge) identities() {
	byKey := map[string]int{}
	for _, a := range j.in.Announces {
		if (j.in.InfoHash != infohash.T{}) && a.InfoHash != j.in.InfoHash {
			j.dropped++
			continue
		}
		if a.At.Before(minTime) || !a.At.Before(maxTime) || a.Uploaded < 0 || a.Downloaded < 0 {
			j.dropped++
			continue
		}
		key := KeyOf(a)
		k, ok := byKey[key]
		if !ok {
			k = len(j.ids)
			byKey[key] = k
			j.ids = append(j.ids, identity{id: Identity{Key: key, PeerID: a.PeerID, Passkey: userOf(a)}, group: -1, unobs: -1})
		}
		j.ids[k].ann = append(j.ids[k].ann, a)
	}
	slices.SortFunc(j.ids, func(a, b identity) int { return strings.Compare(a.id.Key, b.id.Key) })
	for k := range j.ids {
		id := &j.ids[k]
		sort.SliceStable(id.ann, func(a, b int) bool { return id.ann[a].At.Before(id.ann[b].At) })
		seen := map[netip.AddrPort]bool{}
		for _, a := range id.ann {
			if ap := a.AddrPort(); a.IP.IsValid() && !seen[ap] {
				seen[ap] = true
				id.id.Addrs = append(id.id.Addrs, ap)
			}
		}
		id.sessions = j.split(id.ann)
	}
}

// split cuts an identity's announces into sessions: a new one starts at
// `started`, after `stopped`, when a counter goes down (a restart), or
// after a gap longer than MaxAnnounceGap.
func (j *judge) split(ann []reported.Announce) []session {
	var out []session
	for i, a := range ann {
		if i == 0 {
			out = append(out, session{ann: []reported.Announce{a}})
			continue
		}
		p := ann[i-1]
		if a.Event == reported.EventStarted || p.Event == reported.EventStopped ||
			a.Uploaded < p.Uploaded || a.Downloaded < p.Downloaded || a.At.Sub(p.At) > j.cfg.MaxAnnounceGap {
			out = append(out, session{ann: []reported.Announce{a}})
			continue
		}
		out[len(out)-1].ann = append(out[len(out)-1].ann, a)
	}
	for k := range out {
		s := &out[k]
		last := s.ann[len(s.ann)-1]
		s.end = last.At
		if last.Event != reported.EventStopped {
			s.end = last.At.Add(j.cfg.AnnounceGrace)
		}
	}
	return out
}

// groups links identities to wire peers (by announced address and by
// handshake peer id) and merges wire peers linked to one identity.
func (j *judge) groups() {
	n := len(j.in.Peers)
	parent := make([]int, n)
	for i := range parent {
		parent[i] = i
	}
	find := func(x int) int {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	byAddr := map[netip.AddrPort][]int{}
	byPID := map[[20]byte][]int{}
	for i, p := range j.in.Peers {
		if p.Addr.IsValid() {
			byAddr[p.Addr] = append(byAddr[p.Addr], i)
		}
		for _, pid := range p.PeerIDs {
			if pid != ([20]byte{}) {
				byPID[pid] = append(byPID[pid], i)
			}
		}
	}
	links := make([][]int, len(j.ids))
	for k, id := range j.ids {
		set := map[int]bool{}
		for _, ap := range id.id.Addrs {
			for _, i := range byAddr[ap] {
				set[i] = true
			}
		}
		if id.id.PeerID != ([20]byte{}) {
			for _, i := range byPID[id.id.PeerID] {
				set[i] = true
			}
		}
		for i := range set {
			links[k] = append(links[k], i)
		}
		slices.Sort(links[k])
		for _, i := range links[k][min(1, len(links[k])):] {
			parent[find(i)] = find(links[k][0])
		}
	}
	gIndex := map[int]int{}
	for i := 0; i < n; i++ {
		r := find(i)
		g, ok := gIndex[r]
		if !ok {
			g = len(j.grps)
			gIndex[r] = g
			j.grps = append(j.grps, group{est: -1, bad: map[int]bool{}})
		}
		gr := &j.grps[g]
		p := j.in.Peers[i]
		gr.members = append(gr.members, i)
		gr.obs = append(gr.obs, p.Observations...)
		gr.probes = append(gr.probes, p.Probes...)
		gr.choked += p.ChokedProbes
		for _, b := range p.BadPieces {
			if b.Piece >= 0 && b.Piece < j.tor.NumPieces {
				gr.bad[b.Piece] = true
			}
		}
	}
	for k := range j.ids {
		if len(links[k]) > 0 {
			j.ids[k].group = gIndex[find(links[k][0])]
		}
	}
	for g := range j.grps {
		gr := &j.grps[g]
		gr.raw = timeline.BuildWith(j.tor.NumPieces, gr.obs, j.cfg.Timeline)
		gr.tl = gr.raw
	}
	for _, id := range j.ids {
		if id.group < 0 {
			continue
		}
		for _, s := range id.sessions {
			if s.end.After(j.grps[id.group].until) {
				j.grps[id.group].until = s.end
			}
		}
	}
	for g := range j.grps {
		if gr := &j.grps[g]; j.negativeUnreliable(g) {
			gr.discounted = true
			gr.tl = timeline.BuildWith(j.tor.NumPieces, positiveOnly(gr.obs, j.tor.NumPieces), j.cfg.Timeline)
		}
	}
}

// negativeUnreliable reports whether a group's snapshots understate what it
// holds, so "lacked at t" cannot be trusted: a later snapshot lacked pieces
// seen held before (super-seeding across connections, a recheck, deleted
// data, two clients at one address), or, after announcing left=0, it
// started a connection empty (HaveNone or no bitfield) yet offered pieces —
// what a super-seeder (BEP 16) does: it hides its pieces and reveals them
// one HAVE at a time. A peer that never offered any piece, or that sent a
// real bitfield, keeps its negative evidence.
func (j *judge) negativeUnreliable(g int) bool {
	gr := &j.grps[g]
	if _, lost := gr.raw.LostPiecesAt(); lost {
		return true
	}
	if gr.raw.Final().Count() == 0 {
		return false
	}
	var seeder time.Time // first announce claiming left=0
	for _, id := range j.ids {
		if id.group != g {
			continue
		}
		for _, a := range id.ann {
			if a.Left == 0 && (seeder.IsZero() || a.At.Before(seeder)) {
				seeder = a.At
			}
		}
	}
	if seeder.IsZero() {
		return false
	}
	// A super-seeder reveals one or two pieces on a connection it started
	// empty; a leecher that calls itself complete (left=0) but started
	// empty reveals a stream of HAVEs as it downloads: that is no
	// super-seeding, and its snapshots stay negative evidence.
	from := seeder.Add(-j.cfg.Estimate.ClockSlack)
	obs := slices.Clone(gr.obs)
	slices.SortStableFunc(obs, func(a, b timeline.Observation) int { return a.At.Compare(b.At) })
	emptyStart, revealing := false, false
	haves := 0
	for _, o := range obs {
		switch o.Kind {
		case timeline.KindHaveNone, timeline.KindNoBitfield:
			revealing, haves = true, 0
			emptyStart = emptyStart || !o.At.Before(from)
		case timeline.KindHave:
			if revealing {
				if haves++; haves > superSeedReveal {
					return false
				}
			}
		case timeline.KindConnected, timeline.KindWatch, timeline.KindHeartbeat, timeline.KindDisconnected, timeline.KindBitfield, timeline.KindHaveAll:
			revealing = false
		}
	}
	return emptyStart
}

// superSeedReveal is how many HAVEs a super-seeder sends at most on a
// connection it started empty before the peer downloads one of them
// (BEP 16: one piece at a time; libtorrent two).
const superSeedReveal = 2

// positiveOnly rewrites observations so that they say only what was held:
// a bitfield becomes HAVEs for the pieces not seen before (first sightings
// are all a positive-only timeline keeps) plus one HAVE as a contact; empty
// snapshots disappear. The output is at most one HAVE per piece and per
// observation.
func positiveOnly(obs []timeline.Observation, numPieces int) []timeline.Observation {
	sorted := slices.Clone(obs)
	slices.SortStableFunc(sorted, func(a, b timeline.Observation) int { return a.At.Compare(b.At) })
	seen := bitfield.New(numPieces)
	out := make([]timeline.Observation, 0, len(obs))
	for _, o := range sorted {
		switch o.Kind {
		case timeline.KindBitfield:
			if o.Pieces.Len() != numPieces {
				out = append(out, o) // malformed: let the timeline record it
				continue
			}
			idx := o.Pieces.Indices()
			if len(idx) > 0 {
				out = append(out, timeline.Observation{At: o.At, Kind: timeline.KindHave, Piece: idx[0]})
			}
			for _, i := range o.Pieces.Gained(seen) {
				out = append(out, timeline.Observation{At: o.At, Kind: timeline.KindHave, Piece: i})
			}
			seen.Union(o.Pieces)
		case timeline.KindHaveNone, timeline.KindNoBitfield:
		default:
			out = append(out, o)
		}
	}
	return out
}

// estimate builds the estimator: groups with piece information are observed
// peers; identities without them are unobserved.
func (j *judge) estimate() error {
	var in estimate.Input
	j.estAddr = j.estAddr[:0]
	in.Torrent = j.tor
	for g := range j.grps {
		gr := &j.grps[g]
		if !gr.tl.HasPieceInfo() {
			continue
		}
		gr.est = len(in.Peers)
		j.estAddr = append(j.estAddr, j.in.Peers[gr.members[0]].Addr)
		in.Peers = append(in.Peers, estimate.Peer{
			ID:           fmt.Sprintf("wire:%s", j.in.Peers[gr.members[0]].Addr),
			Timeline:     gr.tl,
			Capacity:     estimate.Capacity{Samples: gr.probes},
			PresentUntil: gr.until,
			Reported:     j.groupReported(g),
		})
	}
	for k := range j.ids {
		id := &j.ids[k]
		if id.group >= 0 && j.grps[id.group].est >= 0 {
			continue
		}
		u := estimate.Unobserved{ID: id.id.Key, MaxGain: -1, Seeding: len(id.ann) > 0}
		if !j.untrusted[k] {
			u.Reported = &estimate.Reported{Spans: j.reportsOf(k)}
		}
		for _, a := range id.ann {
			u.Seeding = u.Seeding && a.Left == 0
		}
		for _, s := range id.sessions {
			u.Present = append(u.Present, timeline.Interval{From: s.ann[0].At, To: s.end})
		}
		id.unobs = len(in.Unobserved)
		in.Unobserved = append(in.Unobserved, u)
	}
	ecfg := j.cfg.Estimate
	ecfg.SlicedCapacityFactor, ecfg.SlicedAvailabilityFactor = j.cfg.CapacitySuspectFactor, j.cfg.SuspectFactor
	e, err := estimate.New(in, ecfg)
	if err != nil {
		return err
	}
	j.est = e
	return nil
}

// bounds are the estimate bounds of identity k over [from, to).
func (j *judge) bounds(k int, from, to time.Time) (estimate.Bounds, error) {
	id := &j.ids[k]
	if id.group >= 0 && j.grps[id.group].est >= 0 {
		return j.est.Peer(j.grps[id.group].est, from, to)
	}
	return j.est.Unobserved(id.unobs, from, to)
}

func (j *judge) verdict(k int) (Verdict, error) {
	id := &j.ids[k]
	v := Verdict{Identity: id.id, Announces: len(id.ann), Sessions: len(id.sessions)}
	var gr *group
	if id.group >= 0 {
		gr = &j.grps[id.group]
		v.Observed = len(gr.obs) > 0
		v.PieceInfo = gr.raw.HasPieceInfo()
		v.NegativeDiscounted = gr.discounted
		for _, m := range gr.members {
			if a := j.in.Peers[m].Addr; a.IsValid() {
				v.WirePeers = append(v.WirePeers, a)
			}
		}
	}
	for _, s := range id.sessions {
		for i := 1; i < len(s.ann); i++ {
			c, err := j.check(k, s.ann[i-1], s.ann[i], false)
			if err != nil {
				return Verdict{}, err
			}
			v.Uploaded += c.Uploaded
			v.Downloaded += c.Downloaded
			v.Checks = append(v.Checks, c)
		}
		if len(s.ann) > 2 {
			c, err := j.check(k, s.ann[0], s.ann[len(s.ann)-1], true)
			if err != nil {
				return Verdict{}, err
			}
			v.Checks = append(v.Checks, c)
		}
	}
	var reasons []Reason
	for _, c := range v.Checks {
		reasons = append(reasons, c.Reasons...)
	}
	reasons = append(reasons, j.reportReasons(id)...)
	reasons = append(reasons, j.pairSumReasons(v.Checks)...)
	if r, ok := j.identityReason(k, v.Uploaded); ok {
		reasons = append(reasons, r)
	}
	if gr != nil {
		reasons = append(reasons, j.wireReasons(id, gr, v.Uploaded)...)
		reasons = append(reasons, j.leftReasons(id, gr)...)
	}
	v.Reasons = Strongest(reasons)
	v.Status, v.Confidence = statusOf(v.Reasons)
	if v.Status == StatusOK {
		// ok means checked and held: without a piece set seen, nothing
		// about its transfers could be checked.
		if !v.PieceInfo {
			v.Status, v.Confidence = StatusUnverifiable, 0
		} else {
			v.Confidence = 0.3 + 0.7*j.coverage(id, gr)
		}
	}
	return v, nil
}

// statusOf is the most severe status among reasons, with the highest
// confidence at that status; ok with confidence 0 when there are none.
func statusOf(reasons []Reason) (Status, float64) {
	st, c := StatusOK, 0.0
	for _, r := range reasons {
		switch {
		case r.Status.Severity() > st.Severity():
			st, c = r.Status, r.Confidence
		case r.Status == st:
			c = max(c, r.Confidence)
		}
	}
	if st == StatusOK {
		return st, 0
	}
	return st, c
}

// coverage is the fraction of the identity's announced time in which the
// wire showed it present.
func (j *judge) coverage(id *identity, gr *group) float64 {
	pres := gr.raw.Presence(j.cfg.Estimate.PresenceGap)
	var total, seen time.Duration
	for _, s := range id.sessions {
		from, to := s.ann[0].At, s.ann[len(s.ann)-1].At
		total += to.Sub(from)
		for _, iv := range pres {
			seen += iv.Overlap(from, to)
		}
	}
	if total <= 0 {
		return 0
	}
	return min(1, float64(seen)/float64(total))
}

// thr is bound×factor + slack, saturating.
func (j *judge) thr(bound int64, factor float64) float64 {
	return float64(bound)*factor + float64(j.slack)
}

// conf is the confidence of a finding whose threshold t was crossed by x:
// 0.5 at the threshold, approaching 1 as x grows.
func conf(x, t float64) float64 {
	if x <= 0 || t >= x {
		return 0.5
	}
	return clamp01(1 - 0.5*max(t, 0)/x)
}

func clamp01(f float64) float64 {
	if math.IsNaN(f) {
		return 0
	}
	return max(0, min(1, f))
}

func (j *judge) check(k int, a1, a2 reported.Announce, whole bool) (Check, error) {
	c := Check{From: a1.At, To: a2.At, Session: whole, Uploaded: a2.Uploaded - a1.Uploaded, Downloaded: a2.Downloaded - a1.Downloaded}
	b, err := j.bounds(k, a1.At, a2.At)
	if err != nil {
		return Check{}, err
	}
	c.Bounds = b
	x := b.Explain
	up, down := float64(c.Uploaded), float64(c.Downloaded)
	span := a2.At.Sub(a1.At)
	base := func(extra map[string]float64) map[string]float64 {
		m := map[string]float64{
			"from_unix": float64(a1.At.Unix()), "to_unix": float64(a2.At.Unix()),
			"seconds": span.Seconds(), "reported_uploaded": up, "reported_downloaded": down, "slack": float64(j.slack),
		}
		if whole {
			m["session"] = 1
		}
		for key, val := range extra {
			m[key] = val
		}
		return m
	}
	when := fmt.Sprintf("between %s and %s", a1.At.UTC().Format(time.RFC3339), a2.At.UTC().Format(time.RFC3339))
	if whole {
		when = "over the session " + when
	}
	add := func(r Reason) { c.Reasons = append(c.Reasons, r) }

	// Availability.
	if avail := x.AvailabilityBound; up > j.thr(avail, j.cfg.SuspectFactor) {
		st, t := StatusSuspect, j.thr(avail, j.cfg.SuspectFactor)
		if up > j.thr(avail, j.cfg.MisreportFactor) {
			st, t = StatusMisreporting, j.thr(avail, j.cfg.MisreportFactor)
		}
		what := "the pieces it may have held while others were gaining them came"
		if !x.Observed {
			what = "all the rest of the swarm could have gained came"
		}
		add(Reason{Code: CodeUploadExceedsAvailability, Status: st, Tier: TierProof, Confidence: conf(up, t),
			Message: fmt.Sprintf("reported %s uploaded %s, but %s to at most %s", bytesize.Format(up), when, what, bytesize.Format(float64(avail))),
			Numbers: base(map[string]float64{"bound": float64(avail), "threshold": t, "observed_gains": float64(x.AvailabilityObserved),
				"unobserved_allowance": float64(x.AvailabilityUnobserved), "probe_bytes": float64(x.ProbeBytes)})})
	}
	// Capacity.
	if x.Capacity.Known {
		capB := x.CapacityBound + int64(x.Capacity.Upper*j.cfg.BurstWindow.Seconds())
		if up > j.thr(capB, j.cfg.SuspectFactor) {
			st, t := StatusSuspect, j.thr(capB, j.cfg.SuspectFactor)
			if f := j.cfg.CapacityMisreportFactor; f > 0 && up > j.thr(capB, f) {
				st, t = StatusMisreporting, j.thr(capB, f)
			}
			add(Reason{Code: CodeUploadExceedsCapacity, Status: st, Tier: TierPlausible, Assumptions: []string{AssumeProbeShare}, Confidence: conf(up, t),
				Message: fmt.Sprintf("reported %s uploaded %s, more than its probed upload capacity allows (%s/s upper estimate, %s in the time it may have been present)",
					bytesize.Format(up), when, bytesize.Format(x.Capacity.Upper), bytesize.Format(float64(capB))),
				Numbers: base(map[string]float64{"bound": float64(capB), "threshold": t, "capacity_upper_bps": x.Capacity.Upper,
					"capacity_central_bps": x.Capacity.Central, "capacity_share": x.Capacity.Share, "known_absent_seconds": x.KnownAbsent.Seconds()})})
		}
	}
	// Physical ceiling.
	if j.cfg.MaxRate > 0 {
		secs := (span + 2*j.cfg.Estimate.ClockSlack + j.cfg.BurstWindow).Seconds()
		phys := bytesize.FromFloat(j.cfg.MaxRate * secs)
		if t := j.thr(phys, j.cfg.MisreportFactor); up > t {
			add(Reason{Code: CodeUploadExceedsCapacity, Status: StatusMisreporting, Tier: TierProof, Confidence: conf(up, t),
				Message: fmt.Sprintf("reported %s uploaded %s: faster than %s/s, beyond any client", bytesize.Format(up), when, bytesize.Format(j.cfg.MaxRate)),
				Numbers: base(map[string]float64{"bound": float64(phys), "threshold": t, "max_rate_bps": j.cfg.MaxRate})})
		}
	}
	// Absence.
	if r, ok := j.absent(k, a1, a2, up, x, base, when); ok {
		add(r)
	}
	// Download.
	if r, ok := j.downloadReason(k, b, down, base, when); ok {
		add(r)
	}
	// The plausible tier.
	for _, r := range j.plausibleReasons(up, b, base, when) {
		add(r)
	}
	c.Status, c.Confidence = StatusOK, 0.5
	if !x.Observed && j.ids[k].group < 0 {
		c.Status, c.Confidence = StatusUnverifiable, 0
	}
	for _, r := range c.Reasons {
		if r.Status.Severity() > c.Status.Severity() || (r.Status == c.Status && r.Confidence > c.Confidence) {
			c.Status, c.Confidence = r.Status, r.Confidence
		}
	}
	return c, nil
}

// absent checks a pair for uploads in time the identity was not in the
// swarm: wire refusals during the pair, or a started→stopped session too
// short for the claim.
func (j *judge) absent(k int, a1, a2 reported.Announce, up float64, x estimate.Explanation,
	base func(map[string]float64) map[string]float64, when string) (Reason, bool) {
	id := &j.ids[k]
	span := a2.At.Sub(a1.At)
	var absent time.Duration
	if id.group >= 0 {
		for _, iv := range j.grps[id.group].raw.Absence(j.cfg.Estimate.PresenceGap) {
			absent += iv.Overlap(a1.At, a2.At)
		}
	}
	short := a1.Event == reported.EventStarted && a2.Event == reported.EventStopped && span <= j.cfg.ShortSession
	if absent <= 0 && !short {
		return Reason{}, false
	}
	rate, rateName := x.Capacity.Upper, "its probed upper upload rate"
	if !x.Capacity.Known {
		rate, rateName = j.cfg.MaxRate, "the physical ceiling"
	}
	present := span - absent
	t := j.thr(bytesize.FromFloat(rate*(present+2*j.cfg.Estimate.ClockSlack+j.cfg.BurstWindow).Seconds()), j.cfg.SuspectFactor)
	if present <= 0 {
		t = float64(j.slack)
	}
	if up <= t || (rate <= 0 && present > 0) {
		return Reason{}, false
	}
	var msg string
	if short {
		msg = fmt.Sprintf("reported %s uploaded in a session of %s (%s); at %s (%s/s) that takes %s",
			bytesize.Format(up), span.Round(time.Second), when, rateName, bytesize.Format(rate), time.Duration(up/max(rate, 1)*float64(time.Second)).Round(time.Second))
	} else {
		msg = fmt.Sprintf("reported %s uploaded %s, but connection attempts found nothing listening for %s of that time", bytesize.Format(up), when, absent.Round(time.Second))
	}
	return Reason{Code: CodeUploadWhileAbsent, Status: StatusSuspect, Tier: TierPlausible, Assumptions: []string{AssumeReachableAnswers}, Confidence: conf(up, t), Message: msg,
		Numbers: base(map[string]float64{"known_absent_seconds": absent.Seconds(), "present_seconds": max(0, present.Seconds()), "rate_bps": rate, "threshold": t})}, true
}

// wireReasons are the identity-level findings from connection outcomes and
// hash checks.
func (j *judge) wireReasons(id *identity, gr *group, uploaded int64) []Reason {
	var out []Reason
	counts := gr.raw.Counts()
	// Both findings below are plausible: they take the plausible slack.
	claims := float64(uploaded) > float64(j.pslack)
	if claims && counts.Connected == 0 {
		var refused, unreach, hsFail int
		for _, o := range gr.obs {
			if !j.inSpan(id, o.At) {
				continue
			}
			switch o.Kind {
			case timeline.KindRefused:
				refused++
			case timeline.KindUnreachable:
				unreach++
			case timeline.KindHandshakeFailed:
				hsFail++
			}
		}
		if n := refused + unreach + hsFail; n >= j.cfg.MinFailedAttempts {
			out = append(out, Reason{Code: CodeNeverHandshaked, Status: StatusSuspect, Tier: TierPlausible, Assumptions: []string{AssumeReachableAnswers},
				Confidence: clamp01(min(0.95, 1-math.Pow(0.5, float64(n)/float64(j.cfg.MinFailedAttempts)))),
				Message: fmt.Sprintf("reported %s uploaded, but none of %d connection attempts while it announced completed a BitTorrent handshake (%d refused, %d unreachable, %d handshake failures)",
					bytesize.Format(float64(uploaded)), n, refused, unreach, hsFail),
				Numbers: map[string]float64{"attempts": float64(n), "refused": float64(refused), "unreachable": float64(unreach),
					"handshake_failed": float64(hsFail), "reported_uploaded": float64(uploaded)}})
		}
	}
	// A peer that completed handshakes but never showed a piece set offered
	// nothing, however the connections ended (it stayed silent, or closed
	// them); one silent wait is enough, else MinFailedAttempts handshakes.
	if claims && counts.PieceMessages() == 0 && (counts.NoBitfield > 0 && counts.Connected > 0 || counts.Connected >= j.cfg.MinFailedAttempts) {
		what := "it offered no piece"
		if j.claimsSeeder(id) {
			what = "it offered no piece, though it announced itself complete (left=0)"
		}
		out = append(out, Reason{Code: CodeNoBitfield, Status: StatusSuspect, Tier: TierPlausible, Assumptions: []string{AssumeSeederShowsPieces},
			Confidence: clamp01(min(0.95, 1-math.Pow(0.5, float64(max(counts.NoBitfield, counts.Connected/j.cfg.MinFailedAttempts))))),
			Message: fmt.Sprintf("reported %s uploaded, but in %d connections it never sent a bitfield, HaveAll, HaveNone or HAVE: %s",
				bytesize.Format(float64(uploaded)), counts.Connected, what),
			Numbers: map[string]float64{"connections": float64(counts.Connected), "no_bitfield": float64(counts.NoBitfield), "reported_uploaded": float64(uploaded)}})
	}
	if n := len(gr.bad); n > 0 {
		st := StatusSuspect
		if n >= j.cfg.BadDataMisreportPieces {
			st = StatusMisreporting
		}
		out = append(out, Reason{Code: CodeBadData, Status: st, Tier: TierProof, Confidence: clamp01(1 - math.Pow(0.5, float64(n))),
			Message: fmt.Sprintf("%d distinct pieces it sent us failed their hash check", n),
			Numbers: map[string]float64{"bad_pieces": float64(n), "reported_uploaded": float64(uploaded)}})
	}
	return out
}

// inSpan reports whether t lies between the identity's first announce and
// the end of its last session: connection attempts between its sessions
// count too (a peer that announces started and stopped in bursts is still
// expected to answer in between if it uploads).
func (j *judge) inSpan(id *identity, t time.Time) bool {
	first := id.sessions[0].ann[0].At
	return !t.Before(first.Add(-j.cfg.Estimate.ClockSlack)) && !t.After(id.sessions[len(id.sessions)-1].end)
}

// claimsSeeder reports whether the identity ever announced left=0.
func (j *judge) claimsSeeder(id *identity) bool {
	for _, a := range id.ann {
		if a.Left == 0 {
			return true
		}
	}
	return false
}

// leftReasons checks each announce's `left` against the observed pieces.
func (j *judge) leftReasons(id *identity, gr *group) []Reason {
	if !gr.tl.HasPieceInfo() {
		return nil
	}
	lostAt, lost := gr.tl.LostPiecesAt()
	slackLeft := int64(j.cfg.LeftSlackPieces) * j.tor.PieceLength
	inflight := int64(j.cfg.InFlightPieces) * j.tor.PieceLength
	cs := j.cfg.Estimate.ClockSlack
	var worst *Reason
	var worstGap float64
	bad := 0
	type annIn struct {
		a     reported.Announce
		first reported.Announce // its session's first announce
	}
	var anns []annIn
	for _, s := range id.sessions {
		for _, a := range s.ann {
			anns = append(anns, annIn{a, s.ann[0]})
		}
	}
	for _, x := range anns {
		a, first := x.a, x.first
		var gap, limit float64
		var msg string
		// At most what it held when its session started (everything but
		// what it was seen lacking then or later), plus what it reported
		// downloading since.
		startHeld := j.tor.TotalLength - j.tor.Bytes(gr.tl.LackingFrom(first.At.Add(cs)).Indices())
		canHold := startHeld + max(0, a.Downloaded-first.Downloaded) + inflight + slackLeft
		held, ok := gr.tl.HaveAt(a.At.Add(-max(cs, j.cfg.AnnounceLatency)))
		heldBytes := j.tor.Bytes(held.Indices())
		lacking := j.tor.Bytes(gr.tl.LackingFrom(a.At.Add(cs)).Indices())
		switch {
		case a.Left > j.tor.TotalLength:
			// Unknown, not inconsistent: clients without the metadata yet
			// report a huge left (Transmission INT64_MAX).
			continue
		case a.Left < 0:
			gap, limit = -float64(a.Left), 0
			msg = fmt.Sprintf("reported a negative left=%d", a.Left)
		case !ok:
			// Before we first saw its pieces: nothing to compare with
			// (libtorrent reports left=16 KiB before it has the metadata).
			continue
		case !(lost && !lostAt.After(a.At)) && a.Left > j.tor.TotalLength-heldBytes+slackLeft:
			limit = float64(j.tor.TotalLength - heldBytes + slackLeft)
			gap = float64(a.Left) - limit
			msg = fmt.Sprintf("reported left=%s at %s, but it had been seen holding %s of %s", bytesize.Format(float64(a.Left)),
				a.At.UTC().Format(time.RFC3339), bytesize.Format(float64(heldBytes)), bytesize.Format(float64(j.tor.TotalLength)))
		case a.Left < lacking-inflight-slackLeft:
			limit = float64(lacking - inflight - slackLeft)
			gap = limit - float64(a.Left)
			msg = fmt.Sprintf("reported left=%s at %s, but it was later seen still lacking %s", bytesize.Format(float64(a.Left)),
				a.At.UTC().Format(time.RFC3339), bytesize.Format(float64(lacking)))
		case a.At.After(first.At) && first.Left <= j.tor.TotalLength && j.tor.TotalLength-a.Left > canHold:
			limit = float64(j.tor.TotalLength - canHold)
			gap = limit - float64(a.Left)
			msg = fmt.Sprintf("reported left=%s at %s, but when its session started it was seen lacking %s, and it reported downloading only %s since",
				bytesize.Format(float64(a.Left)), a.At.UTC().Format(time.RFC3339), bytesize.Format(float64(j.tor.TotalLength-startHeld)), bytesize.Format(float64(max(0, a.Downloaded-first.Downloaded))))
		default:
			continue
		}
		bad++
		if worst == nil || gap > worstGap {
			worstGap = gap
			worst = &Reason{Code: CodeLeftInconsistent, Status: StatusSuspect, Tier: TierPlausible, Assumptions: []string{AssumeNoRecheck}, Confidence: conf(gap+float64(j.tor.PieceLength), float64(j.tor.PieceLength)),
				Message: msg,
				Numbers: map[string]float64{"at_unix": float64(a.At.Unix()), "reported_left": float64(a.Left), "held_bytes": float64(heldBytes),
					"lacking_bytes": float64(lacking), "limit": limit}}
		}
	}
	if worst == nil {
		return nil
	}
	worst.Numbers["inconsistent_announces"] = float64(bad)
	return []Reason{*worst}
}

// Strongest keeps the most severe, then most confident, reason of each
// code, ordered by severity, confidence and code: how a verdict, and every
// report that merges verdicts, lists its reasons.
func Strongest(rs []Reason) []Reason {
	best := map[Code]Reason{}
	for _, r := range rs {
		b, ok := best[r.Code]
		if !ok || r.Status.Severity() > b.Status.Severity() || (r.Status == b.Status && r.Confidence > b.Confidence) {
			best[r.Code] = r
		}
	}
	out := make([]Reason, 0, len(best))
	for _, r := range best {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Reason) int {
		if d := b.Status.Severity() - a.Status.Severity(); d != 0 {
			return d
		}
		if a.Confidence != b.Confidence {
			if a.Confidence > b.Confidence {
				return -1
			}
			return 1
		}
		return strings.Compare(string(a.Code), string(b.Code))
	})
	return out
}

// conservation checks Σ reported uploads against what the swarm could have
// absorbed, per window.
func (j *judge) conservation(rep *Report) error {
	windows := j.in.Windows
	if len(windows) == 0 {
		var first, last time.Time
		for _, id := range j.ids {
			for _, a := range id.ann {
				if first.IsZero() || a.At.Before(first) {
					first = a.At
				}
				if a.At.After(last) {
					last = a.At
				}
			}
		}
		if first.IsZero() {
			return nil
		}
		windows = []timeline.Interval{{From: first, To: last}}
	}
	for _, w := range windows {
		if w.To.Before(w.From) {
			return fmt.Errorf("window %s..%s ends before it starts", w.From.Format(time.RFC3339), w.To.Format(time.RFC3339))
		}
		sw, err := j.est.Swarm(w.From, w.To)
		if err != nil {
			return err
		}
		win := Window{From: w.From, To: w.To, Swarm: sw, Status: StatusOK}
		if ts, err := j.est.Transfers(w.From, w.To); err == nil {
			for _, t := range ts {
				win.Transfers = append(win.Transfers, Transfer{From: j.estAddr[t.From], To: j.estAddr[t.To], Lower: t.Lower, Upper: t.Upper, PlausibleUpper: t.PlausibleUpper})
			}
		} else if !errors.Is(err, estimate.ErrTooMany) {
			return err
		}
		plausibleOnly := false
		type excess struct {
			key string
			by  int64
		}
		var ex []excess
		for _, v := range rep.Verdicts {
			var over int64
			for _, c := range v.Checks {
				if c.Session || c.From.Before(w.From) || c.To.After(w.To) {
					continue
				}
				win.ReportedUploaded += c.Uploaded
				win.ReportedDownloaded += c.Downloaded
				over += max(0, c.Uploaded-c.Bounds.UploadUpper)
			}
			if over > 0 {
				ex = append(ex, excess{v.Identity.Key, over})
			}
		}
		up := float64(win.ReportedUploaded)
		if up > j.thrP(sw.PlausibleGainUpper) && up <= j.thr(sw.GainUpper, j.cfg.SuspectFactor) {
			plausibleOnly = true
		}
		if plausibleOnly || up > j.thr(sw.GainUpper, j.cfg.SuspectFactor) {
			st, t, bound := StatusSuspect, j.thr(sw.GainUpper, j.cfg.SuspectFactor), sw.GainUpper
			if plausibleOnly {
				t, bound = j.thrP(sw.PlausibleGainUpper), sw.PlausibleGainUpper
			} else if up > j.thr(sw.GainUpper, j.cfg.MisreportFactor) {
				st, t = StatusMisreporting, j.thr(sw.GainUpper, j.cfg.MisreportFactor)
			}
			slices.SortFunc(ex, func(a, b excess) int {
				if a.by != b.by {
					return int(min(max(b.by-a.by, -1), 1))
				}
				return strings.Compare(a.key, b.key)
			})
			for _, e := range ex[:min(5, len(ex))] {
				win.Contributors = append(win.Contributors, e.key)
			}
			r := Reason{Code: CodeSwarmConservation, Status: st, Tier: TierProof, Confidence: conf(up, t),
				Message: fmt.Sprintf("the swarm reported %s uploaded between %s and %s, but its peers could have absorbed at most %s (%s observed gains, %s allowed to unobserved peers, %s probes)",
					bytesize.Format(up), w.From.UTC().Format(time.RFC3339), w.To.UTC().Format(time.RFC3339), bytesize.Format(float64(sw.GainUpper)),
					bytesize.Format(float64(sw.GainObserved)), bytesize.Format(float64(sw.GainUnobserved)), bytesize.Format(float64(sw.ProbeBytes))),
				Numbers: map[string]float64{"from_unix": float64(w.From.Unix()), "to_unix": float64(w.To.Unix()), "reported_uploaded": up,
					"reported_downloaded": float64(win.ReportedDownloaded), "bound": float64(bound), "threshold": t,
					"downloaded_lower": float64(sw.DownloadedLower), "slack": float64(j.slack)}}
			if plausibleOnly {
				r.Tier, r.Assumptions = TierPlausible, []string{estimate.AssumeOwnDownloads}
				r.Message = fmt.Sprintf("the swarm reported %s uploaded between %s and %s, but its peers plausibly absorbed at most %s (what they reported downloading, each at most what it could have gained, and our probes)",
					bytesize.Format(up), w.From.UTC().Format(time.RFC3339), w.To.UTC().Format(time.RFC3339), bytesize.Format(float64(sw.PlausibleGainUpper)))
				r.Numbers["slack"] = float64(j.pslack)
			}
			win.Reasons = append(win.Reasons, r)
			win.Status = st
			rep.Summary.Reasons = append(rep.Summary.Reasons, r)
		}
		rep.Summary.Windows = append(rep.Summary.Windows, win)
	}
	rep.Summary.Reasons = Strongest(rep.Summary.Reasons)
	return nil
}

// addresses fills Report.Addresses and Report.Span.
func (j *judge) addresses(rep *Report) error {
	span := j.in.Span
	if span.From.IsZero() || span.To.Before(span.From) {
		var first, last time.Time
		see := func(t time.Time) {
			if t.Before(minTime) || !t.Before(maxTime) {
				return
			}
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
		}
		for _, id := range j.ids {
			for _, a := range id.ann {
				see(a.At)
			}
		}
		for _, p := range j.in.Peers {
			for _, o := range p.Observations {
				see(o.At)
			}
		}
		span = timeline.Interval{From: first, To: last}
	}
	rep.Span = span
	rep.Addresses = []AddrBounds{}
	for g := range j.grps {
		gr := &j.grps[g]
		var group []netip.AddrPort
		var tls []*timeline.Timeline
		for _, m := range gr.members {
			if a := j.in.Peers[m].Addr; a.IsValid() {
				group = append(group, a)
				tls = append(tls, timeline.BuildWith(j.tor.NumPieces, j.in.Peers[m].Observations, j.cfg.Timeline))
			}
		}
		var ab AddrBounds
		if gr.est >= 0 && !span.From.IsZero() {
			ce, err := j.est.Capacity(gr.est)
			if err != nil {
				return err
			}
			b, err := j.est.Peer(gr.est, span.From, span.To)
			if err != nil {
				return err
			}
			ab = AddrBounds{PieceInfo: true, Capacity: ce, Bounds: b}
		}
		for i, a := range group {
			ab.Addr, ab.Group, ab.Timeline = a, group, tls[i]
			rep.Addresses = append(rep.Addresses, ab)
		}
	}
	slices.SortFunc(rep.Addresses, func(a, b AddrBounds) int { return a.Addr.Compare(b.Addr) })
	return nil
}
