package udptracker_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/trackertest"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/udptracker"
	"github.com/swarmaudit/swarmaudit/internal/wire/compact"
)

var ih = infohash.HashBytes([]byte("udptracker test"))

func swarm() *trackertest.Swarm {
	return &trackertest.Swarm{
		InfoHash: ih,
		Peers: []netip.AddrPort{
			netip.MustParseAddrPort("10.0.0.1:6881"),
			netip.MustParseAddrPort("10.0.0.2:51413"),
			netip.MustParseAddrPort("[2001:db8::3]:80"),
		},
		Interval: 120, Seeders: 4, Leechers: 5, Completed: 6,
	}
}

// fast are options for tests: 20 ms first retransmission timeout.
func fast() udptracker.Options {
	return udptracker.Options{BackoffBase: 20 * time.Millisecond, MaxRetries: 3}
}

func newClient(t *testing.T, u string, o udptracker.Options) *udptracker.Client {
	t.Helper()
	c, err := udptracker.New(u, o)
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

func TestAnnounceScrape(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			if network == "udp6" {
				if pc, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback on this machine: %v", err)
				} else {
					pc.Close()
				}
			}
			sw := swarm()
			srv := &trackertest.UDP{Swarm: sw, Network: network, Stray: true}
			u := srv.Start(t)
			c := newClient(t, u, fast())
			req := trackerclient.Request{InfoHash: ih, PeerID: [20]byte{1, 2, 3}, Port: 7000, Uploaded: 1 << 33, Downloaded: 77,
				Left: 1000, Event: reported.EventStarted, Key: 0xabcd0123, NumWant: 10}
			r, err := c.Announce(ctx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if r.Interval != 2*time.Minute || r.Seeders != 4 || r.Leechers != 5 {
				t.Errorf("reply %+v", r)
			}
			var got []string
			for _, p := range r.Peers {
				got = append(got, p.Addr.String())
			}
			want := "10.0.0.1:6881 10.0.0.2:51413"
			if network == "udp6" {
				want += " [2001:db8::3]:80" // IPv6 trackers carry both families
			}
			if strings.Join(got, " ") != want {
				t.Errorf("peers %v, want %s", got, want)
			}
			s, err := c.Scrape(ctx(t), ih)
			if err != nil || s != (trackerclient.Scrape{Seeders: 4, Leechers: 5, Completed: 6}) {
				t.Errorf("scrape %+v %v", s, err)
			}
			anns := sw.Announces()
			if len(anns) != 1 {
				t.Fatalf("%d announces", len(anns))
			}
			a := anns[0]
			if a.Event != reported.EventStarted || a.Uploaded != 1<<33 || a.Downloaded != 77 || a.Left != 1000 ||
				a.Port != 7000 || a.NumWant != 10 || a.Key != "ABCD0123" || a.PeerID != req.PeerID {
				t.Errorf("tracker saw %+v", a)
			}
			// connect, announce, scrape: the connection id is reused.
			if _, connects := srv.Received(); connects != 1 || c.Sent() != 3 {
				t.Errorf("connects %d, sent %d; want 1 and 3", connects, c.Sent())
			}
		})
	}
}

func TestRetransmission(t *testing.T) {
	srv := &trackertest.UDP{Swarm: swarm(), DropFirst: 2}
	c := newClient(t, srv.Start(t), fast())
	if _, err := c.Announce(ctx(t), trackerclient.Request{InfoHash: ih, NumWant: -1}); err != nil {
		t.Fatal(err)
	}
	// connect sent 3 times (2 dropped), announce once.
	if c.Sent() != 4 {
		t.Errorf("sent %d packets, want 4", c.Sent())
	}
}

func TestConnIDExpiry(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	o := fast()
	o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := &trackertest.UDP{Swarm: swarm()}
	c := newClient(t, srv.Start(t), o)
	for i, step := range []struct {
		advance  time.Duration
		connects int
	}{{0, 1}, {59 * time.Second, 1}, {2 * time.Second, 2}} {
		mu.Lock()
		now = now.Add(step.advance)
		mu.Unlock()
		if _, err := c.Announce(ctx(t), trackerclient.Request{InfoHash: ih}); err != nil {
			t.Fatal(err)
		}
		if _, connects := srv.Received(); connects != step.connects {
			t.Errorf("step %d: %d connects, want %d", i, connects, step.connects)
		}
	}
}

func TestFailures(t *testing.T) {
	t.Run("error action", func(t *testing.T) {
		srv := &trackertest.UDP{Swarm: swarm(), ErrorMessage: "torrent not registered"}
		c := newClient(t, srv.Start(t), fast())
		_, err := c.Announce(ctx(t), trackerclient.Request{InfoHash: ih})
		var fe *trackerclient.FailureError
		if !errors.As(err, &fe) || fe.Reason != "torrent not registered" || !errors.Is(err, trackerclient.ErrFailure) {
			t.Fatalf("%v", err)
		}
		if _, err := c.Scrape(ctx(t), ih); !errors.Is(err, trackerclient.ErrFailure) {
			t.Fatalf("scrape: %v", err)
		}
	})
	t.Run("bad peer list length", func(t *testing.T) {
		srv := &trackertest.UDP{Swarm: swarm(), BadPeers: true}
		c := newClient(t, srv.Start(t), fast())
		if _, err := c.Announce(ctx(t), trackerclient.Request{InfoHash: ih}); !errors.Is(err, compact.ErrLength) || !errors.Is(err, trackerclient.ErrMalformed) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("silent tracker times out after the retries", func(t *testing.T) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		c := newClient(t, "udp://"+pc.LocalAddr().String()+"/announce", fast())
		if _, err := c.Announce(ctx(t), trackerclient.Request{InfoHash: ih}); !errors.Is(err, trackerclient.ErrTimeout) {
			t.Fatalf("%v", err)
		}
		if c.Sent() != 4 {
			t.Errorf("sent %d, want 1 + 3 retries", c.Sent())
		}
	})
	t.Run("context deadline ends the wait", func(t *testing.T) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		c := newClient(t, "udp://"+pc.LocalAddr().String(), udptracker.Options{}) // 15 s base
		cx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := c.Announce(cx, trackerclient.Request{InfoHash: ih}); !errors.Is(err, trackerclient.ErrTimeout) {
			t.Fatalf("%v", err)
		}
		if c.Sent() != 1 {
			t.Errorf("sent %d", c.Sent())
		}
	})
	t.Run("deny private", func(t *testing.T) {
		srv := &trackertest.UDP{Swarm: swarm()}
		o := fast()
		o.DenyPrivate = true
		c := newClient(t, srv.Start(t), o)
		if _, err := c.Announce(ctx(t), trackerclient.Request{InfoHash: ih}); !errors.Is(err, trackerclient.ErrDeniedAddress) {
			t.Fatalf("%v", err)
		}
		if n, _ := srv.Received(); n != 0 || c.Sent() != 0 {
			t.Fatalf("denied tracker got %d datagrams", n)
		}
	})
}

