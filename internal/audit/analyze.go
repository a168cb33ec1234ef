package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// Evidence is everything stored about one swarm, read back for analysis.
type Evidence struct {
	Torrent   *torrentmeta.Torrent
	Peers     []store.Peer
	Wire      []verdict.WirePeer
	Probes    []store.ProbeRecord
	Announces []reported.Announce
	// PasskeyKey keys the passkey hashes of reports (the database's
	// store.SecretPasskeyKey); never shown.
	PasskeyKey []byte `json:"-"`
}

// LoadEvidence reads a swarm's observations, probes and announces from the
// store and turns them into the verdict package's input. extra holds
// announces from other sources (imported logs).
func LoadEvidence(ctx context.Context, st *store.Store, swarm store.SwarmID, tor *torrentmeta.Torrent, extra []reported.Announce) (*Evidence, error) {
	if err := st.Flush(ctx); err != nil {
		return nil, fmt.Errorf("load evidence: %w", err)
	}
	pkKey, err := st.Secret(ctx, store.SecretPasskeyKey)
	if err != nil {
		return nil, fmt.Errorf("load evidence: %w", err)
	}
	snaps, err := st.Snapshots(ctx, swarm)
	if err != nil {
		return nil, fmt.Errorf("load evidence: %w", err)
	}
	haves, err := st.Haves(ctx, swarm)
	if err != nil {
		return nil, fmt.Errorf("load evidence: %w", err)
	}
	events, err := st.ConnEvents(ctx, swarm)
	if err != nil {
		return nil, fmt.Errorf("load evidence: %w", err)
	}
	probes, err := st.Probes(ctx, swarm)
	if err != nil {
		return nil, fmt.Errorf("load evidence: %w", err)
	}
	peers, err := st.Peers(ctx, swarm)
	if err != nil {
		return nil, fmt.Errorf("load evidence: %w", err)
	}
	anns, err := st.Announces(ctx, tor.InfoHash, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("load evidence: %w", err)
	}
	ev := &Evidence{Torrent: tor, Peers: peers, Probes: probes, Announces: append(anns, extra...), PasskeyKey: pkKey}

	wire := map[netip.AddrPort]*verdict.WirePeer{}
	get := func(a netip.AddrPort) *verdict.WirePeer {
		w := wire[a]
		if w == nil {
			w = &verdict.WirePeer{Addr: a}
			wire[a] = w
		}
		return w
	}
	for a, list := range snaps {
		w := get(a)
		for _, s := range list {
			w.Observations = append(w.Observations, timeline.Observation{At: s.At, Kind: timeline.KindBitfield, Pieces: s.Bitfield})
		}
	}
	for a, list := range haves {
		w := get(a)
		for _, h := range list {
			w.Observations = append(w.Observations, timeline.Observation{At: h.At, Kind: timeline.KindHave, Piece: h.Piece})
		}
	}
	for _, e := range events {
		w := get(e.Addr)
		switch e.Outcome {
		case store.ConnOK:
			kind := timeline.KindConnected
			switch e.Detail {
			case store.DetailHeartbeat:
				kind = timeline.KindHeartbeat // the same connection, still up
			case store.DetailWatch, store.DetailIncomingWatch, store.DetailHolepunchWatch:
				kind = timeline.KindWatch // its piece set is in; every message is recorded from now
			}
			w.Observations = append(w.Observations, timeline.Observation{At: e.At, Kind: kind})
			if e.Transport == "utp" {
				w.Reach.UTP = true
			} else {
				w.Reach.TCP = true
			}
			switch e.Detail {
			case store.DetailIncomingWatch:
				w.Reach.Incoming = true
			case store.DetailHolepunch, store.DetailHolepunchWatch:
				w.Reach.Holepunch = true
			case store.DetailHeartbeat: // the heartbeat of either kind of watch
			default:
				w.Reach.Direct = true
			}
		case store.ConnNoBitfield:
			w.Observations = append(w.Observations,
				timeline.Observation{At: e.At, Kind: timeline.KindConnected},
				timeline.Observation{At: e.At, Kind: timeline.KindNoBitfield})
		case store.ConnDisconnected:
			w.Observations = append(w.Observations, timeline.Observation{At: e.At, Kind: timeline.KindDisconnected})
		case store.ConnRefused:
			w.Observations = append(w.Observations, timeline.Observation{At: e.At, Kind: timeline.KindRefused})
		case store.ConnTimeout:
			w.Observations = append(w.Observations, timeline.Observation{At: e.At, Kind: timeline.KindUnreachable})
		default:
			w.Observations = append(w.Observations, timeline.Observation{At: e.At, Kind: timeline.KindHandshakeFailed})
		}
	}
	for _, p := range probes {
		w := get(p.Addr)
		// Its stored record, read once (empty when unreadable).
		var r probe.Result
		if json.Unmarshal(p.Result, &r) != nil {
			r = probe.Result{}
		}
		if keptChoked(p, &r) {
			w.ChokedProbes++
		}
		if p.ThroughputBytesPerSec > 0 {
			// The probe's spread is relative; the estimate wants bytes/s.
			w.Probes = append(w.Probes, estimate.Sample{At: p.At, BytesPerSec: p.ThroughputBytesPerSec, Spread: p.ThroughputSpread * p.ThroughputBytesPerSec,
				Bytes: p.BytesDownloaded, Duration: probeDuration(r.DurationMS)})
		}
		if p.PiecesFailed > 0 {
			for _, i := range r.FailedPieces {
				w.BadPieces = append(w.BadPieces, verdict.BadPiece{At: p.At, Piece: i})
			}
		}
	}
	for _, p := range peers {
		if len(p.PeerID) == 20 {
			w := get(p.Addr)
			w.PeerIDs = append(w.PeerIDs, [20]byte(p.PeerID))
		}
	}
	addrs := make([]netip.AddrPort, 0, len(wire))
	for a := range wire {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Compare(addrs[j]) < 0 })
	for _, a := range addrs {
		ev.Wire = append(ev.Wire, *wire[a])
	}
	return ev, nil
}

