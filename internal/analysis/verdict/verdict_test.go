package verdict

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

const mib = 1 << 20

// tor is 100 pieces of 1 MiB, the last one short.
var tor = estimate.Torrent{NumPieces: 100, PieceLength: mib, TotalLength: 100*mib - 12345}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func addr(n byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, n}), 6881)
}

func pid(n byte) [20]byte {
	var p [20]byte
	copy(p[:], "-SA0001-000000000000")
	p[19] = n
	return p
}

// span is the bytes of pieces [a, b).
func span(a, b int) int64 {
	var n int64
	for i := a; i < b; i++ {
		n += tor.PieceSize(i)
	}
	return n
}

func pieces(a, b int) bitfield.Bitfield {
	bf := bitfield.New(tor.NumPieces)
	for i := a; i < b; i++ {
		bf.Set(i)
	}
	return bf
}

type sim struct {
	in Input
}

func (s *sim) wire(n byte, obs []timeline.Observation, probes ...estimate.Sample) *WirePeer {
	s.in.Peers = append(s.in.Peers, WirePeer{Addr: addr(n), PeerIDs: [][20]byte{pid(n)}, Observations: obs, Probes: probes})
	return &s.in.Peers[len(s.in.Peers)-1]
}

func (s *sim) announce(n byte, t float64, up, down, left int64, ev reported.Event) {
	s.in.Announces = append(s.in.Announces, reported.Announce{At: at(t), PeerID: pid(n), IP: addr(n).Addr(), Port: addr(n).Port(),
		Uploaded: up, Downloaded: down, Left: left, Event: ev, Passkey: "pk"})
}

// looks returns a connection every 300 s in [from, to] showing what f says.
func looks(from, to float64, f func(t float64) []timeline.Observation) []timeline.Observation {
	var obs []timeline.Observation
	for t := from; t <= to; t += 300 {
		obs = append(obs, timeline.Observation{At: at(t), Kind: timeline.KindConnected})
		obs = append(obs, f(t)...)
		obs = append(obs, timeline.Observation{At: at(t + 5), Kind: timeline.KindDisconnected})
	}
	return obs
}

func haveAll(t float64) []timeline.Observation {
	return []timeline.Observation{{At: at(t), Kind: timeline.KindHaveAll}}
}

func attempts(from, to float64, k timeline.Kind) []timeline.Observation {
	var obs []timeline.Observation
	for t := from; t <= to; t += 300 {
		obs = append(obs, timeline.Observation{At: at(t), Kind: k})
	}
	return obs
}

// held is how many pieces a base leecher holds at t: 0-9 from before the
// audit, then 10 more in each 300 s interval, complete at 2700.
func held(t float64) int {
	if t < 300 {
		return 10
	}
	return min(100, 10+10*int(t/300))
}

// held4 is leecher L4, first seen at 900 with 40 pieces (downloaded
// unobserved since its start at 0), complete at 2700.
func held4(t float64) int {
	if t < 900 {
		return int(t / 900 * 40)
	}
	return min(100, 40+10*int((t-900)/300))
}

// The base swarm: seeder S (id 1) reporting its true upload +10%; leechers
// L1 (HAVE suppressed: snapshots only), L2 (lazy bitfield: two pieces left
// out and sent as HAVEs a second later), L3 (quits at 3650 without
// `stopped`), L4 (announces from 0, first seen at 900). Announces every
// 1800 s; everyone is looked at every 300 s.
func base() *sim {
	s := &sim{}
	s.in.Torrent = tor
	s.wire(1, looks(-600, 7200, haveAll), estimate.Sample{At: at(3300), BytesPerSec: 0.2 * mib, Spread: 0.01 * mib, Bytes: 2 * mib})
	snapOf := func(h func(float64) int, lazy bool) func(float64) []timeline.Observation {
		return func(t float64) []timeline.Observation {
			n := h(t)
			if !lazy || n < 2 {
				return []timeline.Observation{{At: at(t), Kind: timeline.KindBitfield, Pieces: pieces(0, n)}}
			}
			return []timeline.Observation{{At: at(t), Kind: timeline.KindBitfield, Pieces: pieces(0, n-2)},
				{At: at(t + 1), Kind: timeline.KindHave, Piece: n - 2}, {At: at(t + 1), Kind: timeline.KindHave, Piece: n - 1}}
		}
	}
	s.wire(11, looks(-300, 7200, snapOf(held, false)))
	s.wire(12, looks(-300, 7200, snapOf(held, true)))
	s.wire(13, append(looks(-300, 3600, snapOf(held, false)), attempts(3900, 7200, timeline.KindRefused)...))
	s.wire(14, looks(900, 7200, snapOf(held4, false)))

	var sUp int64
	for _, t := range []float64{0, 1800, 3600, 5400, 7200} {
		ev := reported.EventNone
		if t == 0 {
			ev = reported.EventStarted
		} else if t == 7200 {
			ev = reported.EventStopped
		}
		got := 3*span(10, held(t)) + span(0, held4(t))
		sUp = got * 11 / 10
		s.announce(1, t, sUp, 0, 0, ev)
		for _, l := range []byte{11, 12, 13, 14} {
			h := held(t)
			dl := span(10, h)
			if l == 14 {
				h, dl = held4(t), span(0, held4(t))
			}
			if l == 13 && t > 3600 {
				continue // quit without `stopped`
			}
			s.announce(l, t, 0, dl*105/100, tor.TotalLength-span(0, h), ev)
			if l == 11 && t == 1800 {
				s.announce(l, 2700, 0, span(10, 100)*105/100, 0, reported.EventCompleted)
			}
		}
	}
	return s
}

