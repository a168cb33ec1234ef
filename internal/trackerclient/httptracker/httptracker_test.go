package httptracker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/httptracker"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/trackertest"
	"github.com/swarmaudit/swarmaudit/internal/wire/compact"
)

var ih = infohash.HashBytes([]byte("httptracker test"))

func TestParseAnnounce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		check func(t *testing.T, r trackerclient.Response)
		err   error
	}{
		{
			name: "compact with peers6 and every field",
			body: "d8:completei5e10:incompletei7e8:intervali1800e12:min intervali60e10:tracker id3:abc15:warning message4:slow" +
				"5:peers" + trackertest.Bstr(trackertest.Compact4("10.0.0.1:6881", "10.0.0.2:1")) + "6:peers6" + trackertest.Bstr(trackertest.Compact6("[2001:db8::1]:80")) + "e",
			check: func(t *testing.T, r trackerclient.Response) {
				if r.Interval != 30*time.Minute || r.MinInterval != time.Minute || r.TrackerID != "abc" || r.Warning != "slow" ||
					r.Seeders != 5 || r.Leechers != 7 || len(r.Peers) != 3 || r.Peers[2].Addr.String() != "[2001:db8::1]:80" {
					t.Errorf("%+v", r)
				}
			},
		},
		{
			name: "dictionary peers",
			body: "d8:intervali60e5:peersl" +
				"d2:ip8:10.0.0.17:peer id20:ABCDEFGHIJKLMNOPQRST4:porti6881ee" +
				"d2:ip11:2001:db8::24:porti80ee" +
				"d2:ip11:example.org4:porti80ee" + // DNS name: skipped
				"d2:ip8:10.0.0.34:porti0ee" + // port 0: skipped
				"d2:ip8:10.0.0.44:porti70000ee" + // port out of range: skipped
				"ee",
			check: func(t *testing.T, r trackerclient.Response) {
				if len(r.Peers) != 2 || r.Skipped != 3 || string(r.Peers[0].ID) != "ABCDEFGHIJKLMNOPQRST" ||
					r.Peers[1].Addr.String() != "[2001:db8::2]:80" || r.Seeders != -1 || r.Leechers != -1 {
					t.Errorf("%+v", r)
				}
			},
		},
		{
			name: "hostile interval capped, negative ignored",
			body: "d8:intervali99999999999e12:min intervali-5e5:peers0:e",
			check: func(t *testing.T, r trackerclient.Response) {
				if r.Interval != 24*time.Hour || r.MinInterval != 0 {
					t.Errorf("%+v", r)
				}
			},
		},
		{
			name: "trailing newline tolerated",
			body: "d8:intervali60e5:peers0:e\n",
			check: func(t *testing.T, r trackerclient.Response) {
				if r.Interval != time.Minute {
					t.Errorf("%+v", r)
				}
			},
		},
		{name: "failure reason", body: "d14:failure reason12:unregisterede", err: trackerclient.ErrFailure},
		{name: "compact of bad length", body: "d5:peers7:abcdefge", err: compact.ErrLength},
		{name: "peers6 of bad length", body: "d6:peers66:abcdefe", err: compact.ErrLength},
		{name: "peers is an int", body: "d5:peersi5ee", err: trackerclient.ErrMalformed},
		{name: "peer entry not a dict", body: "d5:peersli1eee", err: trackerclient.ErrMalformed},
		{name: "html", body: "<html>oops</html>", err: trackerclient.ErrMalformed},
		{name: "empty", body: "", err: trackerclient.ErrMalformed},
		{name: "truncated", body: "d8:intervali60e5:peers12:abc", err: trackerclient.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := httptracker.ParseAnnounce([]byte(tc.body))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
}

func TestParseFailureRetryIn(t *testing.T) {
	for _, tc := range []struct {
		body string
		want time.Duration
	}{
		{"d14:failure reason1:x8:retry ini5ee", 5 * time.Minute},
		{"d14:failure reason1:x8:retry in5:nevere", -1},
		{"d14:failure reason1:xe", 0},
	} {
		_, err := httptracker.ParseAnnounce([]byte(tc.body))
		var fe *trackerclient.FailureError
		if !errors.As(err, &fe) || fe.Reason != "x" || fe.RetryIn != tc.want {
			t.Errorf("%s: %v (%+v), want retry %v", tc.body, err, fe, tc.want)
		}
	}
}

func TestScrapeURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://t.example/announce", "http://t.example/scrape"},
		{"http://t.example/x/announce", "http://t.example/x/scrape"},
		{"http://t.example/announce.php", "http://t.example/scrape.php"},
		{"http://t.example/announce?passkey=abc", "http://t.example/scrape?passkey=abc"},
		{"http://t.example/x/announce/y", ""},
		{"http://t.example/a", ""},
		{"http://t.example", ""},
	} {
		u, _ := url.Parse(tc.in)
		got, err := httptracker.ScrapeURL(u)
		if tc.want == "" {
			if !errors.Is(err, trackerclient.ErrScrapeUnsupported) {
				t.Errorf("%s: %v, want ErrScrapeUnsupported", tc.in, err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestParseScrape(t *testing.T) {
	key := string(ih[:])
	for _, tc := range []struct {
		name string
		body string
		want trackerclient.Scrape
		err  error
	}{
		{"ok", "d5:filesd20:" + key + "d8:completei3e10:downloadedi9e10:incompletei4eeee", trackerclient.Scrape{Seeders: 3, Leechers: 4, Completed: 9}, nil},
		{"absent", "d5:filesdee", trackerclient.Scrape{}, httptracker.ErrNotInScrape},
		{"failure", "d14:failure reason4:nopee", trackerclient.Scrape{}, trackerclient.ErrFailure},
		{"negative", "d5:filesd20:" + key + "d8:completei-3eeee", trackerclient.Scrape{}, trackerclient.ErrMalformed},
		{"garbage", "xx", trackerclient.Scrape{}, trackerclient.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := httptracker.ParseScrape([]byte(tc.body), ih)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("got %+v %v, want %+v %v", got, err, tc.want, tc.err)
			}
		})
	}
}

// recorder is an in-test tracker that records the queries it gets.
type recorder struct {
	mu      sync.Mutex
	queries []url.Values
	raw     []string
}

func (r *recorder) record(req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, req.URL.Query())
	r.raw = append(r.raw, req.URL.RawQuery)
}

func newClient(t *testing.T, u string, opts httptracker.Options) *httptracker.Client {
	t.Helper()
	c, err := httptracker.New(u, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestAnnounceAndScrapeAgainstServer(t *testing.T) {
	rec := &recorder{}
	mux := http.NewServeMux()
	mux.HandleFunc("/announce", func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		fmt.Fprint(w, "d8:intervali900e10:tracker id2:T15:peers"+trackertest.Bstr(trackertest.Compact4("10.1.1.1:1000"))+"e")
	})
	mux.HandleFunc("/scrape", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("info_hash") != string(ih[:]) || r.URL.Query().Get("passkey") != "k" {
			http.Error(w, "bad scrape", 400)
			return
		}
		fmt.Fprint(w, "d5:filesd20:"+string(ih[:])+"d8:completei1e10:downloadedi2e10:incompletei3eeee")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	c := newClient(t, srv.URL+"/announce?passkey=k", httptracker.Options{})
	peerID := [20]byte{'-', 'S', 'A', ' ', 0, 0xff, '%', '&'}
	req := trackerclient.Request{InfoHash: ih, PeerID: peerID, Port: 6881, Uploaded: 1 << 40, Downloaded: 12345, Left: 999,
		Event: reported.EventStarted, Key: 0xdeadbeef, NumWant: 50, TrackerID: "prev"}
	resp, err := c.Announce(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Peers) != 1 || resp.Peers[0].Addr.String() != "10.1.1.1:1000" || resp.TrackerID != "T1" {
		t.Fatalf("response %+v", resp)
	}
	req.Event, req.Left, req.NumWant = reported.EventNone, -1, -1
	if _, err := c.Announce(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	s, err := c.Scrape(ctx(t), ih)
	if err != nil || s != (trackerclient.Scrape{Seeders: 1, Leechers: 3, Completed: 2}) {
		t.Fatalf("scrape %+v %v", s, err)
	}
	if c.Sent() != 3 {
		t.Errorf("Sent %d, want 3", c.Sent())
	}
	q := rec.queries[0]
	for k, want := range map[string]string{
		"info_hash": string(ih[:]), "peer_id": string(peerID[:]), "port": "6881", "uploaded": "1099511627776",
		"downloaded": "12345", "left": "999", "event": "started", "numwant": "50", "key": "DEADBEEF",
		"compact": "1", "trackerid": "prev", "passkey": "k",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("query %s = %q, want %q", k, got, want)
		}
	}
	if !strings.HasPrefix(rec.raw[0], "passkey=k&") {
		t.Errorf("passkey not kept first: %s", rec.raw[0])
	}
	q = rec.queries[1]
	if q.Has("event") || q.Has("numwant") || q.Get("left") != "9223372036854775807" {
		t.Errorf("second announce query %v", q)
	}
}

func TestHostileServers(t *testing.T) {
	mux := http.NewServeMux()
	// 100 MB of reply without Content-Length.
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte("d5:peers104857600:" + strings.Repeat("x", 1<<16-18))
		for i := 0; i < 100<<20/len(chunk); i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			chunk = chunk[:cap(chunk)]
		}
	})
	mux.HandleFunc("/huge-declared", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(100<<20))
		w.Write([]byte("d5:peers"))
	})
	// A reply that never ends: a byte every 20 ms until the client leaves.
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("d8:intervali"))
		for {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := w.Write([]byte("9")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/silent", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/badcompact", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "d5:peers5:abcdee") })
	mux.HandleFunc("/failure", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "d14:failure reason17:torrent not founde")
	})
	mux.HandleFunc("/failure-400", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		fmt.Fprint(w, "d14:failure reason8:bad passe")
	})
	mux.HandleFunc("/status500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) })
	mux.HandleFunc("/to-https", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://"+r.Host+"/ok", http.StatusFound)
	})
	mux.HandleFunc("/to-ok", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ok", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "d8:intervali60e5:peers"+trackertest.Bstr(trackertest.Compact4("10.9.9.9:9"))+"e")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	opts := httptracker.Options{Timeout: 500 * time.Millisecond}
	for _, tc := range []struct {
		path    string
		err     error
		errText string
		peers   int
	}{
		{path: "/huge", err: trackerclient.ErrTooLarge},
		{path: "/huge-declared", err: trackerclient.ErrTooLarge},
		{path: "/endless", err: trackerclient.ErrTimeout},
		{path: "/silent", err: trackerclient.ErrTimeout},
		{path: "/badcompact", err: compact.ErrLength},
		{path: "/failure", err: trackerclient.ErrFailure, errText: "torrent not found"},
		{path: "/failure-400", err: trackerclient.ErrFailure, errText: "bad pass"},
		{path: "/status500", errText: "500"},
		{path: "/to-https", errText: "scheme change"},
		{path: "/loop", errText: "redirects"},
		{path: "/to-ok", peers: 1},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c := newClient(t, srv.URL+tc.path, opts)
			r, err := c.Announce(ctx(t), trackerclient.Request{InfoHash: ih, Port: 1})
			if tc.err == nil && tc.errText == "" {
				if err != nil || len(r.Peers) != tc.peers {
					t.Fatalf("got %+v %v", r, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, got %+v", r)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("err %q lacks %q", err, tc.errText)
			}
		})
	}
}

