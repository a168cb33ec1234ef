package trackerserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/tracker"
	trHttp "github.com/anacrolix/torrent/tracker/http"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

var loop4 = netip.MustParseAddr("127.0.0.1")

func TestHTTPAnnounceRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		extra    url.Values
		dict     bool
		wantIDs  bool
		trackrID string
	}{
		{name: "compact", extra: url.Values{"compact": {"1"}}},
		{name: "compact by default"},
		{name: "dictionary", extra: url.Values{"compact": {"0"}}, dict: true, wantIDs: true, trackrID: "tid-1"},
		{name: "dictionary without peer ids", extra: url.Values{"compact": {"0"}, "no_peer_id": {"1"}}, dict: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, mem := startServer(t, Config{HTTPAddr: "127.0.0.1:0", Interval: 90 * time.Second, MinInterval: 30 * time.Second, TrackerID: tc.trackrID})
			seed := announceParams{infoHash: ih1, peerID: pid("-TR3000-seed"), port: 6001, up: 5 << 20, left: 0, event: "started", extra: tc.extra}
			leech := announceParams{infoHash: ih1, peerID: pid("-qB4520-leech"), port: 6002, down: 1 << 20, left: 7 << 20, event: "started", extra: tc.extra}
			leech.extra = url.Values{"key": {"k1"}}
			for k, v := range tc.extra {
				leech.extra[k] = v
			}
			ua := http.Header{"User-Agent": {"Transmission/3.00"}}

			_, body := get(t, s.HTTPURL()+"/pk-1?"+seed.query(), ua)
			r := decodeReply(t, body)
			if r.FailureReason != "" || len(r.peers) != 0 || r.Complete != 1 || r.Incomplete != 0 {
				t.Fatalf("first announce: %+v", r)
			}
			if r.Interval != 90 || r.MinInterval != 30 || r.TrackerID != tc.trackrID || r.ExternalIP != "\x7f\x00\x00\x01" {
				t.Errorf("reply header %+v", r)
			}
			_, body = get(t, s.HTTPURL()+"?"+leech.query(), ua)
			r = decodeReply(t, body)
			if r.dict != tc.dict || !slices.Equal(r.peers, []netip.AddrPort{netip.AddrPortFrom(loop4, 6001)}) || r.Complete != 1 || r.Incomplete != 1 {
				t.Fatalf("leecher's reply: %+v", r)
			}
			if tc.wantIDs != (len(r.peerIDs) == 1) || (tc.wantIDs && !bytes.Equal(r.peerIDs[0], seed.peerID[:])) {
				t.Errorf("peer ids %q, want them: %v", r.peerIDs, tc.wantIDs)
			}
			// The seeder re-announces and now learns about the leecher.
			seed.event = ""
			_, body = get(t, s.HTTPURL()+"/pk-1?"+seed.query(), nil)
			if r = decodeReply(t, body); !slices.Equal(r.peers, []netip.AddrPort{netip.AddrPortFrom(loop4, 6002)}) {
				t.Errorf("seeder's reply: %+v", r)
			}

			got := mem.Announces()
			if len(got) != 3 {
				t.Fatalf("recorded %d announces, want 3", len(got))
			}
			want := reported.Announce{
				InfoHash: ih1, PeerID: leech.peerID, IP: loop4, Port: 6002, Downloaded: 1 << 20, Left: 7 << 20,
				Event: reported.EventStarted, Key: "k1", UserAgent: "Transmission/3.00", Source: "http",
			}
			g := got[1]
			if g.At.IsZero() {
				t.Error("no time recorded")
			}
			g.At = time.Time{}
			if g != want {
				t.Errorf("recorded\n %+v\nwant\n %+v", got[1], want)
			}
			if got[0].Passkey != "pk-1" || got[0].Uploaded != 5<<20 || got[2].Event != reported.EventNone {
				t.Errorf("recorded %+v", got)
			}
		})
	}
}

