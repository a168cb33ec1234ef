package estimate

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// tor10 has ten pieces of 100 bytes, the last one 50.
var tor10 = Torrent{NumPieces: 10, PieceLength: 100, TotalLength: 950}

func bf(n int, pieces ...int) bitfield.Bitfield {
	b := bitfield.New(n)
	for _, p := range pieces {
		b.Set(p)
	}
	return b
}

func rng(a, b int) []int {
	var out []int
	for i := a; i < b; i++ {
		out = append(out, i)
	}
	return out
}

func snap(s float64, n int, pieces ...int) timeline.Observation {
	return timeline.Observation{At: at(s), Kind: timeline.KindBitfield, Pieces: bf(n, pieces...)}
}

func haveAll(s float64) timeline.Observation {
	return timeline.Observation{At: at(s), Kind: timeline.KindHaveAll}
}

func haveNone(s float64) timeline.Observation {
	return timeline.Observation{At: at(s), Kind: timeline.KindHaveNone}
}

func refused(s float64) timeline.Observation {
	return timeline.Observation{At: at(s), Kind: timeline.KindRefused}
}

func peer(id string, n int, obs ...timeline.Observation) Peer {
	return Peer{ID: id, Timeline: timeline.Build(n, obs)}
}

// exact is a config without slack, lead or tail, so tests can compute bounds
// by hand.
func exact() Config {
	c := DefaultConfig()
	c.ClockSlack, c.TransferLead, c.UnresolvedTail, c.ReportLatency = 0, 0, 0, 0
	return c
}

