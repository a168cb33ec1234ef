// Package probe audits one peer over the wire: connect under an encryption
// policy, handshake, read its bitfield and HAVEs, ask for a few blocks to
// measure its upload bandwidth, verify the hashes of the pieces received,
// and disconnect. One probe is one connection: its own (Run), or a watch's
// lent for the probe (RunOn), which it gives back. Scheduling many
// politely is the audit's job.
package probe

import (
	"errors"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// Outcome is the fixed vocabulary a probe ends with.
type Outcome string

// The outcomes.
const (
	OutcomeOK                 Outcome = "ok"
	OutcomeRefused            Outcome = "refused"
	OutcomeTimeout            Outcome = "timeout"
	OutcomeHandshakeFailed    Outcome = "handshake_failed"
	OutcomeEncryptionRequired Outcome = "encryption_required"
	OutcomeChoked             Outcome = "choked"
	OutcomeBadData            Outcome = "bad_data"
	OutcomeProtocolError      Outcome = "protocol_error"
)

// Outcomes lists every outcome, for counters keyed by outcome.
func Outcomes() []Outcome {
	return []Outcome{OutcomeOK, OutcomeRefused, OutcomeTimeout, OutcomeHandshakeFailed, OutcomeEncryptionRequired, OutcomeChoked, OutcomeBadData, OutcomeProtocolError}
}

// HaveEvent is a HAVE message, timed from the start of the probe.
type HaveEvent struct {
	Piece int     `json:"piece"`
	AtMS  float64 `json:"at_ms"`
}

// Result is everything one probe learned. Its JSON form is the
// `swarmaudit probe --json` output.
type Result struct {
	Peer       string `json:"peer,omitempty"`
	PeerID     string `json:"peer_id,omitempty"`
	PeerIDHex  string `json:"peer_id_hex,omitempty"`
	Client     string `json:"client,omitempty"`
	Encryption string `json:"encryption,omitempty"`
	// Transport is what the probe reached the peer over: "tcp" or "utp"
	// (BEP 29); a stored record leaves out "tcp".
	Transport  string    `json:"transport,omitempty"`
	Started    time.Time `json:"started,omitzero"`
	DurationMS float64   `json:"duration_ms"`
	// TCPConnected is true when a connection was established (TCP, or uTP
	// when TCP did not reach the peer), even if no BitTorrent handshake
	// followed.
	TCPConnected bool                   `json:"tcp_connected"`
	HandshakeMS  float64                `json:"handshake_ms"`
	Fast         bool                   `json:"fast_extension"`
	Extended     bool                   `json:"extension_protocol"`
	ExtHandshake *peerwire.ExtHandshake `json:"extension_handshake,omitempty"`
	PiecesHave   int                    `json:"pieces_have"`
	PiecesTotal  int                    `json:"pieces_total"`
	Seeder       bool                   `json:"seeder"`
	BitfieldKind string                 `json:"bitfield_kind"` // bitfield, have_all, have_none, haves_only, none; watch (RunOn)
	// OnWatch: the probe ran on the connection of the auditor's watch of
	// the peer (RunOn), not on one of its own.
	OnWatch bool `json:"on_watch,omitempty"`
	// Holepunch: the probe's connection went through a hole a relay's
	// introduction punched in the peer's NAT (BEP 55).
	Holepunch bool   `json:"holepunch,omitempty"`
	Bitfield  []byte `json:"bitfield,omitempty"`
	// SnapshotBitfield is the piece set exactly as the bitfield, HaveAll
	// or HaveNone message stated it, at SnapshotAtMS; absent for peers that
	// sent none. Bitfield above adds the HAVEs received during the probe.
	SnapshotBitfield      []byte      `json:"snapshot_bitfield,omitempty"`
	SnapshotAtMS          float64     `json:"snapshot_at_ms,omitempty"`
	Haves                 []HaveEvent `json:"have_events,omitempty"`
	Choked                bool        `json:"choked"`
	UnchokeMS             float64     `json:"unchoke_ms,omitempty"`
	AllowedFast           int         `json:"allowed_fast,omitempty"`
	TTFBMS                float64     `json:"ttfb_ms,omitempty"`
	BytesDownloaded       int64       `json:"bytes_downloaded"`
	ThroughputBytesPerSec float64     `json:"throughput_bytes_per_sec"`
	// ThroughputSpread is the relative standard error of the rate (0.05
	// means ±5%): the spread of per-segment rates over √segments.
	ThroughputSpread  float64 `json:"throughput_spread"`
	ThroughputSamples int     `json:"throughput_samples"`
	PiecesVerified    int     `json:"pieces_verified"`
	PiecesFailed      int     `json:"pieces_failed"`
	FailedPieces      []int   `json:"failed_pieces,omitempty"`
	Rejected          int     `json:"rejected_requests,omitempty"`
	WireBytesIn       int64   `json:"wire_bytes_in"`
	WireBytesOut      int64   `json:"wire_bytes_out"`
	UnknownMessages   int     `json:"unknown_messages,omitempty"`
	Keepalives        int     `json:"keepalives,omitempty"`
	Outcome           Outcome `json:"outcome"`
	Error             string  `json:"error,omitempty"`
	// Conn is the connection, still open, when Options.Keep asked for it
	// and the probe ended cleanly; the caller owns it.
	Conn *peerwire.Conn `json:"-"`
	// State is what the peer told the probe, for Conn's next owner.
	State *peerwire.PeerState `json:"-"`
}

// ForStore is the result without what an evidence store keeps elsewhere:
// its piece sets (snapshots), its HAVEs, the peer's address, id and client
// (the peer's record), and its start, encryption and handshake time (the
// probe's columns, with the outcome and the figures of its download, which
// stay here too: they are what a reader of the record looks for). Two
// copies of a bitfield were most of a stored probe's bytes.
func (r *Result) ForStore() *Result {
	c := *r
	c.Bitfield, c.SnapshotBitfield, c.Haves = nil, nil, nil
	c.Peer, c.PeerID, c.PeerIDHex, c.Client, c.Encryption = "", "", "", "", ""
	c.Started = time.Time{}
	c.Conn, c.State = nil, nil
	if c.Transport == string(peerwire.TransportTCP) {
		c.Transport = ""
	}
	return &c
}

// outcomeFor maps a connection error to the outcome vocabulary.
func outcomeFor(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, peerwire.ErrRefused):
		return OutcomeRefused
	case errors.Is(err, peerwire.ErrEncryptionRequired):
		return OutcomeEncryptionRequired
	case errors.Is(err, peerwire.ErrTimeout):
		return OutcomeTimeout
	case errors.Is(err, peerwire.ErrProtocol), errors.Is(err, peerwire.ErrClosed):
		return OutcomeProtocolError
	default:
		return OutcomeHandshakeFailed
	}
}
