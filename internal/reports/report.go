// Package reports turns the result of an audit into the reports people read
// afterwards: a versioned JSON document (docs/report-schema.md,
// docs/report.schema.json), a self-contained HTML page with charts that
// opens offline, and a CSV of the per-peer table. It does no network I/O.
package reports

import (
	"errors"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/audit"
)

// SchemaVersion is the version of the JSON report written by this package.
// It changes when a field changes meaning or is removed; new optional
// fields do not change it.
const SchemaVersion = 1

// ErrInput is returned by Build for a result that lacks what a report needs.
var ErrInput = errors.New("incomplete audit result")

// ErrSchemaVersion is returned by ReadJSON for a report of another version.
var ErrSchemaVersion = errors.New("unsupported report schema version")

// Verdicts of a row that are not verdict statuses: the address never
// announced anything the audit saw, so there is nothing to judge.
const VerdictUnreported = "unreported"

// Report is the whole report. Times are UTC, durations are seconds, byte
// counts are bytes and rates are bytes per second.
type Report struct {
	SchemaVersion int       `json:"schema_version"`
	Generator     string    `json:"generator"`
	GeneratedAt   time.Time `json:"generated_at"`
	Swarm         Swarm     `json:"swarm"`
	Summary       Summary   `json:"summary"`
	// Peers has one row per address the auditor saw on the wire, joined
	// with the reporting identities that announced from it, then one row
	// per identity with no wire peer. Worst verdicts first.
	Peers   []Peer   `json:"peers"`
	Windows []Window `json:"windows"`
	// Timeline holds the series behind the charts.
	Timeline Timeline `json:"timeline"`
	// Truth is present when the caller knew which peers cheat (the demo,
	// the accuracy lab).
	Truth *TruthReport `json:"truth,omitempty"`
	// Scrape compares each tracker's scrape counts with the peers the wire
	// showed; absent when no tracker was scraped.
	Scrape []audit.ScrapeCheck `json:"scrape,omitempty"`
}

// Swarm describes the torrent and the span of the audit.
type Swarm struct {
	InfoHash    string    `json:"info_hash"`
	Name        string    `json:"name"`
	Size        int64     `json:"size"`
	Pieces      int       `json:"pieces"`
	PieceLength int64     `json:"piece_length"`
	Started     time.Time `json:"started"`
	Ended       time.Time `json:"ended"`
	Duration    float64   `json:"duration"`
}

// Summary is the swarm-wide outcome.
type Summary struct {
	// Verdicts counts reporting identities by verdict.
	Verdicts VerdictCounts `json:"verdicts"`
	// FlaggedPeers is the number of rows judged suspect or misreporting.
	FlaggedPeers int `json:"flagged_peers"`
	// PeersDiscovered: addresses known to the audit (any source);
	// PeersReached: addresses that completed a BitTorrent handshake;
	// PeersProbed: addresses whose upload was measured by a probe.
	PeersDiscovered int `json:"peers_discovered"`
	PeersReached    int `json:"peers_reached"`
	PeersProbed     int `json:"peers_probed"`
	// Identities is the number of reporting identities; Unobserved those
	// the wire never showed.
	Identities int `json:"identities"`
	Unobserved int `json:"unobserved_identities"`
	// Sources counts addresses by where they came from.
	Sources map[string]int `json:"sources"`
	// AuditorBytesIn/Out is the auditor's own wire traffic in this run.
	AuditorBytesIn  int64 `json:"auditor_bytes_in"`
	AuditorBytesOut int64 `json:"auditor_bytes_out"`
	// ReportedUploaded and ReportedDownloaded sum the windows' reported
	// deltas; ObservedDownloaded sums the windows' lower bounds of what
	// the observed peers downloaded; GainUpper the most the swarm could
	// have absorbed.
	ReportedUploaded   int64 `json:"reported_uploaded"`
	ReportedDownloaded int64 `json:"reported_downloaded"`
	ObservedDownloaded int64 `json:"observed_downloaded"`
	GainUpper          int64 `json:"gain_upper"`
	DroppedAnnounces   int   `json:"dropped_announces"`
	// SkippedChecks names the swarm-wide checks the swarm was too large
	// for, and why.
	SkippedChecks []string `json:"skipped_checks"`
	Reasons       []Reason `json:"reasons"`
}

// VerdictCounts counts by verdict.
type VerdictCounts struct {
	Misreporting int `json:"misreporting"`
	Suspect      int `json:"suspect"`
	OK           int `json:"ok"`
	Unverifiable int `json:"unverifiable"`
}