func mustNew(t *testing.T, in Input, cfg Config) *Estimator {
	t.Helper()
	e, err := New(in, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustPeer(t *testing.T, e *Estimator, i int, from, to float64) Bounds {
	t.Helper()
	b, err := e.Peer(i, at(from), at(to))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTorrent(t *testing.T) {
	tests := []struct {
		tor   Torrent
		ok    bool
		sizes []int64
	}{
		{tor10, true, []int64{100, 100, 100, 100, 100, 100, 100, 100, 100, 50}},
		{Torrent{NumPieces: 1, PieceLength: 100, TotalLength: 70}, true, []int64{70}},
		{Torrent{NumPieces: 2, PieceLength: 100, TotalLength: 200}, true, []int64{100, 100}},
		{Torrent{NumPieces: 3, PieceLength: 100, TotalLength: 200}, false, nil},
		{Torrent{NumPieces: 0, PieceLength: 100, TotalLength: 0}, false, nil},
		{Torrent{NumPieces: 1, PieceLength: 0, TotalLength: 10}, false, nil},
		// v2-only (BEP 52): two files of 250 and 120 bytes, each from a piece boundary.
		{Torrent{NumPieces: 5, PieceLength: 100, TotalLength: 370, Sizes: []int64{100, 100, 50, 100, 20}}, true, []int64{100, 100, 50, 100, 20}},
		{Torrent{NumPieces: 5, PieceLength: 100, TotalLength: 371, Sizes: []int64{100, 100, 50, 100, 20}}, false, nil},
		{Torrent{NumPieces: 4, PieceLength: 100, TotalLength: 370, Sizes: []int64{100, 100, 50, 120}}, false, nil},
		{Torrent{NumPieces: 3, PieceLength: 100, TotalLength: 370, Sizes: []int64{100, 100, 50, 100, 20}}, false, nil},
	}
	for _, tc := range tests {
		err := tc.tor.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrTorrent)) {
			t.Errorf("%+v: Validate() = %v", tc.tor, err)
		}
		for i, s := range tc.sizes {
			if got := tc.tor.PieceSize(i); got != s {
				t.Errorf("%+v: PieceSize(%d) = %d, want %d", tc.tor, i, got, s)
			}
		}
	}
	if tor10.PieceSize(-1) != 0 || tor10.PieceSize(10) != 0 || tor10.Bytes([]int{0, 9}) != 150 {
		t.Error("PieceSize out of range or Bytes")
	}
}

// leecher gains pieces 0,1 in (0,100], 2-4 in (100,200], 5-9 in (200,300].
func leecher(id string) Peer {
	return peer(id, 10, snap(0, 10), snap(100, 10, 0, 1), snap(200, 10, rng(0, 5)...), snap(300, 10, rng(0, 10)...))
}

func TestDownloadedLower(t *testing.T) {
	slack := exact()
	slack.ClockSlack = 10 * time.Second
	tests := []struct {
		name       string
		tor        Torrent
		p          Peer
		cfg        Config
		from, to   float64
		want       int64
		gained     int
		straddling int
		firstSight int
	}{
		{name: "whole life", tor: tor10, p: leecher("L"), from: 0, to: 400, want: 950, gained: 10},
		{name: "half-open end excludes a gain completing at `to`", tor: tor10, p: leecher("L"), from: 0, to: 200, want: 200, gained: 2, straddling: 3},
		{name: "gain straddling the start", tor: tor10, p: leecher("L"), from: 50, to: 400, want: 750, gained: 8, straddling: 2},
		{name: "short last piece", tor: tor10, p: leecher("L"), from: 200, to: 301, want: 450, gained: 5, straddling: 3},
		{name: "zero-length", tor: tor10, p: leecher("L"), from: 100, to: 100, want: 0},
		{name: "clock slack narrows the window", tor: tor10, p: leecher("L"), cfg: slack, from: 0, to: 300, want: 300, gained: 3, straddling: 7},
		{name: "clock slack empties a short window", tor: tor10, p: leecher("L"), cfg: slack, from: 100, to: 115, want: 0},
		{
			name: "peer joins mid-window: first-sight pieces never count",
			tor:  tor10,
			p:    peer("J", 10, snap(100, 10, 0, 1), snap(200, 10, rng(0, 5)...)),
			from: 0, to: 400, want: 300, gained: 3, firstSight: 2,
		},
		{name: "seeder gains nothing", tor: tor10, p: peer("S", 10, haveAll(0), haveAll(300)), from: 0, to: 400, want: 0, firstSight: 10},
		{name: "seen once", tor: tor10, p: peer("O", 10, snap(100, 10, 1, 2)), from: 0, to: 400, want: 0, firstSight: 2},
		{
			name: "HAVE suppression: snapshots only, a day apart",
			tor:  tor10,
			p:    peer("H", 10, snap(0, 10), snap(86400, 10, rng(0, 10)...)),
			from: 0, to: 86401, want: 950, gained: 10,
		},
		{
			name: "one piece",
			tor:  Torrent{NumPieces: 1, PieceLength: 100, TotalLength: 70},
			p:    peer("1", 1, snap(0, 1), snap(10, 1, 0)),
			from: 0, to: 20, want: 70, gained: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg == (Config{}) {
				cfg = exact()
			}
			e := mustNew(t, Input{Torrent: tc.tor, Peers: []Peer{tc.p}}, cfg)
			b := mustPeer(t, e, 0, tc.from, tc.to)
			x := b.Explain
			if b.DownloadedLower != tc.want || x.GainedPieces != tc.gained || x.StraddlingPieces != tc.straddling || x.FirstSightPieces != tc.firstSight {
				t.Errorf("DownloadedLower %d (gained %d straddling %d first sight %d), want %d (%d %d %d)",
					b.DownloadedLower, x.GainedPieces, x.StraddlingPieces, x.FirstSightPieces, tc.want, tc.gained, tc.straddling, tc.firstSight)
			}
		})
	}
}

func TestIntervalErrors(t *testing.T) {
	e := mustNew(t, Input{Torrent: tor10, Peers: []Peer{leecher("L")}, Unobserved: []Unobserved{{ID: "U"}}}, exact())
	if _, err := e.Peer(0, at(10), at(5)); !errors.Is(err, ErrInterval) {
		t.Errorf("inverted Peer: %v", err)
	}
	if _, err := e.Unobserved(0, at(10), at(5)); !errors.Is(err, ErrInterval) {
		t.Errorf("inverted Unobserved: %v", err)
	}
	if _, err := e.Swarm(at(10), at(5)); !errors.Is(err, ErrInterval) {
		t.Errorf("inverted Swarm: %v", err)
	}
	for _, i := range []int{-1, 1} {
		if _, err := e.Peer(i, at(0), at(5)); !errors.Is(err, ErrNoPeer) {
			t.Errorf("Peer(%d): %v", i, err)
		}
		if _, err := e.Capacity(i); !errors.Is(err, ErrNoPeer) {
			t.Errorf("Capacity(%d): %v", i, err)
		}
	}
	if _, err := e.Unobserved(1, at(0), at(5)); !errors.Is(err, ErrNoPeer) {
		t.Errorf("Unobserved(1): %v", err)
	}
	// A zero-length interval is valid: upper bounds over no time are zero
	// for capacity, availability may still count gains at that instant.
	b := mustPeer(t, e, 0, 150, 150)
	if b.DownloadedLower != 0 || !b.Explain.LowerEmpty {
		t.Errorf("zero-length: %+v", b)
	}
}