var honestIDs = []byte{1, 11, 12, 13, 14}

func judgeSim(t *testing.T, s *sim, cfg Config) *Report {
	t.Helper()
	rep, err := Judge(s.in, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, rep)
	return rep
}

func checkInvariants(t *testing.T, rep *Report) {
	t.Helper()
	ok := func(f float64) bool { return f >= 0 && f <= 1 }
	for _, v := range rep.Verdicts {
		if !ok(v.Confidence) {
			t.Errorf("%s: confidence %v", v.Identity.Key, v.Confidence)
		}
		for _, r := range v.Reasons {
			if !ok(r.Confidence) || r.Message == "" || (r.Status != StatusSuspect && r.Status != StatusMisreporting) {
				t.Errorf("%s: bad reason %+v", v.Identity.Key, r)
			}
		}
		for _, c := range v.Checks {
			if !ok(c.Confidence) {
				t.Errorf("%s: check confidence %v", v.Identity.Key, c.Confidence)
			}
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not encode: %v", err)
	}
}

func verdictOf(t *testing.T, rep *Report, n byte) Verdict {
	t.Helper()
	key := KeyOf(reported.Announce{PeerID: pid(n), Passkey: "pk"})
	for _, v := range rep.Verdicts {
		if v.Identity.Key == key {
			return v
		}
	}
	t.Fatalf("no verdict for %d", n)
	return Verdict{}
}

func codes(v Verdict) []Code {
	var out []Code
	for _, r := range v.Reasons {
		out = append(out, r.Code)
	}
	slices.Sort(out)
	return out
}

func assertHonest(t *testing.T, rep *Report, ids ...byte) {
	t.Helper()
	for _, n := range ids {
		v := verdictOf(t, rep, n)
		if v.Status != StatusOK || len(v.Reasons) > 0 {
			t.Errorf("honest peer %d: %s %v", n, v.Status, v.Reasons)
		}
	}
}

func TestHonestSwarm(t *testing.T) {
	rep := judgeSim(t, base(), DefaultConfig())
	assertHonest(t, rep, honestIDs...)
	if len(rep.Summary.Reasons) > 0 {
		t.Errorf("honest swarm summary: %v", rep.Summary.Reasons)
	}
	if rep.Summary.Counts[StatusOK] != len(honestIDs) || len(rep.Verdicts) != len(honestIDs) {
		t.Errorf("counts %v", rep.Summary.Counts)
	}
	// The seeder reports its true upload +10%; its bounds must have been
	// informative (availability counted the leechers' gains) and its
	// observed coverage high.
	s := verdictOf(t, rep, 1)
	if s.Confidence < 0.9 || len(s.Checks) != 5 || s.Sessions != 1 {
		t.Errorf("seeder verdict %+v", s)
	}
	for _, c := range s.Checks {
		if c.Uploaded > 0 && (c.Bounds.UploadUpper <= 0 || float64(c.Uploaded) < 0.5*float64(c.Bounds.UploadUpper)) {
			t.Errorf("seeder check %v..%v: uploaded %d, bound %d (not exercising the bound)", c.From, c.To, c.Uploaded, c.Bounds.UploadUpper)
		}
	}
	// The leecher skipping `stopped` has one session of three announces.
	if l3 := verdictOf(t, rep, 13); l3.Sessions != 1 || l3.Announces != 3 {
		t.Errorf("L3 sessions %d announces %d", l3.Sessions, l3.Announces)
	}
	// Downloads were checked against a positive lower bound somewhere.
	var sawLower bool
	for _, c := range verdictOf(t, rep, 11).Checks {
		sawLower = sawLower || c.Bounds.DownloadedLower > 0
	}
	if !sawLower {
		t.Error("leecher download lower bound never positive")
	}
}

// TestCheats adds one known cheat to the honest swarm at a time.
func TestCheats(t *testing.T) {
	const cheat = 50
	ratioMaster := func(s *sim, perInterval int64) {
		for k, tm := range []float64{0, 1800, 3600, 5400, 7200} {
			ev := reported.EventNone
			if k == 0 {
				ev = reported.EventStarted
			}
			s.announce(cheat, tm, int64(k)*perInterval, 0, 0, ev)
		}
	}
	tests := []struct {
		name    string
		setup   func(s *sim)
		cfg     func(c *Config)
		status  Status
		must    []Code
		mustNot []Code
	}{
		{
			name: "fake announcer that never listens",
			setup: func(s *sim) {
				s.wire(cheat, attempts(0, 7200, timeline.KindRefused))
				ratioMaster(s, 7200*mib) // 4 MiB/s
			},
			status: StatusMisreporting,
			must:   []Code{CodeNeverHandshaked, CodeUploadExceedsAvailability, CodeUploadWhileAbsent},
		},
		{
			name: "fake announcer that never listens, modest claims",
			setup: func(s *sim) {
				s.wire(cheat, attempts(0, 7200, timeline.KindRefused))
				ratioMaster(s, 30*mib)
			},
			status:  StatusSuspect,
			must:    []Code{CodeNeverHandshaked},
			mustNot: []Code{CodeUploadExceedsAvailability},
		},
		{
			// a JOAL-like seeder claiming 20 MiB, under the proof slack
			// but over the plausible one that never_handshaked takes
			name: "accepts TCP but never handshakes, small claims",
			setup: func(s *sim) {
				s.wire(cheat, attempts(0, 7200, timeline.KindHandshakeFailed))
				ratioMaster(s, 5*mib) // 20 MiB in all
			},
			status:  StatusSuspect,
			must:    []Code{CodeNeverHandshaked},
			mustNot: []Code{CodeUploadExceedsAvailability},
		},
		{
			name: "accepts TCP but never handshakes",
			setup: func(s *sim) {
				s.wire(cheat, attempts(0, 7200, timeline.KindHandshakeFailed))
				ratioMaster(s, 7200*mib)
			},
			status:  StatusMisreporting,
			must:    []Code{CodeNeverHandshaked, CodeUploadExceedsAvailability},
			mustNot: []Code{CodeUploadWhileAbsent},
		},
		{
			name: "handshakes but sends no bitfield",
			setup: func(s *sim) {
				s.wire(cheat, looks(0, 7200, func(tm float64) []timeline.Observation {
					return []timeline.Observation{{At: at(tm + 1), Kind: timeline.KindNoBitfield}}
				}))
				ratioMaster(s, 50*mib)
			},
			status: StatusMisreporting,
			must:   []Code{CodeNoBitfield, CodeUploadExceedsAvailability},
		},
		{
			name: "uploads only while leechers exist, holding nothing others lacked",
			setup: func(s *sim) {
				s.wire(cheat, looks(-600, 7200, func(tm float64) []timeline.Observation {
					return []timeline.Observation{{At: at(tm), Kind: timeline.KindBitfield, Pieces: pieces(0, 10)}}
				}))
				r := rand.New(rand.NewPCG(3, 4))
				var up int64
				for k, tm := range []float64{0, 1800, 3600, 5400, 7200} {
					ev := reported.EventNone
					if k == 0 {
						ev = reported.EventStarted
					}
					s.announce(cheat, tm+float64(r.IntN(60)), up, 0, span(10, 100), ev)
					if tm < 3600 { // leechers are downloading
						up += int64(40+r.IntN(40)) * mib
					}
				}
			},
			status: StatusMisreporting,
			must:   []Code{CodeUploadExceedsAvailability},
		},
		{
			name: "started then stopped seconds later with a full interval's upload",
			setup: func(s *sim) {
				s.wire(cheat, looks(-600, 7200, haveAll), estimate.Sample{At: at(3300), BytesPerSec: 0.1 * mib, Spread: 0.005 * mib, Bytes: 2 * mib})
				s.announce(cheat, 4000, 0, 0, 0, reported.EventStarted)
				s.announce(cheat, 4008, 180*mib, 0, 0, reported.EventStopped)
			},
			status: StatusMisreporting,
			must:   []Code{CodeUploadExceedsAvailability, CodeUploadExceedsCapacity, CodeUploadWhileAbsent},
		},
		{
			name: "ratio cheat: download underreported",
			setup: func(s *sim) {
				s.wire(cheat, looks(-300, 7200, func(tm float64) []timeline.Observation {
					return []timeline.Observation{{At: at(tm), Kind: timeline.KindBitfield, Pieces: pieces(0, held(tm))}}
				}))
				for k, tm := range []float64{0, 1800, 3600, 5400, 7200} {
					ev := reported.EventNone
					if k == 0 {
						ev = reported.EventStarted
					}
					s.announce(cheat, tm, 0, 0, tor.TotalLength-span(0, held(tm)), ev)
				}
			},
			// its left follows the wire, but neither agrees with a
			// download of nothing: the reports contradict themselves too
			status: StatusMisreporting,
			must:   []Code{CodeDownloadUnderreported, CodeLeftWithoutDownload},
		},
		{
			name: "claims to be a seeder while missing pieces",
			setup: func(s *sim) {
				s.wire(cheat, looks(-300, 7200, func(tm float64) []timeline.Observation {
					return []timeline.Observation{{At: at(tm), Kind: timeline.KindBitfield, Pieces: pieces(0, 10)}}
				}))
				s.announce(cheat, 0, 0, 0, 0, reported.EventStarted)
				s.announce(cheat, 1800, 0, 0, 0, reported.EventNone)
			},
			status: StatusSuspect,
			must:   []Code{CodeLeftInconsistent},
		},
		{
			name: "serves pieces that fail their hash",
			setup: func(s *sim) {
				w := s.wire(cheat, looks(-600, 7200, haveAll))
				for i := 0; i < 9; i++ {
					w.BadPieces = append(w.BadPieces, BadPiece{At: at(float64(100 * i)), Piece: i * 3})
				}
				w.BadPieces = append(w.BadPieces, BadPiece{At: at(5), Piece: 0}, BadPiece{At: at(6), Piece: 1000})
				s.announce(cheat, 0, 0, 0, 0, reported.EventStarted)
			},
			status: StatusMisreporting,
			must:   []Code{CodeBadData},
		},
		{
			// nothing of its transfers could be checked: unverifiable, never
			// ok, and not accused
			name: "a refusing address that claims nothing is not accused",
			setup: func(s *sim) {
				s.wire(cheat, attempts(0, 7200, timeline.KindRefused))
				ratioMaster(s, 0)
			},
			status: StatusUnverifiable,
		},
		{
			// S is honest and measured; a second seeder that shows every
			// piece but never unchokes claims what S claims: the leechers'
			// downloads are all S's, nothing is left for it.
			name: "plausible: a seeder that never unchokes gets only the residual",
			setup: func(s *sim) {
				w := s.wire(cheat, looks(-600, 7200, haveAll))
				w.ChokedProbes = 5
				for k, tm := range []float64{0, 1800, 3600, 5400, 7200} {
					ev := reported.EventNone
					if k == 0 {
						ev = reported.EventStarted
					}
					s.announce(cheat, tm, int64(k)*30*mib, 0, 0, ev)
				}
			},
			status: StatusSuspect,
			must:   []Code{CodeNeverUnchoked},
		},
		{
			// Fake seeders that reported no download absorbed nothing
			// under the plausible tier: they cannot cover a claim that
			// the worst case (where each may have downloaded the whole
			// torrent) lets through.
			name: "plausible: fake seeders give no cover",
			setup: func(s *sim) {
				s.wire(cheat, looks(-600, 7200, haveAll), estimate.Sample{At: at(6000), BytesPerSec: 50 * mib, Spread: mib, Bytes: 2 * mib})
				for n := byte(60); n < 66; n++ {
					s.wire(n, attempts(0, 7200, timeline.KindUnreachable))
					for k, tm := range []float64{0, 1800, 3600, 5400, 7200} {
						ev := reported.EventNone
						if k == 0 {
							ev = reported.EventStarted
						}
						s.announce(n, tm, 0, 0, 0, ev)
					}
				}
				for k, tm := range []float64{0, 1800, 3600, 5400, 7200} {
					ev := reported.EventNone
					if k == 0 {
						ev = reported.EventStarted
					}
					s.announce(cheat, tm, int64(k)*90*mib, 0, 0, ev)
				}
			},
			status:  StatusSuspect,
			must:    []Code{CodeUploadExceedsAvailability},
			mustNot: []Code{CodeNeverUnchoked},
		},
		{
			// rustatio: every handshake answered, every connection closed
			// before a word about pieces, while it claims to seed.
			name: "handshakes without a piece set from a self-declared seeder",
			setup: func(s *sim) {
				s.wire(cheat, looks(0, 7200, func(float64) []timeline.Observation { return nil }))
				ratioMaster(s, 40*mib)
			},
			// its claims after the leechers completed are proofs too
			status: StatusMisreporting,
			must:   []Code{CodeNoBitfield},
		},
		{
			name: "left falls while downloaded stands still",
			setup: func(s *sim) {
				for k, tm := range []float64{0, 1800, 3600} {
					s.announce(cheat, tm, 0, 0, tor.TotalLength-int64(k)*40*mib, reported.EventNone)
				}
			},
			status: StatusSuspect,
			must:   []Code{CodeLeftWithoutDownload},
		},
		{
			name: "counters go down without a restart",
			setup: func(s *sim) {
				s.announce(cheat, 0, 0, 0, 0, reported.EventStarted)
				s.announce(cheat, 1800, 50*mib, 0, 0, reported.EventNone)
				s.announce(cheat, 3600, 10*mib, 0, 0, reported.EventNone)
			},
			status: StatusSuspect,
			must:   []Code{CodeCounterDecreased},
		},
		{
			// started then stopped 15 ms later, ten times, 25 MB each,
			// from an address that refuses every connection
			name: "restart bursts",
			setup: func(s *sim) {
				s.wire(cheat, attempts(0, 7200, timeline.KindRefused))
				up := int64(0)
				for k := range 10 {
					tm := 300 + 600*float64(k)
					s.announce(cheat, tm, up, 0, 0, reported.EventStarted)
					up += 25e6
					s.announce(cheat, tm+0.015, up, 0, 0, reported.EventStopped)
				}
			},
			status: StatusSuspect,
			must:   []Code{CodeNeverHandshaked},
		},
		{
			name: "faster than any client",
			setup: func(s *sim) {
				s.announce(cheat, 0, 0, 0, 0, reported.EventStarted)
				s.announce(cheat, 10, 1<<40, 0, 0, reported.EventNone)
			},
			status: StatusMisreporting,
			must:   []Code{CodeUploadExceedsCapacity, CodeUploadExceedsAvailability},
		},
		{
			name: "never observed, modest claims: unverifiable",
			setup: func(s *sim) {
				ratioMaster(s, 10*mib)
			},
			status: StatusUnverifiable,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.setup(s)
			cfg := DefaultConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			rep := judgeSim(t, s, cfg)
			v := verdictOf(t, rep, cheat)
			if v.Status != tc.status {
				t.Errorf("status %s, want %s; reasons:", v.Status, tc.status)
				for _, r := range v.Reasons {
					t.Logf("  %s %s %.2f: %s", r.Code, r.Status, r.Confidence, r.Message)
				}
			}
			got := codes(v)
			for _, c := range tc.must {
				if !slices.Contains(got, c) {
					t.Errorf("missing reason %s (have %v)", c, got)
				}
			}
			for _, c := range tc.mustNot {
				if slices.Contains(got, c) {
					t.Errorf("unexpected reason %s", c)
				}
			}
			if tc.status == StatusMisreporting && v.Confidence < 0.5 {
				t.Errorf("misreporting with confidence %v", v.Confidence)
			}
			assertHonest(t, rep, honestIDs...)
		})
	}
}

