package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/swarmaudit/swarmaudit/internal/simulation/cheat"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// lockedBuffer is a child's output, read while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeRealClients is serve's end-to-end check, as an operator runs
// it: `swarmaudit serve --watch DIR --api-listen 127.0.0.1:PORT --db FILE`
// with its embedded tracker, a real Transmission seeder and libtorrent
// leecher in the swarm, and a ghost announcer (reports uploads, never on
// the wire) beside them, each user with a passkey. While it runs:
// /api/v1/swarms lists the swarm with its peers, verdicts and node, the
// ghost flagged and the real clients not misreporting; /metrics has the
// probes by outcome, store write latency and scheduler lag; the dashboard
// in headless Chromium lists the flagged user and the finding, whose swarm
// link opens the report with its charts drawn; `swarmaudit status` exits 3
// (a user flagged); no passkey is in the log, the API or the pages; SIGTERM
// stops it with exit 0.
func TestServeRealClients(t *testing.T) {
	testclients.Require(t, "transmission-daemon", "libtorrent")
	bin := builtBinary(t)
	dir := t.TempDir()
	for _, d := range []string{"seed", "leech", "watch"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	payload := testclients.MakePayload(t, filepath.Join(dir, "seed"), 16<<20, 41)
	trackerAddr := fmt.Sprintf("127.0.0.1:%d", testclients.FreePort(t, "127.0.0.1"))
	apiAddr := fmt.Sprintf("127.0.0.1:%d", testclients.FreePort(t, "127.0.0.1"))
	api := "http://" + apiAddr
	const honestKey, cheatKey = "honestpasskey0000000000000000001", "cheatpasskey00000000000000000001"
	torrent, ih := testclients.MakeTorrent(t, payload, 256<<10, []string{"http://" + trackerAddr + "/" + honestKey + "/announce"}, true)
	raw, err := os.ReadFile(torrent)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "watch", "swarm.torrent"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	daemon := exec.Command(bin, "serve", "--watch", filepath.Join(dir, "watch"), "--api-listen", apiAddr, "--db", testclients.StoreDB(t, filepath.Join(dir, "serve.db")),
		"--tracker-listen", trackerAddr, "--poll-interval", "500ms", "--judge-interval", "3s", "--no-dht", "--no-trackers",
		"--snapshot-interval", "2s", "--probe-interval", "10s", "--peer-probe-gap", "10s", "--probe-bytes", "512KiB", "--probe-timeout", "6s", "--slack", "4MiB")
	daemon.Stdout, daemon.Stderr = &log, &log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	defer daemon.Process.Kill()
	defer func() {
		if t.Failed() {
			t.Logf("serve's log:\n%s", log.String())
		}
	}()
	waitListening(t, trackerAddr)
	waitListening(t, apiAddr)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tr := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Transmission, TorrentFile: torrent, Seed: true,
		DataDir: filepath.Join(dir, "seed"), UploadLimitKiB: 1024, Encryption: testclients.EncRequired})
	leecher := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Libtorrent, TorrentFile: torrent,
		DataDir: filepath.Join(dir, "leech"), IP: "127.0.0.3", UploadLimitKiB: 512})
	ghost, err := cheat.Start(ctx, cheat.Config{Kind: cheat.Ghost, Announce: "http://" + trackerAddr + "/" + cheatKey + "/announce",
		InfoHash: ih, Size: 16 << 20, Rate: 2 << 20, Interval: 3 * time.Second, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Close()

	// The swarm judged with the ghost flagged and both clients reached.
	var swarms []map[string]json.RawMessage
	var rows peerRows
	deadline := time.Now().Add(2 * time.Minute)
	for {
		time.Sleep(time.Second) // polling the API
		swarms = nil
		apiJSON(t, api+"/api/v1/swarms", &swarms)
		rows = peerRows{}
		if len(swarms) == 1 {
			var rep struct {
				Peers []peerRow `json:"peers"`
			}
			if code := apiGet(t, api+"/api/v1/swarms/"+fmt.Sprintf("%x", ih), &rep); code == http.StatusOK {
				for _, p := range rep.Peers {
					if ap, err := netip.ParseAddrPort(p.Address); err == nil {
						rows[ap] = p
					}
				}
			}
		}
		g, okG := rows.find(ghost.Addr)
		_, okT := rows.find(tr.Addr)
		_, okL := rows.find(leecher.Addr)
		if okG && okT && okL && flagged(g) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no judgement flagging the ghost with both clients in 2 min: swarms %s\nleecher's log:\n%s", jsonString(swarms), leecher.Log())
		}
	}
	s := swarms[0]
	for _, k := range []string{"info_hash", "name", "peers", "verdicts", "node"} {
		if _, ok := s[k]; !ok {
			t.Errorf("/api/v1/swarms: no %q in %s", k, jsonString(s))
		}
	}
	var peers int
	json.Unmarshal(s["peers"], &peers)
	if string(s["info_hash"]) != fmt.Sprintf("%q", fmt.Sprintf("%x", ih)) || peers < 3 {
		t.Errorf("/api/v1/swarms: %s", jsonString(s))
	}
	checkHonest(t, rows, map[string]*testclients.Client{"transmission": tr, "libtorrent leecher": leecher})

	metrics := apiText(t, api+"/metrics")
	for _, want := range []string{`swarmaudit_swarms 1`, `swarmaudit_probes{outcome="ok"}`, `swarmaudit_peers{state="reached"}`,
		`swarmaudit_store_write_seconds_count`, `swarmaudit_scheduler_lag_seconds_count{task="judge"}`,
		`swarmaudit_identities{status="misreporting"}`, `swarmaudit_users_flagged 1`, `swarmaudit_announces_recorded_total`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var users []struct {
		User          string `json:"user"`
		FlaggedSwarms int    `json:"flagged_swarms"`
	}
	apiJSON(t, api+"/api/v1/users", &users)
	if len(users) < 2 || users[0].FlaggedSwarms != 1 {
		t.Fatalf("/api/v1/users: %s", jsonString(users))
	}
	var theirs []struct {
		InfoHash string `json:"info_hash"`
		Status   string `json:"status"`
	}
	apiJSON(t, api+"/api/v1/users/"+users[0].User, &theirs)
	if len(theirs) == 0 || theirs[0].InfoHash != fmt.Sprintf("%x", ih) {
		t.Errorf("/api/v1/users/%s: %s", users[0].User, jsonString(theirs))
	}

	dashboard := checkDashboard(t, dir, api)

	// status asks the daemon: exit 3, a user flagged.
	status := exec.Command(bin, "status", "--api", api, "--json")
	out, err := status.Output()
	if exitCode(asExit(err)) != exitFlagged {
		t.Errorf("status: %v, want exit %d\n%s", err, exitFlagged, out)
	}
	var st struct {
		Swarms []struct {
			Name string `json:"name"`
		} `json:"swarms"`
		Users []struct {
			FlaggedSwarms int `json:"flagged_swarms"`
		} `json:"users"`
	}
	if err := json.Unmarshal(out, &st); err != nil || len(st.Swarms) != 1 || st.Swarms[0].Name != filepath.Base(payload) || st.Users[0].FlaggedSwarms != 1 {
		t.Errorf("status --json: %v\n%s", err, out)
	}
	text, _ := exec.Command(bin, "status", "--api", api).Output()
	if !strings.Contains(string(text), filepath.Base(payload)) || !strings.Contains(string(text), "1 of ") {
		t.Errorf("status:\n%s", text)
	}

	for _, c := range []*testclients.Client{tr, leecher} {
		c.Stop() // they announce 'stopped' to the daemon's tracker
	}
	if err := daemon.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := daemon.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	logged := log.String()
	if !strings.Contains(logged, "msg=judged") || !strings.Contains(logged, "msg=auditing") {
		t.Errorf("the log shows no progress:\n%s", logged)
	}
	everything := logged + metrics + dashboard + jsonString(swarms) + string(out) + string(text)
	for _, key := range []string{honestKey, cheatKey} {
		if strings.Contains(everything, key) {
			t.Errorf("a passkey (%s…) is shown", key[:6])
		}
	}
}

// checkDashboard opens the dashboard in headless Chromium: it must list
// the flagged user and the finding, and the finding's swarm link must open
// the swarm's report with its charts drawn. It returns the dashboard's
// HTML.
func checkDashboard(t *testing.T, dir, api string) string {
	t.Helper()
	ctx := testclients.Browser(t, dir)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(api+"/")); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	type dash struct {
		HTML     string `json:"html"`
		Users    int    `json:"users"`
		Findings int    `json:"findings"`
		Link     string `json:"link"`
	}
	d, err := chromedp.Run(ctx, chromedp.Evaluate[dash](`({html: document.documentElement.outerHTML,
		users: document.querySelectorAll('#users tr').length - 1,
		findings: document.querySelectorAll('#findings tr').length - 1,
		link: (document.querySelector('#findings a') || {}).href || ''})`))
	if err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if d.Users != 1 || d.Findings < 1 || d.Link == "" || !strings.Contains(d.HTML, "misreporting") {
		t.Fatalf("dashboard: %d flagged users, %d findings:\n%s", d.Users, d.Findings, d.HTML)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(d.Link)); err != nil {
		t.Fatalf("the finding's report (%s): %v", d.Link, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.body.dataset.charts !== undefined`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("the finding's report (%s) never drew its charts: %v", d.Link, err)
	}
	inked, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Array.from(document.querySelectorAll('canvas')).filter(c => {
		const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
		return false;
	}).length`))
	if err != nil || inked < 3 {
		t.Errorf("the finding's report drew %d charts: %v", inked, err)
	}
	html := d.HTML
	return html
}

