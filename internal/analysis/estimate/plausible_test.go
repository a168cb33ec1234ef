package estimate

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// honestSwarm is a random small swarm with known truth: every transfer (one
// whole piece from a holder to a peer lacking it, at one instant), every
// peer's snapshots, and each peer's reports of its own downloads at its
// announces. Peers from nObserved on are never observed (only reported).
type honestSwarm struct {
	tor       Torrent
	in        Input
	transfers []struct {
		from, to int
		at       float64
		bytes    int64
	}
}

func newHonestSwarm(r *rand.Rand, seeders, peers, nObserved int) *honestSwarm {
	return newHonestSwarmOf(r, 2+r.IntN(7), 3, seeders, peers, nObserved)
}

// newHonestSwarmOf is newHonestSwarm of a torrent of numPieces pieces,
// with up to attempts−1 transfers tried each second.
func newHonestSwarmOf(r *rand.Rand, numPieces, attempts, seeders, peers, nObserved int) *honestSwarm {
	tor := Torrent{NumPieces: numPieces, PieceLength: 100}
	tor.TotalLength = int64(tor.NumPieces)*100 - int64(r.IntN(50))
	h := &honestSwarm{tor: tor}
	held := make([]bitfield.Bitfield, peers)
	for p := range held {
		held[p] = bitfield.New(tor.NumPieces)
		if p < seeders {
			held[p] = bitfield.Full(tor.NumPieces)
		}
	}
	obs := make([][]timeline.Observation, peers)
	// Half the observed peers are watched for a while: a connection with
	// its bitfield, heartbeats, and a HAVE for every piece gained while it
	// lasts, each within 9.5 s (AssumePromptHaves allows 10).
	type watchSpan struct {
		from, to, delay float64
	}
	watches := make([]*watchSpan, peers)
	for p := range min(nObserved, peers) {
		if r.IntN(2) == 0 {
			from := float64(r.IntN(80))
			watches[p] = &watchSpan{from: from, to: from + 5 + float64(r.IntN(40)), delay: r.Float64() * 9.5}
		}
	}
	reports := make([][]ReportedSpan, peers)
	down := make([]int64, peers)
	lastAnn := make([]float64, peers)
	lastDown := make([]int64, peers)
	for t := 1.0; t <= 100; t++ {
		// a few transfers
		for range r.IntN(attempts) {
			from, to, piece := r.IntN(peers), r.IntN(peers), r.IntN(tor.NumPieces)
			if from == to || !held[from].Has(piece) || held[to].Has(piece) {
				continue
			}
			held[to].Set(piece)
			if w := watches[to]; w != nil && t > w.from && t+w.delay < w.to {
				obs[to] = append(obs[to], timeline.Observation{At: at(t + w.delay), Kind: timeline.KindHave, Piece: piece})
			}
			n := tor.PieceSize(piece)
			down[to] += n
			h.transfers = append(h.transfers, struct {
				from, to int
				at       float64
				bytes    int64
			}{from, to, t, n})
		}
		for p, w := range watches {
			switch {
			case w == nil:
			case t == w.from:
				obs[p] = append(obs[p], timeline.Observation{At: at(t + 0.1), Kind: timeline.KindConnected},
					timeline.Observation{At: at(t + 0.2), Kind: timeline.KindBitfield, Pieces: held[p].Clone()})
			case t == w.to:
				obs[p] = append(obs[p], timeline.Observation{At: at(t), Kind: timeline.KindDisconnected})
			case t > w.from && t < w.to && r.IntN(3) == 0:
				obs[p] = append(obs[p], timeline.Observation{At: at(t + 0.5), Kind: timeline.KindHeartbeat})
			}
		}
		for p := range peers {
			// snapshots of observed peers, announces of everyone
			if p < nObserved && r.IntN(4) == 0 {
				obs[p] = append(obs[p], timeline.Observation{At: at(t + 0.5), Kind: timeline.KindBitfield, Pieces: held[p].Clone()})
			}
			if r.IntN(6) == 0 {
				reports[p] = append(reports[p], ReportedSpan{From: at(lastAnn[p]), To: at(t + 0.5), Downloaded: down[p] - lastDown[p]})
				lastAnn[p], lastDown[p] = t+0.5, down[p]
			}
		}
	}
	for p := range peers {
		// the tail: after its last announce it may download what it lacked
		left := tor.TotalLength - tor.Bytes(held[p].Indices())
		reports[p] = append(reports[p], ReportedSpan{From: at(lastAnn[p]), To: at(200), Downloaded: max(left, down[p]-lastDown[p])})
		rep := &Reported{Spans: reports[p]}
		if p < nObserved {
			h.in.Peers = append(h.in.Peers, Peer{ID: string(rune('A' + p)), Timeline: timeline.Build(tor.NumPieces, obs[p]), Reported: rep, PresentUntil: at(200)})
		} else {
			h.in.Unobserved = append(h.in.Unobserved, Unobserved{ID: string(rune('A' + p)), MaxGain: -1,
				Present: []timeline.Interval{{From: at(0), To: at(200)}}, Reported: rep})
		}
	}
	h.in.Torrent = tor
	return h
}

