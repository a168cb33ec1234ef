package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
	"github.com/swarmaudit/swarmaudit/internal/observation/watch"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// The audit's default rates (swarmaudit audit's flags).
const (
	defaultSnapshotEvery = time.Minute      // --snapshot-interval
	defaultProbeEvery    = 10 * time.Minute // --probe-interval
	defaultProbeBytes    = 2 << 20          // --probe-bytes
	defaultAuditorRate   = 1 << 20          // --max-auditor-rate, bytes/s
)

// BenchmarkDBPerPeerHour is the database's growth per peer-hour of an
// audit at the collector's default rates: the store is fed exactly the
// calls internal/audit's collector makes, for one simulated hour of a
// 1,000-peer swarm, with made-up timestamps, so the hour takes seconds.
// Growth is the SQLite file's size after a WAL checkpoint (TRUNCATE) at the
// end minus the same after the peers were first recorded; it is linear in
// the observations, so an hour of 1,000 peers is the per-peer-hour figure
// with no further extrapolation.
//
// The swarm is BenchmarkPeerHour's: 2,000 pieces, 30% seeders, leechers
// starting 0-90% complete and gaining 0-20 pieces a minute. The auditor:
//
//   - watch (the default, with --max-conns above the swarm size so that
//     every peer can be watched): per peer a first snapshot probe (its
//     connection event, the peer's id and client, its bitfield), whose
//     connection becomes the watch (a "watch" connection event), a
//     "watching" heartbeat every snapshot interval (1 min; a run of them is
//     one row, Store.AddBeat), and every HAVE as it arrives;
//   - no-watch (--no-watch): per peer a snapshot probe every snapshot
//     interval, each a connection event, a peer update and a bitfield
//     snapshot; HAVEs are seen only as growth between snapshots.
//
// In both, bandwidth probes run at most every probe interval (10 min) per
// peer and within the auditor's budget (1 MiB/s for 2 MiB probes: one every
// 2 s swarm-wide, so 1.8 per peer-hour for 1,000 peers). With watches a
// probe runs on the watch's connection (watch.Lender) and stores its
// record only; without, it stores a connection event, a peer update, a
// snapshot and its record. The record is the JSON of a real 2 MiB probe of
// a simulated peer, of each kind (taken once at the start).
func BenchmarkDBPerPeerHour(b *testing.B) {
	for _, watch := range []bool{true, false} {
		result := realProbeJSON(b, watch)
		name := "no-watch"
		if watch {
			name = "watch"
		}
		b.Run(name, func(b *testing.B) {
			var perPeerHour, writes, haves, probes float64
			for b.Loop() {
				g := feedHour(b, watch, result)
				perPeerHour += g.bytes
				writes += g.writes
				haves += g.haves
				probes += g.probes
			}
			n := float64(b.N)
			b.ReportMetric(perPeerHour/n, "dbB/peer-hour")
			b.ReportMetric(writes/n, "writes/peer-hour")
			b.ReportMetric(haves/n, "HAVEs/peer-hour")
			b.ReportMetric(probes/n, "bw-probes/peer-hour")
		})
	}
}

// hourGrowth is what one simulated hour added, per peer.
type hourGrowth struct{ bytes, writes, haves, probes float64 }

type feedPeer struct {
	addr  netip.AddrPort
	id    []byte
	bf    bitfield.Bitfield
	order []int // the pieces it lacks, in the order it gains them
	rate  int   // pieces a minute
	beats Beats // the watch's heartbeat run
}

