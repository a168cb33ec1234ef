package trackerserver

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

// BenchmarkHTTPAnnounce measures in-process announce handling: parsing,
// recording (JSON lines to io.Discard), swarm update, reply, over a swarm of
// 1000 peers asking for 50 peers each.
func BenchmarkHTTPAnnounce(b *testing.B) {
	s, _ := newServer(b, Config{Recorder: reported.NewJSONLinesRecorder(io.Discard)})
	h := s.Handler()
	const peers = 1000
	reqs := make([]*http.Request, peers)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, "/announce?"+announceParams{
			infoHash: ih1, peerID: pid(fmt.Sprintf("bench-%d", i)), port: 1000 + i, up: int64(i) << 20, left: int64(i % 2),
		}.query(), nil)
		reqs[i].RemoteAddr = fmt.Sprintf("10.%d.%d.1:6881", i/256, i%256)
		reqs[i].Header.Set("User-Agent", "bench/1.0")
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, reqs[i%peers])
		if w.Code != http.StatusOK {
			b.Fatal(w.Body.String())
		}
		i++
	}
}

// BenchmarkUDPAnnounceRoundTrip measures announce round trips on loopback:
// one client, one request in flight.
func BenchmarkUDPAnnounceRoundTrip(b *testing.B) {
	s, _ := startServer(b, Config{UDPAddr: "127.0.0.1:0", Recorder: reported.NewJSONLinesRecorder(io.Discard)})
	c := dialUDP(b, s)
	id := c.connect(b)
	req := udpAnnounceReq{ih: ih1, peerID: pid("bench"), left: 1, numWant: 50, port: 1}
	b.ReportAllocs()
	for b.Loop() {
		c.tid++
		c.exchange(b, req.packet(id, c.tid), c.tid)
	}
}
