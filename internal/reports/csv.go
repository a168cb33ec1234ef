package reports

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// csvColumn is one column of the per-peer CSV.
type csvColumn struct {
	name string
	val  func(r *Report, p *Peer) string
}

var csvColumns = []csvColumn{
	{"verdict", func(_ *Report, p *Peer) string { return text(p.Verdict) }},
	{"confidence", func(_ *Report, p *Peer) string { return num(p.Confidence) }},
	{"flagged", func(_ *Report, p *Peer) string { return strconv.FormatBool(p.Flagged) }},
	{"address", func(_ *Report, p *Peer) string { return text(p.Address) }},
	{"on_wire", func(_ *Report, p *Peer) string { return strconv.FormatBool(p.OnWire) }},
	{"peer_id", func(_ *Report, p *Peer) string { return text(p.PeerID) }},
	{"peer_id_text", func(_ *Report, p *Peer) string { return text(p.PeerIDText) }},
	{"client", func(_ *Report, p *Peer) string { return text(p.Client) }},
	{"encryption", func(_ *Report, p *Peer) string { return text(p.Encryption) }},
	{"transport", func(_ *Report, p *Peer) string { return text(p.Transport) }},
	{"reach", func(_ *Report, p *Peer) string { return strings.Join(p.Reach, " ") }},
	{"sources", func(_ *Report, p *Peer) string { return text(strings.Join(p.Sources, ";")) }},
	{"discovered_at", func(_ *Report, p *Peer) string { return tm(p.DiscoveredAt) }},
	{"first_seen", func(_ *Report, p *Peer) string { return tm(p.FirstSeen) }},
	{"last_seen", func(_ *Report, p *Peer) string { return tm(p.LastSeen) }},
	{"attempts", func(_ *Report, p *Peer) string { return itoa(p.Connections.Attempts) }},
	{"connected", func(_ *Report, p *Peer) string { return itoa(p.Connections.Connected) }},
	{"refused", func(_ *Report, p *Peer) string { return itoa(p.Connections.Refused) }},
	{"unreachable", func(_ *Report, p *Peer) string { return itoa(p.Connections.Unreachable) }},
	{"handshake_failed", func(_ *Report, p *Peer) string { return itoa(p.Connections.HandshakeFailed) }},
	{"no_bitfield", func(_ *Report, p *Peer) string { return itoa(p.Connections.NoBitfield) }},
	{"pieces_known", func(_ *Report, p *Peer) string { return strconv.FormatBool(p.Pieces.Known) }},
	{"pieces_held", func(_ *Report, p *Peer) string { return ifKnown(p.Pieces.Known, itoa(p.Pieces.Held)) }},
	{"pieces_total", func(r *Report, _ *Peer) string { return itoa(r.Swarm.Pieces) }},
	{"pieces_gained", func(_ *Report, p *Peer) string { return ifKnown(p.Pieces.Known, itoa(p.Pieces.Gained)) }},
	{"observed_downloaded", func(_ *Report, p *Peer) string { return i64(p.ObservedDownloaded) }},
	{"capacity_known", func(_ *Report, p *Peer) string { return strconv.FormatBool(p.Capacity.Known) }},
	{"capacity_samples", func(_ *Report, p *Peer) string { return itoa(p.Capacity.Samples) }},
	{"capacity_central", func(_ *Report, p *Peer) string { return ifKnown(p.Capacity.Known, num(p.Capacity.Central)) }},
	{"capacity_spread", func(_ *Report, p *Peer) string { return ifKnown(p.Capacity.Known, num(p.Capacity.Spread)) }},
	{"capacity_measured_upper", func(_ *Report, p *Peer) string { return ifKnown(p.Capacity.Known, num(p.Capacity.MeasuredUpper)) }},
	{"capacity_upper", func(_ *Report, p *Peer) string { return ifKnown(p.Capacity.Known, num(p.Capacity.Upper)) }},
	{"capacity_plausible_upper", func(_ *Report, p *Peer) string {
		return ifKnown(p.Capacity.Known && p.Capacity.PlausibleUpper > 0, num(p.Capacity.PlausibleUpper))
	}},
	{"upload_lower", func(_ *Report, p *Peer) string {
		return bounds(p, func(b *UploadBounds) string { return i64(b.Lower) })
	}},
	{"upload_upper", func(_ *Report, p *Peer) string {
		return bounds(p, func(b *UploadBounds) string { return i64(b.Upper) })
	}},
	{"upload_limit", func(_ *Report, p *Peer) string {
		return bounds(p, func(b *UploadBounds) string { return text(b.Limit) })
	}},
	{"bad_pieces", func(_ *Report, p *Peer) string { return itoa(p.BadPieces) }},
	{"identities", func(_ *Report, p *Peer) string {
		return rep(p, func(rp *Reported) string {
			keys := make([]string, 0, len(rp.Identities))
			for _, id := range rp.Identities {
				keys = append(keys, id.Key)
			}
			return text(strings.Join(keys, ";"))
		})
	}},
	{"announces", func(_ *Report, p *Peer) string {
		return rep(p, func(rp *Reported) string { return itoa(rp.Announces) })
	}},
	{"sessions", func(_ *Report, p *Peer) string { return rep(p, func(rp *Reported) string { return itoa(rp.Sessions) }) }},
	{"reported_uploaded", func(_ *Report, p *Peer) string { return rep(p, func(rp *Reported) string { return i64(rp.Uploaded) }) }},
	{"reported_downloaded", func(_ *Report, p *Peer) string {
		return rep(p, func(rp *Reported) string { return i64(rp.Downloaded) })
	}},
	{"reported_upload_bound", func(_ *Report, p *Peer) string {
		return rep(p, func(rp *Reported) string { return i64(rp.UploadBound) })
	}},
	{"reported_seconds", func(_ *Report, p *Peer) string { return rep(p, func(rp *Reported) string { return num(rp.Seconds) }) }},
	{"reported_upload_rate", func(_ *Report, p *Peer) string {
		return rep(p, func(rp *Reported) string { return num(rp.UploadRate) })
	}},
	{"last_left", func(_ *Report, p *Peer) string { return rep(p, func(rp *Reported) string { return i64(rp.LastLeft) }) }},
	{"reason_codes", func(_ *Report, p *Peer) string {
		codes := make([]string, 0, len(p.Reasons))
		for _, rs := range p.Reasons {
			codes = append(codes, rs.Code)
		}
		return text(strings.Join(codes, ";"))
	}},
	{"reasons", func(_ *Report, p *Peer) string {
		msgs := make([]string, 0, len(p.Reasons))
		for _, rs := range p.Reasons {
			msgs = append(msgs, rs.Message)
		}
		return text(strings.Join(msgs, " | "))
	}},
	{"cheater", func(_ *Report, p *Peer) string {
		if p.Cheater == nil {
			return ""
		}
		return strconv.FormatBool(*p.Cheater)
	}},
}