func TestNewErrors(t *testing.T) {
	bad := DefaultConfig()
	bad.Headroom = 0.5
	tests := []struct {
		name string
		in   Input
		cfg  Config
		want error
	}{
		{"torrent", Input{Torrent: Torrent{NumPieces: 3, PieceLength: 100, TotalLength: 200}}, DefaultConfig(), ErrTorrent},
		{"config", Input{Torrent: tor10}, bad, ErrConfig},
		{"timeline", Input{Torrent: tor10, Peers: []Peer{peer("x", 11, snap(0, 11))}}, DefaultConfig(), ErrTimeline},
	}
	for _, tc := range tests {
		if _, err := New(tc.in, tc.cfg); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.SpreadZ = -1 },
		func(c *Config) { c.MaxShare = 0.5 },
		func(c *Config) { c.TransferLead = -1 },
		func(c *Config) { c.UnobservedRate = math.Inf(1) },
		func(c *Config) { c.Headroom = math.NaN() },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("config %+v accepted", c)
		}
	}
}

// swarm: seeder S (all pieces, seen from -100), leecher L1 (as leecher()),
// leecher L2 (empty at 0 and 150, pieces 0-4 at 300), and C, which holds
// nothing at every look.
func swarm() []Peer {
	return []Peer{
		peer("S", 10, haveAll(-100), haveAll(150), haveAll(300)),
		leecher("L1"),
		peer("L2", 10, snap(0, 10), snap(150, 10), snap(300, 10, rng(0, 5)...)),
		peer("C", 10, haveNone(-100), haveNone(150), haveNone(450)),
	}
}

func TestAvailability(t *testing.T) {
	tests := []struct {
		name     string
		peers    []Peer
		unobs    []Unobserved
		cfg      func(*Config)
		peer     int
		from, to float64
		observed int64
		pairs    int
		unobsB   int64
		held     int64
	}{
		// S may have sent every piece L1 and L2 gained: 950 + 500.
		{name: "seeder", peers: swarm(), peer: 0, from: 0, to: 400, observed: 1450, pairs: 15, held: 950},
		// L1 holds pieces 0,1 after 0 and 2-4 after 100, while L2 gains 0-4
		// in (150,300]. Without a tail, L2 had no time to gain the 5-9 it
		// lacked at its last contact.
		{name: "leecher", peers: swarm(), peer: 1, from: 0, to: 400, observed: 500, pairs: 5, held: 950},
		// C never held anything others lacked: zero.
		{name: "holds nothing", peers: swarm(), peer: 3, from: 0, to: 400, observed: 0, held: 0},
		// Window before L2's gains and after L1's first gains: L1's
		// (100,200] gains and L2's (150,300] gains overlap [120,180).
		{name: "straddling window", peers: swarm(), peer: 0, from: 120, to: 180, observed: 300 + 500, pairs: 8, held: 950},
		// After everyone completed or left: nothing to gain.
		{name: "quiet window", peers: swarm(), peer: 0, from: 500, to: 900, observed: 0, held: 950},
		{
			name:  "unobserved allowance capped by what the peer may hold",
			peers: swarm(), unobs: []Unobserved{{ID: "U", Present: []timeline.Interval{{From: at(0), To: at(1000)}}, MaxGain: -1}},
			peer: 3, from: 0, to: 400, observed: 0, unobsB: 0, held: 0,
		},
		{
			name:  "unobserved allowance for a holder",
			peers: swarm(), unobs: []Unobserved{{ID: "U", Present: []timeline.Interval{{From: at(0), To: at(1000)}}, MaxGain: -1}},
			peer: 0, from: 500, to: 900, observed: 0, unobsB: 950, held: 950,
		},
		{
			name:  "unobserved rate cap",
			peers: swarm(), unobs: []Unobserved{{ID: "U", Present: []timeline.Interval{{From: at(0), To: at(600)}}, MaxGain: -1}},
			cfg:  func(c *Config) { c.UnobservedRate = 1 },
			peer: 0, from: 500, to: 900, observed: 0, unobsB: 100, held: 950,
		},
		{
			name:  "unobserved peer absent from the window",
			peers: swarm(), unobs: []Unobserved{{ID: "U", Present: []timeline.Interval{{From: at(1000), To: at(2000)}}, MaxGain: 10}},
			peer: 0, from: 500, to: 900, observed: 0, unobsB: 0, held: 950,
		},
		{
			// Blocks may arrive up to 60 s before the snapshot that saw a
			// piece lacking: L1's 5-9 gains (200,300] start at 140 and L2's
			// (150,300] at 90, so they overlap [100,150) too.
			name: "transfer lead", peers: swarm(), cfg: func(c *Config) { c.TransferLead = time.Minute },
			peer: 0, from: 100, to: 150, observed: 200 + 300 + 450 + 500, pairs: 15, held: 950,
		},
		{
			// With a 10 min tail, L2 (last contact 300) may gain its
			// missing 5-9 until 900 and C (last contact 450) everything
			// until 1050.
			name: "unresolved tail", peers: swarm(), cfg: func(c *Config) { c.UnresolvedTail = 10 * time.Minute },
			peer: 0, from: 500, to: 900, observed: 450 + 950, pairs: 15, held: 950,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := exact()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			e := mustNew(t, Input{Torrent: tor10, Peers: tc.peers, Unobserved: tc.unobs}, cfg)
			b := mustPeer(t, e, tc.peer, tc.from, tc.to)
			x := b.Explain
			if x.AvailabilityObserved != tc.observed || x.AvailabilityPairs != tc.pairs || x.AvailabilityUnobserved != tc.unobsB || x.PossiblyHeldBytes != tc.held {
				t.Errorf("observed %d pairs %d unobserved %d held %d; want %d %d %d %d",
					x.AvailabilityObserved, x.AvailabilityPairs, x.AvailabilityUnobserved, x.PossiblyHeldBytes, tc.observed, tc.pairs, tc.unobsB, tc.held)
			}
			if b.UploadUpper != x.AvailabilityBound || x.Limit != LimitAvailability || x.CapacityBound != -1 {
				t.Errorf("unprobed peer: UploadUpper %d limit %s capacity bound %d", b.UploadUpper, x.Limit, x.CapacityBound)
			}
		})
	}
}

