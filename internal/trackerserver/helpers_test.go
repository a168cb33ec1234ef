package trackerserver

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

var (
	ih1 = [20]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, '&'}
	ih2 = [20]byte{'%', '+', ' ', 0xff, 0}
)

func pid(s string) (id [20]byte) {
	copy(id[:], fmt.Sprintf("%-20s", s))
	return id
}

// fakeClock is a settable Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newServer makes a Server with a MemoryRecorder (unless cfg has a
// Recorder) and a silent logger. It does not start it.
func newServer(t testing.TB, cfg Config) (*Server, *reported.MemoryRecorder) {
	t.Helper()
	var mem *reported.MemoryRecorder
	if cfg.Recorder == nil {
		mem = &reported.MemoryRecorder{}
		cfg.Recorder = mem
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, mem
}

// startServer makes and starts a Server, closed at the end of the test.
func startServer(t testing.TB, cfg Config) (*Server, *reported.MemoryRecorder) {
	t.Helper()
	s, mem := newServer(t, cfg)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, mem
}

// httpClient never uses a proxy from the environment.
var httpClient = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 20 * time.Second}

type announceParams struct {
	infoHash        [20]byte
	peerID          [20]byte
	port            int
	up, down, left  int64
	event           string
	extra           url.Values
	omit            string // a parameter to leave out
	rawQueryOverlay string // replaces the whole query when set
}

func (p announceParams) query() string {
	if p.rawQueryOverlay != "" {
		return p.rawQueryOverlay
	}
	v := url.Values{}
	v.Set("info_hash", string(p.infoHash[:]))
	v.Set("peer_id", string(p.peerID[:]))
	v.Set("port", fmt.Sprint(p.port))
	v.Set("uploaded", fmt.Sprint(p.up))
	v.Set("downloaded", fmt.Sprint(p.down))
	v.Set("left", fmt.Sprint(p.left))
	if p.event != "" {
		v.Set("event", p.event)
	}
	for k, vs := range p.extra {
		v[k] = vs
	}
	v.Del(p.omit)
	return v.Encode()
}

// trackerReply is an HTTP announce reply, peers decoded from either form.
type trackerReply struct {
	FailureReason string        `bencode:"failure reason"`
	Interval      int           `bencode:"interval"`
	MinInterval   int           `bencode:"min interval"`
	TrackerID     string        `bencode:"tracker id"`
	Complete      int           `bencode:"complete"`
	Incomplete    int           `bencode:"incomplete"`
	Downloaded    int           `bencode:"downloaded"`
	RawPeers      bencode.Bytes `bencode:"peers"`
	Peers6        string        `bencode:"peers6"`
	ExternalIP    string        `bencode:"external ip"`

	peers   []netip.AddrPort `bencode:"-"`
	peerIDs [][]byte         `bencode:"-"` // dictionary form only
	dict    bool             `bencode:"-"`
}

func decodeReply(t testing.TB, body []byte) trackerReply {
	t.Helper()
	var r trackerReply
	if err := bencode.Unmarshal(body, &r); err != nil {
		t.Fatalf("reply %q: %v", body, err)
	}
	if len(r.RawPeers) > 0 && r.RawPeers[0] == 'l' {
		r.dict = true
		var list []struct {
			ID   *string `bencode:"peer id"`
			IP   string  `bencode:"ip"`
			Port uint16  `bencode:"port"`
		}
		if err := bencode.Unmarshal(r.RawPeers, &list); err != nil {
			t.Fatalf("peers %q: %v", r.RawPeers, err)
		}
		for _, p := range list {
			r.peers = append(r.peers, netip.AddrPortFrom(netip.MustParseAddr(p.IP), p.Port))
			if p.ID != nil {
				r.peerIDs = append(r.peerIDs, []byte(*p.ID))
			}
		}
	} else if len(r.RawPeers) > 0 {
		var compact string
		if err := bencode.Unmarshal(r.RawPeers, &compact); err != nil {
			t.Fatalf("peers %q: %v", r.RawPeers, err)
		}
		r.peers = append(r.peers, splitCompact(t, compact, 4)...)
	}
	r.peers = append(r.peers, splitCompact(t, r.Peers6, 16)...)
	return r
}

func splitCompact(t testing.TB, s string, ipLen int) []netip.AddrPort {
	t.Helper()
	n := ipLen + 2
	if len(s)%n != 0 {
		t.Fatalf("compact peers of %d bytes, not a multiple of %d", len(s), n)
	}
	var out []netip.AddrPort
	for i := 0; i < len(s); i += n {
		ip, _ := netip.AddrFromSlice([]byte(s[i : i+ipLen]))
		out = append(out, netip.AddrPortFrom(ip, binary.BigEndian.Uint16([]byte(s[i+ipLen:i+n]))))
	}
	return out
}

// get fetches url over the network and returns status and body.
func get(t testing.TB, u string, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// serveInProcess runs one request through the handler as if from remote.
func serveInProcess(t testing.TB, h http.Handler, target, remote string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.Bytes()
}

func baseURL(s *Server) string { return strings.TrimSuffix(s.HTTPURL(), "/announce") }

// failingRecorder fails every record, counting the calls.
type failingRecorder struct {
	mu sync.Mutex
	n  int
}

func (f *failingRecorder) RecordAnnounce(reported.Announce) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return fmt.Errorf("disk full")
}

func (f *failingRecorder) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// haveIPv6Loopback reports whether ::1 can be bound.
func haveIPv6Loopback() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