// apiGet reads a JSON answer of the daemon into v when it is 200 OK, and
// returns the status code.
func apiGet(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func apiJSON(t *testing.T, url string, v any) {
	t.Helper()
	if code := apiGet(t, url, v); code != http.StatusOK {
		t.Fatalf("%s: status %d", url, code)
	}
}

func apiText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAPIToken: an API on another address than loopback needs a bearer
// token; with one, every request without it is refused, and the token is
// never echoed.
func TestAPIToken(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	const token = "a-long-enough-api-token"
	for _, c := range []struct {
		listen, token string
		usage         bool
		guarded       bool
	}{
		{"127.0.0.1:8080", "", false, false},
		{"[::1]:8080", "", false, false},
		{"localhost:8080", "", false, false},
		{":8080", "", true, false},
		{"0.0.0.0:8080", "", true, false},
		{"192.0.2.1:8080", "", true, false},
		{"0.0.0.0:8080", "short", true, false},
		{"0.0.0.0:8080", token, false, true},
		{"127.0.0.1:8080", token, false, true},
	} {
		t.Setenv(apiTokenEnv, c.token)
		h, err := apiHandler(ok, c.listen)
		if (exitCode(err) == exitUsage) != c.usage {
			t.Errorf("%s with token %q: %v", c.listen, c.token, err)
			continue
		}
		if err != nil {
			if c.token != "" && strings.Contains(err.Error(), c.token) {
				t.Errorf("the error shows the token: %v", err)
			}
			continue
		}
		for auth, want := range map[string]int{"": http.StatusOK, "Bearer " + token: http.StatusOK, "Bearer wrong": http.StatusOK} {
			if c.guarded && auth != "Bearer "+token {
				want = http.StatusUnauthorized
			}
			req := httptest.NewRequest(http.MethodGet, "/api/v1/swarms", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != want || strings.Contains(rec.Body.String(), token) {
				t.Errorf("%s, %q: %d %q, want %d", c.listen, auth, rec.Code, rec.Body.String(), want)
			}
		}
	}
}

// TestStatusWithoutDaemon: status fails (exit 1) when nothing answers,
// and refuses a URL that is not one (exit 2).
func TestStatusWithoutDaemon(t *testing.T) {
	port := testclients.FreePort(t, "127.0.0.1")
	if _, err := run(t, "status", "--api", fmt.Sprintf("http://127.0.0.1:%d/", port), "--timeout", "2s"); exitCode(err) != exitError {
		t.Errorf("no daemon: %v (exit %d)", err, exitCode(err))
	}
	if _, err := run(t, "status", "--api", "127.0.0.1:8080"); exitCode(err) != exitUsage {
		t.Errorf("no scheme: %v (exit %d)", err, exitCode(err))
	}
}