// TestMultiplyingProxy: a real client, honest on the wire, whose tracker
// proxy triples its reported upload; two other seeders share the work, so
// only the capacity and conservation bounds catch it.
func TestMultiplyingProxy(t *testing.T) {
	build := func() *sim {
		s := &sim{}
		s.in.Torrent = tor
		s.wire(1, looks(-600, 7200, haveAll), estimate.Sample{At: at(3300), BytesPerSec: 0.035 * mib, Spread: 0.002 * mib, Bytes: 2 * mib})
		s.wire(2, looks(-600, 7200, haveAll), estimate.Sample{At: at(3300), BytesPerSec: 0.2 * mib, Spread: 0.01 * mib, Bytes: 2 * mib})
		s.wire(3, looks(-600, 7200, haveAll), estimate.Sample{At: at(3300), BytesPerSec: 0.2 * mib, Spread: 0.01 * mib, Bytes: 2 * mib})
		for _, l := range []byte{11, 12, 13} {
			s.wire(l, looks(-300, 7200, func(tm float64) []timeline.Observation {
				return []timeline.Observation{{At: at(tm), Kind: timeline.KindBitfield, Pieces: pieces(0, held(tm))}}
			}))
		}
		for k, tm := range []float64{0, 1800, 3600, 5400, 7200} {
			ev := reported.EventNone
			if k == 0 {
				ev = reported.EventStarted
			}
			share := span(10, held(tm)) // each seeder sent a third of 3 leechers' gains
			s.announce(1, tm, 3*share, 0, 0, ev)
			s.announce(2, tm, share*105/100, 0, 0, ev)
			s.announce(3, tm, share*105/100, 0, 0, ev)
			for _, l := range []byte{11, 12, 13} {
				s.announce(l, tm, 0, span(10, held(tm))*105/100, tor.TotalLength-span(0, held(tm)), ev)
			}
		}
		return s
	}
	rep := judgeSim(t, build(), DefaultConfig())
	v := verdictOf(t, rep, 1)
	if v.Status != StatusSuspect || !slices.Equal(codes(v), []Code{CodeUploadExceedsCapacity}) {
		t.Errorf("proxy: %s %v", v.Status, v.Reasons)
	}
	assertHonest(t, rep, 2, 3, 11, 12, 13)
	if len(rep.Summary.Reasons) != 1 || rep.Summary.Reasons[0].Code != CodeSwarmConservation {
		t.Fatalf("summary reasons %v", rep.Summary.Reasons)
	}
	w := rep.Summary.Windows[0]
	if w.Status == StatusOK || len(w.Contributors) == 0 || w.Contributors[0] != v.Identity.Key {
		t.Errorf("conservation window %s, contributors %v", w.Status, w.Contributors)
	}
	if w.ReportedUploaded <= w.Swarm.GainUpper || w.Swarm.DownloadedLower <= 0 {
		t.Errorf("window numbers %+v", w)
	}

	// With capacity allowed to convict, the same evidence is misreporting.
	cfg := DefaultConfig()
	cfg.CapacityMisreportFactor = 1.3
	rep = judgeSim(t, build(), cfg)
	if v := verdictOf(t, rep, 1); v.Status != StatusMisreporting {
		t.Errorf("with CapacityMisreportFactor: %s %v", v.Status, v.Reasons)
	}
	assertHonest(t, rep, 2, 3, 11, 12, 13)
}