// TestPlausibleBoundsHold: in random honest swarms (peers report their own
// downloads truly), no peer's true upload in any window exceeds its
// plausible upper bound, the plausible bound never exceeds the worst case,
// and the plausible swarm bound covers every byte moved.
func TestPlausibleBoundsHold(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	cfg := exact()
	for iter := range 300 {
		peers := 3 + r.IntN(4)
		nObs := 1 + r.IntN(peers)
		h := newHonestSwarm(r, 1+r.IntN(2), peers, nObs)
		e := mustNew(t, h.in, cfg)
		for range 10 {
			f := float64(r.IntN(100))
			to := f + 1 + float64(r.IntN(60))
			var moved int64
			truth := make([]int64, peers)
			for _, tr := range h.transfers {
				if tr.at >= f && tr.at < to {
					truth[tr.from] += tr.bytes
					moved += tr.bytes
				}
			}
			for p := range peers {
				var b Bounds
				var err error
				if p < nObs {
					b, err = e.Peer(p, at(f), at(to))
				} else {
					b, err = e.Unobserved(p-nObs, at(f), at(to))
				}
				if err != nil {
					t.Fatal(err)
				}
				if b.Plausible.AvailabilityBound > b.Explain.AvailabilityBound {
					t.Fatalf("iter %d peer %d [%v,%v): plausible %d above the worst case %d", iter, p, f, to, b.Plausible.AvailabilityBound, b.Explain.AvailabilityBound)
				}
				if truth[p] > b.Plausible.UploadUpper {
					t.Fatalf("iter %d peer %d [%v,%v): uploaded %d, plausible bound %d (%+v)", iter, p, f, to, truth[p], b.Plausible.UploadUpper, b.Plausible)
				}
			}
			sw, err := e.Swarm(at(f), at(to))
			if err != nil {
				t.Fatal(err)
			}
			if moved > sw.PlausibleGainUpper || sw.PlausibleGainUpper > sw.GainUpper {
				t.Fatalf("iter %d [%v,%v): moved %d, plausible swarm bound %d, worst %d", iter, f, to, moved, sw.PlausibleGainUpper, sw.GainUpper)
			}
		}
	}
}