func feedHour(b *testing.B, watch bool, probeJSON json.RawMessage) hourGrowth {
	const (
		peers  = 1000
		pieces = 2000
	)
	b.StopTimer()
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "hour.db")
	s, err := Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sw, err := s.EnsureSwarm(ctx, SwarmInfo{InfoHash: ih(2), NumPieces: pieces})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	ps := make([]*feedPeer, peers)
	for i := range ps {
		p := &feedPeer{addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 2, byte(i >> 8), byte(i)}), 6881), id: make([]byte, 20)}
		copy(p.id, "-SM0100-")
		for j := 8; j < 20; j++ {
			p.id[j] = byte('a' + rng.IntN(26))
		}
		p.bf = bitfield.New(pieces)
		perm := rng.Perm(pieces)
		if rng.Float64() < 0.3 {
			p.bf = bitfield.Full(pieces)
		} else {
			have := rng.IntN(pieces * 9 / 10)
			for _, k := range perm[:have] {
				p.bf.Set(k)
			}
			p.order, p.rate = perm[have:], rng.IntN(21)
		}
		// Discovery: the collector records each address once.
		if err := s.UpsertPeer(ctx, sw, Peer{Addr: p.addr, FirstSeen: t0, LastSeen: t0, Sources: []string{"tracker:http://127.0.0.1/announce"}}); err != nil {
			b.Fatal(err)
		}
		ps[i] = p
	}
	base := checkpointedSize(b, s, path)
	b.StartTimer()

	var g hourGrowth
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
		g.writes++
	}
	conn := func(p *feedPeer, at time.Time, detail string) {
		must(s.AddConnEvent(ctx, sw, ConnEvent{Addr: p.addr, At: at, Outcome: ConnOK, Encryption: "rc4", Detail: detail}))
	}
	snapshotProbe := func(p *feedPeer, at time.Time, bf bitfield.Bitfield) { // what record() stores for a probe
		conn(p, at, "")
		must(s.UpsertPeer(ctx, sw, Peer{Addr: p.addr, PeerID: p.id, Client: "swarmsim", Encryption: "rc4", LastSeen: at}))
		must(s.AddSnapshot(ctx, sw, p.addr, at.Add(3*time.Millisecond), bf))
	}
	if watch {
		for _, p := range ps {
			snapshotProbe(p, t0, p.bf)
			conn(p, t0.Add(5*time.Millisecond), "watch")
		}
	}
	// Bandwidth probes: one per budget period swarm-wide, each peer at
	// most once per probe interval, in turn.
	budgetEvery := time.Duration(float64(defaultProbeBytes) / defaultAuditorRate * float64(time.Second))
	probeEvery := max(budgetEvery, defaultProbeEvery/peers)
	nextProbe, probeTurn := t0, 0
	minutes := int(time.Hour / defaultSnapshotEvery)
	// Each simulated minute's observations are fed in time order, as the
	// collector meets them, and the HAVE queue is flushed at every
	// simulated second, as its one-second timer does (AddHave also flushes
	// a full batch).
	type action struct {
		at time.Time
		do func()
	}
	lastFlush := t0
	for m := 0; m < minutes; m++ {
		from := t0.Add(time.Duration(m) * defaultSnapshotEvery)
		var acts []action
		for i, p := range ps {
			for k := 0; k < p.rate && len(p.order) > 0; k++ {
				piece := p.order[0]
				p.bf.Set(piece)
				if watch {
					at := from.Add(time.Duration(rng.Int64N(int64(defaultSnapshotEvery))))
					acts = append(acts, action{at, func() {
						if err := s.AddHave(ctx, sw, p.addr, at, piece); err != nil {
							b.Fatal(err)
						}
						g.haves++
					}})
				}
				p.order = p.order[1:]
			}
			at := from.Add(defaultSnapshotEvery * time.Duration(i) / peers) // spread over the minute
			bf := p.bf.Clone()
			if watch {
				acts = append(acts, action{at, func() {
					must(s.AddBeat(ctx, sw, ConnEvent{Addr: p.addr, At: at, Outcome: ConnOK, Encryption: "rc4", Detail: "watching"}, &p.beats))
				}})
			} else {
				acts = append(acts, action{at, func() { snapshotProbe(p, at, bf) }})
			}
		}
		for ; nextProbe.Before(from.Add(defaultSnapshotEvery)); nextProbe = nextProbe.Add(probeEvery) {
			p := ps[probeTurn%peers]
			probeTurn++
			at, bf := nextProbe, p.bf.Clone()
			acts = append(acts, action{at, func() {
				handshakeMS := 0.0 // on the watch's connection
				if !watch {
					snapshotProbe(p, at, bf)
					handshakeMS = 2
				}
				_, err := s.AddProbe(ctx, sw, ProbeRecord{Addr: p.addr, At: at, Outcome: "ok", Encryption: "rc4",
					ThroughputBytesPerSec: 4 << 20, ThroughputSpread: 0.05, BytesDownloaded: defaultProbeBytes, PiecesVerified: 4, HandshakeMS: handshakeMS, Result: probeJSON})
				must(err)
				g.probes++
			}})
		}
		slices.SortStableFunc(acts, func(a, b action) int { return a.at.Compare(b.at) })
		for _, a := range acts {
			if a.at.Sub(lastFlush) >= time.Second {
				if err := s.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				lastFlush = a.at.Truncate(time.Second)
			}
			a.do()
		}
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	grown := checkpointedSize(b, s, path) - base
	if grown <= 0 {
		b.Fatalf("the database did not grow (%d bytes)", grown)
	}
	b.StartTimer()
	return hourGrowth{bytes: float64(grown) / peers, writes: (g.writes + g.haves) / peers, haves: g.haves / peers, probes: g.probes / peers}
}

