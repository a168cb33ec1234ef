package serve

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/evidence/trackerdb"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/trackerserver"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// TestServeWatchFolder runs the service end to end on two simulated swarms
// whose peers announce to its embedded tracker, one seeder in each
// reporting three times its upload: both swarms are audited from the
// watch folder at once, judged on the interval and served by the API
// (with the ×3 seeder flagged) and the metrics; removing a torrent file
// stops its swarm; cancelling stops the service cleanly.
func TestServeWatchFolder(t *testing.T) {
	dir := t.TempDir()
	watch := filepath.Join(dir, "watch")
	if err := os.Mkdir(watch, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := store.Open(ctx, testclients.StoreDB(t, filepath.Join(dir, "serve.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vc := verdict.DefaultConfig()
	vc.SlackBytes, vc.Estimate.ClockSlack, vc.BurstWindow = 4<<20, estimate.SameClockSlack, 2*time.Second
	svc, err := New(Config{
		Store: st, WatchDir: watch, PollEvery: 200 * time.Millisecond, JudgeEvery: 2 * time.Second,
		Collect: collect.Config{SnapshotInterval: time.Second, ProbeInterval: 3 * time.Second, ProbeBytes: 256 << 10, ProbeTimeout: 5 * time.Second, Watch: true},
		Budget:  collect.NewBudget(64, 4, 0, 256<<10),
		Verdict: vc,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := trackerserver.New(trackerserver.Config{HTTPAddr: "127.0.0.1:0", Interval: 2 * time.Second, MinInterval: time.Second, Recorder: svc})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	api := httptest.NewServer(svc.Handler())
	defer api.Close()
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()

	var hashes []infohash.T
	var files []string
	for i := range 2 {
		payload, tor, err := swarmsim.NewPayload(fmt.Sprintf("serve-%d.bin", i), 8<<20, 128<<10, uint64(10+i))
		if err != nil {
			t.Fatal(err)
		}
		specs := []swarmsim.PeerSpec{
			{Role: swarmsim.RoleSeeder, Have: 1, UploadRate: 1 << 20},
			{Role: swarmsim.RoleSeeder, Have: 1, UploadRate: 1 << 20, Lie: swarmsim.Lie{Kind: swarmsim.LieMultiply, Factor: 3}},
			{Role: swarmsim.RoleLeecher, UploadRate: 512 << 10, DownloadRate: 1 << 20},
			{Role: swarmsim.RoleLeecher, UploadRate: 512 << 10, DownloadRate: 1 << 20},
		}
		sw, err := swarmsim.StartSwarm(ctx, swarmsim.SwarmConfig{Payload: payload, InfoBytes: tor.InfoBytes, Peers: specs,
			Tracker: srv.HTTPURL(), AnnounceInterval: 2 * time.Second, Seed: uint64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer sw.Close()
		files = append(files, writeTorrent(t, watch, tor, srv.HTTPURL()))
		hashes = append(hashes, tor.InfoHash)
	}

	// Both swarms judged, each with its ×3 seeder flagged.
	flagged := func() bool {
		var got []SwarmStatus
		getJSON(t, api.URL+"/api/v1/swarms", &got)
		n := 0
		for _, s := range got {
			if s.Verdicts["misreporting"]+s.Verdicts["suspect"] >= 1 {
				n++
			}
		}
		return len(got) == 2 && n == 2
	}
	waitFor(t, ctx, 90*time.Second, "both swarms judged with their cheater flagged", flagged)
	var rep struct {
		Summary struct {
			Verdicts map[string]int `json:"verdicts"`
		} `json:"summary"`
	}
	getJSON(t, api.URL+"/api/v1/swarms/"+hashes[0].HexString(), &rep)
	if rep.Summary.Verdicts["misreporting"]+rep.Summary.Verdicts["suspect"] == 0 {
		t.Errorf("the swarm's report flags nobody: %v", rep.Summary.Verdicts)
	}
	// The last hour's verdicts: the whole run is in it, so its cheater too.
	var hour struct {
		Summary struct {
			Verdicts map[string]int `json:"verdicts"`
		} `json:"summary"`
	}
	getJSON(t, api.URL+"/api/v1/swarms/"+hashes[0].HexString()+"?window=hour", &hour)
	if hour.Summary.Verdicts["misreporting"]+hour.Summary.Verdicts["suspect"] == 0 {
		t.Errorf("the last hour's report flags nobody: %v", hour.Summary.Verdicts)
	}
	resp, err := http.Get(api.URL + "/api/v1/users?window=week")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("window=week: %s, want 400", resp.Status)
	}
	metrics := get(t, api.URL+"/metrics")
	for _, want := range []string{"swarmaudit_swarms 2", "swarmaudit_peers{state=\"reached\"}", "swarmaudit_announces_recorded_total", "swarmaudit_judge_duration_seconds_count"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	if page := get(t, api.URL+"/"); !strings.Contains(page, "serve-0.bin") || !strings.Contains(page, "serve-1.bin") {
		t.Errorf("dashboard:\n%s", page)
	}

	// A file removed: its swarm stops.
	if err := os.Remove(files[1]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, 10*time.Second, "the removed swarm dropped", func() bool {
		var got []SwarmStatus
		getJSON(t, api.URL+"/api/v1/swarms", &got)
		return len(got) == 1 && got[0].InfoHash == hashes[0].HexString()
	})
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	// The final judgement of each swarm is in the store.
	bg := context.Background()
	for _, ih := range hashes {
		sw, err := st.LookupSwarm(bg, ih)
		if err != nil {
			t.Fatal(err)
		}
		vs, err := st.Verdicts(bg, sw.ID)
		if err != nil || len(vs) == 0 {
			t.Errorf("swarm %s: %d verdicts stored, %v", ih.HexString(), len(vs), err)
		}
	}
}

// TestUsersAcrossSwarms: a user flagged in two swarms ranks above one
// flagged in one, with the confidences combined; passkeys never show.
func TestUsersAcrossSwarms(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	judged := func(vs ...verdict.Verdict) *audit.Result {
		return &audit.Result{Report: &verdict.Report{Verdicts: vs}, Evidence: &audit.Evidence{PasskeyKey: key}}
	}
	v := func(passkey string, s verdict.Status, c float64) verdict.Verdict {
		return verdict.Verdict{Identity: verdict.Identity{Passkey: passkey}, Status: s, Confidence: c}
	}
	s := &Service{swarms: map[infohash.T]*swarm{}}
	for i, res := range []*audit.Result{
		judged(v("alicepasskey0001", verdict.StatusSuspect, 0.5), v("bobpasskey000001", verdict.StatusOK, 0.9)),
		judged(v("alicepasskey0001", verdict.StatusMisreporting, 0.6), v("carolpasskey0001", verdict.StatusSuspect, 0.7)),
	} {
		sw := &swarm{torrent: &torrentmeta.Torrent{InfoHash: infohash.T{byte(i + 1)}, Name: fmt.Sprint(i)}}
		sw.setJudged(s.judgementOf(res), nil)
		s.swarms[sw.torrent.InfoHash] = sw
	}
	us := s.users()
	if len(us) != 3 {
		t.Fatalf("%d users: %+v", len(us), us)
	}
	a := us[0]
	if a.FlaggedSwarms != 2 || a.Swarms != 2 || a.Worst != "misreporting" || a.Confidence < 0.79 || a.Confidence > 0.81 {
		t.Errorf("the user flagged twice: %+v", a)
	}
	if us[1].FlaggedSwarms != 1 || us[2].FlaggedSwarms != 0 || us[2].Worst != "ok" {
		t.Errorf("order or counts: %+v", us)
	}
	b, _ := json.Marshal(us)
	for _, pk := range []string{"alicepasskey0001", "bobpasskey000001", "carolpasskey0001"} {
		if strings.Contains(string(b), pk) {
			t.Errorf("a passkey shows: %s", b)
		}
	}
}

func writeTorrent(t *testing.T, dir string, tor *torrentmeta.Torrent, announce string) string {
	t.Helper()
	b, err := bencode.Marshal(metainfo.MetaInfo{InfoBytes: tor.InfoBytes, Announce: announce})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, tor.Name+".torrent")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(get(t, url)), v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// waitFor polls cond every 200 ms until it holds or the limit passes.
func waitFor(t *testing.T, ctx context.Context, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("context ended waiting until %s", what)
		case <-tick.C:
		}
	}
}

// TestServeTrackerDatabase: the service reads the reports a UNIT3D tracker
// recorded in its own database (a real MariaDB with UNIT3D's tables), audits
// the reporting peers on the wire, and flags the user whose report is
// impossible, by user id, across the API.
func TestServeTrackerDatabase(t *testing.T) {
	for _, mode := range []string{"watch folder", "the tracker's swarms"} {
		t.Run(mode, func(t *testing.T) { testServeTrackerDatabase(t, mode == "the tracker's swarms") })
	}
}

// testServeTrackerDatabase runs it with the torrent in the watch folder,
// or (fromTracker) with an empty watch folder and the swarm list read
// from the tracker's database, the metadata fetched from the peers its
// rows name.
func testServeTrackerDatabase(t *testing.T, fromTracker bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dsn := testclients.StartMariaDB(ctx, t)
	db, err := sql.Open("mysql", dsn+"&multiStatements=true")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ddl, err := os.ReadFile("../evidence/trackerdb/testdata/unit3d.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, string(ddl)); err != nil {
		t.Fatal(err)
	}
	payload, tor, err := swarmsim.NewPayload("db-swarm.bin", 4<<20, 128<<10, 77)
	if err != nil {
		t.Fatal(err)
	}
	seeder, err := swarmsim.StartPeer("127.0.0.1:0", swarmsim.PeerConfig{Payload: payload, Have: bitfield.Full(tor.NumPieces), UploadRate: 1 << 20, InfoBytes: tor.InfoBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer seeder.Close()
	booster, err := swarmsim.StartPeer("127.0.0.1:0", swarmsim.PeerConfig{Payload: payload, Have: bitfield.Full(tor.NumPieces), UploadRate: 1 << 20, InfoBytes: tor.InfoBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer booster.Close()
	if _, err := db.ExecContext(ctx, "INSERT INTO torrents (id, name, info_hash) VALUES (5, 'db-swarm.bin', ?)", tor.InfoHash[:]); err != nil {
		t.Fatal(err)
	}
	// Two seeders, no leecher: nobody could have downloaded anything. The
	// booster's user (7) claims 400 MiB uploaded, the honest one (8) none.
	now := time.Now().UTC().Truncate(time.Second)
	ip := netip.MustParseAddr("127.0.0.1").As4()
	insert := "INSERT INTO peers (peer_id, ip, port, agent, uploaded, downloaded, `left`, seeder, torrent_id, user_id, created_at, updated_at) VALUES (?, ?, ?, 'x', ?, 0, 0, 1, 5, ?, ?, ?)"
	for _, row := range []struct {
		pid  string
		port uint16
		up   int64
		user int
	}{
		{"-qB4650-booster00001", booster.Addr().Port(), 0, 7},
		{"-TR4060-honest000001", seeder.Addr().Port(), 0, 8},
	} {
		if _, err := db.ExecContext(ctx, insert, []byte(row.pid), ip[:], row.port, row.up, row.user, now, now); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	watch := filepath.Join(dir, "watch")
	if err := os.Mkdir(watch, 0o755); err != nil {
		t.Fatal(err)
	}
	if !fromTracker {
		writeTorrent(t, watch, tor, "http://127.0.0.1:1/announce")
	}
	st, err := store.Open(ctx, testclients.StoreDB(t, filepath.Join(dir, "serve.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tdb, err := trackerdb.New(ctx, trackerdb.Config{DB: db, Schema: trackerdb.UNIT3D})
	if err != nil {
		t.Fatal(err)
	}
	vc := verdict.DefaultConfig()
	vc.SlackBytes, vc.Estimate.ClockSlack = 4<<20, estimate.SameClockSlack
	svc, err := New(Config{
		Store: st, WatchDir: watch, PollEvery: 200 * time.Millisecond, JudgeEvery: time.Second,
		TrackerDB: tdb, TrackerDBEvery: 300 * time.Millisecond, TrackerSwarms: fromTracker,
		Collect: collect.Config{SnapshotInterval: time.Second, ProbeInterval: 2 * time.Second, ProbeBytes: 256 << 10, ProbeTimeout: 5 * time.Second, Watch: true},
		Verdict: vc,
	})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(svc.Handler())
	defer api.Close()
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	// The booster announces again three seconds later with 400 MiB more.
	waitFor(t, ctx, 30*time.Second, "the first reports read and the peers reached", func() bool {
		var got []SwarmStatus
		getJSON(t, api.URL+"/api/v1/swarms", &got)
		return len(got) == 1 && got[0].Progress.Reached == 2
	})
	var got []SwarmStatus
	getJSON(t, api.URL+"/api/v1/swarms", &got)
	if want := map[bool]string{false: "watch folder", true: "tracker database"}[fromTracker]; got[0].Source != want || got[0].Name != "db-swarm.bin" {
		t.Errorf("swarm from %q named %q, want from %q", got[0].Source, got[0].Name, want)
	}
	if _, err := db.ExecContext(ctx, "UPDATE peers SET uploaded = ?, updated_at = ? WHERE user_id = 7", 400<<20, now.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, 60*time.Second, "user 7 flagged", func() bool {
		var us []User
		getJSON(t, api.URL+"/api/v1/users", &us)
		return len(us) == 2 && us[0].FlaggedSwarms == 1 && us[1].FlaggedSwarms == 0
	})
	// The cheater's verdict carries its tracker user id, as it is.
	var us []User
	getJSON(t, api.URL+"/api/v1/users", &us)
	if us[0].UserID != "7" || us[0].User != "uid:7" {
		t.Errorf("flagged user %+v, want the tracker's user id 7", us[0])
	}
	var theirs []UserVerdict
	getJSON(t, api.URL+"/api/v1/users/uid:7", &theirs)
	if len(theirs) != 1 || theirs[0].Status != "misreporting" && theirs[0].Status != "suspect" || !strings.HasSuffix(theirs[0].Identity, "|uid:7") {
		t.Errorf("/api/v1/users/uid:7: %+v", theirs)
	}
	if m := get(t, api.URL+"/metrics"); !strings.Contains(m, "swarmaudit_trackerdb_rows_total 3") {
		t.Errorf("metrics: rows read\n%s", m)
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}

// TestServeMagnet: a .magnet file in the watch folder is audited once its
// metadata is fetched from the swarm's peers (BEP 9): here from its x.pe
// peer, which serves the info dictionary.
func TestServeMagnet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	payload, tor, err := swarmsim.NewPayload("magnet-swarm.bin", 1<<20, 64<<10, 91)
	if err != nil {
		t.Fatal(err)
	}
	p, err := swarmsim.StartPeer("127.0.0.1:0", swarmsim.PeerConfig{Payload: payload, Have: bitfield.Full(tor.NumPieces), InfoBytes: tor.InfoBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dir := t.TempDir()
	watch := filepath.Join(dir, "watch")
	if err := os.Mkdir(watch, 0o755); err != nil {
		t.Fatal(err)
	}
	magnet := fmt.Sprintf("magnet:?xt=urn:btih:%s&x.pe=%s\n", tor.InfoHash.HexString(), p.Addr())
	if err := os.WriteFile(filepath.Join(watch, "m.magnet"), []byte(magnet), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, testclients.StoreDB(t, filepath.Join(dir, "serve.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := New(Config{Store: st, WatchDir: watch, PollEvery: 200 * time.Millisecond, JudgeEvery: time.Second,
		Collect: collect.Config{SnapshotInterval: time.Second, ProbeInterval: 2 * time.Second, ProbeBytes: 128 << 10, ProbeTimeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(svc.Handler())
	defer api.Close()
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	waitFor(t, ctx, 60*time.Second, "the magnet's swarm audited under its name, its peer reached", func() bool {
		var got []SwarmStatus
		getJSON(t, api.URL+"/api/v1/swarms", &got)
		return len(got) == 1 && got[0].Name == "magnet-swarm.bin" && got[0].Progress.Reached == 1
	})
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}