func TestIdentitiesAndSessions(t *testing.T) {
	noPID := func(n byte, tm float64, up int64, ev reported.Event, passkey string) reported.Announce {
		return reported.Announce{At: at(tm), IP: addr(n).Addr(), Port: addr(n).Port(), Uploaded: up, Event: ev, Passkey: passkey}
	}
	withPID := func(n byte, tm float64, up int64, ev reported.Event) reported.Announce {
		a := noPID(n, tm, up, ev, "pk")
		a.PeerID = pid(n)
		return a
	}
	other := infohash.T{1}
	tests := []struct {
		name     string
		ann      []reported.Announce
		ih       infohash.T
		ids      int
		sessions []int
		checks   []int
		dropped  int
	}{
		{
			name:     "one identity, one session, out of order",
			ann:      []reported.Announce{withPID(1, 1800, 5, ""), withPID(1, 0, 0, reported.EventStarted), withPID(1, 3600, 9, "")},
			ids:      1,
			sessions: []int{1},
			checks:   []int{3}, // two pairs and the session
		},
		{
			name:     "started, stopped, counter reset and long gap split sessions",
			ann:      []reported.Announce{withPID(1, 0, 0, reported.EventStarted), withPID(1, 1800, 10, reported.EventStopped), withPID(1, 2000, 10, ""), withPID(1, 2100, 3, ""), withPID(1, 2200, 4, ""), withPID(1, 20000, 5, ""), withPID(1, 21000, 6, reported.EventStarted)},
			ids:      1,
			sessions: []int{5},
			checks:   []int{2},
		},
		{
			name:     "no peer id: grouped by address and passkey",
			ann:      []reported.Announce{noPID(1, 0, 0, "", "a"), noPID(1, 60, 1, "", "a"), noPID(1, 120, 2, "", "b"), noPID(2, 0, 0, "", "a")},
			ids:      3,
			sessions: []int{1, 1, 1},
			checks:   []int{1, 0, 0},
		},
		{
			name:    "other torrents and bad records are dropped",
			ann:     []reported.Announce{withPID(1, 0, 0, ""), {At: at(0), InfoHash: other, PeerID: pid(2)}, {PeerID: pid(3)}, {At: at(0), PeerID: pid(4), Uploaded: -1}},
			ih:      infohash.T{},
			ids:     2,
			dropped: 2,
		},
		{
			name:    "infohash filter",
			ann:     []reported.Announce{withPID(1, 0, 0, ""), {At: at(0), InfoHash: other, PeerID: pid(2)}},
			ih:      other,
			ids:     1,
			dropped: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Judge(Input{InfoHash: tc.ih, Torrent: tor, Announces: tc.ann}, DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, rep)
			if len(rep.Verdicts) != tc.ids || rep.Summary.DroppedAnnounces != tc.dropped {
				t.Fatalf("%d identities, %d dropped; want %d, %d", len(rep.Verdicts), rep.Summary.DroppedAnnounces, tc.ids, tc.dropped)
			}
			for k, n := range tc.sessions {
				if rep.Verdicts[k].Sessions != n || len(rep.Verdicts[k].Checks) != tc.checks[k] {
					t.Errorf("identity %s: %d sessions %d checks, want %d %d", rep.Verdicts[k].Identity.Key, rep.Verdicts[k].Sessions, len(rep.Verdicts[k].Checks), n, tc.checks[k])
				}
			}
		})
	}
}