// TestPlausibleObservedBruteForce: the plausible cap on the observed part
// equals its definition computed naively — Σ over the other observed peers
// of min(what it may have gained in the window, what it reported), capped
// by the worst case.
func TestPlausibleObservedBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	cfg := exact()
	for iter := range 200 {
		peers := 2 + r.IntN(5)
		h := newHonestSwarm(r, 1, peers, peers)
		e := mustNew(t, h.in, cfg)
		f := float64(r.IntN(100))
		to := f + 1 + float64(r.IntN(60))
		uf, ut := at(f).UnixNano(), at(to).UnixNano()
		for p := range peers {
			b, err := e.Peer(p, at(f), at(to))
			if err != nil {
				t.Fatal(err)
			}
			var want int64
			for q, qp := range h.in.Peers {
				if q == p || !qp.Timeline.HasPieceInfo() {
					continue
				}
				var g int64
				last, _ := qp.Timeline.LastSeen()
				for i := range h.tor.NumPieces {
					l, hd := qp.Timeline.PieceNanos(i)
					a, bb := l, hd
					if hd == posInf {
						bb = max(last.UnixNano(), at(200).UnixNano())
					}
					if bb > a && a < ut && bb >= uf {
						g += h.tor.PieceLength
					}
				}
				var d int64
				for _, s := range qp.Reported.Spans {
					if s.From.UnixNano() < ut && s.To.UnixNano() >= uf {
						d += s.Downloaded
					}
				}
				want += min(g, d)
			}
			want = min(want, b.Explain.AvailabilityObserved)
			if b.Plausible.Observed != want {
				t.Fatalf("iter %d peer %d [%v,%v): plausible observed %d, brute force %d", iter, p, f, to, b.Plausible.Observed, want)
			}
		}
	}
}

