package swarmsim

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/simulation/cheat"
	"github.com/swarmaudit/swarmaudit/internal/trackerserver"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

func startTracker(t testing.TB, interval time.Duration) (*trackerserver.Server, *reported.MemoryRecorder) {
	t.Helper()
	rec := &reported.MemoryRecorder{}
	srv, err := trackerserver.New(trackerserver.Config{HTTPAddr: "127.0.0.1:0", Interval: interval, Recorder: rec,
		MaxPeersPerReply: 100, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, rec
}

// limiterBurst is what a rate-limited peer may send beyond rate × time.
const limiterBurst = 2 * limiterChunk

// checkData verifies, independently of the peer's own checks, that every
// piece a leecher holds hashes to the torrent's piece hash and that it holds
// the payload byte for byte.
func checkData(t *testing.T, i int, p *Peer, tor *torrentmeta.Torrent, payload *Payload) {
	t.Helper()
	data := p.Data()
	have := p.Have()
	for piece := range tor.NumPieces {
		off := int64(piece) * tor.PieceLength
		if !have.Has(piece) {
			t.Errorf("peer %d lacks piece %d", i, piece)
			continue
		}
		if !tor.VerifyPiece(piece, data[off:off+tor.PieceSize(piece)]) {
			t.Errorf("peer %d holds piece %d with the wrong hash", i, piece)
		}
	}
	if !bytes.Equal(data, payload.Data) {
		t.Errorf("peer %d: payload differs from the original", i)
	}
}

// TestSwarm50 runs 50 peers against the embedded tracker: 3 seeders, one
// seeder serving bad data, and leechers with mixed encryption policies,
// starting pieces and misbehaviour, every peer rate-limited. Every leecher
// must complete with a byte-exact payload, the bad peer must be banned and
// no one else, nobody may upload faster than its limit, honest announces
// must equal the truth and the liars' must not.
func TestSwarm50(t *testing.T) {
	payload, tor, err := NewPayload("swarm50.bin", 2<<20, 32<<10, 50)
	if err != nil {
		t.Fatal(err)
	}
	srv, rec := startTracker(t, 2*time.Second)
	encs := []Encryption{EncPreferred, EncRequired, EncDisabled}
	specs := []PeerSpec{
		{Role: RoleSeeder, Encryption: EncRequired, UploadRate: 2 << 20},
		{Role: RoleSeeder, Encryption: EncPreferred, UploadRate: 2 << 20, Lie: Lie{Kind: LieMultiply, Factor: 3}},
		{Role: RoleSeeder, Encryption: EncDisabled, UploadRate: 2 << 20, Lie: Lie{Kind: LieInflate, Rate: 1 << 20}},
		{Role: RoleSeeder, Encryption: EncPreferred, UploadRate: 1 << 20, BadData: true},
	}
	for i := len(specs); i < 50; i++ {
		s := PeerSpec{Role: RoleLeecher, Encryption: encs[i%3], Have: float64(i%5) / 10, UploadRate: 1 << 20}
		switch i {
		case 10, 11:
			s.Unconnectable = true
		case 12:
			s.Lie = Lie{Kind: LieUnderreportDownload}
		case 13:
			s.NeverUnchoke = true
		case 14:
			s.DownloadRate = 1 << 20
		}
		specs = append(specs, s)
	}
	// A fake announcer from internal/cheat: announces uploads from a port
	// where nothing listens.
	specs = append(specs, PeerSpec{Role: RoleSeeder, Cheat: cheat.Ghost, CheatRate: 1 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sw, err := StartSwarm(ctx, SwarmConfig{
		Payload: payload, InfoBytes: tor.InfoBytes, Peers: specs, Tracker: srv.HTTPURL(),
		AnnounceInterval: 2 * time.Second, Seed: 50, KeepData: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if len(sw.Peers()) != 50 || len(sw.Truth()) != 51 {
		t.Fatalf("%d peers", len(sw.Peers()))
	}
	// An unconnectable peer's announced port refuses connections.
	if c, err := net.DialTimeout("tcp", sw.Peers()[10].Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("unconnectable peer accepted a connection")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("unconnectable peer: %v, want connection refused", err)
	}
	start := time.Now()
	if err := sw.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("50 peers complete in %v", time.Since(start).Round(time.Millisecond))
	// The ghost claims upload from its second announce on; wait for one.
	for sw.Truth()[50].Reported.Uploaded == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the ghost never claimed an upload")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := sw.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	closed := time.Now()

	truth := sw.Truth()
	ghost := truth[50]
	truth = truth[:50]
	bad := map[[20]byte]bool{truth[3].PeerID: true}
	badBanned := false
	var total struct{ up, down int64 }
	var busiest float64 // the largest share of its upload allowance a peer used
	for i, tr := range truth {
		p := sw.Peers()[i]
		total.up += tr.Uploaded
		total.down += tr.Downloaded
		if tr.Role == RoleLeecher {
			checkData(t, i, p, tor, payload)
			if tr.Downloaded < int64(len(payload.Data))-int64(tr.StartPieces)*tor.PieceLength {
				t.Errorf("peer %d downloaded %d bytes, less than it lacked", i, tr.Downloaded)
			}
		}
		if !tr.Complete || tr.Left != 0 {
			t.Errorf("peer %d: complete %v, left %d", i, tr.Complete, tr.Left)
		}
		for _, b := range tr.Bans {
			if !bad[b.PeerID] {
				t.Errorf("peer %d banned honest peer %q: %s", i, b.PeerID, b.Reason)
			}
			badBanned = true
		}
		if tr.UploadRate > 0 {
			limit := int64(tr.UploadRate*closed.Sub(tr.Started).Seconds()) + limiterBurst
			busiest = max(busiest, float64(tr.Uploaded)/float64(limit))
			if tr.Uploaded > limit {
				t.Errorf("peer %d uploaded %d bytes, over its limit of %d", i, tr.Uploaded, limit)
			}
		}
		if tr.DownloadRate > 0 {
			// What it received beyond the cap waited in socket buffers only.
			limit := int64(tr.DownloadRate*closed.Sub(tr.Started).Seconds()) + limiterBurst + 1<<20
			if tr.Downloaded > limit {
				t.Errorf("peer %d downloaded %d bytes, over its limit of %d", i, tr.Downloaded, limit)
			}
		}
	}
	// Whether a leecher asks the bad-data seeder for a piece before the
	// others complete it is up to timing (a loaded CI once finished the
	// swarm without it); TestBadDataBanned checks the ban on its own.
	switch {
	case truth[3].Uploaded == 0:
		t.Log("the bad-data seeder was never asked for data: bans are left to TestBadDataBanned")
	case !badBanned:
		t.Error("the bad-data seeder served data and no leecher banned it")
	}
	t.Logf("total uploaded %d, downloaded %d; the busiest peer used %.0f%% of its upload allowance", total.up, total.down, 100*busiest)

	// Announces: the last one of each peer is its stopped announce with its
	// final counters, true for the honest and false for the liars.
	last := map[[20]byte]reported.Announce{}
	events := map[[20]byte][]reported.Event{}
	honest := map[[20]byte]bool{}
	for _, tr := range truth {
		honest[tr.PeerID] = tr.Lie.Kind == LieNone
	}
	for _, a := range rec.Announces() {
		if a.InfoHash != payload.InfoHash {
			t.Fatalf("announce for info hash %x", a.InfoHash)
		}
		if prev, ok := last[a.PeerID]; ok && honest[a.PeerID] {
			if a.Uploaded < prev.Uploaded || a.Downloaded < prev.Downloaded || a.Left > prev.Left {
				t.Errorf("honest counters went backwards: %+v then %+v", prev, a)
			}
		}
		last[a.PeerID] = a
		events[a.PeerID] = append(events[a.PeerID], a.Event)
	}
	if g, ok := last[ghost.PeerID]; !ok || ghost.Cheat != cheat.Ghost || ghost.Uploaded != 0 || g.Uploaded == 0 ||
		g.Uploaded != ghost.Reported.Uploaded || g.Event != reported.EventStopped || g.Port != ghost.Addr.Port() {
		t.Errorf("ghost: truth %+v, last announce %+v", ghost, g)
	}
	for i, tr := range truth {
		a, ok := last[tr.PeerID]
		if !ok {
			t.Errorf("peer %d never announced", i)
			continue
		}
		ev := events[tr.PeerID]
		completed := 0
		for _, e := range ev {
			if e == reported.EventCompleted {
				completed++
			}
		}
		if ev[0] != reported.EventStarted || a.Event != reported.EventStopped || (tr.Role == RoleLeecher) != (completed == 1) || completed > 1 {
			t.Errorf("peer %d (%s) announced events %v", i, tr.Role, ev)
		}
		if a.Port != tr.Addr.Port() || a.Left != 0 || tr.Reported.Event != reported.EventStopped {
			t.Errorf("peer %d: last announce %+v, truth %+v", i, a, tr)
		}
		if a.Uploaded != tr.Reported.Uploaded || a.Downloaded != tr.Reported.Downloaded {
			t.Errorf("peer %d: tracker recorded up %d down %d, peer says it sent %d %d", i, a.Uploaded, a.Downloaded, tr.Reported.Uploaded, tr.Reported.Downloaded)
		}
		honestUp, honestDown := a.Uploaded == tr.Uploaded, a.Downloaded == tr.Downloaded
		switch tr.Lie.Kind {
		case LieNone:
			if !honestUp || !honestDown {
				t.Errorf("honest peer %d announced up %d down %d, truth %d %d", i, a.Uploaded, a.Downloaded, tr.Uploaded, tr.Downloaded)
			}
		case LieMultiply:
			if honestUp || a.Uploaded != int64(float64(tr.Uploaded)*tr.Lie.Factor) || !honestDown {
				t.Errorf("multiplier %d announced up %d, truth %d", i, a.Uploaded, tr.Uploaded)
			}
		case LieInflate:
			if a.Uploaded <= tr.Uploaded || !honestDown {
				t.Errorf("inflater %d announced up %d, truth %d", i, a.Uploaded, tr.Uploaded)
			}
		case LieUnderreportDownload:
			if honestDown || a.Downloaded != tr.Downloaded/10 || !honestUp {
				t.Errorf("under-reporter %d announced down %d, truth %d", i, a.Downloaded, tr.Downloaded)
			}
		}
	}
}

// TestBadDataBanned: leechers that get bad blocks ban the peer that sent
// them and still complete from the honest seeder.
func TestBadDataBanned(t *testing.T) {
	payload, _, err := NewPayload("bad.bin", 512<<10, 16<<10, 7)
	if err != nil {
		t.Fatal(err)
	}
	specs := []PeerSpec{
		{Role: RoleSeeder, BadData: true},
		{Role: RoleSeeder, UploadRate: 2 << 20},
		{Role: RoleLeecher}, {Role: RoleLeecher}, {Role: RoleLeecher},
	}
	sw := runToCompletion(t, SwarmConfig{Payload: payload, Peers: specs, Seed: 3, KeepData: true})
	truth := sw.Truth()
	for i, tr := range truth[2:] {
		if !bytes.Equal(sw.Peers()[i+2].Data(), payload.Data) {
			t.Errorf("leecher %d: payload differs", i)
		}
		if tr.HashFailures == 0 {
			continue // it never got a block from the bad seeder
		}
		if len(tr.Bans) != 1 || tr.Bans[0].PeerID != truth[0].PeerID || tr.Bans[0].Addr != truth[0].Addr {
			t.Errorf("leecher %d had %d hash failures and bans %+v", i, tr.HashFailures, tr.Bans)
		}
		if tr.Wasted < payload.PieceLength {
			t.Errorf("leecher %d: %d bytes wasted for %d hash failures", i, tr.Wasted, tr.HashFailures)
		}
	}
	if truth[0].Uploaded == 0 {
		t.Error("the bad seeder served nothing; the test did not exercise bans")
	}
}

// TestUploadSlots: a seeder with one upload slot and a slow rate serves
// leechers in turn (rotation), and never beyond its rate.
func TestUploadSlots(t *testing.T) {
	payload, _, err := NewPayload("slots.bin", 256<<10, 16<<10, 9)
	if err != nil {
		t.Fatal(err)
	}
	specs := []PeerSpec{{Role: RoleSeeder, UploadRate: 512 << 10}}
	for range 3 {
		// Leechers that cannot upload: only the seeder serves.
		specs = append(specs, PeerSpec{Role: RoleLeecher, NeverUnchoke: true})
	}
	sw := runToCompletion(t, SwarmConfig{Payload: payload, Peers: specs, Seed: 4,
		UploadSlots: 1, ChokeInterval: 200 * time.Millisecond})
	closed := time.Now()
	truth := sw.Truth()
	seed := truth[0]
	if want := 3 * int64(len(payload.Data)); seed.Uploaded < want {
		t.Errorf("seeder uploaded %d, want at least %d (leechers only had it)", seed.Uploaded, want)
	}
	if limit := int64(seed.UploadRate*closed.Sub(seed.Started).Seconds()) + limiterBurst; seed.Uploaded > limit {
		t.Errorf("seeder uploaded %d, over its limit %d", seed.Uploaded, limit)
	}
	for i, tr := range truth[1:] {
		if tr.Uploaded != 0 {
			t.Errorf("never-unchoking leecher %d uploaded %d", i, tr.Uploaded)
		}
	}
}

func TestStartSwarmErrors(t *testing.T) {
	payload, _, err := NewPayload("e.bin", 64<<10, 16<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	leech := []PeerSpec{{Role: RoleLeecher}}
	tests := []struct {
		name string
		cfg  SwarmConfig
		want error
	}{
		{"no payload", SwarmConfig{Peers: leech}, ErrSwarmConfig},
		{"no peers", SwarmConfig{Payload: payload}, ErrSwarmConfig},
		{"bad role", SwarmConfig{Payload: payload, Peers: []PeerSpec{{Role: "observer"}}}, ErrSwarmConfig},
		{"bad fraction", SwarmConfig{Payload: payload, Peers: []PeerSpec{{Role: RoleLeecher, Have: 1.5}}}, ErrSwarmConfig},
		{"bad encryption", SwarmConfig{Payload: payload, Peers: []PeerSpec{{Role: RoleLeecher, Encryption: "rot13"}}}, ErrSwarmConfig},
		{"bad lie", SwarmConfig{Payload: payload, Peers: []PeerSpec{{Role: RoleSeeder, Lie: Lie{Kind: LieMultiply}}}}, ErrBadLie},
		{"unknown lie", SwarmConfig{Payload: payload, Peers: []PeerSpec{{Role: RoleSeeder, Lie: Lie{Kind: "fib"}}}}, ErrBadLie},
		{"cheater without tracker", SwarmConfig{Payload: payload, Peers: []PeerSpec{{Role: RoleSeeder, Cheat: "ghost"}}}, ErrSwarmConfig},
		{"public IP", SwarmConfig{Payload: payload, Peers: leech, IP: "192.0.2.1"}, ErrNotLoopback},
		{"udp tracker", SwarmConfig{Payload: payload, Peers: leech, Tracker: "udp://127.0.0.1:1/announce"}, ErrSwarmConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sw, err := StartSwarm(context.Background(), tt.cfg)
			if err == nil {
				sw.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

// TestTrackerOffLoopbackRefused: a tracker URL naming an address off
// loopback is never contacted.
func TestTrackerOffLoopbackRefused(t *testing.T) {
	if err := loopbackOnly("tcp", "192.0.2.7:80", nil); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("192.0.2.7: %v", err)
	}
	if err := loopbackOnly("tcp", "127.0.0.1:80", nil); err != nil {
		t.Errorf("127.0.0.1: %v", err)
	}
	if err := loopbackOnly("tcp", "[::1]:80", nil); err != nil {
		t.Errorf("::1: %v", err)
	}
}

// runToCompletion starts a swarm, waits (at most a minute) until every
// downloading peer is complete, and closes it.
func runToCompletion(t *testing.T, cfg SwarmConfig) *Swarm {
	t.Helper()
	sw, err := StartSwarm(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sw.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	sw.Close()
	return sw
}