// Geometry is the torrent's piece geometry, as the analysis takes it.
func (ev *Evidence) Geometry() estimate.Torrent {
	t := ev.Torrent
	return estimate.Torrent{NumPieces: t.NumPieces, PieceLength: t.PieceLength, TotalLength: t.TotalLength, Sizes: t.PieceSizes()}
}

// Judge runs the verdicts on loaded evidence.
func (ev *Evidence) Judge(cfg verdict.Config) (*verdict.Report, error) {
	t := ev.Torrent
	return verdict.Judge(verdict.Input{
		InfoHash:  t.InfoHash,
		Torrent:   ev.Geometry(),
		Announces: ev.Announces,
		Peers:     ev.Wire,
	}, cfg)
}

// SaveVerdicts stores the verdicts of a report (one row per identity, over
// the span of its checks).
func SaveVerdicts(ctx context.Context, st *store.Store, swarm store.SwarmID, run store.RunID, rep *verdict.Report) error {
	rows := make([]store.Verdict, 0, len(rep.Verdicts))
	now := time.Now()
	for _, v := range rep.Verdicts {
		from, to := now, now
		for i, c := range v.Checks {
			if i == 0 || c.From.Before(from) {
				from = c.From
			}
			if i == 0 || c.To.After(to) {
				to = c.To
			}
		}
		reasons, err := json.Marshal(v.Reasons)
		if err != nil {
			return err
		}
		rows = append(rows, store.Verdict{Run: run, Identity: v.Identity.Key, WindowStart: from, WindowEnd: to, Status: string(v.Status), Confidence: v.Confidence, Reasons: reasons})
	}
	return st.SaveVerdicts(ctx, swarm, rows)
}

// Since keeps the announces of a window: those at or after since, and for
// each identity that reported in it the last one before it (the base its
// first report in the window is counted from). The wire evidence stays whole: what a peer held
// before the window still bounds what it did in it. A zero since keeps
// everything.
func (ev *Evidence) Since(since time.Time) *Evidence {
	if since.IsZero() {
		return ev
	}
	out := *ev
	out.Announces = nil
	before := map[string]int{} // identity key → index of its last announce before since
	inside := map[string]bool{}
	for i, a := range ev.Announces {
		if !a.At.Before(since) {
			inside[verdict.KeyOf(a)] = true
		} else {
			k := verdict.KeyOf(a)
			if j, ok := before[k]; !ok || ev.Announces[j].At.Before(a.At) {
				before[k] = i
			}
		}
	}
	for i, a := range ev.Announces {
		k := verdict.KeyOf(a)
		if j, ok := before[k]; !a.At.Before(since) || (ok && j == i && inside[k]) {
			out.Announces = append(out.Announces, a)
		}
	}
	return &out
}

// Rejudge judges again, with cfg, everything stored for a torrent's swarm:
// no peer is contacted. The result has the evidence and the report; the
// run bounds are those of the stored runs (zero when none was stored).
func Rejudge(ctx context.Context, st *store.Store, tor *torrentmeta.Torrent, imported []reported.Announce, cfg verdict.Config) (*Result, error) {
	return RejudgeSince(ctx, st, tor, imported, cfg, time.Time{})
}

// RejudgeSince is Rejudge of the reports made since a time (see
// Evidence.Since): a window of the audit, such as its last hour or day.
func RejudgeSince(ctx context.Context, st *store.Store, tor *torrentmeta.Torrent, imported []reported.Announce, cfg verdict.Config, since time.Time) (*Result, error) {
	sw, err := st.LookupSwarm(ctx, tor.InfoHash)
	if err != nil {
		return nil, fmt.Errorf("rejudge: %w", err)
	}
	res := &Result{Swarm: sw.ID}
	runs, err := st.Runs(ctx, sw.ID)
	if err != nil {
		return nil, fmt.Errorf("rejudge: %w", err)
	}
	for i, r := range runs {
		if i == 0 || r.Started.Before(res.Started) {
			res.Started = r.Started
		}
		if r.Stopped.After(res.Ended) {
			res.Ended = r.Stopped
		}
		res.Run = r.ID
	}
	if res.Evidence, err = LoadEvidence(ctx, st, sw.ID, tor, imported); err != nil {
		return nil, err
	}
	res.Evidence = res.Evidence.Since(since)
	if res.Report, err = res.Evidence.Judge(cfg); err != nil {
		return nil, fmt.Errorf("rejudge: %w", err)
	}
	return res, nil
}

// keptChoked reports whether a bandwidth probe ended with us still choked
// and no payload, after the peer completed the handshake and showed pieces:
// the choked outcome, or a probe the peer cut short (closed, protocol error,
// timeout) before it ever unchoked us. r is its stored record.
func keptChoked(p store.ProbeRecord, r *probe.Result) bool {
	if p.Outcome == string(probe.OutcomeChoked) {
		return true
	}
	if p.BytesDownloaded > 0 || p.Encryption == "" {
		return false
	}
	return r.Choked && r.PiecesHave > 0 && r.UnchokeMS == 0
}

// probeDuration is how long a stored probe ran, from its record's
// duration_ms; 0 when the record does not say (or says nonsense).
func probeDuration(ms float64) time.Duration {
	if !(ms > 0) || ms > float64(24*time.Hour/time.Millisecond) {
		return 0
	}
	return time.Duration(ms * float64(time.Millisecond))
}