// TestReportedSpans: a window sums exactly the spans it meets, by binary
// search when spans do not nest and by a scan when they do.
func TestReportedSpans(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spans []ReportedSpan
		f, to float64
		want  int64
	}{
		{"consecutive", []ReportedSpan{{at(0), at(10), 5}, {at(10), at(20), 7}, {at(20), at(30), 11}}, 12, 18, 7},
		{"edges meet", []ReportedSpan{{at(0), at(10), 5}, {at(10), at(20), 7}}, 10, 11, 12},
		{"before all", []ReportedSpan{{at(10), at(20), 7}}, 0, 5, 0},
		{"nested", []ReportedSpan{{at(0), at(100), 1}, {at(10), at(20), 2}, {at(30), at(40), 4}}, 35, 36, 5},
		{"open start", []ReportedSpan{{time.Time{}, at(10), 3}}, 0, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newRepData(&Reported{Spans: tc.spans}, 0)
			if got := d.downloads(at(tc.f).UnixNano(), at(tc.to).UnixNano()); got != tc.want {
				t.Fatalf("downloads = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestTransfersBracketTheTruth: in random honest swarms where every peer
// is observed, what each peer really sent each other peer in a window lies
// between the matrix's lower and upper bounds, and under its plausible
// upper bound (the peers report their downloads truly).
func TestTransfersBracketTheTruth(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 8))
	cfg := exact()
	for iter := range 200 {
		peers := 2 + r.IntN(5)
		h := newHonestSwarm(r, 1+r.IntN(2), peers, peers)
		e := mustNew(t, h.in, cfg)
		f := float64(r.IntN(100))
		to := f + 1 + float64(r.IntN(60))
		ts, err := e.Transfers(at(f), at(to))
		if err != nil {
			t.Fatal(err)
		}
		got := map[[2]int]Transfer{}
		for _, x := range ts {
			got[[2]int{x.From, x.To}] = x
		}
		truth := map[[2]int]int64{}
		for _, tr := range h.transfers {
			if tr.at >= f && tr.at < to {
				truth[[2]int{tr.from, tr.to}] += tr.bytes
			}
		}
		for p := range peers {
			for q := range peers {
				k := [2]int{p, q}
				if x := got[k]; truth[k] < x.Lower || truth[k] > x.Upper {
					t.Fatalf("iter %d [%v,%v): %d sent %d bytes to %d, matrix says [%d, %d]", iter, f, to, p, truth[k], q, x.Lower, x.Upper)
				}
				// Peers report their downloads truly: the plausible
				// upper bound holds the truth too, and is the tighter.
				if x := got[k]; truth[k] > x.PlausibleUpper || x.PlausibleUpper > x.Upper {
					t.Fatalf("iter %d [%v,%v): %d sent %d bytes to %d, plausibly at most %d (worst case %d)", iter, f, to, p, truth[k], q, x.PlausibleUpper, x.Upper)
				}
			}
		}
	}
}

// TestSlicedFlow: in random honest swarms whose observed peers have a
// capacity too large to bind, the sliced bound (a maximum flow of what the
// others absorbed into the slices) still holds every peer's true upload,
// never exceeds the per-slice sum it replaces, and its threshold scales
// it by at least the smaller factor; with the pieces the uploader held
// (small swarms) and without (large ones).
func TestSlicedFlow(t *testing.T) {
	for _, pairwise := range []bool{true, false} {
		t.Run(fmt.Sprintf("held pieces %v", pairwise), func(t *testing.T) {
			if !pairwise {
				defer func(n int) { heldFilterPeers = n }(heldFilterPeers)
				heldFilterPeers = 0
			}
			testSlicedFlow(t)
		})
	}
}

func testSlicedFlow(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 17))
	cfg := exact()
	cfg.SlicedCapacityFactor, cfg.SlicedAvailabilityFactor = 1.05, 1.15
	tighter := 0
	for iter := range 300 {
		peers := 3 + r.IntN(4)
		nObs := 1 + r.IntN(peers)
		h := newHonestSwarm(r, 1+r.IntN(2), peers, nObs)
		for p := range h.in.Peers {
			h.in.Peers[p].Capacity = Capacity{Samples: []Sample{{At: at(50), BytesPerSec: 1e9, Bytes: 0}}}
		}
		e := mustNew(t, h.in, cfg)
		for range 10 {
			f := float64(r.IntN(100))
			to := f + 1 + float64(r.IntN(60))
			truth := make([]int64, peers)
			for _, tr := range h.transfers {
				if tr.at >= f && tr.at < to {
					truth[tr.from] += tr.bytes
				}
			}
			for p := range nObs {
				b := mustPeer(t, e, p, f, to)
				pl := b.Plausible
				if pl.SlicedBound < 0 {
					t.Fatalf("iter %d peer %d: no sliced bound with a capacity", iter, p)
				}
				if truth[p] > pl.SlicedBound {
					t.Fatalf("iter %d peer %d [%v,%v): uploaded %d, sliced bound %d over %d slices", iter, p, f, to, truth[p], pl.SlicedBound, pl.Slices)
				}
				w, _, err := e.window(at(f), at(to))
				if err != nil {
					t.Fatal(err)
				}
				cuts := e.cutsIn(w.uf, w.ut)
				sw := make([]window, 0, len(cuts)+1)
				from := w.uf
				for _, c := range append(cuts, w.ut) {
					sw = append(sw, window{uf: from, ut: c})
					from = c
				}
				sum := e.slicedSum(p, sw, b.Explain.PossiblyHeldBytes, 1, 1)
				if pl.SlicedBound > sum {
					t.Fatalf("iter %d peer %d [%v,%v): flow %d above the per-slice sum %d", iter, p, f, to, pl.SlicedBound, sum)
				}
				if pl.SlicedBound < sum {
					tighter++
				}
				if float64(pl.SlicedThreshold) < float64(pl.SlicedBound)*1.05-1 {
					t.Fatalf("iter %d peer %d: threshold %d below the bound %d × 1.05", iter, p, pl.SlicedThreshold, pl.SlicedBound)
				}
			}
		}
	}
	if tighter == 0 {
		t.Fatal("the flow never came out below the per-slice sum: the test does not exercise it")
	}
	t.Logf("the flow was below the per-slice sum in %d cases", tighter)
}

