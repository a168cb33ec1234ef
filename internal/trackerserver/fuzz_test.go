package trackerserver

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"

	"github.com/anacrolix/torrent/bencode"
)

// FuzzParseAnnounce feeds arbitrary query strings to the announce parser and
// to the whole HTTP handler: no panic, a bencoded dictionary back, values in
// range when accepted.
func FuzzParseAnnounce(f *testing.F) {
	f.Add(announceParams{infoHash: ih1, peerID: pid("-TR3000-x"), port: 51413, up: 1, down: 2, left: 3, event: "started"}.query())
	f.Add(announceParams{infoHash: ih2, peerID: pid("p"), port: 1, extra: url.Values{"compact": {"0"}, "no_peer_id": {"1"}, "numwant": {"-5"}, "ip": {"127.0.0.1"}}}.query())
	f.Add("info_hash=%zz&peer_id=;&port=x")
	f.Add("info_hash=a&info_hash=b&left=-1&event=paused&key=" + string(make([]byte, 200)))
	s, _ := newServer(f, Config{})
	h := s.Handler()
	f.Fuzz(func(t *testing.T, rawQuery string) {
		q, err := parseAnnounce(rawQuery)
		if err == nil {
			if q.uploaded < 0 || q.downloaded < 0 || q.left < 0 || q.numWant < -1 || len(q.key) > maxKeyLen || len(q.trackerID) > maxKeyLen {
				t.Fatalf("accepted out-of-range values: %+v", q)
			}
		}
		for _, path := range []string{"/announce", "/scrape"} {
			req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawQuery: rawQuery}, Header: http.Header{}, RemoteAddr: "192.0.2.1:1"}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			var reply map[string]any
			if err := bencode.Unmarshal(w.Body.Bytes(), &reply); err != nil {
				t.Fatalf("%s reply %q is not a bencoded dictionary: %v", path, w.Body.Bytes(), err)
			}
			if _, failed := reply["failure reason"]; path == "/announce" && failed != (err != nil) {
				t.Fatalf("parse error %v but reply %q", err, w.Body.Bytes())
			}
		}
	})
}

// FuzzParseUDP feeds arbitrary datagrams to the UDP parser and handler, with
// or without a valid connection id spliced in: no panic, replies within one
// datagram, and never more bytes than sent until the source is proven.
func FuzzParseUDP(f *testing.F) {
	good := udpAnnounceReq{ih: ih1, peerID: pid("f"), left: 1, numWant: -1, port: 1}
	f.Add(udpHeader(udpMagic, 0, 1), false)
	f.Add(good.packet(0, 2), true)
	f.Add(append(good.packet(0, 3), 1, 2, 3, 'a', 'b', 'c', 9, 1), true)
	f.Add(scrapePacket(0, 4, ih1, ih2), true)
	f.Add(scrapePacket(0, 5, ih1)[:30], false)
	f.Add(append(udpHeader(0, 3, 6), "error?"...), true)
	clk := newFakeClock()
	s, _ := newServer(f, Config{Now: clk.Now})
	src := netip.MustParseAddrPort("192.0.2.1:6881")
	f.Fuzz(func(t *testing.T, pkt []byte, validConn bool) {
		if len(pkt) > udpMaxPacket {
			return // serveUDP drops these unread
		}
		if _, err := parseUDPRequest(pkt); err != nil && len(pkt) >= udpHeaderLen && !bytes.Contains([]byte(err.Error()), []byte("bad request")) {
			t.Fatalf("error %v does not wrap ErrBadRequest", err)
		}
		pkt = bytes.Clone(pkt)
		if validConn && len(pkt) >= 8 {
			binary.BigEndian.PutUint64(pkt, s.connectionID(src, epoch(clk.Now())))
		}
		var out bytes.Buffer
		s.handleUDP(pkt, src, &out)
		if out.Len() > 1472 {
			t.Fatalf("reply of %d bytes", out.Len())
		}
		if !validConn && out.Len() > len(pkt) {
			t.Fatalf("%d-byte reply to a %d-byte packet from an unproven source", out.Len(), len(pkt))
		}
	})
}
