package trackerserver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
)

// TestProxy puts one tracker in front of another (the upstream) and checks
// that announces are recorded by both, with the passkey carried over, and
// answered by the upstream.
func TestProxy(t *testing.T) {
	up, upMem := startServer(t, Config{HTTPAddr: "127.0.0.1:0", Interval: 77 * time.Second})
	upBase := baseURL(up)
	tests := []struct {
		name, upstream, path string
		wantUpPasskey        string
		wantScrape           bool
	}{
		{"appended passkey", up.HTTPURL(), "/announce/pk1", "pk1", true},
		{"no passkey", up.HTTPURL(), "/announce", "", true},
		{"placeholder after", upBase + "/announce/{passkey}", "/pk2/announce", "pk2", true},
		{"placeholder before", upBase + "/{passkey}/announce", "/announce/pk3", "pk3", true},
		{"upstream query kept first", up.HTTPURL() + "?auth=xyz", "/announce", "", true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			px, pxMem := startServer(t, Config{HTTPAddr: "127.0.0.1:0", Upstream: tc.upstream})
			ih := ih1
			ih[0] = byte(i)
			a := announceParams{infoHash: ih, peerID: pid("px-a"), port: 5001, left: 0, up: 123}
			b := announceParams{infoHash: ih, peerID: pid("px-b"), port: 5002, left: 9}
			ua := http.Header{"User-Agent": {"qBittorrent/4.5.2"}}
			nUp := upMem.Len()
			get(t, baseURL(px)+tc.path+"?"+a.query(), ua)
			_, body := get(t, baseURL(px)+tc.path+"?"+b.query(), ua)
			r := decodeReply(t, body)
			if r.FailureReason != "" || r.Interval != 77 || !slices.Equal(r.peers, []netip.AddrPort{netip.AddrPortFrom(loop4, 5001)}) {
				t.Fatalf("reply through the proxy: %+v", r)
			}
			pxGot, upGot := pxMem.Announces(), upMem.Announces()[nUp:]
			if len(pxGot) != 2 || len(upGot) != 2 {
				t.Fatalf("recorded %d by the proxy, %d upstream", len(pxGot), len(upGot))
			}
			for i, g := range pxGot {
				if g.Source != "upstream" || g.IP != loop4 || g.UserAgent != "qBittorrent/4.5.2" || g.Passkey != upGot[i].Passkey && tc.wantUpPasskey != "" {
					t.Errorf("proxy recorded %+v", g)
				}
				if upGot[i].Passkey != tc.wantUpPasskey || upGot[i].UserAgent != "qBittorrent/4.5.2" || upGot[i].PeerID != g.PeerID || upGot[i].Uploaded != g.Uploaded {
					t.Errorf("upstream recorded %+v, want passkey %q", upGot[i], tc.wantUpPasskey)
				}
			}
			scrapePath := strings.Replace(tc.path, "announce", "scrape", 1)
			_, body = get(t, baseURL(px)+scrapePath+"?"+url.Values{"info_hash": {string(ih[:])}}.Encode(), nil)
			var sr scrapeReply
			err := bencode.Unmarshal(body, &sr)
			if tc.wantScrape && (err != nil || sr.Files[string(ih[:])] != (scrapeFile{Complete: 1, Incomplete: 1})) {
				t.Errorf("scrape through the proxy: %q, %v", body, err)
			}
		})
	}
}