// Peer is one row of the per-peer table.
type Peer struct {
	// Address is the wire address, or for a row without wire peer the
	// first address its identity announced ("" if none).
	Address string `json:"address"`
	// OnWire: the auditor tried this address.
	OnWire bool `json:"on_wire"`
	// PeerID is the hex peer_id of its handshakes or announces; PeerIDText
	// its printable form (non-printable bytes as '.').
	PeerID     string `json:"peer_id"`
	PeerIDText string `json:"peer_id_text"`
	Client     string `json:"client"`
	Encryption string `json:"encryption"`
	// Transport is what the auditor reached it over: "tcp", "utp" (BEP
	// 29) or "tcp+utp", "" if never;
	// Reach how: "direct" (a connection the auditor opened), "incoming"
	// (one the peer opened to the auditor), both or neither.
	Transport string   `json:"transport"`
	Reach     []string `json:"reach"`
	Sources   []string `json:"sources"`
	// DiscoveredAt is when the audit first learned the address.
	DiscoveredAt *time.Time `json:"discovered_at"`
	// FirstSeen/LastSeen: first and last BitTorrent contact.
	FirstSeen   *time.Time  `json:"first_seen"`
	LastSeen    *time.Time  `json:"last_seen"`
	Connections Connections `json:"connections"`
	Pieces      PieceInfo   `json:"pieces"`
	// ObservedDownloaded is a lower bound of what it downloaded during the
	// audit: the pieces it was seen completing (estimate.Bounds).
	ObservedDownloaded int64         `json:"observed_downloaded"`
	Capacity           Capacity      `json:"capacity"`
	UploadBounds       *UploadBounds `json:"upload_bounds"`
	BadPieces          int           `json:"bad_pieces"`
	// Reported sums what its identities announced; nil when none did.
	Reported   *Reported `json:"reported"`
	Verdict    string    `json:"verdict"`
	Confidence float64   `json:"confidence"`
	Flagged    bool      `json:"flagged"`
	Reasons    []Reason  `json:"reasons"`
	// Cheater is the truth about it, when the caller knew it.
	Cheater *bool `json:"cheater,omitempty"`
}

// Connections counts connection outcomes.
type Connections struct {
	Attempts        int `json:"attempts"`
	Connected       int `json:"connected"`
	Refused         int `json:"refused"`
	Unreachable     int `json:"unreachable"`
	HandshakeFailed int `json:"handshake_failed"`
	NoBitfield      int `json:"no_bitfield"`
}

// PieceInfo is what the wire showed of its pieces.
type PieceInfo struct {
	// Known: some message said which pieces it held.
	Known bool `json:"known"`
	// Held is the number of pieces seen held by the end; Gained those seen
	// completed while watched (their gain time is known).
	Held   int `json:"held"`
	Gained int `json:"gained"`
	// Series is the number of pieces held at the end of each timeline
	// bucket (null while unknown).
	Series []*int `json:"series"`
}

// Capacity is the measured upload capacity (estimate.CapacityEstimate).
type Capacity struct {
	Known   bool `json:"known"`
	Samples int  `json:"samples"`
	// Central is the median probe throughput to the auditor; Spread the
	// median of the probes' own spreads; MeasuredUpper the largest
	// throughput plus SpreadZ spreads; Upper the upper estimate of its
	// whole upload rate (sharing and headroom applied), with Share the
	// sharing multiplier used.
	Central       float64 `json:"central"`
	Spread        float64 `json:"spread"`
	MeasuredUpper float64 `json:"measured_upper"`
	Share         float64 `json:"share"`
	Upper         float64 `json:"upper"`
	// Quiet says Central and Upper come from quiet probes only: probes
	// taken while no other peer may have been downloading, which saw the
	// peer's whole upload (docs/estimation.md).
	Quiet bool `json:"quiet"`
	// PlausibleUpper, PlausibleShare and PlausibleQuiet are the same under
	// the plausible tier, which the suspect findings use: only peers that
	// plausibly downloaded during a probe (by their reports, and, for those
	// watched, by the pieces they completed while it ran) share its upload,
	// and the headroom is the plausible one. 0 without a measure.
	PlausibleUpper float64 `json:"plausible_upper"`
	PlausibleShare float64 `json:"plausible_share"`
	PlausibleQuiet bool    `json:"plausible_quiet"`
}

// UploadBounds bound what the address uploaded over the whole audit span.
type UploadBounds struct {
	Lower int64  `json:"lower"`
	Upper int64  `json:"upper"`
	Limit string `json:"limit"`
	// PlausibleUpper is the upper bound under the plausible tier
	// (docs/estimation.md), PlausibleLimit which bound set it.
	PlausibleUpper int64  `json:"plausible_upper"`
	PlausibleLimit string `json:"plausible_limit"`
}

