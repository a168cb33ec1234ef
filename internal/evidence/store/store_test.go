package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 123456000, time.UTC)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// testEngine is the engine openTest opens: SQLite, or PostgreSQL when
// SWARMAUDIT_STORE_ENGINE=postgres (CI runs the package's tests both ways).
var testEngine = os.Getenv(testclients.StoreEngineEnv)

func openTest(t testing.TB, path string, opts ...Option) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "audit.db")
	}
	path = testclients.StoreDB(t, path)
	s, err := Open(testCtx(t), path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func ih(b byte) infohash.T {
	var h infohash.T
	for i := range h {
		h[i] = b + byte(i)
	}
	return h
}

func addr(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func mustSwarm(t testing.TB, s *Store, si SwarmInfo) SwarmID {
	t.Helper()
	id, err := s.EnsureSwarm(testCtx(t), si)
	if err != nil {
		t.Fatalf("EnsureSwarm: %v", err)
	}
	return id
}

func TestEnsureSwarm(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	full := SwarmInfo{InfoHash: ih(1), Name: "debian.iso", PieceLength: 262144, TotalLength: 262144*99 + 5, NumPieces: 100}
	tests := []struct {
		name    string
		in      SwarmInfo
		wantErr error
		want    SwarmInfo
	}{
		{"hash only creates", SwarmInfo{InfoHash: ih(1)}, nil, SwarmInfo{InfoHash: ih(1)}},
		{"fills metadata", full, nil, full},
		{"same again", full, nil, full},
		{"partial is compatible", SwarmInfo{InfoHash: ih(1), NumPieces: 100}, nil, full},
		{"rename", SwarmInfo{InfoHash: ih(1), Name: "other"}, nil, func() SwarmInfo { f := full; f.Name = "other"; return f }()},
		{"contradiction", SwarmInfo{InfoHash: ih(1), NumPieces: 101}, ErrSwarmMismatch, SwarmInfo{}},
		{"zero hash", SwarmInfo{}, ErrInvalid, SwarmInfo{}},
		{"negative", SwarmInfo{InfoHash: ih(2), NumPieces: -1}, ErrInvalid, SwarmInfo{}},
		{"too many pieces", SwarmInfo{InfoHash: ih(2), NumPieces: MaxPieces + 1}, ErrInvalid, SwarmInfo{}},
		{"inconsistent sizes", SwarmInfo{InfoHash: ih(2), PieceLength: 10, TotalLength: 100, NumPieces: 11}, ErrInvalid, SwarmInfo{}},
	}
	var first SwarmID
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := s.EnsureSwarm(ctx, tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("EnsureSwarm err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if first == 0 {
				first = id
			}
			if id != first {
				t.Fatalf("id %d, want the same swarm %d", id, first)
			}
			got, err := s.Swarm(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.SwarmInfo != tt.want {
				t.Fatalf("stored %+v, want %+v", got.SwarmInfo, tt.want)
			}
			byHash, err := s.LookupSwarm(ctx, tt.in.InfoHash)
			if err != nil || byHash.ID != id {
				t.Fatalf("LookupSwarm = %+v, %v", byHash, err)
			}
		})
	}
	if _, err := s.Swarm(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Swarm(999) = %v, want ErrNotFound", err)
	}
	if _, err := s.LookupSwarm(ctx, ih(9)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LookupSwarm(unknown) = %v, want ErrNotFound", err)
	}
}

func TestPeersRoundTrip(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	sw := mustSwarm(t, s, SwarmInfo{InfoHash: ih(1), NumPieces: 16})
	pid := []byte("-TR4060-abcdefghijkl")
	steps := []struct {
		name    string
		in      Peer
		wantErr error
		want    Peer
	}{
		{"new peer", Peer{Addr: addr("127.0.0.1:6881"), FirstSeen: t0, Sources: []string{"tracker"}}, nil,
			Peer{Addr: addr("127.0.0.1:6881"), FirstSeen: t0, LastSeen: t0, Sources: []string{"tracker"}}},
		{"identity learned", Peer{Addr: addr("127.0.0.1:6881"), PeerID: pid, Client: "Transmission 4.0.6", Encryption: "rc4",
			LastSeen: t0.Add(time.Minute), Sources: []string{"dht", "tracker"}}, nil,
			Peer{Addr: addr("127.0.0.1:6881"), PeerID: pid, Client: "Transmission 4.0.6", Encryption: "rc4",
				FirstSeen: t0, LastSeen: t0.Add(time.Minute), Sources: []string{"dht", "tracker"}}},
		{"empty fields keep stored", Peer{Addr: addr("127.0.0.1:6881"), FirstSeen: t0.Add(-time.Hour), Sources: []string{"pex"}}, nil,
			Peer{Addr: addr("127.0.0.1:6881"), PeerID: pid, Client: "Transmission 4.0.6", Encryption: "rc4",
				FirstSeen: t0.Add(-time.Hour), LastSeen: t0.Add(time.Minute), Sources: []string{"dht", "pex", "tracker"}}},
		{"4in6 is the same peer", Peer{Addr: addr("[::ffff:127.0.0.1]:6881"), Client: "x\x00y\xff"}, nil,
			Peer{Addr: addr("127.0.0.1:6881"), PeerID: pid, Client: "xy\uFFFD", Encryption: "rc4",
				FirstSeen: t0.Add(-time.Hour), LastSeen: t0.Add(time.Minute), Sources: []string{"dht", "pex", "tracker"}}},
		{"bad peer id", Peer{Addr: addr("127.0.0.1:6881"), PeerID: []byte("short")}, ErrInvalid, Peer{}},
		{"invalid addr", Peer{FirstSeen: t0}, ErrInvalid, Peer{}},
		{"new peer without time", Peer{Addr: addr("127.0.0.2:1")}, ErrInvalid, Peer{}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := s.UpsertPeer(ctx, sw, st.in)
			if !errors.Is(err, st.wantErr) {
				t.Fatalf("UpsertPeer err = %v, want %v", err, st.wantErr)
			}
			if err != nil {
				return
			}
			peers, err := s.Peers(ctx, sw)
			if err != nil {
				t.Fatal(err)
			}
			if len(peers) != 1 || !reflect.DeepEqual(peers[0], st.want) {
				t.Fatalf("Peers = %+v\nwant %+v", peers, st.want)
			}
		})
	}
}

func TestObservationsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	s := openTest(t, path)
	ctx := testCtx(t)
	sw := mustSwarm(t, s, SwarmInfo{InfoHash: ih(1), NumPieces: 20})
	other := mustSwarm(t, s, SwarmInfo{InfoHash: ih(2), NumPieces: 20})
	a, b := addr("127.0.0.1:6881"), addr("[::1]:51413")

	wantSnaps := map[netip.AddrPort][]TimedBitfield{
		a: {{t0, bfOf(20)}, {t0.Add(time.Minute), bfOf(20, 1, 2)}, {t0.Add(2 * time.Minute), bfOf(20, 1, 2, 3)}, {t0.Add(3 * time.Minute), bfOf(20, 1)}},
		b: {{t0, bitfield.Full(20)}},
	}
	for _, p := range []netip.AddrPort{a, b} {
		for _, tb := range wantSnaps[p] {
			if err := s.AddSnapshot(ctx, sw, p, tb.At, tb.Bitfield); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.AddSnapshot(ctx, other, a, t0, bfOf(20, 19)); err != nil {
		t.Fatal(err)
	}
	wantHaves := map[netip.AddrPort][]Have{a: {{t0.Add(time.Second), 1}, {t0.Add(2 * time.Second), 2}, {t0.Add(2 * time.Second), 3}}}
	for _, h := range []Have{{t0.Add(2 * time.Second), 3}, {t0.Add(time.Second), 1}, {t0.Add(2 * time.Second), 2}, {t0.Add(time.Second), 1}} {
		if err := s.AddHave(ctx, sw, a, h.At, h.Piece); err != nil {
			t.Fatal(err)
		}
	}
	// A duplicate of an event already committed, in a later batch, is kept
	// once too (PostgreSQL's COPY goes through a staging table for this).
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.AddHave(ctx, sw, a, t0.Add(time.Second), 1); err != nil {
		t.Fatal(err)
	}
	wantConns := []ConnEvent{
		{Addr: a, At: t0, Outcome: ConnOK, Encryption: "rc4"},
		{Addr: b, At: t0.Add(time.Second), Outcome: ConnRefused, Detail: "connection refused"},
		{Addr: b, At: t0.Add(2 * time.Second), Outcome: "weird_new_outcome"},
		{Addr: a, At: t0.Add(3 * time.Second), Outcome: ConnOK, Encryption: "rc4", Transport: "utp"},
	}
	for _, ev := range wantConns {
		if err := s.AddConnEvent(ctx, sw, ev); err != nil {
			t.Fatal(err)
		}
	}
	wantProbes := []ProbeRecord{
		{Addr: a, At: t0, Outcome: "ok", Encryption: "plaintext", ThroughputBytesPerSec: 1.5e6, ThroughputSpread: 0.25,
			BytesDownloaded: 4 << 20, PiecesVerified: 4, PiecesFailed: 1, HandshakeMS: 12.5, Result: json.RawMessage(`{"peer":"127.0.0.1:6881","choked":false}`)},
		{Addr: b, At: t0.Add(time.Minute), Outcome: "timeout", Result: nil},
	}
	for i := range wantProbes {
		id, err := s.AddProbe(ctx, sw, wantProbes[i])
		if err != nil {
			t.Fatal(err)
		}
		wantProbes[i].ID = id
	}
	wantProbes[1].Result = json.RawMessage(`{}`)

	check := func(t *testing.T, s *Store) {
		snaps, err := s.Snapshots(ctx, sw)
		if err != nil {
			t.Fatal(err)
		}
		if len(snaps) != len(wantSnaps) {
			t.Fatalf("snapshots for %d peers, want %d", len(snaps), len(wantSnaps))
		}
		for p, want := range wantSnaps {
			got := snaps[p]
			if len(got) != len(want) {
				t.Fatalf("%s: %d snapshots, want %d", p, len(got), len(want))
			}
			for i := range want {
				if !got[i].At.Equal(want[i].At) || !got[i].Bitfield.Equal(want[i].Bitfield) {
					t.Fatalf("%s snapshot %d = %v %v, want %v %v", p, i, got[i].At, got[i].Bitfield.Indices(), want[i].At, want[i].Bitfield.Indices())
				}
			}
		}
		haves, err := s.Haves(ctx, sw)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(haves, wantHaves) {
			t.Fatalf("Haves = %v, want %v", haves, wantHaves)
		}
		conns, err := s.ConnEvents(ctx, sw)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(conns, wantConns) {
			t.Fatalf("ConnEvents = %+v, want %+v", conns, wantConns)
		}
		probes, err := s.Probes(ctx, sw)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(probes, wantProbes) {
			t.Fatalf("Probes = %+v\nwant %+v", probes, wantProbes)
		}
		peers, err := s.Peers(ctx, sw)
		if err != nil {
			t.Fatal(err)
		}
		if len(peers) != 2 || peers[0].Addr != a || !peers[0].FirstSeen.Equal(t0) || !peers[0].LastSeen.Equal(t0.Add(3*time.Minute)) {
			t.Fatalf("Peers = %+v", peers)
		}
		if err := s.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("same store", func(t *testing.T) { check(t, s) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Run("reopened", func(t *testing.T) { check(t, openTest(t, path)) })
}

func TestAnnouncesRoundTrip(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	var pid [20]byte
	copy(pid[:], "-qB4650-0123456789ab")
	in := []reported.Announce{
		{At: t0, InfoHash: ih(3), PeerID: pid, IP: netip.MustParseAddr("127.0.0.1"), Port: 6881, Uploaded: 0, Downloaded: 0,
			Left: 1 << 30, Event: reported.EventStarted, Key: "k1", Passkey: "pk", UserAgent: "qBittorrent/4.6.5", Source: "http", UserID: "u7"},
		{At: t0.Add(30 * time.Minute), InfoHash: ih(3), PeerID: pid, IP: netip.MustParseAddr("::1"), Port: 6881,
			Uploaded: 1 << 40, Downloaded: 1 << 29, Left: 1 << 29, Source: "udp"},
		{At: t0.Add(time.Hour), InfoHash: ih(3), PeerID: pid, Port: 1, Event: reported.EventStopped},
		{At: t0.Add(time.Minute), InfoHash: ih(4), PeerID: pid, IP: netip.MustParseAddr("127.0.0.2"), Port: 2},
	}
	for _, a := range in {
		if err := s.RecordAnnounce(a); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		hash  infohash.T
		since time.Time
		want  []reported.Announce
	}{
		{"all", ih(3), time.Time{}, in[:3]},
		{"since is inclusive", ih(3), t0.Add(30 * time.Minute), in[1:3]},
		{"other swarm", ih(4), time.Time{}, in[3:]},
		{"unknown", ih(5), time.Time{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Announces(ctx, tt.hash, tt.since)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Announces =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
	// The swarm an announce created is filled in later.
	sw, err := s.LookupSwarm(ctx, ih(3))
	if err != nil {
		t.Fatal(err)
	}
	if id := mustSwarm(t, s, SwarmInfo{InfoHash: ih(3), NumPieces: 8}); id != sw.ID {
		t.Fatalf("EnsureSwarm made a new swarm %d, want %d", id, sw.ID)
	}
	if err := s.RecordAnnounce(reported.Announce{InfoHash: ih(3)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("announce without time: %v, want ErrInvalid", err)
	}
}

func TestVerdictsAndRuns(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	sw := mustSwarm(t, s, SwarmInfo{InfoHash: ih(1)})
	if _, err := s.LatestRun(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LatestRun on empty db = %v", err)
	}
	run, err := s.StartRun(ctx, sw, t0, json.RawMessage(`{"interval":"30s"}`))
	if err != nil {
		t.Fatal(err)
	}
	v1 := Verdict{Run: run, Identity: "peer:-TR4060-", WindowStart: t0, WindowEnd: t0.Add(time.Hour), Status: "overreport",
		Confidence: 0.9, Reasons: json.RawMessage(`["uploaded 10 GiB, wire shows 0"]`), Computed: t0.Add(time.Hour)}
	v2 := Verdict{Identity: "user:7", WindowStart: t0, WindowEnd: t0, Status: "consistent", Confidence: 0.5, Computed: t0}
	if err := s.SaveVerdicts(ctx, sw, []Verdict{v1, v2}); err != nil {
		t.Fatal(err)
	}
	v1b := v1
	v1b.Status, v1b.Confidence, v1b.Computed = "consistent", 0.2, t0.Add(2*time.Hour)
	if err := s.SaveVerdicts(ctx, sw, []Verdict{v1b}); err != nil {
		t.Fatal(err)
	}
	v2.Reasons = json.RawMessage(`[]`)
	got, err := s.Verdicts(ctx, sw)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Verdict{v1b, v2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Verdicts =\n%+v\nwant\n%+v", got, want)
	}
	bad := []struct {
		name string
		v    Verdict
	}{
		{"no identity", Verdict{WindowStart: t0, WindowEnd: t0, Status: "x"}},
		{"no status", Verdict{Identity: "i", WindowStart: t0, WindowEnd: t0}},
		{"window backwards", Verdict{Identity: "i", Status: "x", WindowStart: t0, WindowEnd: t0.Add(-1)}},
		{"confidence NaN", Verdict{Identity: "i", Status: "x", WindowStart: t0, WindowEnd: t0, Confidence: math.NaN()}},
		{"confidence > 1", Verdict{Identity: "i", Status: "x", WindowStart: t0, WindowEnd: t0, Confidence: 1.5}},
		{"bad json", Verdict{Identity: "i", Status: "x", WindowStart: t0, WindowEnd: t0, Reasons: json.RawMessage(`[`)}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.SaveVerdicts(ctx, sw, []Verdict{v2, tt.v}); !errors.Is(err, ErrInvalid) {
				t.Fatalf("SaveVerdicts = %v, want ErrInvalid", err)
			}
		})
	}
	if err := s.StopRun(ctx, run, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.StopRun(ctx, 999, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("StopRun(999) = %v", err)
	}
	run2, err := s.StartRun(ctx, sw, t0.Add(2*time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := s.LatestRun(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Run{ID: run2, Swarm: sw, Started: t0.Add(2 * time.Hour), Config: json.RawMessage(`{}`)}); !reflect.DeepEqual(latest, want) {
		t.Fatalf("LatestRun = %+v, want %+v", latest, want)
	}
	runs, err := s.Runs(ctx, sw)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || !runs[0].Stopped.Equal(t0.Add(time.Hour)) || string(runs[0].Config) != `{"interval":"30s"}` {
		t.Fatalf("Runs = %+v", runs)
	}
	if all, err := s.Runs(ctx, 0); err != nil || len(all) != 2 {
		t.Fatalf("Runs(0) = %v, %v", all, err)
	}
}

func TestRejectsBadObservations(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	sw := mustSwarm(t, s, SwarmInfo{InfoHash: ih(1), NumPieces: 10})
	a := addr("127.0.0.1:1")
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"snapshot zero time", s.AddSnapshot(ctx, sw, a, time.Time{}, bfOf(10)), ErrInvalid},
		{"snapshot wrong size", s.AddSnapshot(ctx, sw, a, t0, bfOf(11)), ErrInvalid},
		{"snapshot bad addr", s.AddSnapshot(ctx, sw, netip.AddrPort{}, t0, bfOf(10)), ErrInvalid},
		{"snapshot unknown swarm", s.AddSnapshot(ctx, 99, a, t0, bfOf(10)), ErrNotFound},
		{"have out of range", s.AddHave(ctx, sw, a, t0, 10), ErrInvalid},
		{"have negative", s.AddHave(ctx, sw, a, t0, -1), ErrInvalid},
		{"have unknown swarm", s.AddHave(ctx, 99, a, t0, 1), ErrNotFound},
		{"conn no outcome", s.AddConnEvent(ctx, sw, ConnEvent{Addr: a, At: t0}), ErrInvalid},
		{"conn unknown swarm", s.AddConnEvent(ctx, 99, ConnEvent{Addr: a, At: t0, Outcome: ConnOK}), ErrNotFound},
		{"probe NaN", func() error {
			_, err := s.AddProbe(ctx, sw, ProbeRecord{Addr: a, At: t0, Outcome: "ok", ThroughputBytesPerSec: math.Inf(1)})
			return err
		}(), ErrInvalid},
		{"probe bad json", func() error {
			_, err := s.AddProbe(ctx, sw, ProbeRecord{Addr: a, At: t0, Outcome: "ok", Result: json.RawMessage("{")})
			return err
		}(), ErrInvalid},
		{"probe huge json", func() error {
			big := json.RawMessage(`"` + strings.Repeat("x", maxJSON) + `"`)
			_, err := s.AddProbe(ctx, sw, ProbeRecord{Addr: a, At: t0, Outcome: "ok", Result: big})
			return err
		}(), ErrInvalid},
		{"run unknown swarm", func() error { _, err := s.StartRun(ctx, 99, t0, nil); return err }(), ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Fatalf("err = %v, want %v", tt.err, tt.want)
			}
		})
	}
	// Nothing of the above was stored.
	peers, err := s.Peers(ctx, sw)
	if err != nil || len(peers) != 0 {
		t.Fatalf("Peers = %v, %v; want none", peers, err)
	}
}

// TestSnapshotReconstruction grows random bitfields (with the odd loss, which
// forces a full snapshot) and checks that what comes back equals what went
// in, across full-snapshot intervals and a reopen that empties the delta
// cache.
func TestSnapshotReconstruction(t *testing.T) {
	for _, every := range []int{1, 2, 5, 32} {
		t.Run(fmt.Sprintf("full every %d", every), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(every), 7))
			path := filepath.Join(t.TempDir(), "audit.db")
			ctx := testCtx(t)
			const n = 777
			s, err := Open(ctx, path, WithFullSnapshotEvery(every))
			if err != nil {
				t.Fatal(err)
			}
			sw := mustSwarm(t, s, SwarmInfo{InfoHash: ih(1), NumPieces: n})
			peers := make([]netip.AddrPort, 6)
			cur := make([]bitfield.Bitfield, len(peers))
			want := make(map[netip.AddrPort][]TimedBitfield)
			for i := range peers {
				peers[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}), 6881)
				cur[i] = bitfield.New(n)
			}
			at := t0
			for step := 0; step < 120; step++ {
				if step == 60 {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					if s, err = Open(ctx, path, WithFullSnapshotEvery(every)); err != nil {
						t.Fatal(err)
					}
				}
				i := rng.IntN(len(peers))
				bf := cur[i].Clone()
				switch r := rng.IntN(20); {
				case r == 0: // lost pieces (a re-check, or a lie)
					for k := 0; k < 5; k++ {
						bf.Clear(rng.IntN(n))
					}
				case r < 3: // no change
				case r < 10: // sequential run
					start := rng.IntN(n)
					for k := start; k < min(n, start+rng.IntN(40)); k++ {
						bf.Set(k)
					}
				default: // scattered
					for k := rng.IntN(30); k > 0; k-- {
						bf.Set(rng.IntN(n))
					}
				}
				at = at.Add(time.Duration(rng.IntN(90)+1) * time.Second)
				if err := s.AddSnapshot(ctx, sw, peers[i], at, bf); err != nil {
					t.Fatal(err)
				}
				want[peers[i]] = append(want[peers[i]], TimedBitfield{at, bf.Clone()})
				cur[i] = bf.Clone()
				bf.Set(rng.IntN(n)) // mutating the caller's copy afterwards must not matter
			}
			got, err := s.Snapshots(ctx, sw)
			if err != nil {
				t.Fatal(err)
			}
			for p, ws := range want {
				if len(got[p]) != len(ws) {
					t.Fatalf("%s: %d snapshots, want %d", p, len(got[p]), len(ws))
				}
				for k := range ws {
					if !got[p][k].Bitfield.Equal(ws[k].Bitfield) || !got[p][k].At.Equal(ws[k].At) {
						t.Fatalf("%s snapshot %d differs", p, k)
					}
				}
			}
			kinds := snapshotKinds(t, s)
			t.Logf("snapshot kinds stored: %v", kinds)
			if every == 1 && kinds[kindDelta] != 0 {
				t.Fatalf("full every 1 stored %d deltas", kinds[kindDelta])
			}
			if every == 32 && kinds[kindDelta] < 60 {
				t.Fatalf("only %d of 120 snapshots stored as deltas: %v", kinds[kindDelta], kinds)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func snapshotKinds(t *testing.T, s *Store) map[int]int {
	t.Helper()
	rows, err := s.r.QueryContext(testCtx(t), `SELECT kind, COUNT(*) FROM obs_snapshots GROUP BY kind`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var k, c int
		if err := rows.Scan(&k, &c); err != nil {
			t.Fatal(err)
		}
		out[k] = c
	}
	return out
}

// TestTimeIndexes: on PostgreSQL the append-only tables have BRIN indexes
// on their time (migration 4); on SQLite the step is recorded with nothing
// created, so both engines are at the same version.
func TestTimeIndexes(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	v, err := currentVersion(ctx, s.r)
	if err != nil || v != schemaVersion(migrations) {
		t.Fatalf("version %d, %v; want %d", v, err, schemaVersion(migrations))
	}
	if s.d.name != postgresDialect.name {
		return
	}
	for _, idx := range []string{"obs_snapshots_at", "obs_haves_at", "obs_have_batches_at", "obs_conn_at", "probes_at", "announces_at"} {
		var def string
		if err := s.r.QueryRowContext(ctx, `SELECT indexdef FROM pg_indexes WHERE indexname = $1`, idx).Scan(&def); err != nil {
			t.Fatalf("%s: %v", idx, err)
		}
		if !strings.Contains(strings.ToLower(def), "using brin (at_us)") {
			t.Errorf("%s: %s", idx, def)
		}
	}
}