func TestCapacity(t *testing.T) {
	withProbes := func(samples ...Sample) []Peer {
		ps := swarm()
		ps[0].Capacity = Capacity{Samples: samples}
		ps[0].Timeline = timeline.Build(10, []timeline.Observation{haveAll(-100), haveAll(150), haveAll(300),
			refused(1000), refused(1050), refused(1100)})
		return ps
	}
	tests := []struct {
		name      string
		peers     []Peer
		from, to  float64
		unobs     []Unobserved
		known     bool
		quiet     bool
		demand    time.Duration
		central   float64
		share     float64
		upper     float64
		capBound  int64
		absent    time.Duration
		upload    int64
		limit     Limit
		probeByte int64
	}{
		{
			// At 350 nobody is downloading: share 1, upper 2×1.5.
			name: "quiet probe", peers: withProbes(Sample{At: at(350), BytesPerSec: 2, Bytes: 700}),
			// Only L1 (0,300] and L2 (150,300] download: 300 s of demand,
			// plus the 700 bytes we took ourselves.
			from: 0, to: 400, known: true, quiet: true, central: 2, share: 1, upper: 3, demand: 300 * time.Second, capBound: 3*300 + 700, upload: 1600, limit: LimitCapacity, probeByte: 700,
		},
		{
			// At 250 L1 (gaining 5-9) and L2 (gaining 0-4) compete: share 3.
			name: "busy probe", peers: withProbes(Sample{At: at(250), BytesPerSec: 2, Spread: 0.5}),
			from: 0, to: 400, known: true, central: 2, share: 3, upper: 3 * 3 * 1.5, demand: 300 * time.Second, capBound: 4050, upload: 1450, limit: LimitAvailability,
		},
		{
			// A quiet probe measured the whole capacity: the busy probe's
			// sharing guess (3 × 3 × 1.5) no longer sets the upper estimate,
			// and its lower rate (our share) not the central one.
			name: "quiet probe wins", peers: withProbes(Sample{At: at(250), BytesPerSec: 1, Spread: 0.5}, Sample{At: at(350), BytesPerSec: 2}),
			from: 0, to: 400, known: true, quiet: true, central: 2, share: 1, upper: 3, demand: 300 * time.Second, capBound: 900, upload: 900, limit: LimitCapacity,
		},
		{
			// An unobserved leecher present in [320,380) adds demand; an
			// unobserved peer reporting itself complete does not.
			name: "unobserved demand", peers: withProbes(Sample{At: at(350), BytesPerSec: 2}),
			unobs: []Unobserved{{ID: "U", Present: []timeline.Interval{{From: at(320), To: at(380)}}, MaxGain: 100},
				{ID: "V", Present: []timeline.Interval{{From: at(300), To: at(400)}}, MaxGain: 100, Seeding: true}},
			from: 0, to: 400, known: true, central: 2, share: 2, upper: 6, demand: 360 * time.Second, capBound: 6 * 360, upload: 1450 + 200, limit: LimitAvailability,
		},
		{
			name: "median of several, choked probes ignored",
			peers: withProbes(Sample{At: at(350), BytesPerSec: 1}, Sample{At: at(360), BytesPerSec: 3}, Sample{At: at(370), BytesPerSec: 2},
				Sample{At: at(380), BytesPerSec: 0, Bytes: 0}, Sample{At: at(390), BytesPerSec: math.NaN()}),
			from: 0, to: 400, known: true, quiet: true, central: 2, share: 1, upper: 4.5, demand: 300 * time.Second, capBound: 1350, upload: 1350, limit: LimitCapacity,
		},
		{
			// Refusals from 1000 to 1100: 100 s of the 300 s window known absent.
			name: "known absence shortens the capacity bound", peers: withProbes(Sample{At: at(350), BytesPerSec: 2}),
			unobs: []Unobserved{{ID: "U", Present: []timeline.Interval{{From: at(900), To: at(1200)}}, MaxGain: 1000}},
			from:  900, to: 1200, known: true, quiet: true, central: 2, share: 1, upper: 3, demand: 300 * time.Second, capBound: 600, absent: 100 * time.Second, upload: 600, limit: LimitCapacity,
		},
		{
			// Nobody downloads after 300: nothing to upload, whatever the capacity.
			name: "no demand", peers: withProbes(Sample{At: at(350), BytesPerSec: 2}),
			from: 400, to: 900, known: true, quiet: true, central: 2, share: 1, upper: 3, capBound: 0, upload: 0, limit: LimitAvailability,
		},
		{
			name: "never probed: no capacity bound", peers: withProbes(),
			from: 0, to: 400, demand: 300 * time.Second, capBound: -1, upload: 1450, limit: LimitAvailability,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustNew(t, Input{Torrent: tor10, Peers: tc.peers, Unobserved: tc.unobs}, exact())
			b := mustPeer(t, e, 0, tc.from, tc.to)
			c := b.Explain.Capacity
			if c.Known != tc.known || c.Quiet != tc.quiet || c.Central != tc.central || c.Share != tc.share || math.Abs(c.Upper-tc.upper) > 1e-9 {
				t.Errorf("capacity %+v; want known %v quiet %v central %v share %v upper %v", c, tc.known, tc.quiet, tc.central, tc.share, tc.upper)
			}
			x := b.Explain
			if x.DemandTime != tc.demand {
				t.Errorf("demand time %v, want %v", x.DemandTime, tc.demand)
			}
			if x.CapacityBound != tc.capBound || x.KnownAbsent != tc.absent || b.UploadUpper != tc.upload || x.Limit != tc.limit || x.ProbeBytes != tc.probeByte {
				t.Errorf("capacity bound %d absent %v upload upper %d limit %s probe bytes %d; want %d %v %d %s %d",
					x.CapacityBound, x.KnownAbsent, b.UploadUpper, x.Limit, x.ProbeBytes, tc.capBound, tc.absent, tc.upload, tc.limit, tc.probeByte)
			}
			ce, err := e.Capacity(0)
			if err != nil || ce != c {
				t.Errorf("Capacity(0) = %+v, %v", ce, err)
			}
		})
	}
}