func TestWireLinking(t *testing.T) {
	s := base()
	// An identity announcing two addresses (IPv4 and IPv6) and a wire peer
	// seen only on an incoming connection, linked by its handshake peer id.
	v6 := netip.MustParseAddrPort("[::1]:6881")
	s.in.Peers = append(s.in.Peers,
		WirePeer{Addr: v6, Observations: attempts(0, 100, timeline.KindRefused)},
		WirePeer{PeerIDs: [][20]byte{pid(60)}, Observations: looks(0, 1800, haveAll)})
	s.announce(60, 0, 0, 0, 0, reported.EventStarted)
	a := s.in.Announces[len(s.in.Announces)-1]
	a.At, a.IP, a.Port, a.Event = at(1800), v6.Addr(), v6.Port(), ""
	s.in.Announces = append(s.in.Announces, a)
	rep := judgeSim(t, s, DefaultConfig())
	v := verdictOf(t, rep, 60)
	if !v.Observed || !v.PieceInfo || len(v.Identity.Addrs) != 2 || !slices.Contains(v.WirePeers, v6) {
		t.Errorf("linking: %+v", v)
	}
	assertHonest(t, rep, honestIDs...)
}

func TestConservationWindows(t *testing.T) {
	s := base()
	s.in.Windows = []timeline.Interval{{From: at(0), To: at(3600)}, {From: at(3600), To: at(7200)}}
	rep := judgeSim(t, s, DefaultConfig())
	if len(rep.Summary.Windows) != 2 {
		t.Fatalf("windows %v", rep.Summary.Windows)
	}
	w0, w1 := rep.Summary.Windows[0], rep.Summary.Windows[1]
	if w0.ReportedUploaded <= 0 || w0.Swarm.GainUpper < w0.ReportedUploaded*10/12 || w0.Status != StatusOK {
		t.Errorf("first window %+v", w0)
	}
	if w1.ReportedUploaded != 0 || w1.Status != StatusOK {
		t.Errorf("second window %+v", w1)
	}
	s.in.Windows = []timeline.Interval{{From: at(10), To: at(5)}}
	if _, err := Judge(s.in, DefaultConfig()); err == nil {
		t.Error("inverted window accepted")
	}
}

