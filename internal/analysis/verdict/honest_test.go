package verdict

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/timeline"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// simSwarm simulates an honest swarm in 10 s steps: every transfer is a
// real piece from a peer that holds it, within the sender's upload and the
// receiver's download capacity (both varying step to step: bursty). Peers
// report their true counters times a per-peer overhead of 0–10%, announce
// every ~30 min with jitter, may skip `stopped`, and are looked at every
// ~5 min: sometimes unreachable, some with lazy bitfields, some sending
// HAVEs while we are connected, most not.
type simSwarm struct {
	r        *rand.Rand
	tor      estimate.Torrent
	steps    int
	n        int
	join     []int
	leave    []int // step after the last present one
	capUp    []int // pieces/step
	capDown  []int
	gainStep [][]int // per peer, per piece: step it completed (-1: before joining, MaxInt: never)
	up, down [][]int64
	active   [][]int // per step, per peer: how many peers it sent to
	// watched: the auditor holds a watch on every peer from its first
	// step to its last (as `swarmaudit audit` does): its bitfield, a
	// HAVE for every piece it completes, a heartbeat every 150 s. Set by
	// tests before input().
	watched bool
	// cheat, when ≥ 0, is a peer whose reported upload is multiplied by
	// factor (a ratio proxy).
	cheat  int
	factor float64
}

const stepSecs = 10

func newSimSwarm(r *rand.Rand, seeders, leechers int) *simSwarm {
	s := &simSwarm{r: r, tor: estimate.Torrent{NumPieces: 120, PieceLength: mib, TotalLength: 120*mib - 777}, steps: 4 * 360, cheat: -1}
	s.n = seeders + leechers
	for p := 0; p < s.n; p++ {
		g := make([]int, s.tor.NumPieces)
		j, l := 0, s.steps
		if p < seeders {
			for i := range g {
				g[i] = -1
			}
			if r.IntN(3) == 0 {
				l = s.steps/2 + r.IntN(s.steps/2) // a seeder leaves
			}
		} else {
			j = r.IntN(360)
			for i := range g {
				g[i] = math.MaxInt
				if r.IntN(5) == 0 {
					g[i] = -1 // brought from disk
				}
			}
			if r.IntN(3) == 0 {
				l = j + 200 + r.IntN(s.steps-j-200) // leaves, maybe unfinished
			}
		}
		s.join = append(s.join, j)
		s.leave = append(s.leave, l)
		s.capUp = append(s.capUp, 1+r.IntN(4))
		s.capDown = append(s.capDown, 1+r.IntN(3))
		s.gainStep = append(s.gainStep, g)
		s.up = append(s.up, make([]int64, s.steps+1))
		s.down = append(s.down, make([]int64, s.steps+1))
	}
	s.active = make([][]int, s.steps)
	for st := 0; st < s.steps; st++ {
		s.active[st] = make([]int, s.n)
		left := make([]int, s.n)
		for p := range left {
			left[p] = s.capUp[p] - s.r.IntN(2) // bursty: this step's spare
		}
		for _, q := range s.r.Perm(s.n) {
			if st < s.join[q] || st >= s.leave[q] {
				continue
			}
			for k := s.r.IntN(s.capDown[q] + 1); k > 0; k-- {
				var want []int
				for i, g := range s.gainStep[q] {
					if g > st {
						want = append(want, i)
					}
				}
				if len(want) == 0 {
					break
				}
				i := want[s.r.IntN(len(want))]
				var from []int
				for p := 0; p < s.n; p++ {
					if p != q && left[p] > 0 && st >= s.join[p] && st < s.leave[p] && s.gainStep[p][i] < st {
						from = append(from, p)
					}
				}
				if len(from) == 0 {
					continue
				}
				p := from[s.r.IntN(len(from))]
				left[p]--
				s.active[st][p]++
				s.gainStep[q][i] = st
				s.up[p][st+1] += s.tor.PieceSize(i)
				s.down[q][st+1] += s.tor.PieceSize(i)
			}
		}
		for p := 0; p < s.n; p++ {
			s.up[p][st+1] += s.up[p][st]
			s.down[p][st+1] += s.down[p][st]
		}
	}
	return s
}

func stepTime(st int) time.Time { return at(float64(st * stepSecs)) }

func (s *simSwarm) heldAt(p, st int) bitfield.Bitfield {
	bf := bitfield.New(s.tor.NumPieces)
	for i, g := range s.gainStep[p] {
		if g < st {
			bf.Set(i)
		}
	}
	return bf
}