// Reported sums the announces of a row's identities.
type Reported struct {
	Identities []Identity `json:"identities"`
	Announces  int        `json:"announces"`
	Sessions   int        `json:"sessions"`
	// Uploaded/Downloaded: Σ reported deltas within sessions.
	Uploaded   int64 `json:"uploaded"`
	Downloaded int64 `json:"downloaded"`
	// UploadBound: Σ upper bounds over the same intervals;
	// PlausibleUploadBound the same under the plausible tier.
	UploadBound          int64 `json:"upload_bound"`
	PlausibleUploadBound int64 `json:"plausible_upload_bound"`
	// Seconds is the time the deltas cover; UploadRate = Uploaded/Seconds.
	Seconds    float64 `json:"seconds"`
	UploadRate float64 `json:"upload_rate"`
	// LastLeft is the `left` of the last announce (-1 if none).
	LastLeft int64 `json:"last_left"`
}

// Identity is one reporting identity.
type Identity struct {
	Key                string   `json:"key"`
	Addrs              []string `json:"addrs"`
	Verdict            string   `json:"verdict"`
	Confidence         float64  `json:"confidence"`
	Announces          int      `json:"announces"`
	Sessions           int      `json:"sessions"`
	Uploaded           int64    `json:"uploaded"`
	Downloaded         int64    `json:"downloaded"`
	NegativeDiscounted bool     `json:"negative_discounted"`
}

// Reason is one finding with the numbers behind it (verdict.Reason).
type Reason struct {
	Code   string `json:"code"`
	Status string `json:"status"`
	// Tier is proof or plausible; Assumptions what a plausible finding
	// rests on (docs/estimation.md, "Evidence tiers").
	Tier        string             `json:"tier"`
	Assumptions []string           `json:"assumptions"`
	Confidence  float64            `json:"confidence"`
	Message     string             `json:"message"`
	Numbers     map[string]float64 `json:"numbers"`
}

// Window is the swarm balance over one conservation window.
type Window struct {
	From               time.Time `json:"from"`
	To                 time.Time `json:"to"`
	ReportedUploaded   int64     `json:"reported_uploaded"`
	ReportedDownloaded int64     `json:"reported_downloaded"`
	ObservedDownloaded int64     `json:"observed_downloaded"`
	GainUpper          int64     `json:"gain_upper"`
	GainObserved       int64     `json:"gain_observed"`
	GainUnobserved     int64     `json:"gain_unobserved"`
	ProbeBytes         int64     `json:"probe_bytes"`
	ObservedPeers      int       `json:"observed_peers"`
	UnobservedPeers    int       `json:"unobserved_peers"`
	Status             string    `json:"status"`
	Reasons            []Reason  `json:"reasons"`
	Contributors       []string  `json:"contributors"`
	// Transfers is the window's transfer matrix: what each observed peer
	// could have sent each other one (empty for swarms of more than
	// estimate.MaxTransferPeers observed peers).
	Transfers []Transfer `json:"transfers"`
}

// Transfer bounds the bytes one observed peer sent another in a window
// (verdict.Transfer): Lower from pieces only it could have sent, Upper from
// the pieces the receiver gained that the sender may have held, capped by
// the sender's upload bound; PlausibleUpper the same under the plausible
// tier (the sender's plausible bound, and what the receiver reported
// downloading).
type Transfer struct {
	From           string `json:"from"`
	To             string `json:"to"`
	Lower          int64  `json:"lower"`
	Upper          int64  `json:"upper"`
	PlausibleUpper int64  `json:"plausible_upper"`
}

// Timeline is the swarm over time, in buckets of equal length.
type Timeline struct {
	// Bucket is the bucket length in seconds; Times the end of each
	// bucket.
	Bucket float64     `json:"bucket"`
	Times  []time.Time `json:"times"`
	// Peers: addresses seen present in the bucket; Seeders: those of them
	// holding every piece; Announcing: identities between announces.
	Peers      []int `json:"peers"`
	Seeders    []int `json:"seeders"`
	Announcing []int `json:"announcing"`
	// PiecesAvailable: pieces held by at least one present peer;
	// Copies: mean number of present peers holding a piece.
	PiecesAvailable []int     `json:"pieces_available"`
	Copies          []float64 `json:"copies"`
}

// TruthReport compares the verdicts with the known truth. A row is
// predicted a cheater when flagged (suspect or misreporting); rows without
// reports are left out of the matrix.
type TruthReport struct {
	Cheaters []string `json:"cheaters"`
	Matrix   Matrix   `json:"matrix"`
	// Unverifiable counts reported rows judged unverifiable, by truth.
	UnverifiableCheaters int `json:"unverifiable_cheaters"`
	UnverifiableHonest   int `json:"unverifiable_honest"`
	// UnreportedCheaters are truth entries that matched no reported row.
	UnreportedCheaters []string `json:"unreported_cheaters"`
	Precision          *float64 `json:"precision"`
	Recall             *float64 `json:"recall"`
}

// Matrix is a confusion matrix.
type Matrix struct {
	TruePositive  int `json:"true_positive"`
	FalsePositive int `json:"false_positive"`
	TrueNegative  int `json:"true_negative"`
	FalseNegative int `json:"false_negative"`
}
