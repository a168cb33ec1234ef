package trackerserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/httptracker"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/trackertest"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/udptracker"
)

const testPasskey = "0123456789abcdef0123456789abcdef"

// announceVia announces once through the proxy at url with a real tracker
// client of the URL's protocol.
func announceVia(t *testing.T, url string) (trackerclient.Response, error) {
	t.Helper()
	var c trackerclient.Client
	var err error
	if strings.HasPrefix(url, "udp://") {
		c, err = udptracker.New(url, udptracker.Options{BackoffBase: 2 * time.Second, MaxRetries: 1})
	} else {
		c, err = httptracker.New(url, httptracker.Options{Timeout: 5 * time.Second})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Announce(ctx, trackerclient.Request{InfoHash: infohash.T{4, 2}, PeerID: [20]byte{'-', 'q', 'B'}, Port: 51413,
		Uploaded: 1 << 20, Downloaded: 5, Left: 7, Event: reported.EventStarted, Key: 0xabcd, NumWant: 50})
}

// TestProxyTranslates: the recording proxy forwards UDP announces (BEP 15)
// as well as HTTP ones, translating between the client's protocol and the
// upstream's: UDP to an HTTP upstream, HTTP and UDP to a UDP upstream.
// The upstream sees the counters and, with UpstreamIPParam, the peer's
// address; the client gets the upstream's peers; the announce is recorded
// with its passkey only when the upstream accepted it.
func TestProxyTranslates(t *testing.T) {
	var gotQuery string
	httpUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotQuery = r.URL.String()
		if strings.Contains(r.URL.Path, "refused") {
			w.Write([]byte("d14:failure reason12:unregisterede"))
			return
		}
		w.Write([]byte("d8:intervali1800e8:completei3e10:incompletei4e5:peers" + trackertest.Bstr(trackertest.Compact4("192.0.2.9:6881")) + "e"))
	}))
	defer httpUp.Close()
	// A UDP upstream: an embedded tracker that knows one peer.
	udpUp, upMem := startServer(t, Config{UDPAddr: "127.0.0.1:0", Interval: 900 * time.Second})
	seed := trackerclient.Request{InfoHash: infohash.T{4, 2}, PeerID: [20]byte{'-', 'T', 'R'}, Port: 7000, Left: 0, Event: reported.EventStarted, NumWant: 0}
	sc, err := udptracker.New(udpUp.UDPURL(), udptracker.Options{BackoffBase: time.Second, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if _, err := sc.Announce(ctx, seed); err != nil {
		t.Fatal(err)
	}
	cancel()
	sc.Close()

	for _, tc := range []struct {
		name, upstream, client string
		wantPeer               netip.AddrPort
		wantInterval           time.Duration
		refused                bool
	}{
		{"udp to http", httpUp.URL + "/{passkey}/announce", "udp", netip.MustParseAddrPort("192.0.2.9:6881"), 1800 * time.Second, false},
		{"udp to http, refused", httpUp.URL + "/refused/{passkey}/announce", "udp", netip.AddrPort{}, 0, true},
		{"http to udp", strings.TrimSuffix(udpUp.UDPURL(), "/announce") + "/{passkey}/announce", "http", netip.MustParseAddrPort("127.0.0.1:7000"), 900 * time.Second, false},
		{"udp to udp", strings.TrimSuffix(udpUp.UDPURL(), "/announce") + "/{passkey}/announce", "udp", netip.MustParseAddrPort("127.0.0.1:7000"), 900 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			px, mem := startServer(t, Config{HTTPAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0", Upstream: tc.upstream, UpstreamIPParam: true, UpstreamTimeout: 3 * time.Second})
			url := px.HTTPURL()
			if tc.client == "udp" {
				url = px.UDPURL()
			}
			url = strings.TrimSuffix(url, "/announce") + "/" + testPasskey + "/announce"
			resp, err := announceVia(t, url)
			if tc.refused {
				if err == nil || mem.Len() != 0 {
					t.Fatalf("refused upstream: err %v, %d recorded", err, mem.Len())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.Interval != tc.wantInterval || len(resp.Peers) != 1 || resp.Peers[0].Addr != tc.wantPeer {
				t.Fatalf("reply %+v", resp)
			}
			if mem.Len() != 1 {
				t.Fatalf("%d announces recorded, want 1", mem.Len())
			}
			a := mem.Announces()[0]
			if a.Passkey != testPasskey || a.Uploaded != 1<<20 || !strings.HasPrefix(a.Source, "upstream") {
				t.Errorf("recorded %+v", a)
			}
			if strings.HasPrefix(tc.upstream, "http") && (!strings.Contains(gotQuery, testPasskey) || !strings.Contains(gotQuery, "ip=127.0.0.1") || !strings.Contains(gotQuery, "uploaded=1048576")) {
				t.Errorf("upstream got %s", gotQuery)
			}
			if strings.HasPrefix(tc.upstream, "udp") {
				last := upMem.Announces()[upMem.Len()-1]
				if last.Uploaded != 1<<20 || last.Passkey != testPasskey {
					t.Errorf("udp upstream recorded %+v", last)
				}
			}
		})
	}
}