func (s *simSwarm) input() Input {
	in := Input{Torrent: s.tor}
	for p := 0; p < s.n; p++ {
		n := byte(100 + p)
		w := WirePeer{Addr: addr(n), PeerIDs: [][20]byte{pid(n)}}
		lazy, haves := s.r.IntN(4) == 0, s.r.IntN(3) == 0
		if s.watched {
			s.watch(&w, p)
		}
		for st := s.r.IntN(30); st < s.steps; st += 25 + s.r.IntN(12) {
			if s.watched {
				// The watch sees it all; probes still measure.
				if st >= s.join[p] && st < s.leave[p] && s.r.IntN(8) == 0 {
					rate := float64(s.capUp[p]) * float64(s.tor.PieceLength) / stepSecs / float64(1+s.active[st][p])
					w.Probes = append(w.Probes, estimate.Sample{At: stepTime(st), BytesPerSec: rate, Spread: rate / 10, Bytes: 2 * mib})
				}
				continue
			}
			t := stepTime(st)
			if st < s.join[p] || st >= s.leave[p] {
				if st >= s.leave[p] {
					w.Observations = append(w.Observations, timeline.Observation{At: t, Kind: timeline.KindRefused})
				}
				continue
			}
			if s.r.IntN(10) == 0 {
				w.Observations = append(w.Observations, timeline.Observation{At: t, Kind: timeline.KindUnreachable})
				continue
			}
			bf := s.heldAt(p, st)
			w.Observations = append(w.Observations, timeline.Observation{At: t, Kind: timeline.KindConnected})
			if idx := bf.Indices(); lazy && len(idx) > 2 {
				for _, i := range idx[len(idx)-2:] {
					bf.Clear(i)
					w.Observations = append(w.Observations, timeline.Observation{At: t.Add(time.Second), Kind: timeline.KindHave, Piece: i})
				}
			}
			w.Observations = append(w.Observations, timeline.Observation{At: t, Kind: timeline.KindBitfield, Pieces: bf})
			end := st + 6
			if haves {
				for i, g := range s.gainStep[p] {
					if g >= st && g < end {
						w.Observations = append(w.Observations, timeline.Observation{At: stepTime(g + 1), Kind: timeline.KindHave, Piece: i})
					}
				}
			}
			w.Observations = append(w.Observations, timeline.Observation{At: stepTime(end), Kind: timeline.KindDisconnected})
			if s.r.IntN(8) == 0 {
				// A probe gets a fair share of the peer's upload.
				rate := float64(s.capUp[p]) * float64(s.tor.PieceLength) / stepSecs / float64(1+s.active[st][p])
				w.Probes = append(w.Probes, estimate.Sample{At: t, BytesPerSec: rate, Spread: rate / 10, Bytes: 2 * mib})
			}
		}
		in.Peers = append(in.Peers, w)

		over := 1 + s.r.Float64()/10
		if p == s.cheat {
			over *= s.factor
		}
		skipStop := s.r.IntN(3) == 0
		var last int
		for st := s.join[p]; st < s.leave[p]; st += 170 + s.r.IntN(20) {
			ev := reported.EventNone
			if st == s.join[p] {
				ev = reported.EventStarted
			}
			s.ann(&in, p, st, over, ev)
			last = st
		}
		if s.leave[p] < s.steps && !skipStop && s.leave[p] > last {
			s.ann(&in, p, s.leave[p], over, reported.EventStopped)
		}
	}
	return in
}

// watch records a watch of peer p over its whole presence: connected at
// its first step, its bitfield, the watch's start, a HAVE one step after
// each piece it gains, a heartbeat every 15 steps, and the end when it
// leaves.
func (s *simSwarm) watch(w *WirePeer, p int) {
	t := stepTime(s.join[p])
	w.Observations = append(w.Observations, timeline.Observation{At: t, Kind: timeline.KindConnected},
		timeline.Observation{At: t.Add(500 * time.Millisecond), Kind: timeline.KindBitfield, Pieces: s.heldAt(p, s.join[p])},
		timeline.Observation{At: t.Add(600 * time.Millisecond), Kind: timeline.KindWatch})
	for i, g := range s.gainStep[p] {
		if g >= s.join[p] && g+1 < s.leave[p] {
			w.Observations = append(w.Observations, timeline.Observation{At: stepTime(g + 1).Add(time.Second), Kind: timeline.KindHave, Piece: i})
		}
	}
	for st := s.join[p] + 15; st < s.leave[p]; st += 15 {
		w.Observations = append(w.Observations, timeline.Observation{At: stepTime(st), Kind: timeline.KindHeartbeat})
	}
	if s.leave[p] < s.steps {
		w.Observations = append(w.Observations, timeline.Observation{At: stepTime(s.leave[p]), Kind: timeline.KindDisconnected})
	}
}