// TestBusyProbeCompetitors: a probe of a seed while a watched leecher is
// downloading by its own reports counts that leecher as a competitor under
// the plausible tier only if the leecher completed a piece while the probe
// ran; the worst case counts it either way.
func TestBusyProbeCompetitors(t *testing.T) {
	tor := Torrent{NumPieces: 10, PieceLength: 100, TotalLength: 1000}
	// The leecher gains piece 0 by 10 s and piece 1 between 40 s (a
	// snapshot lacking it) and 61 s; it reports downloading throughout
	// (0, 100].
	leecher := Peer{ID: "L", Timeline: timeline.Build(10, []timeline.Observation{
		{At: at(1), Kind: timeline.KindBitfield, Pieces: bf(10)},
		{At: at(10), Kind: timeline.KindHave, Piece: 0},
		{At: at(40), Kind: timeline.KindBitfield, Pieces: bf(10, 0)},
		{At: at(61), Kind: timeline.KindHave, Piece: 1},
		{At: at(99), Kind: timeline.KindBitfield, Pieces: bf(10, 0, 1)},
	}), Reported: &Reported{Spans: []ReportedSpan{{From: at(0), To: at(100), Downloaded: 200}}}, PresentUntil: at(100)}
	seed := func(probeAt float64) Peer {
		return Peer{ID: "S", Timeline: timeline.Build(10, []timeline.Observation{
			{At: at(1), Kind: timeline.KindBitfield, Pieces: bitfield.Full(10)},
			{At: at(99), Kind: timeline.KindBitfield, Pieces: bitfield.Full(10)},
		}), Capacity: Capacity{Samples: []Sample{{At: at(probeAt), BytesPerSec: 1000, Bytes: 5000, Duration: 5 * time.Second}}},
			Reported: &Reported{Spans: []ReportedSpan{{From: at(0), To: at(100)}}}, PresentUntil: at(100)}
	}
	cfg := exact()
	cfg.PlausibleMinPieceRate = 100 // a piece takes at most 1 s
	// An unobserved identity that announced as a leecher, with no usable
	// reports, present over two overlapping intervals: one competitor.
	unobserved := Unobserved{ID: "U", MaxGain: -1, Present: []timeline.Interval{{From: at(0), To: at(100)}, {From: at(20), To: at(50)}}}
	for _, tt := range []struct {
		name       string
		probeAt    float64
		unobserved bool
		wantShare  float64
	}{
		{"the leecher completed nothing during the probe", 30, false, 1},
		{"the leecher completed a piece during the probe", 57, false, 2},
		{"an unobserved leecher present twice over", 30, true, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Torrent: tor, Peers: []Peer{seed(tt.probeAt), leecher}}
			worstShare := 2.0
			if tt.unobserved {
				in.Unobserved = []Unobserved{unobserved}
				worstShare = 0 // the proof tier counts the overlapping intervals apart: not checked here
			}
			e := mustNew(t, in, cfg)
			worst, err := e.Capacity(0)
			if err != nil {
				t.Fatal(err)
			}
			pl := mustPeer(t, e, 0, 0, 100).Plausible.Capacity
			if (worstShare != 0 && worst.Share != worstShare) || pl.Share != tt.wantShare || pl.Quiet != (tt.wantShare == 1) {
				t.Fatalf("worst-case share %v; plausible share %v quiet %v, want %v", worst.Share, pl.Share, pl.Quiet, tt.wantShare)
			}
			if want := 1000 * tt.wantShare * cfg.PlausibleHeadroom; pl.Upper != want {
				t.Fatalf("plausible upper %v, want %v", pl.Upper, want)
			}
		})
	}
}