// CSVHeader returns the header row of WriteCSV.
func CSVHeader() []string {
	out := make([]string, len(csvColumns))
	for i, c := range csvColumns {
		out[i] = c.name
	}
	return out
}

// WriteCSV writes the per-peer table, one line per Report.Peers entry in
// the report's order, after the CSVHeader line. Lists are joined with
// ';', times are RFC 3339, unknown values are empty. Text a spreadsheet
// would read as a formula (starting with =, +, -, @) gets a leading quote:
// peer ids and client names come from the network.
func WriteCSV(w io.Writer, r *Report) error {
	if r == nil {
		return fmt.Errorf("write csv report: %w: nil report", ErrInput)
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader()); err != nil {
		return fmt.Errorf("write csv report: %w", err)
	}
	rec := make([]string, len(csvColumns))
	for i := range r.Peers {
		for k, c := range csvColumns {
			rec[k] = c.val(r, &r.Peers[i])
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write csv report: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv report: %w", err)
	}
	return nil
}

// text defuses spreadsheet formulas in untrusted text.
func text(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func ifKnown(known bool, s string) string {
	if !known {
		return ""
	}
	return s
}

func bounds(p *Peer, f func(*UploadBounds) string) string {
	if p.UploadBounds == nil {
		return ""
	}
	return f(p.UploadBounds)
}

func rep(p *Peer, f func(*Reported) string) string {
	if p.Reported == nil {
		return ""
	}
	return f(p.Reported)
}

func num(f float64) string { return strconv.FormatFloat(fin(f), 'g', -1, 64) }

func itoa(i int) string { return strconv.Itoa(i) }

func i64(i int64) string { return strconv.FormatInt(i, 10) }

func tm(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