func TestJudgeErrors(t *testing.T) {
	if _, err := Judge(Input{Torrent: estimate.Torrent{NumPieces: 3, PieceLength: 1, TotalLength: 1}}, DefaultConfig()); !errors.Is(err, estimate.ErrTorrent) {
		t.Errorf("torrent: %v", err)
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.SuspectFactor = 0.9 },
		func(c *Config) { c.MisreportFactor = 1.1 },
		func(c *Config) { c.CapacityMisreportFactor = 1.01 },
		func(c *Config) { c.MaxRate = -1 },
		func(c *Config) { c.SlackPieces = -1 },
		func(c *Config) { c.MinFailedAttempts = 0 },
		func(c *Config) { c.MaxAnnounceGap = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		if _, err := Judge(Input{Torrent: tor}, c); !errors.Is(err, ErrConfig) {
			t.Errorf("config %+v: %v", c, err)
		}
	}
	c := DefaultConfig()
	c.Estimate.Headroom = 0
	if _, err := Judge(Input{Torrent: tor}, c); !errors.Is(err, estimate.ErrConfig) {
		t.Errorf("estimate config: %v", err)
	}
	rep, err := Judge(Input{Torrent: tor}, DefaultConfig())
	if err != nil || len(rep.Verdicts) != 0 || len(rep.Summary.Windows) != 0 {
		t.Errorf("empty input: %+v, %v", rep, err)
	}
}