// TestAnacrolixClient talks to the tracker with anacrolix's tracker client,
// over HTTP and UDP, as a real BitTorrent client would.
func TestAnacrolixClient(t *testing.T) {
	s, mem := startServer(t, Config{HTTPAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0"})
	// /<passkey>/announce, because the client derives its scrape URL by
	// BEP 48's rule.
	for _, u := range []string{
		strings.TrimSuffix(s.HTTPURL(), "/announce") + "/pk-x/announce",
		strings.TrimSuffix(s.UDPURL(), "/announce") + "/pk-x/announce",
	} {
		t.Run(strings.SplitN(u, ":", 2)[0], func(t *testing.T) {
			cl, err := tracker.NewClient(u, tracker.NewClientOpts{ListenPacket: listenLoopback4})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ih := infohash.T(ih2)
			ih[19] = u[0] // a swarm per scheme
			for i, left := range []int64{0, 100} {
				res, err := cl.Announce(ctx, tracker.AnnounceRequest{
					InfoHash: ih, PeerId: pid(fmt.Sprintf("anacrolix-%d", i)), Port: uint16(7000 + i),
					Uploaded: 10, Downloaded: 20, Left: left, Event: tracker.Started, NumWant: -1, Key: 0x1234abcd,
				}, trHttp.AnnounceOpt{UserAgent: "anacrolix-test"})
				if err != nil {
					t.Fatalf("announce %d: %v", i, err)
				}
				if res.Seeders != 1 || res.Leechers != int32(i) || len(res.Peers) != i || res.Interval != int32(DefaultInterval/time.Second) {
					t.Fatalf("announce %d: %+v", i, res)
				}
				if i == 1 && res.Peers[0].Port != 7000 {
					t.Errorf("peer %v, want port 7000", res.Peers[0])
				}
			}
			sc, err := cl.Scrape(ctx, []infohash.T{ih, {}})
			if err != nil {
				t.Fatal(err)
			}
			if len(sc) != 2 || sc[0].Seeders != 1 || sc[0].Leechers != 1 || sc[1].Seeders != 0 {
				t.Errorf("scrape %+v", sc)
			}
		})
	}
	var sources []string
	for _, a := range mem.Announces() {
		sources = append(sources, a.Source)
		if a.Passkey != "pk-x" || a.IP != loop4 || a.Uploaded != 10 || a.Downloaded != 20 || a.Event != reported.EventStarted {
			t.Errorf("recorded %+v", a)
		}
		if a.Source == "udp" && a.Key != "1234abcd" {
			t.Errorf("udp key recorded as %q, want 1234abcd", a.Key)
		}
	}
	if !slices.Equal(sources, []string{"http", "http", "udp", "udp"}) {
		t.Errorf("sources %v", sources)
	}
}

func TestHTTPMalformed(t *testing.T) {
	s, mem := startServer(t, Config{HTTPAddr: "127.0.0.1:0"})
	good := announceParams{infoHash: ih1, peerID: pid("p"), port: 1, left: 1}
	with := func(f func(*announceParams)) string {
		p := good
		f(&p)
		return p.query()
	}
	ihq := "info_hash=" + url.QueryEscape(string(ih1[:]))
	tests := []struct {
		name, path, query, want string
		status                  int
	}{
		{"no info_hash", "/announce", with(func(p *announceParams) { p.omit = "info_hash" }), "missing info_hash", 200},
		{"short info_hash", "/announce", with(func(p *announceParams) { p.extra = url.Values{"info_hash": {"abc"}} }), "info_hash must be 20 bytes, got 3", 200},
		{"two info_hash", "/announce", with(func(*announceParams) {}) + "&" + ihq, "info_hash given 2 times", 200},
		{"no peer_id", "/announce", with(func(p *announceParams) { p.omit = "peer_id" }), "missing peer_id", 200},
		{"no port", "/announce", with(func(p *announceParams) { p.omit = "port" }), "missing port", 200},
		{"port too big", "/announce", with(func(p *announceParams) { p.port = 70000 }), "port \"70000\" is not a number", 200},
		{"negative uploaded", "/announce", with(func(p *announceParams) { p.up = -5 }), "uploaded \"-5\" is not a byte count", 200},
		{"huge left", "/announce", with(func(p *announceParams) { p.extra = url.Values{"left": {"18446744073709551615"}} }), "left \"18446744073709551615\" is not a byte count", 200},
		{"no left", "/announce", with(func(p *announceParams) { p.omit = "left" }), "missing left", 200},
		{"bad event", "/announce", with(func(p *announceParams) { p.event = "exploded" }), "unknown event \"exploded\"", 200},
		{"bad numwant", "/announce", with(func(p *announceParams) { p.extra = url.Values{"numwant": {"lots"}} }), "numwant \"lots\" is not a number", 200},
		{"long key", "/announce", with(func(p *announceParams) { p.extra = url.Values{"key": {strings.Repeat("k", 129)}} }), "key or trackerid longer than 128", 200},
		{"bad escape", "/announce", "info_hash=%zz", "malformed query", 200},
		{"semicolon", "/announce", with(func(*announceParams) {}) + ";x=1", "malformed query", 200},
		{"long query", "/announce", with(func(p *announceParams) { p.extra = url.Values{"x": {strings.Repeat("x", MaxQueryBytes)}} }), "query longer than", 200},
		{"scrape bad hash", "/scrape", "info_hash=abc", "info_hash must be 20 bytes", 200},
		{"scrape too many", "/scrape", strings.Repeat(ihq+"&", MaxScrapeHashes+1), "more than 100 info_hash", 200},
		{"unknown path", "/announce.php", with(func(*announceParams) {}), "unknown path", 404},
		{"bad passkey", "/announce/bad%21key", with(func(*announceParams) {}), "unknown path", 404},
		{"deep path", "/a/b/announce", with(func(*announceParams) {}), "unknown path", 404},
	}
	for _, tc := range tests {
		status, body := get(t, baseURL(s)+tc.path+"?"+tc.query, nil)
		r := decodeReply(t, body)
		if status != tc.status || !strings.Contains(r.FailureReason, tc.want) {
			t.Errorf("%s: %d %q, want %d and a failure reason containing %q", tc.name, status, r.FailureReason, tc.status, tc.want)
		}
	}
	resp, err := httpClient.Post(s.HTTPURL()+"?"+good.query(), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s", resp.Status)
	}
	if n := mem.Len(); n != 0 {
		t.Errorf("%d malformed announces recorded", n)
	}
	// A well-formed one after all that is still served.
	if _, body := get(t, s.HTTPURL()+"?"+good.query(), nil); decodeReply(t, body).FailureReason != "" || mem.Len() != 1 {
		t.Errorf("good announce: %q", body)
	}
}

func TestPasskeyPaths(t *testing.T) {
	s, mem := newServer(t, Config{})
	h := s.Handler()
	q := announceParams{infoHash: ih1, peerID: pid("p"), port: 1, left: 1}.query()
	for _, tc := range []struct{ path, want string }{
		{"/announce", ""},
		{"/announce/", ""},
		{"/announce/Ab9.-_~", "Ab9.-_~"},
		{"/pk2/announce", "pk2"},
		{"//pk3//announce/", ""}, // "" segment in the middle: not a route
	} {
		n := mem.Len()
		status, body := serveInProcess(t, h, tc.path+"?"+q, "192.0.2.1:1")
		ok := tc.path != "//pk3//announce/"
		if !ok {
			if status != http.StatusNotFound || mem.Len() != n {
				t.Errorf("%s: %d %q", tc.path, status, body)
			}
			continue
		}
		if decodeReply(t, body).FailureReason != "" || mem.Len() != n+1 {
			t.Fatalf("%s: %q", tc.path, body)
		}
		if got := mem.Announces()[n].Passkey; got != tc.want {
			t.Errorf("%s: passkey %q, want %q", tc.path, got, tc.want)
		}
	}
	if _, _, ok := route("/announce/" + strings.Repeat("k", maxPasskeyLen+1)); ok {
		t.Error("over-long passkey accepted")
	}
	for _, p := range []string{"/scrape", "/scrape/pk", "/pk/scrape"} {
		if kind, _, ok := route(p); !ok || kind != routeScrape {
			t.Errorf("route(%q) = %v, %v", p, kind, ok)
		}
	}
}

func TestScrapeAndCompleted(t *testing.T) {
	s, _ := startServer(t, Config{HTTPAddr: "127.0.0.1:0"})
	announce := func(id string, left int64, event string) {
		t.Helper()
		_, body := get(t, s.HTTPURL()+"?"+announceParams{infoHash: ih1, peerID: pid(id), port: 1000, left: left, event: event}.query(), nil)
		if r := decodeReply(t, body); r.FailureReason != "" {
			t.Fatal(r.FailureReason)
		}
	}
	announce("a", 10, "started")
	announce("b", 10, "started")
	announce("a", 0, "completed")
	announce("a", 0, "completed") // counted once per peer
	announce("c", 0, "")

	scrape := func(q string) map[string]scrapeFile {
		t.Helper()
		_, body := get(t, baseURL(s)+"/scrape?"+q, nil)
		var r scrapeReply
		if err := bencode.Unmarshal(body, &r); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		return r.Files
	}
	q := url.Values{"info_hash": {string(ih1[:]), string(ih2[:])}}.Encode()
	files := scrape(q)
	if len(files) != 1 || files[string(ih1[:])] != (scrapeFile{Complete: 2, Incomplete: 1, Downloaded: 1}) {
		t.Errorf("scrape: %+v", files)
	}
	if all := scrape(""); len(all) != 1 || all[string(ih1[:])].Complete != 2 {
		t.Errorf("full scrape: %+v", all)
	}
	announce("b", 10, "stopped")
	if f := scrape(q)[string(ih1[:])]; f.Incomplete != 0 || f.Complete != 2 {
		t.Errorf("after stop: %+v", f)
	}
}

func TestExpiry(t *testing.T) {
	clk := newFakeClock()
	s, _ := newServer(t, Config{Interval: 10 * time.Second, Now: clk.Now})
	h := s.Handler()
	announce := func(remote string, id string, port int) trackerReply {
		t.Helper()
		_, body := serveInProcess(t, h, "/announce?"+announceParams{infoHash: ih1, peerID: pid(id), port: port, left: 5}.query(), remote)
		return decodeReply(t, body)
	}
	announce("192.0.2.1:1", "a", 1001)
	clk.Advance(15 * time.Second)
	if r := announce("192.0.2.2:1", "b", 1002); len(r.peers) != 1 || r.Incomplete != 2 {
		t.Fatalf("a is gone after 15s of a 20s lifetime: %+v", r)
	}
	clk.Advance(6 * time.Second) // a: 21s since its announce; b: 6s
	if r := announce("192.0.2.2:1", "b", 1002); len(r.peers) != 0 || r.Incomplete != 1 {
		t.Fatalf("a still there after 2×interval: %+v", r)
	}
	clk.Advance(21 * time.Second)
	s.swarms.sweepAll(clk.Now())
	if n := len(s.swarms.torrents); n != 0 {
		t.Errorf("%d swarms left after everyone expired", n)
	}
}

func TestSwarmSelection(t *testing.T) {
	s, _ := newServer(t, Config{MaxPeersPerReply: 3})
	h := s.Handler()
	announce := func(remote, id string, port int, left int64, extra url.Values) trackerReply {
		t.Helper()
		_, body := serveInProcess(t, h, "/announce?"+announceParams{infoHash: ih1, peerID: pid(id), port: port, left: left, extra: extra}.query(), remote)
		return decodeReply(t, body)
	}
	announce("192.0.2.1:9", "s1", 1, 0, nil)
	announce("192.0.2.2:9", "s2", 2, 0, nil)
	announce("192.0.2.3:9", "l1", 3, 9, nil)
	announce("192.0.2.4:9", "l2", 0, 9, nil) // port 0: never handed out
	announce("[2001:db8::5]:9", "l3", 5, 9, nil)
	announce("[2001:db8::6]:9", "l4", 6, 9, nil)

	r := announce("192.0.2.1:9", "s1", 1, 0, url.Values{"numwant": {"100"}})
	if len(r.peers) != 3 {
		t.Errorf("numwant 100 with MaxPeersPerReply 3 gave %d peers", len(r.peers))
	}
	for _, p := range r.peers {
		if p.Port() <= 2 || p.Port() == 0 {
			t.Errorf("seeder was handed %v (a seeder or port 0)", p)
		}
	}
	if r := announce("192.0.2.3:9", "l1", 3, 9, url.Values{"numwant": {"0"}}); len(r.peers) != 0 {
		t.Errorf("numwant 0 gave %v", r.peers)
	}
	// Same peer id from another address is another peer; it cannot stop s1.
	announce("192.0.2.66:9", "s1", 66, 0, url.Values{"event": {"stopped"}})
	if r := announce("192.0.2.3:9", "l1", 3, 9, url.Values{"numwant": {"50"}, "compact": {"0"}}); r.Complete != 2 || r.Incomplete != 4 {
		t.Errorf("counts after a spoofed stop: %+v", r)
	}
	// An IPv4 requester gets IPv6 peers in peers6 (BEP 7).
	r = announce("192.0.2.1:9", "s1", 1, 0, url.Values{"numwant": {"50"}})
	if len(r.Peers6) == 0 {
		t.Errorf("no peers6 for a swarm with IPv6 leechers: %+v", r)
	}
}

func TestLoopbackIPParam(t *testing.T) {
	s, mem := newServer(t, Config{})
	h := s.Handler()
	claim := url.Values{"ip": {"198.51.100.9"}}
	for i, tc := range []struct {
		remote string
		want   netip.Addr // the address other peers are given
	}{
		{"127.0.0.1:5555", netip.MustParseAddr("198.51.100.9")},
		{"192.0.2.1:5555", netip.MustParseAddr("192.0.2.1")},
	} {
		ih := ih1
		ih[0] = byte(i) // a swarm per case
		serveInProcess(t, h, "/announce?"+announceParams{infoHash: ih, peerID: pid("claimer"), port: 4000, left: 1, extra: claim}.query(), tc.remote)
		_, body := serveInProcess(t, h, "/announce?"+announceParams{infoHash: ih, peerID: pid("other"), port: 4001, left: 1}.query(), "192.0.2.200:1")
		r := decodeReply(t, body)
		if len(r.peers) != 1 || r.peers[0] != netip.AddrPortFrom(tc.want, 4000) {
			t.Errorf("from %s: other peers got %v, want %v", tc.remote, r.peers, tc.want)
		}
		src := netip.MustParseAddrPort(tc.remote).Addr()
		if got := mem.Announces()[mem.Len()-2].IP; got != src {
			t.Errorf("from %s: recorded IP %v, want the source %v", tc.remote, got, src)
		}
	}
}

func TestIPv6Loopback(t *testing.T) {
	if !haveIPv6Loopback() {
		t.Skip("::1 is not available on this machine")
	}
	s, mem := startServer(t, Config{HTTPAddr: "[::1]:0", UDPAddr: "[::1]:0"})
	if !strings.HasPrefix(s.HTTPURL(), "http://[::1]:") || !strings.HasPrefix(s.UDPURL(), "udp://[::1]:") {
		t.Fatalf("URLs %s %s", s.HTTPURL(), s.UDPURL())
	}
	loop6 := netip.IPv6Loopback()
	get(t, s.HTTPURL()+"?"+announceParams{infoHash: ih1, peerID: pid("v6a"), port: 8001, left: 0}.query(), nil)
	_, body := get(t, s.HTTPURL()+"?"+announceParams{infoHash: ih1, peerID: pid("v6b"), port: 8002, left: 1}.query(), nil)
	r := decodeReply(t, body)
	if r.FailureReason != "" || len(r.Peers6) != 18 || !slices.Equal(r.peers, []netip.AddrPort{netip.AddrPortFrom(loop6, 8001)}) {
		t.Errorf("HTTP over ::1: %+v", r)
	}
	if r.ExternalIP != string(loop6.AsSlice()) {
		t.Errorf("external ip %q", r.ExternalIP)
	}

	cl, err := tracker.NewClient(s.UDPURL(), tracker.NewClientOpts{ListenPacket: listenLoopback6})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := cl.Announce(ctx, tracker.AnnounceRequest{InfoHash: ih1, PeerId: pid("v6c"), Port: 8003, Left: 1, NumWant: -1}, trHttp.AnnounceOpt{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Seeders != 1 || res.Leechers != 2 || len(res.Peers) != 2 {
		t.Fatalf("UDP over ::1: %+v", res)
	}
	for _, p := range res.Peers {
		if !p.IP.Equal(loop6.AsSlice()) || (p.Port != 8001 && p.Port != 8002) {
			t.Errorf("UDP peer %v", p)
		}
	}
	for _, a := range mem.Announces() {
		if a.IP != loop6 {
			t.Errorf("recorded %v, want ::1", a.IP)
		}
	}
}

func TestRecorderErrorStillAnswers(t *testing.T) {
	rec := &failingRecorder{}
	s, _ := startServer(t, Config{HTTPAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0", Recorder: rec})
	get(t, s.HTTPURL()+"?"+announceParams{infoHash: ih1, peerID: pid("a"), port: 1, left: 0}.query(), nil)
	_, body := get(t, s.HTTPURL()+"?"+announceParams{infoHash: ih1, peerID: pid("b"), port: 2, left: 1}.query(), nil)
	if r := decodeReply(t, body); r.FailureReason != "" || len(r.peers) != 1 {
		t.Errorf("HTTP reply with a failing recorder: %+v", r)
	}
	c := dialUDP(t, s)
	id := c.connect(t)
	resp := c.announce(t, id, udpAnnounceReq{ih: ih1, peerID: pid("c"), port: 3, left: 1, numWant: -1})
	if resp.action != 1 || len(resp.peers) != 2 {
		t.Errorf("UDP reply with a failing recorder: %+v", resp)
	}
	if rec.calls() != 3 {
		t.Errorf("recorder called %d times, want 3", rec.calls())
	}
}

func TestTrackerFull(t *testing.T) {
	s, mem := newServer(t, Config{MaxTorrents: 1, MaxPeersPerTorrent: 2})
	h := s.Handler()
	for i, tc := range []struct {
		ih   [20]byte
		want string
	}{
		{ih1, ""}, {ih1, ""}, {ih1, "tracker full: 2 peers"}, {ih2, "tracker full: 1 torrents"},
	} {
		_, body := serveInProcess(t, h, "/announce?"+announceParams{infoHash: tc.ih, peerID: pid(fmt.Sprint(i)), port: 1, left: 1}.query(), "192.0.2.1:1")
		if got := decodeReply(t, body).FailureReason; !strings.HasPrefix(got, tc.want) || (got == "") != (tc.want == "") {
			t.Errorf("announce %d: failure %q, want %q", i, got, tc.want)
		}
	}
	if mem.Len() != 4 {
		t.Errorf("refused announces must still be recorded: %d of 4", mem.Len())
	}
}

func TestConfigAndLifecycle(t *testing.T) {
	rec := &reported.MemoryRecorder{}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no recorder", Config{}},
		{"short interval", Config{Recorder: rec, Interval: time.Millisecond}},
		{"min over interval", Config{Recorder: rec, Interval: time.Minute, MinInterval: time.Hour}},
		{"negative limit", Config{Recorder: rec, MaxTorrents: -1}},
		{"ftp upstream", Config{Recorder: rec, Upstream: "ftp://127.0.0.1:1/announce"}}, // udp:// and http(s):// are proxied
		{"placeholder in host", Config{Recorder: rec, Upstream: "http://{passkey}.example/announce"}},
		{"no host", Config{Recorder: rec, Upstream: "http:///announce"}},
	} {
		if _, err := New(tc.cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", tc.name, err)
		}
	}

	s, _ := newServer(t, Config{})
	if err := s.Start(context.Background()); !errors.Is(err, ErrConfig) {
		t.Errorf("start without addresses: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("close of an unstarted server: %v", err)
	}

	s, _ = newServer(t, Config{HTTPAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	// Run has started once the listener answers.
	var u string
	for range 1000 {
		if u = s.HTTPURL(); u != "" {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if u == "" {
		t.Fatal("Run did not start listening")
	}
	if err := s.Start(ctx); !errors.Is(err, ErrStarted) {
		t.Errorf("second start: %v", err)
	}
	get(t, u+"?"+announceParams{infoHash: ih1, peerID: pid("a"), port: 1, left: 1}.query(), nil)
	cancel()
	if err := <-runErr; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if _, err := httpClient.Get(u); err == nil {
		t.Error("still serving after Run returned")
	}
	if err := s.Close(); err != nil {
		t.Errorf("close after run: %v", err)
	}
}

func TestReachable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0.0.0.0:80", "127.0.0.1:80"},
		{"[::]:80", "[::1]:80"},
		{"192.0.2.1:80", "192.0.2.1:80"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1:80"},
	} {
		if got := reachable(fakeAddr(tc.in)); got != tc.want {
			t.Errorf("reachable(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

func TestParseAnnounceValues(t *testing.T) {
	q, err := parseAnnounce(announceParams{infoHash: ih2, peerID: pid("x"), port: 65535, up: math.MaxInt64, left: 0,
		event: "paused", extra: url.Values{"numwant": {"-1"}, "ip": {"::ffff:10.0.0.1"}, "trackerid": {"t"}}}.query())
	if err != nil {
		t.Fatal(err)
	}
	if q.infoHash != ih2 || q.port != 65535 || q.uploaded != math.MaxInt64 || q.event != reported.EventPaused ||
		q.numWant != -1 || q.ip != netip.MustParseAddr("10.0.0.1") || q.trackerID != "t" || !q.compact {
		t.Errorf("parsed %+v", q)
	}
}

// TestSelfInPeerLists: with Config.Self, the peer list of a torrent the
// auditor audits starts with the auditor, at the address the announce
// reached the tracker on and the port Self names, counted in numwant; a
// torrent it does not audit gets no such entry.
func TestSelfInPeerLists(t *testing.T) {
	auditorID := pid("-SA0100-auditor")
	s, _ := startServer(t, Config{HTTPAddr: "127.0.0.1:0", Self: func(ih infohash.T) (uint16, [20]byte, bool) {
		return 7777, auditorID, ih == ih1
	}})
	for _, p := range []announceParams{
		{infoHash: ih1, peerID: pid("a"), port: 6001, left: 0},
		{infoHash: ih2, peerID: pid("b"), port: 6002, left: 0},
	} {
		get(t, s.HTTPURL()+"?"+p.query(), nil)
	}
	self := netip.MustParseAddrPort("127.0.0.1:7777")
	for _, c := range []struct {
		name    string
		p       announceParams
		want    []netip.AddrPort
		wantIDs bool
	}{
		{"audited torrent", announceParams{infoHash: ih1, peerID: pid("c"), port: 6003, left: 9}, []netip.AddrPort{self, netip.MustParseAddrPort("127.0.0.1:6001")}, false},
		{"numwant 1: the auditor only", announceParams{infoHash: ih1, peerID: pid("d"), port: 6004, left: 9, extra: url.Values{"numwant": {"1"}}}, []netip.AddrPort{self}, false},
		{"dictionary form names its peer id", announceParams{infoHash: ih1, peerID: pid("e"), port: 6005, left: 9, extra: url.Values{"numwant": {"1"}, "compact": {"0"}}}, []netip.AddrPort{self}, true},
		{"torrent not audited", announceParams{infoHash: ih2, peerID: pid("f"), port: 6006, left: 9}, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6002")}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, body := get(t, s.HTTPURL()+"?"+c.p.query(), nil)
			r := decodeReply(t, body)
			if len(r.peers) != len(c.want) || r.peers[0] != c.want[0] {
				t.Fatalf("peers %v, want %v first of %d", r.peers, c.want[0], len(c.want))
			}
			if c.wantIDs && !strings.Contains(string(r.RawPeers), string(auditorID[:])) {
				t.Errorf("the dictionary form lacks the auditor's peer id: %q", r.RawPeers)
			}
		})
	}
}