func TestNewRejects(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:1/announce", "udp://127.0.0.1/announce", "udp://127.0.0.1:0", "udp://127.0.0.1:70000", "%zz"} {
		if _, err := udptracker.New(u, udptracker.Options{}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

func TestAnnouncePacket(t *testing.T) {
	req := trackerclient.Request{InfoHash: ih, PeerID: [20]byte{9}, Downloaded: 1, Left: -1, Uploaded: 3,
		Event: reported.EventStopped, Key: 5, NumWant: -1, Port: 6881}
	opt := []byte{2, 3, 'a', 'b', 'c', 0}
	p := udptracker.AnnouncePacket(42, 7, req, opt)
	if len(p) != 98+len(opt) {
		t.Fatalf("length %d", len(p))
	}
	be := binary.BigEndian
	if be.Uint64(p) != 42 || be.Uint32(p[8:]) != 1 || be.Uint32(p[12:]) != 7 || string(p[16:36]) != string(ih[:]) ||
		p[36] != 9 || be.Uint64(p[56:]) != 1 || be.Uint64(p[64:]) != 1<<63-1 || be.Uint64(p[72:]) != 3 ||
		be.Uint32(p[80:]) != 3 || be.Uint32(p[88:]) != 5 || int32(be.Uint32(p[92:])) != -1 || be.Uint16(p[96:]) != 6881 ||
		string(p[98:]) != string(opt) {
		t.Errorf("packet %x", p)
	}
}

func TestParseReplies(t *testing.T) {
	hdr := func(interval, leechers, seeders uint32) []byte {
		b := binary.BigEndian.AppendUint32(nil, interval)
		b = binary.BigEndian.AppendUint32(b, leechers)
		return binary.BigEndian.AppendUint32(b, seeders)
	}
	for _, tc := range []struct {
		name  string
		body  []byte
		ipv6  bool
		peers int
		err   error
	}{
		{"no peers", hdr(60, 1, 2), false, 0, nil},
		{"two v4", append(hdr(60, 1, 2), 1, 2, 3, 4, 0, 1, 5, 6, 7, 8, 0, 2), false, 2, nil},
		{"one v6", append(hdr(60, 1, 2), make([]byte, 15)...), true, 0, compact.ErrLength},
		{"v6 entry", append(append(hdr(60, 1, 2), netip.MustParseAddr("2001:db8::1").AsSlice()...), 0, 80), true, 1, nil},
		{"v4 bad length", append(hdr(60, 1, 2), 1, 2, 3), false, 0, compact.ErrLength},
		{"short header", []byte{0, 0, 0, 1}, false, 0, trackerclient.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := udptracker.ParseAnnounceReply(tc.body, tc.ipv6)
			if !errors.Is(err, tc.err) || (err == nil && len(r.Peers) != tc.peers) {
				t.Fatalf("%+v %v", r, err)
			}
		})
	}
	// A huge interval is capped at a day.
	if r, _ := udptracker.ParseAnnounceReply(hdr(1<<31, 0, 0), false); r.Interval != 24*time.Hour {
		t.Errorf("interval %v", r.Interval)
	}
	if _, err := udptracker.ParseScrapeReply([]byte{1, 2}); !errors.Is(err, trackerclient.ErrMalformed) {
		t.Errorf("short scrape: %v", err)
	}
}

func FuzzParseAnnounceReply(f *testing.F) {
	f.Add([]byte{0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2, 10, 0, 0, 1, 0x1a, 0xe1}, false)
	f.Add(append([]byte{0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 1}, append(netip.MustParseAddr("::1").AsSlice(), 0, 1)...), true)
	f.Add([]byte{0, 0, 0}, false)
	f.Fuzz(func(t *testing.T, body []byte, ipv6 bool) {
		r, err := udptracker.ParseAnnounceReply(body, ipv6)
		if err != nil {
			return
		}
		size := 6
		if ipv6 {
			size = 18
		}
		if len(r.Peers) != (len(body)-12)/size || r.Interval < 0 || r.Interval > 24*time.Hour {
			t.Fatalf("%d peers from %d bytes; interval %v", len(r.Peers), len(body), r.Interval)
		}
		if s, err := udptracker.ParseScrapeReply(body); err == nil && (s.Seeders < 0 || s.Leechers < 0 || s.Completed < 0) {
			t.Fatalf("negative scrape %+v", s)
		}
	})
}