// TestHonestSuperSeeder: a BEP 16 super-seeder starts every connection with
// HaveNone and reveals two pieces by HAVE; it shares the seeding with S.
// Its snapshots understate what it holds, so they must not be read as
// "lacked", whether it is seen many times (pieces "lost" between looks) or
// once (left=0 announced, empty start).
func TestHonestSuperSeeder(t *testing.T) {
	tests := []struct {
		name      string
		from, to  float64
		wantLost  bool
		wantCodes []Code
	}{
		{name: "seen every 5 minutes", from: -600, to: 7200, wantLost: true},
		{name: "seen once", from: 4000, to: 4000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			k := 0
			s.wire(2, looks(tc.from, tc.to, func(tm float64) []timeline.Observation {
				k++
				return []timeline.Observation{{At: at(tm), Kind: timeline.KindHaveNone},
					{At: at(tm + 0.5), Kind: timeline.KindHave, Piece: (k * 7) % 100}, {At: at(tm + 0.5), Kind: timeline.KindHave, Piece: (k*7 + 3) % 100}}
			}))
			var ss []reported.Announce
			for i, a := range s.in.Announces {
				if a.PeerID == pid(1) {
					s.in.Announces[i].Uploaded /= 2
					b := s.in.Announces[i]
					b.PeerID, b.IP = pid(2), addr(2).Addr()
					ss = append(ss, b)
				}
			}
			s.in.Announces = append(s.in.Announces, ss...)
			rep := judgeSim(t, s, DefaultConfig())
			v := verdictOf(t, rep, 2)
			if v.Status != StatusOK || len(v.Reasons) > 0 || !v.NegativeDiscounted {
				t.Errorf("super-seeder: %s discounted=%v %v", v.Status, v.NegativeDiscounted, v.Reasons)
			}
			if _, lost := timeline.Build(tor.NumPieces, s.in.Peers[len(s.in.Peers)-1].Observations).LostPiecesAt(); lost != tc.wantLost {
				t.Errorf("lost-pieces anomaly %v, want %v", lost, tc.wantLost)
			}
			assertHonest(t, rep, honestIDs...)

			// A left=0 peer that starts empty and never offers a piece is
			// not a super-seeder: it keeps its negative evidence, and its
			// claims, for pieces it never showed, are convicted.
			for i := range s.in.Peers {
				if s.in.Peers[i].Addr == addr(2) {
					s.in.Peers[i].Observations = slices.DeleteFunc(slices.Clone(s.in.Peers[i].Observations), func(o timeline.Observation) bool {
						return o.Kind == timeline.KindHave
					})
				}
			}
			rep = judgeSim(t, s, DefaultConfig())
			if v := verdictOf(t, rep, 2); v.Status != StatusMisreporting || v.NegativeDiscounted {
				t.Errorf("a left=0 peer that never offered a piece: %s discounted=%v", v.Status, v.NegativeDiscounted)
			}
		})
	}
}

