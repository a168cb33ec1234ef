package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// TestDiscoverAgainstOpentracker is the discovery acceptance check:
// `swarmaudit discover --json` against a real opentracker (HTTP and UDP
// tiers) with two real clients prints both, with their tracker source, and
// a scrape summary.
func TestDiscoverAgainstOpentracker(t *testing.T) {
	dir := t.TempDir()
	payload := testclients.MakePayload(t, dir, 1<<20, 11)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The whitelist needs the info hash before the tracker starts, and the
	// torrent needs the tracker's URLs: make the torrent once to learn its
	// hash (trackers are outside the info dict), then again with the URLs.
	_, ih := testclients.MakeTorrent(t, payload, 64<<10, nil, false)
	tr := testclients.StartOpentracker(ctx, t, ih)
	tpath, ih2 := testclients.MakeTorrent(t, payload, 64<<10, []string{tr.HTTP, tr.UDP}, false)
	if ih2 != ih {
		t.Fatal("trackers changed the info hash")
	}
	var clients []*testclients.Client
	for _, kind := range []testclients.Kind{testclients.Transmission, testclients.Libtorrent} {
		clients = append(clients, testclients.Start(ctx, t, testclients.Options{
			Kind: kind, TorrentFile: tpath, DataDir: filepath.Dir(payload), Seed: true,
		}))
	}
	// Trackers only (the DHT would reach for the public routers).
	var out string
	var err error
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err = run(t, "discover", "--torrent", tpath, "--json", "--no-dht", "--duration", "5s")
		if err != nil {
			t.Fatalf("discover: %v\n%s", err, out)
		}
		if found(out, clients) || time.Now().After(deadline) {
			break // clients announce on their own schedule: retry briefly
		}
	}
	peers := map[string][]string{}
	var summary struct {
		Summary struct {
			Peers    int `json:"peers"`
			Trackers []struct {
				URL    string `json:"url"`
				Scrape *struct {
					Seeders int64 `json:"seeders"`
				} `json:"scrape"`
			} `json:"trackers"`
		} `json:"summary"`
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Bytes()
		if strings.Contains(string(line), `"summary":`) {
			if err := json.Unmarshal(line, &summary); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var p struct {
			Addr    string   `json:"addr"`
			Sources []string `json:"sources"`
		}
		if err := json.Unmarshal(line, &p); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		peers[p.Addr] = p.Sources
	}
	for _, c := range clients {
		srcs, ok := peers[c.Addr.String()]
		if !ok {
			t.Fatalf("%s at %s not found; output:\n%s", c.Kind, c.Addr, out)
		}
		if !strings.HasPrefix(strings.Join(srcs, ","), "tracker:") {
			t.Errorf("%s sources %v", c.Kind, srcs)
		}
	}
	scraped := 0
	for _, tr := range summary.Summary.Trackers {
		if tr.Scrape != nil {
			scraped++
			if tr.Scrape.Seeders < 2 {
				t.Errorf("scrape of %s: %d seeders, want 2", tr.URL, tr.Scrape.Seeders)
			}
		}
	}
	if scraped == 0 {
		t.Fatalf("no scrape in summary:\n%s", out)
	}
}

func found(out string, clients []*testclients.Client) bool {
	for _, c := range clients {
		if !strings.Contains(out, `"addr":"`+c.Addr.String()+`"`) {
			return false
		}
	}
	return true
}

// TestDiscoverHidesPasskeys: a private torrent whose trackers fail (one
// refuses the connection, one answers HTTP 500 quoting the request) must not
// show their passkeys anywhere: not in the summary, the errors or the
// debug log.
func TestDiscoverHidesPasskeys(t *testing.T) {
	const pk = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such user "+r.URL.String(), http.StatusInternalServerError)
	}))
	defer echo.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	payload := testclients.MakePayload(t, dir, 256<<10, 3)
	tpath, _ := testclients.MakeTorrent(t, payload, 64<<10, []string{
		"http://" + closed + "/" + pk + "/announce",
		echo.URL + "/announce?passkey=" + pk,
		"udp://" + closed + "/" + pk + "/announce",
	}, true)
	for _, asJSON := range []bool{false, true} {
		args := []string{"-v", "discover", "--torrent", tpath, "--no-dht", "--duration", "3s"}
		if asJSON {
			args = append(args, "--json")
		}
		out, err := run(t, args...)
		if strings.Contains(out, pk) || (err != nil && strings.Contains(err.Error(), pk)) {
			t.Fatalf("the passkey shows (json %v):\n%s\nerr %v", asJSON, out, err)
		}
		if !strings.Contains(out, "REDACTED") {
			t.Errorf("no tracker shown at all (json %v):\n%s", asJSON, out)
		}
	}
}