// TestPromptHavesHold: in random honest swarms of larger torrents, whose
// watched peers announce every piece within 9.5 s (AssumePromptHaves
// allows 10), reading their silence as lacking keeps every true transfer
// under the plausible matrix and every true upload under the plausible
// bound.
func TestPromptHavesHold(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 10))
	cfg := exact()
	prompt := 0
	for iter := range 200 {
		peers := 3 + r.IntN(4)
		h := newHonestSwarmOf(r, 40+r.IntN(60), 8, 1, peers, peers)
		for _, p := range h.in.Peers {
			pl := p.Timeline.PromptLacked(cfg.PlausibleHaveDelay)
			for i := range pl {
				if l, _ := p.Timeline.PieceNanos(i); pl[i] != l {
					prompt++
				}
			}
		}
		e := mustNew(t, h.in, cfg)
		for range 5 {
			f := float64(r.IntN(100))
			to := f + 1 + float64(r.IntN(30))
			ts, err := e.Transfers(at(f), at(to))
			if err != nil {
				t.Fatal(err)
			}
			got := map[[2]int]int64{}
			for _, x := range ts {
				got[[2]int{x.From, x.To}] = x.PlausibleUpper
			}
			truth := map[[2]int]int64{}
			up := make([]int64, peers)
			for _, tr := range h.transfers {
				if tr.at >= f && tr.at < to {
					truth[[2]int{tr.from, tr.to}] += tr.bytes
					up[tr.from] += tr.bytes
				}
			}
			for k, n := range truth {
				if n > got[k] {
					t.Fatalf("iter %d [%v,%v): %d sent %d bytes to %d, plausibly at most %d", iter, f, to, k[0], n, k[1], got[k])
				}
			}
			for p := range peers {
				if b := mustPeer(t, e, p, f, to); up[p] > b.Plausible.UploadUpper {
					t.Fatalf("iter %d peer %d [%v,%v): uploaded %d, plausible bound %d", iter, p, f, to, up[p], b.Plausible.UploadUpper)
				}
			}
		}
	}
	if prompt == 0 {
		t.Fatal("no piece's lacked time moved: the watches were never read")
	}
	t.Logf("%d pieces lacked later under prompt HAVEs", prompt)
}

// TestProbeSecondsCountedOnce: a probe's bytes count in a capacity bound
// only beyond what the capacity carries in the probe's own seconds of
// demand (one link carried the probe's bytes and the others' then), in
// both tiers and in every slice of the sliced bound.
func TestProbeSecondsCountedOnce(t *testing.T) {
	tor := Torrent{NumPieces: 10, PieceLength: 100, TotalLength: 1000}
	full, empty := bitfield.Full(10), bitfield.New(10)
	tests := []struct {
		name     string
		probeAt  float64
		busySecs float64 // of the probe's 10 s, while the leecher downloaded (1, 100]
	}{
		{"inside the demand", 40, 10},
		{"across its end", 95, 5},
		{"quiet", 150, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seed := timeline.Build(10, []timeline.Observation{{At: at(0.5), Kind: timeline.KindBitfield, Pieces: full}})
			leech := timeline.Build(10, []timeline.Observation{{At: at(1), Kind: timeline.KindBitfield, Pieces: empty},
				{At: at(100), Kind: timeline.KindBitfield, Pieces: full}})
			in := Input{Torrent: tor, Peers: []Peer{
				{ID: "S", Timeline: seed, PresentUntil: at(200), Capacity: Capacity{Samples: []Sample{{At: at(tc.probeAt), BytesPerSec: 50, Bytes: 500, Duration: 10 * time.Second}}}},
				{ID: "L", Timeline: leech, PresentUntil: at(200)},
			}}
			e := mustNew(t, in, exact())
			b := mustPeer(t, e, 0, 0, 200)
			for _, tier := range []struct {
				name  string
				upper float64
				got   int64
				dt    time.Duration
			}{
				{"worst case", b.Explain.Capacity.Upper, b.Explain.CapacityBound, b.Explain.DemandTime},
				{"plausible", b.Plausible.Capacity.Upper, b.Plausible.CapacityBound, b.Plausible.DemandTime},
			} {
				want := int64(tier.upper*tier.dt.Seconds()) + max(0, 500-int64(tier.upper*tc.busySecs))
				if d := tier.got - want; d < -1 || d > 1 {
					t.Errorf("%s: capacity bound %d, want %d (rate %.1f over %v of demand)", tier.name, tier.got, want, tier.upper, tier.dt)
				}
			}
			if pl := b.Plausible; pl.SlicedBound > pl.CapacityBound+1 {
				t.Errorf("sliced bound %d above the capacity bound %d", pl.SlicedBound, pl.CapacityBound)
			}
		})
	}
}