func (s *simSwarm) ann(in *Input, p, st int, over float64, ev reported.Event) {
	n := byte(100 + p)
	left := s.tor.TotalLength - s.tor.Bytes(s.heldAt(p, st).Indices())
	skew := time.Duration(s.r.IntN(2001)-1000) * time.Millisecond
	in.Announces = append(in.Announces, reported.Announce{At: stepTime(st).Add(skew), PeerID: pid(n), IP: addr(n).Addr(), Port: addr(n).Port(),
		Uploaded: int64(float64(s.up[p][st]) * over), Downloaded: int64(float64(s.down[p][st]) * over), Left: left, Event: ev, Passkey: "pk"})
}

// TestHonestSwarmsNeverMisreporting runs random honest swarms with a slack
// much tighter than the default (4 MiB instead of 32 MiB), so the model's
// soundness, not the slack, keeps honest peers clear.
func TestHonestSwarmsNeverMisreporting(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SlackBytes, cfg.SlackPieces = 4*mib, 4
	suspects := map[Code]int{}
	var identities, uploaded int
	var maxUp, maxDown float64 // tightest claim/bound ratios seen
	var maxPl float64          // tightest claim/plausible availability
	for round := 0; round < 40; round++ {
		r := rand.New(rand.NewPCG(uint64(round), 99))
		seeders, leechers := 1, 1 // one seeder feeding one leecher: bounds are tight
		if round >= 10 {
			seeders, leechers = 1+r.IntN(3), 1+r.IntN(7)
		}
		s := newSimSwarm(r, seeders, leechers)
		rep, err := Judge(s.input(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, rep)
		for _, v := range rep.Verdicts {
			identities++
			if v.Uploaded > 0 {
				uploaded++
			}
			if v.Status == StatusMisreporting {
				t.Errorf("round %d: honest %s misreporting", round, v.Identity.Key)
				for _, r := range v.Reasons {
					t.Logf("  %s %s: %s", r.Code, r.Status, r.Message)
				}
			}
			for _, r := range v.Reasons {
				suspects[r.Code]++
				// The plausible tier's assumptions hold in these swarms
				// (everyone reports its downloads truly): none of its
				// findings may fire. Capacity findings predate the tiers
				// (busy probes here see a small share).
				if r.Tier == TierPlausible && r.Code != CodeUploadExceedsCapacity {
					t.Errorf("round %d: honest %s: plausible %s: %s", round, v.Identity.Key, r.Code, r.Message)
				}
			}
			for _, c := range v.Checks {
				if c.Uploaded > 8*mib && c.Bounds.Plausible.AvailabilityBound > 0 {
					maxPl = max(maxPl, float64(c.Uploaded)/float64(c.Bounds.Plausible.AvailabilityBound))
				}
				if c.Uploaded > 8*mib && c.Bounds.UploadUpper > 0 {
					maxUp = max(maxUp, float64(c.Uploaded)/float64(c.Bounds.UploadUpper))
				}
				if c.Bounds.DownloadedLower > 8*mib {
					maxDown = max(maxDown, float64(c.Bounds.DownloadedLower)/float64(max(c.Downloaded, 1)))
				}
			}
		}
		for _, r := range rep.Summary.Reasons {
			if r.Status == StatusMisreporting {
				t.Errorf("round %d: honest swarm conservation: %s", round, r.Message)
			}
			suspects[r.Code]++
		}
	}
	if uploaded < identities/2 {
		t.Errorf("only %d of %d identities uploaded: the simulation does not exercise the bounds", uploaded, identities)
	}
	t.Logf("%d honest identities; suspect findings by code: %v; max uploaded/upper %.2f, max downloaded-lower/downloaded %.2f, max uploaded/plausible availability %.2f",
		identities, suspects, maxUp, maxDown, maxPl)
	// The honest claims must come close to the bounds, or this test could
	// not fail.
	if maxUp < 0.7 || maxDown < 0.7 {
		t.Errorf("bounds never approached: uploaded/upper %.2f, downloaded-lower/downloaded %.2f", maxUp, maxDown)
	}
}

// TestWatchedSwarms: in honest swarms the auditor watches throughout (a
// HAVE for every piece, heartbeats), no honest identity gets a plausible
// finding, with or without reading the watches' silence as lacking
// (AssumePromptHaves); and a ratio proxy ×3 on one peer is flagged at
// least as often with it as without.
func TestWatchedSwarms(t *testing.T) {
	with := DefaultConfig()
	with.SlackBytes, with.SlackPieces = 4*mib, 4
	without := with
	without.Estimate.PlausibleHaveDelay = 0
	flagged := map[bool]int{}
	cheats := 0
	for round := 0; round < 30; round++ {
		for _, prompt := range []bool{false, true} {
			r := rand.New(rand.NewPCG(uint64(round), 1818))
			s := newSimSwarm(r, 1+r.IntN(2), 2+r.IntN(6))
			s.watched = true
			s.cheat, s.factor = s.n-1-r.IntN(s.n-1), 3
			cfg := without
			if prompt {
				cfg = with
			}
			rep, err := Judge(s.input(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			cheater := string(addr(byte(100 + s.cheat)).Addr().String())
			for _, v := range rep.Verdicts {
				isCheat := len(v.WirePeers) > 0 && v.WirePeers[0].Addr().String() == cheater
				if isCheat {
					if prompt && s.up[s.cheat][s.steps] > 16*mib {
						cheats++
					}
					if v.Status.Severity() >= StatusSuspect.Severity() && s.up[s.cheat][s.steps] > 16*mib {
						flagged[prompt]++
					}
					continue
				}
				for _, r := range v.Reasons {
					if r.Tier == TierPlausible && r.Code != CodeUploadExceedsCapacity || v.Status == StatusMisreporting {
						t.Errorf("round %d (prompt %v): honest %s: %s %s: %s", round, prompt, v.Identity.Key, r.Tier, r.Code, r.Message)
					}
				}
			}
		}
	}
	t.Logf("×3 proxies that uploaded over 16 MiB: %d; flagged with prompt HAVEs %d, without %d", cheats, flagged[true], flagged[false])
	if cheats == 0 || flagged[true] < flagged[false] {
		t.Errorf("flagged %d with prompt HAVEs, %d without, of %d", flagged[true], flagged[false], cheats)
	}
}

// TestJointClaims: in simulated swarms with one ratio proxy (×1.5, ×2, ×3;
// peers watched or looked at every ~5 min), checking the claims together
// never flags an honest identity (whose counters carry up to 10% overhead),
// and flags the proxy at least as often as the checks without it.
func TestJointClaims(t *testing.T) {
	with := DefaultConfig()
	with.SlackBytes, with.SlackPieces = 4*mib, 4
	without := with
	without.JointAvailabilityFactor = 0
	flagged := map[bool]int{}
	joint, cheats := 0, 0
	for round := range 30 {
		for _, factor := range []float64{1.5, 2, 3} {
			for _, on := range []bool{false, true} {
				r := rand.New(rand.NewPCG(uint64(round), 2718))
				s := newSimSwarm(r, 1+r.IntN(2), 2+r.IntN(6))
				s.watched = round%2 == 0
				s.cheat, s.factor = s.n-1-r.IntN(s.n-1), factor
				cfg := without
				if on {
					cfg = with
				}
				rep, err := Judge(s.input(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				cheater := addr(byte(100 + s.cheat)).Addr().String()
				for _, v := range rep.Verdicts {
					if len(v.WirePeers) > 0 && v.WirePeers[0].Addr().String() == cheater {
						if s.up[s.cheat][s.steps] <= 16*mib {
							continue
						}
						if on {
							cheats++
						}
						if v.Status.Severity() >= StatusSuspect.Severity() {
							flagged[on]++
						}
						for _, r := range v.Reasons {
							if r.Code == CodeClaimsDoNotFit && on {
								joint++
							}
						}
						continue
					}
					for _, r := range v.Reasons {
						if r.Code == CodeClaimsDoNotFit {
							t.Errorf("round %d ×%v: honest %s: %s", round, factor, v.Identity.Key, r.Message)
						}
					}
				}
			}
		}
	}
	t.Logf("proxies that uploaded over 16 MiB: %d; flagged with the joint check %d (by it %d), without %d", cheats, flagged[true], joint, flagged[false])
	if cheats == 0 || flagged[true] < flagged[false] {
		t.Errorf("flagged %d with the joint check, %d without, of %d", flagged[true], flagged[false], cheats)
	}
}

// TestJointSkippedIsReported: a swarm too large for the joint claims
// network says so in the summary instead of passing over it in silence.
func TestJointSkippedIsReported(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 8))
	s := newSimSwarm(r, 3, 90)
	s.watched = true
	rep, err := Judge(s.input(), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Summary.Skipped) != 1 || !strings.HasPrefix(rep.Summary.Skipped[0], string(CodeClaimsDoNotFit)+":") {
		t.Fatalf("skipped checks: %q", rep.Summary.Skipped)
	}
	small := newSimSwarm(rand.New(rand.NewPCG(5, 8)), 1, 4)
	if rep, err = Judge(small.input(), DefaultConfig()); err != nil || len(rep.Summary.Skipped) != 0 {
		t.Fatalf("small swarm: skipped %q, %v", rep.Summary.Skipped, err)
	}
}
