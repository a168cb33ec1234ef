package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/simulation/cheat"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// auditedSwarm is one loopback swarm reporting to swarmaudit's embedded
// tracker while `swarmaudit audit` runs on it.
type auditedSwarm struct {
	dir, torrent, announce string
	payload                string
	ih                     [20]byte
	ctx                    context.Context
	done                   chan error
	output                 string
	report                 string
}

const auditFor = 70 * time.Second

// startAuditedSwarm makes a 32 MiB private torrent announcing to an
// embedded tracker and starts the audit on it; extra are more audit flags
// (later ones win).
func startAuditedSwarm(t *testing.T, seed int64, extra ...string) *auditedSwarm {
	t.Helper()
	return startAuditedSwarmOf(t, seed, func(payload, announce string) (string, [20]byte) {
		return testclients.MakeTorrent(t, testclients.MakePayload(t, payload, 32<<20, seed), 256<<10, []string{announce}, true)
	}, extra...)
}

// startAuditedSwarmOf is startAuditedSwarm with the torrent made by
// makeTorrent, given the directory that is to hold the payload (seed/
// under the swarm's directory) and the tracker's URL; it returns the
// torrent's path and info hash.
func startAuditedSwarmOf(t *testing.T, seed int64, makeTorrent func(payloadDir, announce string) (string, [20]byte), extra ...string) *auditedSwarm {
	t.Helper()
	s := &auditedSwarm{dir: t.TempDir(), done: make(chan error, 1)}
	if keep := os.Getenv("SWARMAUDIT_KEEP_AUDIT"); keep != "" { // for debugging: keep the database
		s.dir = filepath.Join(keep, fmt.Sprint(seed))
		os.RemoveAll(s.dir)
		os.MkdirAll(s.dir, 0o755)
	}
	for _, d := range []string{"seed", "leech"} {
		if err := os.Mkdir(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	trackerAddr := fmt.Sprintf("127.0.0.1:%d", testclients.FreePort(t, "127.0.0.1"))
	s.announce = "http://" + trackerAddr + "/announce"
	s.torrent, s.ih = makeTorrent(filepath.Join(s.dir, "seed"), s.announce)
	tor, err := torrentmeta.Load(s.torrent)
	if err != nil {
		t.Fatal(err)
	}
	s.payload = filepath.Join(s.dir, "seed", tor.Name)
	s.report = filepath.Join(s.dir, "audit.json")
	go func() {
		var err error
		args := append([]string{"audit", "--torrent", s.torrent, "--tracker-listen", trackerAddr,
			"--duration", auditFor.String(), "--db", testclients.StoreDB(t, filepath.Join(s.dir, "audit.db")), "--json-out", s.report,
			"--no-dht", "--no-trackers", "--snapshot-interval", "2s", "--probe-interval", "20s",
			"--probe-bytes", "512KiB", "--probe-timeout", "6s", "--slack", "4MiB",
			"--html-out", filepath.Join(s.dir, "audit.html"), "--csv-out", filepath.Join(s.dir, "peers.csv")}, extra...)
		s.output, err = run(t, args...)
		s.done <- err
	}()
	waitListening(t, trackerAddr)
	var cancel context.CancelFunc
	s.ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return s
}

// start runs a real client on the swarm (a seeder when seed is set).
func (s *auditedSwarm) start(t *testing.T, kind testclients.Kind, torrent string, seed bool, o testclients.Options) *testclients.Client {
	o.Kind, o.TorrentFile, o.Seed = kind, torrent, seed
	if seed {
		o.DataDir = filepath.Dir(s.payload)
	} else {
		o.DataDir = filepath.Join(s.dir, "leech")
	}
	return testclients.Start(s.ctx, t, o)
}

// peerRow is the part of a report's peer row these tests read.
type peerRow struct {
	Address    string  `json:"address"`
	Verdict    string  `json:"verdict"`
	Confidence float64 `json:"confidence"`
	Reasons    []struct {
		Code string `json:"code"`
	} `json:"reasons"`
	Reported *struct {
		Uploaded   int64 `json:"uploaded"`
		Downloaded int64 `json:"downloaded"`
	} `json:"reported"`
	Capacity struct {
		Samples int `json:"samples"`
	} `json:"capacity"`
	BadPieces          int      `json:"bad_pieces"`
	ObservedDownloaded int64    `json:"observed_downloaded"`
	Transport          string   `json:"transport"`
	Reach              []string `json:"reach"`
}

func (p peerRow) uploaded() int64 {
	if p.Reported == nil {
		return 0
	}
	return p.Reported.Uploaded
}

// peerRows are the report's peer rows by address.
type peerRows map[netip.AddrPort]peerRow

// find returns the row of a: by address, else the only row on a's port (a
// client may be reported under another loopback IP than the one it is
// bound to). Two peers can share a port on different IPs, so the port alone
// is not enough when both are in the report.
func (rows peerRows) find(a netip.AddrPort) (peerRow, bool) {
	if r, ok := rows[a]; ok {
		return r, true
	}
	var found []peerRow
	for ap, r := range rows {
		if ap.Port() == a.Port() {
			found = append(found, r)
		}
	}
	if len(found) == 1 {
		return found[0], true
	}
	return peerRow{}, false
}

// finish stops the clients (they announce stopped), waits for the audit
// and returns the report's peer rows.
func (s *auditedSwarm) finish(t *testing.T, clients ...*testclients.Client) peerRows {
	t.Helper()
	for _, c := range clients {
		c.Stop()
	}
	runErr := <-s.done
	if code := exitCode(runErr); code != exitOK && code != exitFlagged {
		t.Fatalf("audit: %v (exit %d)\n%s", runErr, code, s.output)
	}
	t.Logf("audit output:\n%s", s.output)
	for _, f := range []string{"audit.html", "peers.csv"} {
		if st, err := os.Stat(filepath.Join(s.dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	raw, err := os.ReadFile(s.report)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Peers   []peerRow `json:"peers"`
		Summary struct {
			Verdicts map[string]int `json:"verdicts"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	flagged := rep.Summary.Verdicts["misreporting"]+rep.Summary.Verdicts["suspect"] > 0
	if want := map[bool]int{false: exitOK, true: exitFlagged}[flagged]; exitCode(runErr) != want {
		t.Errorf("exit code %d with verdicts %v: want %d", exitCode(runErr), rep.Summary.Verdicts, want)
	}
	rows := peerRows{}
	for _, p := range rep.Peers {
		if ap, err := netip.ParseAddrPort(p.Address); err == nil {
			rows[ap] = p
		}
	}
	return rows
}

// TestAuditRealClientsAndCheaters is the audit's end-to-end check: real
// Transmission and libtorrent clients report to swarmaudit's embedded
// tracker while it watches the swarm, next to the known cheating tools.
// Every cheater must come out misreporting or suspect with the right
// reason, and no honest client misreporting. The ratio proxy runs in a swarm
// of its own: fake announcers that may be downloading out of sight widen
// every availability bound (docs/estimation.md), which is the cover a
// proxy user would lack in a swarm of honest peers.
func TestAuditRealClientsAndCheaters(t *testing.T) {
	testclients.Require(t, "transmission-daemon", "libtorrent")
	t.Run("fake announcers", func(t *testing.T) {
		t.Parallel()
		s := startAuditedSwarm(t, 21)
		tr := s.start(t, testclients.Transmission, s.torrent, true, testclients.Options{UploadLimitKiB: 1024, Encryption: testclients.EncRequired})
		// The leecher downloads at 384 KiB/s, about 20 s for the payload: the
		// audit sees it gain pieces (unlimited, a loaded CI could see it only
		// complete).
		leecher := s.start(t, testclients.Libtorrent, s.torrent, false, testclients.Options{IP: "127.0.0.3", Encryption: testclients.EncRequired, DownloadLimitKiB: 384})
		cheaters := map[cheat.Kind]*cheat.Cheater{}
		for i, kind := range cheat.Kinds() {
			c, err := cheat.Start(s.ctx, cheat.Config{Kind: kind, Announce: s.announce, InfoHash: s.ih, Size: 32 << 20, Rate: 2 << 20, Interval: 5 * time.Second, Seed: uint64(i + 1)})
			if err != nil {
				t.Fatal(err)
			}
			cheaters[kind] = c
		}
		time.Sleep(auditFor - 15*time.Second)
		for _, c := range cheaters {
			c.Close()
		}
		rows := s.finish(t, leecher, tr)
		want := map[cheat.Kind][]verdict.Code{
			cheat.Ghost:           {verdict.CodeNeverHandshaked, verdict.CodeUploadExceedsAvailability},
			cheat.Mute:            {verdict.CodeNeverHandshaked, verdict.CodeUploadExceedsAvailability},
			cheat.NoBitfield:      {verdict.CodeNoBitfield, verdict.CodeUploadExceedsAvailability},
			cheat.LeecherFollower: {verdict.CodeUploadExceedsAvailability, verdict.CodeNeverHandshaked},
			cheat.FlashSession:    {verdict.CodeUploadWhileAbsent, verdict.CodeUploadExceedsAvailability, verdict.CodeUploadExceedsCapacity},
			cheat.RatioMaster:     {verdict.CodeNeverHandshaked, verdict.CodeUploadExceedsAvailability},
			cheat.JOAL:            {verdict.CodeNeverHandshaked, verdict.CodeUploadExceedsAvailability},
			cheat.Rustatio:        {verdict.CodeNoBitfield, verdict.CodeUploadExceedsAvailability},
			cheat.RatioPy:         {verdict.CodeNeverHandshaked, verdict.CodeUploadExceedsAvailability},
			cheat.SilentSeeder:    {verdict.CodeNeverUnchoked, verdict.CodeUploadExceedsAvailability},
			cheat.FlashBurst:      {verdict.CodeUploadExceedsAvailability, verdict.CodeNeverHandshaked, verdict.CodeUploadWhileAbsent},
		}
		for kind, c := range cheaters {
			v, ok := rows.find(c.Addr)
			if !ok {
				t.Errorf("%s cheater (%s) has no verdict", kind, c.Addr)
				continue
			}
			t.Logf("%s: %s %.2f [%s]", kind, v.Verdict, v.Confidence, codes(v))
			if !flagged(v) {
				t.Errorf("%s cheater: %s [%s]", kind, v.Verdict, codes(v))
			}
			if !hasCode(v, want[kind]...) {
				t.Errorf("%s cheater: reasons [%s], want one of %v", kind, codes(v), want[kind])
			}
		}
		checkHonest(t, rows, map[string]*testclients.Client{"transmission": tr, "libtorrent leecher": leecher})
	})
	t.Run("ratio proxy", func(t *testing.T) {
		t.Parallel()
		s := startAuditedSwarm(t, 22)
		proxy, err := cheat.StartProxy("127.0.0.1", s.announce, 3)
		if err != nil {
			t.Fatal(err)
		}
		defer proxy.Close()
		// The same torrent announcing through the ratio proxy.
		proxied, _ := testclients.MakeTorrent(t, s.payload, 256<<10, []string{proxy.URL}, true)
		// Seeders first, each seen by the audit before the next arrives: a
		// peer first seen with pieces may have gained them just before, so
		// peers that appear together give each other cover.
		tr := s.start(t, testclients.Transmission, s.torrent, true, testclients.Options{UploadLimitKiB: 256, Encryption: testclients.EncPreferred})
		time.Sleep(5 * time.Second)
		booster := s.start(t, testclients.Libtorrent, proxied, true, testclients.Options{UploadLimitKiB: 1024})
		time.Sleep(5 * time.Second)
		leecher := s.start(t, testclients.Libtorrent, s.torrent, false, testclients.Options{IP: "127.0.0.4", Encryption: testclients.EncRequired})
		time.Sleep(auditFor - 25*time.Second)
		rows := s.finish(t, leecher, tr, booster)
		v, ok := rows.find(booster.Addr)
		if !ok {
			t.Fatalf("the client behind the proxy (%s) has no verdict", booster.Addr)
		}
		t.Logf("×3 proxy: %s %.2f [%s] reported up %d", v.Verdict, v.Confidence, codes(v), v.uploaded())
		if !flagged(v) {
			t.Errorf("the ×3 proxy was not caught: %s [%s]", v.Verdict, codes(v))
		}
		checkHonest(t, rows, map[string]*testclients.Client{"transmission": tr, "libtorrent leecher": leecher})
	})
}

// TestAuditCatalogueCheats drives the cheats of docs/cheats.md that only
// the plausible tier catches end to end, from real clients' announces and
// wire: a ×2 proxy among fake seeders that report no download (the
// GreedyTorrent pattern with JOAL and Ratio.py beside it, and a fake
// seeder that shows a full piece set and never unchokes), and real
// leechers whose proxies hide their downloads or report left=0.
func TestAuditCatalogueCheats(t *testing.T) {
	testclients.Require(t, "transmission-daemon", "libtorrent")
	t.Run("x2 proxy among fake seeders", func(t *testing.T) {
		t.Parallel()
		// probes every 12 s: the silent seeder must be seen keeping us
		// choked in several of them
		s := startAuditedSwarm(t, 23, "--probe-interval", "12s")
		proxy, err := cheat.StartProxy("127.0.0.5", s.announce, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer proxy.Close()
		proxied, _ := testclients.MakeTorrent(t, s.payload, 256<<10, []string{proxy.URL}, true)
		var fakes []*cheat.Cheater
		for i, kind := range []cheat.Kind{cheat.RatioPy, cheat.JOAL, cheat.SilentSeeder} {
			rate := 512 << 10
			if kind == cheat.SilentSeeder {
				rate = 1 << 20 // 1 MiB/s, the silent seeder
			}
			c, err := cheat.Start(s.ctx, cheat.Config{Kind: kind, Announce: s.announce, InfoHash: s.ih, Size: 32 << 20, Rate: float64(rate),
				Interval: 5 * time.Second, Seed: uint64(30 + i)})
			if err != nil {
				t.Fatal(err)
			}
			fakes = append(fakes, c)
		}
		tr := s.start(t, testclients.Transmission, s.torrent, true, testclients.Options{UploadLimitKiB: 256, Encryption: testclients.EncPreferred})
		booster := s.start(t, testclients.Libtorrent, proxied, true, testclients.Options{IP: "127.0.0.5", UploadLimitKiB: 1024})
		time.Sleep(5 * time.Second)
		leecher := s.start(t, testclients.Libtorrent, s.torrent, false, testclients.Options{IP: "127.0.0.6", Encryption: testclients.EncPreferred})
		time.Sleep(auditFor - 15*time.Second)
		for _, c := range fakes {
			c.Close()
		}
		rows := s.finish(t, leecher, tr, booster)
		v, ok := rows.find(booster.Addr)
		if !ok {
			t.Fatalf("the client behind the proxy (%s) has no verdict", booster.Addr)
		}
		t.Logf("×2 proxy: %s %.2f [%s] reported up %d", v.Verdict, v.Confidence, codes(v), v.uploaded())
		if !flagged(v) {
			t.Errorf("the ×2 proxy among fake seeders was not caught: %s [%s]", v.Verdict, codes(v))
		}
		silent := fakes[2]
		if v, ok := rows.find(silent.Addr); !ok || !flagged(v) {
			t.Errorf("the silent seeder (%s) was not caught: %+v", silent.Addr, v)
		} else {
			t.Logf("silent seeder: %s %.2f [%s]", v.Verdict, v.Confidence, codes(v))
		}
		honest := map[string]*testclients.Client{"transmission": tr, "libtorrent leecher": leecher}
		checkHonest(t, rows, honest)
		// Not even suspect: a cheater beside them must not make them look
		// bad (an honest seeder that kept us choked once was called
		// never_unchoked because the ×2 proxy's claim was credited).
		for name, c := range honest {
			if v, ok := rows.find(c.Addr); ok && flagged(v) {
				t.Errorf("honest %s flagged beside the cheaters: %s [%s]", name, v.Verdict, codes(v))
			}
		}
	})
	t.Run("hidden downloads and left=0", func(t *testing.T) {
		t.Parallel()
		s := startAuditedSwarm(t, 24)
		hide, err := cheat.StartRewriter("127.0.0.7", s.announce, cheat.Rewrite{HideDownload: true})
		if err != nil {
			t.Fatal(err)
		}
		defer hide.Close()
		leftZero, err := cheat.StartRewriter("127.0.0.8", s.announce, cheat.Rewrite{LeftZero: true})
		if err != nil {
			t.Fatal(err)
		}
		defer leftZero.Close()
		hideTorrent, _ := testclients.MakeTorrent(t, s.payload, 256<<10, []string{hide.URL}, true)
		leftTorrent, _ := testclients.MakeTorrent(t, s.payload, 256<<10, []string{leftZero.URL}, true)
		tr := s.start(t, testclients.Transmission, s.torrent, true, testclients.Options{UploadLimitKiB: 1024, Encryption: testclients.EncPreferred})
		time.Sleep(3 * time.Second)
		hider := s.start(t, testclients.Libtorrent, hideTorrent, false, testclients.Options{IP: "127.0.0.7", UploadLimitKiB: 256})
		zero := s.start(t, testclients.Libtorrent, leftTorrent, false, testclients.Options{IP: "127.0.0.8", UploadLimitKiB: 256})
		time.Sleep(auditFor - 18*time.Second)
		rows := s.finish(t, hider, zero, tr)
		for name, c := range map[string]struct {
			cl   *testclients.Client
			want []verdict.Code
		}{
			"hidden downloads": {hider, []verdict.Code{verdict.CodeDownloadUnderreported, verdict.CodeLeftWithoutDownload}},
			"left=0 leecher":   {zero, []verdict.Code{verdict.CodeLeftInconsistent}},
		} {
			v, ok := rows.find(c.cl.Addr)
			if !ok {
				t.Errorf("%s (%s) has no verdict", name, c.cl.Addr)
				continue
			}
			t.Logf("%s: %s %.2f [%s]", name, v.Verdict, v.Confidence, codes(v))
			if !flagged(v) || !hasCode(v, c.want...) {
				t.Errorf("%s: %s [%s], want suspect or misreporting with one of %v", name, v.Verdict, codes(v), c.want)
			}
		}
		checkHonest(t, rows, map[string]*testclients.Client{"transmission": tr})
	})
}

// checkHonest fails if an honest client is called misreporting.
func checkHonest(t *testing.T, rows peerRows, clients map[string]*testclients.Client) {
	t.Helper()
	for name, c := range clients {
		v, ok := rows.find(c.Addr)
		if !ok {
			t.Errorf("%s (%s) has no verdict", name, c.Addr)
			continue
		}
		t.Logf("%s: %s %.2f [%s] reported up %d", name, v.Verdict, v.Confidence, codes(v), v.uploaded())
		if v.Verdict == string(verdict.StatusMisreporting) {
			t.Errorf("honest %s called misreporting: [%s]", name, codes(v))
		}
	}
}

func codes(v peerRow) string {
	var s []string
	for _, r := range v.Reasons {
		s = append(s, r.Code)
	}
	return strings.Join(s, ",")
}

func flagged(v peerRow) bool {
	return v.Verdict == string(verdict.StatusMisreporting) || v.Verdict == string(verdict.StatusSuspect)
}

func hasCode(v peerRow, codes ...verdict.Code) bool {
	for _, r := range v.Reasons {
		for _, c := range codes {
			if r.Code == string(c) {
				return true
			}
		}
	}
	return false
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nothing listening on %s", addr)
}

// TestAuditV2Swarm audits a BitTorrent v2 swarm (BEP 52) of real libtorrent
// clients: a v2-only torrent of two files (so each file's last piece is
// short), named on the wire and to the tracker by its truncated SHA-256
// info hash. The seeder is probed with its pieces checked against their
// SHA-256 merkle roots, the leecher is watched completing pieces (its
// timeline), and neither honest client is flagged.
//
// python3-libtorrent 2.0.8 at times dies of a segmentation fault in a v2
// swarm before anything reached it (CI saw it twice); a run in which a
// client crashed is run once more, and a second crash fails the test.
func TestAuditV2Swarm(t *testing.T) {
	testclients.Require(t, "libtorrent")
	for attempt := 1; ; attempt++ {
		crashed := ""
		t.Run(fmt.Sprintf("attempt %d", attempt), func(t *testing.T) { auditV2Swarm(t, &crashed) })
		if crashed == "" {
			return
		}
		if attempt == 2 {
			t.Fatalf("a client crashed in both runs, last: %s", crashed)
		}
		t.Logf("a client crashed (%s): running the audit again", crashed)
	}
}

func auditV2Swarm(t *testing.T, crashed *string) {
	s := startAuditedSwarmOf(t, 23, func(payloadDir, announce string) (string, [20]byte) {
		dir := filepath.Join(payloadDir, "v2")
		testclients.MakePayload(t, dir, 5<<20+4321, 23)
		testclients.MakePayload(t, dir, 3<<20, 24)
		path := testclients.MakeTorrentV2(t, dir, 64<<10, []string{announce}, false)
		tor, err := torrentmeta.Load(path)
		if err != nil || !tor.V2 || tor.Hybrid {
			t.Fatalf("v2 torrent: %v", err)
		}
		return path, tor.InfoHash
	}, "--duration", "35s")
	seeder := s.start(t, testclients.Libtorrent, s.torrent, true, testclients.Options{UploadLimitKiB: 1024})
	leecher := s.start(t, testclients.Libtorrent, s.torrent, false, testclients.Options{IP: "127.0.0.3", Encryption: testclients.EncRequired})
	time.Sleep(25 * time.Second) // the audit runs 35 s
	for _, c := range []*testclients.Client{seeder, leecher} {
		if how, ok := c.Crashed(); ok {
			*crashed = how
			s.finish(t, leecher, seeder)
			t.Skipf("%s: not the auditor's doing; its log:\n%s", how, c.Log())
		}
	}
	rows := s.finish(t, leecher, seeder)
	sv, ok1 := rows.find(seeder.Addr)
	lv, ok2 := rows.find(leecher.Addr)
	if !ok1 || !ok2 {
		t.Fatalf("no row for the seeder (%v) or the leecher (%v): %v", ok1, ok2, rows)
	}
	for _, v := range rows {
		if v.BadPieces != 0 {
			t.Errorf("%s sent %d pieces that failed their SHA-256 check", v.Address, v.BadPieces)
		}
	}
	if sv.Capacity.Samples == 0 || lv.ObservedDownloaded == 0 {
		t.Errorf("seeder measured by %d probes; leecher seen downloading %d bytes: want both", sv.Capacity.Samples, lv.ObservedDownloaded)
	}
	checkHonest(t, rows, map[string]*testclients.Client{"libtorrent seeder": seeder, "libtorrent leecher": leecher})
	t.Logf("seeder %s %.2f [%s]; leecher %s %.2f [%s]", sv.Verdict, sv.Confidence, codes(sv), lv.Verdict, lv.Confidence, codes(lv))
}

// TestAuditUTPSwarm: a swarm of real libtorrent clients that take and make
// peer connections over uTP only (BEP 29), audited with default flags
// (--transport auto): both are reached over uTP, the seeder is measured
// and its pieces verified, and both honest clients come out ok.
func TestAuditUTPSwarm(t *testing.T) {
	testclients.Require(t, "libtorrent")
	s := startAuditedSwarm(t, 29, "--duration", "35s")
	seeder := s.start(t, testclients.Libtorrent, s.torrent, true, testclients.Options{UploadLimitKiB: 1024, UTPOnly: true})
	leecher := s.start(t, testclients.Libtorrent, s.torrent, false, testclients.Options{IP: "127.0.0.3", UTPOnly: true})
	time.Sleep(25 * time.Second) // the audit runs 35 s
	rows := s.finish(t, leecher, seeder)
	sv, ok1 := rows.find(seeder.Addr)
	lv, ok2 := rows.find(leecher.Addr)
	if !ok1 || !ok2 {
		t.Fatalf("no row for the seeder (%v) or the leecher (%v): %v", ok1, ok2, rows)
	}
	for name, v := range map[string]peerRow{"seeder": sv, "leecher": lv} {
		if v.Transport != "utp" || !slices.Contains(v.Reach, "direct") || v.BadPieces != 0 {
			t.Errorf("%s: reached over %q (%v), %d bad pieces; want uTP, direct, none bad", name, v.Transport, v.Reach, v.BadPieces)
		}
	}
	if sv.Capacity.Samples == 0 {
		t.Errorf("the uTP-only seeder was never measured")
	}
	if lv.ObservedDownloaded == 0 {
		t.Errorf("the uTP-only leecher was never seen completing a piece")
	}
	checkHonest(t, rows, map[string]*testclients.Client{"uTP seeder": seeder, "uTP leecher": leecher})
	t.Logf("seeder %s %.2f [%s]; leecher %s %.2f [%s]", sv.Verdict, sv.Confidence, codes(sv), lv.Verdict, lv.Confidence, codes(lv))
}