func TestMaxShare(t *testing.T) {
	var ps []Peer
	ps = append(ps, Peer{ID: "S", Timeline: timeline.Build(10, []timeline.Observation{haveAll(0)}),
		Capacity: Capacity{Samples: []Sample{{At: at(50), BytesPerSec: 10}}}})
	for k := 0; k < 30; k++ {
		ps = append(ps, peer("L", 10, snap(0, 10), snap(100, 10, 0)))
	}
	cfg := exact()
	cfg.MaxShare = 8
	e := mustNew(t, Input{Torrent: tor10, Peers: ps}, cfg)
	c, _ := e.Capacity(0)
	if c.Share != 8 || c.Upper != 10*8*1.5 {
		t.Errorf("capacity %+v, want share capped at 8", c)
	}
}

func TestUploadLower(t *testing.T) {
	unobs := []Unobserved{{ID: "U", Present: []timeline.Interval{{From: at(0), To: at(50)}}}}
	tests := []struct {
		name     string
		peer     int
		from, to float64
		unobs    []Unobserved
		want     int64
		pieces   int
		unobsIn  bool
	}{
		// Only S could hold 0 and 1 before L1 gained them in (0,100] (L2
		// was seen lacking them at 150), and 5-9 before L1 gained them in
		// (200,300] (L2 lacked them at 300, C at 450).
		{name: "sole holder", peer: 0, from: 0, to: 400, want: 200 + 450, pieces: 7},
		{name: "window misses some gains", peer: 0, from: 100, to: 400, want: 450, pieces: 5},
		{name: "not a sole holder", peer: 1, from: 0, to: 400, want: 0},
		{name: "flagged when unobserved peers were present", peer: 0, from: 0, to: 400, unobs: unobs, want: 650, pieces: 7, unobsIn: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustNew(t, Input{Torrent: tor10, Peers: swarm(), Unobserved: tc.unobs}, exact())
			b := mustPeer(t, e, tc.peer, tc.from, tc.to)
			if b.UploadLower != tc.want || b.Explain.SoleHolderPieces != tc.pieces || b.Explain.UnobservedPresent != tc.unobsIn {
				t.Errorf("UploadLower %d (%d pieces, unobserved %v), want %d (%d, %v)",
					b.UploadLower, b.Explain.SoleHolderPieces, b.Explain.UnobservedPresent, tc.want, tc.pieces, tc.unobsIn)
			}
			if b.UploadLower > b.Explain.AvailabilityObserved {
				t.Errorf("UploadLower %d above availability %d", b.UploadLower, b.Explain.AvailabilityObserved)
			}
		})
	}
}