func TestProxyFailures(t *testing.T) {
	big := bytes.Repeat([]byte("x"), MaxUpstreamReplyBytes+1)
	release := make(chan struct{})
	defer close(release)
	var h http.Handler
	mux := http.NewServeMux()
	mux.HandleFunc("/to-https/announce", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://127.0.0.1:1/announce?"+r.URL.RawQuery, http.StatusFound)
	})
	mux.HandleFunc("/loop/announce", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop/announce?"+r.URL.RawQuery, http.StatusFound)
	})
	mux.HandleFunc("/same/announce", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/real/announce?"+r.URL.RawQuery, http.StatusFound)
	})
	mux.HandleFunc("/real/announce", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Forwarded-For") != "127.0.0.1" {
			http.Error(w, "no X-Forwarded-For", http.StatusBadRequest)
			return
		}
		w.Write([]byte("d8:intervali5e5:peers0:e"))
	})
	mux.HandleFunc("/refuses/announce", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("d14:failure reason12:unregisterede"))
	})
	mux.HandleFunc("/real-ip/announce", func(w http.ResponseWriter, r *http.Request) {
		ips := r.URL.Query()["ip"]
		if r.Header.Get("X-Real-IP") != "127.0.0.1" || r.Header.Get("X-Forwarded-For") != "" || len(ips) != 1 || ips[0] != "127.0.0.1" {
			http.Error(w, "address not passed as asked", http.StatusBadRequest)
			return
		}
		w.Write([]byte("d8:intervali5e5:peers0:e"))
	})
	mux.HandleFunc("/big/announce", func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	mux.HandleFunc("/500/announce", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", 500) })
	mux.HandleFunc("/slow/announce", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	h = mux
	upstream := httptest.NewServer(h)
	defer upstream.Close()

	q := announceParams{infoHash: ih1, peerID: pid("f"), port: 1, left: 1}.query()
	tests := []struct {
		name, upstream, path, want string
		cfg                        Config
	}{
		{"refused by the upstream", "/refuses/announce", "/announce", "unregistered", Config{}},
		{"address as header and ip parameter", "/real-ip/announce", "/announce", "", Config{UpstreamAddrHeader: "X-Real-IP", UpstreamIPParam: true}},
		{"redirect to another scheme", "/to-https/announce", "/announce", "upstream tracker: redirect from http to https refused", Config{}},
		{"redirect loop", "/loop/announce", "/announce", "upstream tracker: more than 5 redirects", Config{}},
		{"same-scheme redirect followed", "/same/announce", "/announce", "", Config{}},
		{"reply too big", "/big/announce", "/announce", "upstream tracker: reply larger than 1048576 bytes", Config{}},
		{"error status", "/500/announce", "/announce", "upstream tracker: answered 500", Config{}},
		{"timeout", "/slow/announce", "/announce", "upstream tracker: ", Config{}},
		{"placeholder without passkey", "/{passkey}/announce", "/announce", "bad request: the upstream needs a passkey", Config{}},
		{"no scrape convention", "/x/{passkey}", "/scrape/pk", "upstream tracker: no scrape URL", Config{}},
		{"connection refused", "closed", "/announce", "upstream tracker: ", Config{}},
	}
	for _, tc := range tests {
		target := upstream.URL + tc.upstream
		if tc.upstream == "closed" {
			closed := httptest.NewServer(h)
			target = closed.URL + "/announce"
			closed.Close()
		}
		cfg := tc.cfg
		cfg.Upstream, cfg.UpstreamTimeout = target, 500*time.Millisecond
		px, mem := newServer(t, cfg)
		_, body := serveInProcess(t, px.Handler(), tc.path+"?"+q, "127.0.0.1:40000")
		r := decodeReply(t, body)
		if !strings.HasPrefix(r.FailureReason, tc.want) || (tc.want == "") != (r.FailureReason == "") {
			t.Errorf("%s: failure %q, want %q", tc.name, r.FailureReason, tc.want)
		}
		if strings.Contains(r.FailureReason, upstream.URL) || strings.Contains(r.FailureReason, "127.0.0.1:") {
			t.Errorf("%s: failure reason names the upstream: %q", tc.name, r.FailureReason)
		}
		// Recorded only when the upstream accepted the announce.
		if wantRec := !strings.HasPrefix(tc.path, "/scrape") && tc.want == ""; (mem.Len() == 1) != wantRec {
			t.Errorf("%s: %d recorded, want %v", tc.name, mem.Len(), wantRec)
		}
	}
}

func TestUpstreamTarget(t *testing.T) {
	for _, tc := range []struct {
		upstream, passkey, query string
		kind                     routeKind
		want                     string
	}{
		{"http://h/announce", "", "a=1", routeAnnounce, "http://h/announce?a=1"},
		{"http://h/announce", "pk", "a=1", routeAnnounce, "http://h/announce/pk?a=1"},
		{"http://h/announce?k=v", "pk", "a=%FF", routeAnnounce, "http://h/announce/pk?k=v&a=%FF"},
		{"https://h:8443/{passkey}/announce", "pk", "", routeAnnounce, "https://h:8443/pk/announce"},
		{"https://h/{passkey}/announce.php", "pk", "x", routeScrape, "https://h/pk/scrape.php?x"},
		{"http://h/tracker/announce/{passkey}", "pk", "", routeScrape, "http://h/tracker/scrape/pk"},
		{"http://h/announce", "pk", "", routeScrape, "http://h/scrape/pk"},
	} {
		up, err := newUpstream(tc.upstream, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got, err := up.target(tc.kind, tc.passkey, tc.query)
		if err != nil || got != tc.want {
			t.Errorf("%s %q %q: %q, %v; want %q", tc.upstream, tc.passkey, tc.query, got, err, tc.want)
		}
	}
}