func TestDenyPrivate(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		fmt.Fprint(w, "d8:intervali60e5:peers0:e")
	}))
	defer srv.Close()
	c := newClient(t, srv.URL+"/announce", httptracker.Options{DenyPrivate: true})
	if _, err := c.Announce(ctx(t), trackerclient.Request{InfoHash: ih, Port: 1}); !errors.Is(err, trackerclient.ErrDeniedAddress) {
		t.Fatalf("loopback tracker with DenyPrivate: %v", err)
	}
	if _, err := c.Scrape(ctx(t), ih); !errors.Is(err, trackerclient.ErrDeniedAddress) {
		t.Fatalf("scrape with DenyPrivate: %v", err)
	}
	if hits != 0 {
		t.Fatalf("the denied tracker got %d requests", hits)
	}
	c2 := newClient(t, srv.URL+"/announce", httptracker.Options{})
	if _, err := c2.Announce(ctx(t), trackerclient.Request{InfoHash: ih, Port: 1}); err != nil {
		t.Fatalf("default policy: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	for _, u := range []string{"udp://127.0.0.1:1/announce", "ftp://x/announce", "http:///announce", "%zz"} {
		if _, err := httptracker.New(u, httptracker.Options{}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

func FuzzParseAnnounce(f *testing.F) {
	f.Add([]byte("d8:intervali1800e5:peers" + trackertest.Bstr(trackertest.Compact4("10.0.0.1:6881")) + "6:peers6" + trackertest.Bstr(trackertest.Compact6("[::1]:1")) + "e"))
	f.Add([]byte("d5:peersld2:ip8:10.0.0.14:porti1eeee"))
	f.Add([]byte("d14:failure reason3:bad8:retry ini5ee"))
	f.Add([]byte("d5:peers5:abcdee"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := httptracker.ParseAnnounce(body)
		if err != nil {
			return
		}
		if r.Interval < 0 || r.Interval > 24*time.Hour || r.MinInterval < 0 || r.MinInterval > 24*time.Hour {
			t.Fatalf("interval out of range: %+v", r)
		}
		if len(r.Peers) > len(body)/6+1 {
			t.Fatalf("%d peers from %d bytes", len(r.Peers), len(body))
		}
		for _, p := range r.Peers {
			if !p.Addr.IsValid() || p.Addr.Addr().Is4In6() {
				t.Fatalf("bad peer %v", p.Addr)
			}
		}
	})
}

func FuzzParseScrape(f *testing.F) {
	f.Add([]byte("d5:filesd20:" + string(ih[:]) + "d8:completei3e10:downloadedi9e10:incompletei4eeee"))
	f.Add([]byte("d5:filesdee"))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := httptracker.ParseScrape(body, ih)
		if err == nil && (s.Seeders < 0 || s.Leechers < 0 || s.Completed < 0) {
			t.Fatalf("negative counts %+v", s)
		}
	})
}