func TestPositiveOnly(t *testing.T) {
	n := 10
	bf := func(k int) bitfield.Bitfield {
		b := bitfield.New(n)
		for i := 0; i < k; i++ {
			b.Set(i)
		}
		return b
	}
	obs := []timeline.Observation{
		{At: at(20), Kind: timeline.KindBitfield, Pieces: bf(4)},
		{At: at(10), Kind: timeline.KindBitfield, Pieces: bf(2)},
		{At: at(30), Kind: timeline.KindHaveNone},
		{At: at(31), Kind: timeline.KindHave, Piece: 7},
		{At: at(40), Kind: timeline.KindNoBitfield},
		{At: at(50), Kind: timeline.KindBitfield, Pieces: bitfield.New(n + 1)},
	}
	small := estimate.Torrent{NumPieces: n, PieceLength: 1, TotalLength: int64(n)}
	got := positiveOnly(obs, small.NumPieces)
	// 10 s: contact + 0,1; 20 s: contact + 2,3; 31 s: HAVE 7; 50 s: malformed kept.
	if len(got) != 3+3+1+1 {
		t.Fatalf("%d observations: %+v", len(got), got)
	}
	tl := timeline.Build(n, got)
	var gains []int
	for _, g := range tl.Gains() {
		if !g.AtFirstSight() {
			t.Errorf("piece %d has negative evidence %v", g.Piece, g.Lacked)
		}
		gains = append(gains, g.Piece)
	}
	if !slices.Equal(gains, []int{0, 1, 2, 3, 7}) || tl.LackingFrom(at(0)).Count() != 0 || tl.AnomalyCount() != 1 {
		t.Errorf("gains %v, lacking %v, anomalies %d", gains, tl.LackingFrom(at(0)).Indices(), tl.AnomalyCount())
	}
	if h, _ := tl.HaveAt(at(20)); h.Count() != 4 {
		t.Errorf("held at 20 s: %v", h.Indices())
	}
}