func TestSwarmAndUnobserved(t *testing.T) {
	ps := swarm()
	ps[0].Capacity = Capacity{Samples: []Sample{{At: at(350), BytesPerSec: 2, Bytes: 64}}}
	unobs := []Unobserved{
		{ID: "U1", Present: []timeline.Interval{{From: at(0), To: at(1000)}}, MaxGain: 300},
		{ID: "U2", Present: []timeline.Interval{{From: at(200), To: at(250)}}, MaxGain: -1},
	}
	e := mustNew(t, Input{Torrent: tor10, Peers: ps, Unobserved: unobs}, exact())
	s, err := e.Swarm(at(1), at(400))
	if err != nil {
		t.Fatal(err)
	}
	// Observed gains overlapping [1,400): L1 950, L2 500. S's first-sight
	// events end before 1; C and L2 had no time left for what they lacked.
	want := SwarmBounds{From: at(1), To: at(400), DownloadedLower: 950 - 200 + 500, GainObserved: 1450, GainUnobserved: 300 + 950,
		ProbeBytes: 64, UploadLower: 450, ObservedPeers: 4, UnobservedPeers: 2}
	want.GainUpper = want.GainObserved + want.GainUnobserved + want.ProbeBytes
	want.PlausibleGainUpper = want.GainUpper // nobody reported: the plausible tier is the worst case
	if s != want {
		t.Errorf("swarm\n got %+v\nwant %+v", s, want)
	}
	u, err := e.Unobserved(1, at(1), at(400))
	if err != nil {
		t.Fatal(err)
	}
	if u.UploadUpper != 1450+300 || u.DownloadedLower != 0 || u.UploadLower != 0 || u.Explain.Observed || u.Explain.CapacityBound != -1 {
		t.Errorf("unobserved bounds %+v", u)
	}
	if e.NumPeers() != 4 || e.NumUnobserved() != 2 {
		t.Error("counts")
	}
}