// checkpointedSize moves the WAL into the database file and returns the
// file's size.
func checkpointedSize(b *testing.B, s *Store, path string) int64 {
	if err := s.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	var busy, logged, moved int
	if err := s.w.QueryRowContext(context.Background(), `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logged, &moved); err != nil || busy != 0 {
		b.Fatalf("checkpoint: busy %d: %v", busy, err)
	}
	if n := fileSize(b, path+"-wal"); n != 0 {
		b.Fatalf("WAL still holds %d bytes after the checkpoint", n)
	}
	return fileSize(b, path)
}

// realProbeJSON runs one bandwidth probe (2 MiB, the default) against a
// simulated peer holding half of a 2,000-piece torrent and returns the JSON
// the collector would store for it: on a watch's connection if onWatch, on
// its own otherwise.
func realProbeJSON(b *testing.B, onWatch bool) json.RawMessage {
	payload, tor, err := swarmsim.NewPayload("size.bin", 2000*16<<10, 16<<10, 8)
	if err != nil {
		b.Fatal(err)
	}
	half := bitfield.New(tor.NumPieces)
	for i := 0; i < tor.NumPieces; i += 2 {
		half.Set(i)
	}
	peer, err := swarmsim.StartPeer("127.0.0.1:0", swarmsim.PeerConfig{Payload: payload, Have: half, Encryption: swarmsim.EncRequired, UploadRate: 8 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	target := probe.Target{InfoHash: tor.InfoHash, NumPieces: tor.NumPieces, PieceSize: tor.PieceSize, Verify: tor.VerifyPiece}
	opts := probe.Options{MaxBytes: defaultProbeBytes, Timeout: 30 * time.Second, ClientName: "swarmaudit"}
	var r *probe.Result
	if onWatch {
		r, err = lentProbe(ctx, peer.Addr(), target, opts)
	} else {
		r, err = probe.Run(ctx, peer.Addr(), target, opts)
	}
	if err != nil || r.Outcome != probe.OutcomeOK || r.BytesDownloaded < defaultProbeBytes/2 {
		b.Fatalf("probe of a simulated peer: %v %+v", err, r)
	}
	raw, err := json.Marshal(r.ForStore()) // as the collector stores it
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// lentProbe runs a probe on the connection of a watch of addr.
func lentProbe(ctx context.Context, addr netip.AddrPort, t probe.Target, o probe.Options) (*probe.Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lender := &watch.Lender{}
	connected := make(chan struct{})
	ended := make(chan error, 1)
	go func() {
		_, err := watch.Watch(ctx, addr, watch.Options{InfoHash: t.InfoHash, NumPieces: t.NumPieces, Lender: lender},
			watch.Events{Connected: func(*peerwire.Conn, *peerwire.ExtHandshake) { close(connected) }})
		ended <- err
	}()
	select {
	case <-connected:
	case err := <-ended:
		return nil, err
	}
	results := make(chan *probe.Result, 1)
	if !lender.Lend(func(c *peerwire.Conn, st *peerwire.PeerState) error {
		r, err := probe.RunOn(ctx, c, st, t, o)
		results <- r
		return err
	}) {
		return nil, errors.New("the watch would not lend its connection")
	}
	select {
	case r := <-results:
		return r, nil
	case err := <-ended:
		return nil, fmt.Errorf("the watch ended before the probe: %v", err)
	}
}