func TestPeersWithoutPieceInfo(t *testing.T) {
	ps := []Peer{
		{ID: "nil"},
		peer("refused", 10, refused(0), refused(10)),
		leecher("L"),
	}
	e := mustNew(t, Input{Torrent: tor10, Peers: ps}, exact())
	for i := 0; i < 2; i++ {
		b := mustPeer(t, e, i, 0, 400)
		// They may hold anything: their bound is every observed gain.
		if b.Explain.Observed || b.UploadUpper != 950 || b.DownloadedLower != 0 {
			t.Errorf("peer %d: %+v", i, b)
		}
	}
	b := mustPeer(t, e, 1, 0, 20)
	if b.Explain.KnownAbsent != 10*time.Second {
		t.Errorf("absence of a refusing peer: %v", b.Explain.KnownAbsent)
	}
}

// brute recomputes availability, DownloadedLower and UploadLower from the
// timelines directly, one (peer, piece, time) condition at a time.
type brute struct {
	tor   Torrent
	cfg   Config
	peers []Peer
	ev    [][][2]int64 // per peer, per piece: event (a, b]
	c     [][]int64
	h     [][]int64
}

func newBrute(tor Torrent, cfg Config, peers []Peer) *brute {
	br := &brute{tor: tor, cfg: cfg, peers: peers}
	for _, p := range peers {
		last, _ := p.Timeline.LastSeen()
		end := last.UnixNano() + int64(cfg.UnresolvedTail)
		ev := make([][2]int64, tor.NumPieces)
		cs := make([]int64, tor.NumPieces)
		hs := make([]int64, tor.NumPieces)
		for i := range ev {
			l, h := p.Timeline.PieceNanos(i)
			cs[i], hs[i] = l, h
			a := int64(math.MinInt64)
			if l != math.MinInt64 {
				a = l - int64(cfg.TransferLead)
			}
			b := h
			if h == math.MaxInt64 {
				b = end
			}
			ev[i] = [2]int64{a, b}
		}
		br.ev = append(br.ev, ev)
		br.c = append(br.c, cs)
		br.h = append(br.h, hs)
	}
	return br
}

func (br *brute) availability(p int, uf, ut int64) int64 {
	var total int64
	for i := 0; i < br.tor.NumPieces; i++ {
		c := br.c[p][i]
		for q := range br.peers {
			if q == p {
				continue
			}
			a, b := br.ev[q][i][0], br.ev[q][i][1]
			lo := max(a, c) // exclusive
			tmin := uf
			if lo != math.MinInt64 && lo+1 > tmin {
				tmin = lo + 1
			}
			tmax := min(b, ut-1)
			if tmin <= tmax {
				total += br.tor.PieceSize(i)
			}
		}
	}
	return total
}

func (br *brute) downloaded(p int, lf, lt int64) int64 {
	var total int64
	for i := 0; i < br.tor.NumPieces; i++ {
		l, h := br.c[p][i], br.h[p][i]
		if h != math.MaxInt64 && l != math.MinInt64 && l >= lf && h < lt {
			total += br.tor.PieceSize(i)
		}
	}
	return total
}

func (br *brute) uploadLower(p int, lf, lt int64) int64 {
	var total int64
	for q := range br.peers {
		if q == p {
			continue
		}
		for i := 0; i < br.tor.NumPieces; i++ {
			l, h := br.c[q][i], br.h[q][i]
			if l == math.MinInt64 || h == math.MaxInt64 || br.h[p][i] == math.MaxInt64 || br.c[p][i] >= h {
				continue
			}
			sole := true
			for r := range br.peers {
				if r != p && r != q && br.c[r][i] < h {
					sole = false
				}
			}
			start := max(br.c[p][i], l-int64(br.cfg.TransferLead))
			if sole && start >= lf && h < lt {
				total += br.tor.PieceSize(i)
			}
		}
	}
	return total
}

// randomSwarm builds peers that gain random pieces at random snapshot times,
// with random HAVEs, joins and departures.
func randomSwarm(r *rand.Rand, n, peers int) []Peer {
	var out []Peer
	for k := 0; k < peers; k++ {
		held := bitfield.New(n)
		if r.IntN(4) == 0 {
			held = bitfield.Full(n)
		} else {
			for i := 0; i < n; i++ {
				if r.IntN(3) == 0 {
					held.Set(i)
				}
			}
		}
		var obs []timeline.Observation
		tm := float64(r.IntN(600))
		for s := 0; s < 1+r.IntN(8); s++ {
			obs = append(obs, timeline.Observation{At: at(tm), Kind: timeline.KindBitfield, Pieces: held.Clone()})
			for g := 0; g < r.IntN(4); g++ {
				i := r.IntN(n)
				held.Set(i)
				if r.IntN(2) == 0 {
					obs = append(obs, timeline.Observation{At: at(tm + float64(1+r.IntN(200))), Kind: timeline.KindHave, Piece: i})
				}
			}
			tm += float64(30 + r.IntN(300))
		}
		out = append(out, Peer{ID: "p", Timeline: timeline.Build(n, obs)})
	}
	return out
}

func TestAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tor := Torrent{NumPieces: 13, PieceLength: 16, TotalLength: 12*16 + 5}
	var nonzero [3]int // cases where each bound was positive
	for round := 0; round < 300; round++ {
		cfg := exact()
		cfg.TransferLead = time.Duration(r.IntN(3)) * 45 * time.Second
		cfg.UnresolvedTail = time.Duration(r.IntN(3)) * 10 * time.Minute
		cfg.ClockSlack = time.Duration(r.IntN(3)) * time.Second
		peers := randomSwarm(r, tor.NumPieces, 2+r.IntN(7))
		e := mustNew(t, Input{Torrent: tor, Peers: peers}, cfg)
		br := newBrute(tor, cfg, peers)
		for w := 0; w < 20; w++ {
			from := float64(r.IntN(2000)) - 100
			to := from + float64(r.IntN(900))
			s := int64(cfg.ClockSlack)
			f, tt := at(from).UnixNano(), at(to).UnixNano()
			var sumDown, sumUpLow int64
			for p := range peers {
				b := mustPeer(t, e, p, from, to)
				if got, want := b.Explain.AvailabilityObserved, br.availability(p, f-s, tt+s); got != want {
					t.Fatalf("round %d peer %d [%v,%v): availability %d, brute force %d", round, p, from, to, got, want)
				}
				if got, want := b.DownloadedLower, br.downloaded(p, f+s, tt-s); got != want {
					t.Fatalf("round %d peer %d [%v,%v): downloaded %d, brute force %d", round, p, from, to, got, want)
				}
				if got, want := b.UploadLower, br.uploadLower(p, f+s, tt-s); got != want {
					t.Fatalf("round %d peer %d [%v,%v): upload lower %d, brute force %d", round, p, from, to, got, want)
				}
				if b.UploadLower > b.Explain.AvailabilityObserved {
					t.Fatalf("upload lower %d above availability %d", b.UploadLower, b.Explain.AvailabilityObserved)
				}
				for k, v := range []int64{b.Explain.AvailabilityObserved, b.DownloadedLower, b.UploadLower} {
					if v > 0 {
						nonzero[k]++
					}
				}
				sumDown += b.DownloadedLower
				sumUpLow += b.UploadLower
			}
			sw, err := e.Swarm(at(from), at(to))
			if err != nil {
				t.Fatal(err)
			}
			if sw.DownloadedLower != sumDown || sw.UploadLower != sumUpLow || sw.DownloadedLower > sw.GainObserved {
				t.Fatalf("swarm %+v; Σ downloaded %d Σ upload lower %d", sw, sumDown, sumUpLow)
			}
		}
	}
	for k, n := range nonzero {
		if n < 50 {
			t.Errorf("bound %d positive in only %d cases: the random swarms do not exercise it", k, n)
		}
	}
	t.Logf("positive availability/downloaded/upload-lower cases: %v", nonzero)
}

// TestSeedingUnobservedNotCompetitors: unobserved peers that reported
// themselves complete do not widen the sharing multiplier; others do.
func TestSeedingUnobservedNotCompetitors(t *testing.T) {
	seeder := Peer{ID: "S", Timeline: timeline.Build(10, []timeline.Observation{haveAll(0)}),
		Capacity: Capacity{Samples: []Sample{{At: at(50), BytesPerSec: 10}}}}
	present := []timeline.Interval{{From: at(0), To: at(100)}}
	tests := []struct {
		name      string
		seeding   bool
		wantShare float64
	}{
		{"leecher", false, 2},
		{"reported seeder", true, 1},
	}
	for _, tt := range tests {
		e := mustNew(t, Input{Torrent: tor10, Peers: []Peer{seeder},
			Unobserved: []Unobserved{{ID: "U", Present: present, MaxGain: -1, Seeding: tt.seeding}}}, exact())
		c, _ := e.Capacity(0)
		if c.Share != tt.wantShare {
			t.Errorf("%s: share %v, want %v", tt.name, c.Share, tt.wantShare)
		}
	}
}
