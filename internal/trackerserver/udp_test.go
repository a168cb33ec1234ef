package trackerserver

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

func listenLoopback4(string, string) (net.PacketConn, error) {
	return net.ListenPacket("udp4", "127.0.0.1:0")
}

func listenLoopback6(string, string) (net.PacketConn, error) {
	return net.ListenPacket("udp6", "[::1]:0")
}

const udpMagic = 0x41727101980

type udpAnnounceReq struct {
	ih             [20]byte
	peerID         [20]byte
	down, left, up int64
	event          uint32
	ip             uint32
	key            uint32
	numWant        int32
	port           uint16
	options        []byte
	truncate       int // drop this many bytes from the end
}

func udpHeader(connID uint64, action, tid uint32) []byte {
	b := binary.BigEndian.AppendUint64(nil, connID)
	b = binary.BigEndian.AppendUint32(b, action)
	return binary.BigEndian.AppendUint32(b, tid)
}

func (r udpAnnounceReq) packet(connID uint64, tid uint32) []byte {
	b := udpHeader(connID, 1, tid)
	b = append(b, r.ih[:]...)
	b = append(b, r.peerID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.down))
	b = binary.BigEndian.AppendUint64(b, uint64(r.left))
	b = binary.BigEndian.AppendUint64(b, uint64(r.up))
	b = binary.BigEndian.AppendUint32(b, r.event)
	b = binary.BigEndian.AppendUint32(b, r.ip)
	b = binary.BigEndian.AppendUint32(b, r.key)
	b = binary.BigEndian.AppendUint32(b, uint32(r.numWant))
	b = binary.BigEndian.AppendUint16(b, r.port)
	b = append(b, r.options...)
	return b[:len(b)-r.truncate]
}

func scrapePacket(connID uint64, tid uint32, ihs ...[20]byte) []byte {
	b := udpHeader(connID, 2, tid)
	for _, ih := range ihs {
		b = append(b, ih[:]...)
	}
	return b
}

type udpResp struct {
	action, tid                 uint32
	connID                      uint64
	interval, leechers, seeders int32
	peers                       []netip.AddrPort
	scrape                      [][3]int32
	msg                         string
}

func parseUDPResp(t testing.TB, b []byte, v6 bool) udpResp {
	t.Helper()
	if len(b) < 8 {
		t.Fatalf("reply of %d bytes", len(b))
	}
	r := udpResp{action: binary.BigEndian.Uint32(b), tid: binary.BigEndian.Uint32(b[4:])}
	body := b[8:]
	switch r.action {
	case 0:
		if len(body) != 8 {
			t.Fatalf("connect reply body of %d bytes", len(body))
		}
		r.connID = binary.BigEndian.Uint64(body)
	case 1:
		if len(body) < 12 {
			t.Fatalf("announce reply body of %d bytes", len(body))
		}
		r.interval = int32(binary.BigEndian.Uint32(body))
		r.leechers = int32(binary.BigEndian.Uint32(body[4:]))
		r.seeders = int32(binary.BigEndian.Uint32(body[8:]))
		ipLen := 4
		if v6 {
			ipLen = 16
		}
		r.peers = splitCompact(t, string(body[12:]), ipLen)
	case 2:
		if len(body)%12 != 0 {
			t.Fatalf("scrape reply body of %d bytes", len(body))
		}
		for i := 0; i < len(body); i += 12 {
			r.scrape = append(r.scrape, [3]int32{
				int32(binary.BigEndian.Uint32(body[i:])), int32(binary.BigEndian.Uint32(body[i+4:])), int32(binary.BigEndian.Uint32(body[i+8:])),
			})
		}
	case 3:
		r.msg = string(body)
	default:
		t.Fatalf("reply action %d", r.action)
	}
	return r
}

// udpTestClient is a minimal BEP 15 client on loopback.
type udpTestClient struct {
	conn *net.UDPConn
	tid  uint32
}

func dialUDP(t testing.TB, s *Server) *udpTestClient {
	t.Helper()
	hostport := strings.TrimSuffix(strings.TrimPrefix(s.UDPURL(), "udp://"), "/announce")
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(hostport)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpTestClient{conn: conn, tid: 100}
}

// exchange sends pkt and returns the first reply carrying tid.
func (c *udpTestClient) exchange(t testing.TB, pkt []byte, tid uint32) []byte {
	t.Helper()
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for reply to transaction %d: %v", tid, err)
		}
		if n >= 8 && binary.BigEndian.Uint32(buf[4:]) == tid {
			return buf[:n]
		}
		t.Fatalf("unexpected reply %x while waiting for transaction %d", buf[:n], tid)
	}
}

func (c *udpTestClient) connect(t testing.TB) uint64 {
	t.Helper()
	c.tid++
	r := parseUDPResp(t, c.exchange(t, udpHeader(udpMagic, 0, c.tid), c.tid), false)
	if r.action != 0 {
		t.Fatalf("connect answered %+v", r)
	}
	return r.connID
}

func (c *udpTestClient) announce(t testing.TB, connID uint64, req udpAnnounceReq) udpResp {
	t.Helper()
	c.tid++
	return parseUDPResp(t, c.exchange(t, req.packet(connID, c.tid), c.tid), false)
}

func TestUDPRoundTrip(t *testing.T) {
	s, mem := startServer(t, Config{UDPAddr: "127.0.0.1:0", Interval: 42 * time.Second})
	c := dialUDP(t, s)
	id := c.connect(t)
	seed := udpAnnounceReq{ih: ih1, peerID: pid("udp-seed"), up: 1 << 30, left: 0, event: 2, key: 0xdeadbeef, numWant: -1, port: 9001}
	if r := c.announce(t, id, seed); r.action != 1 || r.interval != 42 || r.seeders != 1 || r.leechers != 0 || len(r.peers) != 0 {
		t.Fatalf("seed announce: %+v", r)
	}
	leech := udpAnnounceReq{ih: ih1, peerID: pid("udp-leech"), down: 5, left: 10, event: 0, numWant: 10, port: 9002}
	r := c.announce(t, id, leech)
	if r.action != 1 || r.seeders != 1 || r.leechers != 1 || len(r.peers) != 1 || r.peers[0] != netip.AddrPortFrom(loop4, 9001) {
		t.Fatalf("leech announce: %+v", r)
	}
	leech.event = 1 // completed
	leech.left = 0
	c.announce(t, id, leech)
	c.tid++
	sr := parseUDPResp(t, c.exchange(t, scrapePacket(id, c.tid, ih1, ih2), c.tid), false)
	if sr.action != 2 || len(sr.scrape) != 2 || sr.scrape[0] != [3]int32{2, 1, 0} || sr.scrape[1] != [3]int32{} {
		t.Errorf("scrape: %+v", sr)
	}
	got := mem.Announces()
	if len(got) != 3 {
		t.Fatalf("recorded %d", len(got))
	}
	want := reported.Announce{
		At: got[0].At, InfoHash: ih1, PeerID: seed.peerID, IP: loop4, Port: 9001, Uploaded: 1 << 30,
		Event: reported.EventStarted, Key: "deadbeef", Source: "udp",
	}
	if got[0] != want || got[2].Event != reported.EventCompleted || got[1].Event != reported.EventNone {
		t.Errorf("recorded %+v", got)
	}

	// An over-long datagram is dropped: the next reply is the connect's.
	c.tid++
	big := append(udpHeader(id, 2, c.tid-1), make([]byte, udpMaxPacket)...)
	if _, err := c.conn.Write(big); err != nil {
		t.Fatal(err)
	}
	c.connect(t)
}

// TestUDPHandle drives handleUDP directly: a fake clock and any source
// address, no sockets.
func TestUDPHandle(t *testing.T) {
	clk := newFakeClock()
	s, mem := newServer(t, Config{Now: clk.Now})
	src := netip.MustParseAddrPort("192.0.2.1:6881")
	handle := func(pkt []byte, from netip.AddrPort) []byte {
		var out bytes.Buffer
		s.handleUDP(pkt, from, &out)
		return out.Bytes()
	}
	connect := func(from netip.AddrPort) uint64 {
		return parseUDPResp(t, handle(udpHeader(udpMagic, 0, 1), from), false).connID
	}
	id := connect(src)
	forged := id ^ 1
	good := udpAnnounceReq{ih: ih1, peerID: pid("h"), left: 1, numWant: -1, port: 1}
	pk := func(p string) []byte { return append([]byte{2, byte(len(p))}, p...) }

	tests := []struct {
		name    string
		pkt     func() []byte
		from    netip.AddrPort
		advance time.Duration
		want    string // "" no reply; "ok" an announce/scrape reply; else an error message prefix
	}{
		{"too short", func() []byte { return make([]byte, 15) }, src, 0, ""},
		{"connect without magic", func() []byte { return udpHeader(7, 0, 1) }, src, 0, ""},
		{"forged id", func() []byte { return good.packet(forged, 1) }, src, 0, "connection id expired"},
		{"forged id, short packet", func() []byte { return udpHeader(forged, 2, 1) }, src, 0, ""},
		{"id from another port", func() []byte { return good.packet(id, 1) }, netip.MustParseAddrPort("192.0.2.1:6882"), 0, "connection id expired"},
		{"id from another address", func() []byte { return good.packet(id, 1) }, netip.MustParseAddrPort("192.0.2.2:6881"), 0, "connection id expired"},
		{"good", func() []byte { return good.packet(id, 1) }, src, 0, "ok"},
		{"short announce", func() []byte { g := good; g.truncate = 1; return g.packet(id, 1) }, src, 0, "bad request: announce of 97 bytes"},
		{"unknown event", func() []byte { g := good; g.event = 4; return g.packet(id, 1) }, src, 0, "unknown event 4"},
		{"negative left", func() []byte { g := good; g.left = -1; return g.packet(id, 1) }, src, 0, "negative"},
		{"unknown action", func() []byte { return append(udpHeader(id, 9, 1), make([]byte, 30)...) }, src, 0, "bad request: unknown action 9"},
		{"empty scrape", func() []byte { return scrapePacket(id, 1) }, src, 0, "bad request: scrape body of 0 bytes"},
		{"ragged scrape", func() []byte { return append(scrapePacket(id, 1, ih1), 0) }, src, 0, "bad request: scrape body of 21"},
		{"huge scrape", func() []byte { return scrapePacket(id, 1, make([][20]byte, udpMaxScrape+1)...) }, src, 0, "bad request: scrape body"},
		{"full scrape", func() []byte { return scrapePacket(id, 1, make([][20]byte, udpMaxScrape)...) }, src, 0, "ok"},
		{"garbage options", func() []byte { g := good; g.options = []byte{1, 9, 200, 1, 2}; return g.packet(id, 1) }, src, 0, "ok"},
		{"still valid after 90s", func() []byte { return good.packet(id, 1) }, src, 90 * time.Second, "ok"},
		{"expired after 2 minutes", func() []byte { return good.packet(id, 1) }, src, 31 * time.Second, "connection id expired"},
	}
	for _, tc := range tests {
		clk.Advance(tc.advance)
		pkt := tc.pkt()
		reply := handle(pkt, tc.from)
		switch {
		case tc.want == "":
			if len(reply) != 0 {
				t.Errorf("%s: reply %x, want none", tc.name, reply)
			}
			continue
		case len(reply) == 0:
			t.Errorf("%s: no reply", tc.name)
			continue
		}
		r := parseUDPResp(t, reply, false)
		if r.tid != 1 {
			t.Errorf("%s: transaction id %d", tc.name, r.tid)
		}
		if tc.want == "ok" && r.action == 3 || tc.want != "ok" && !strings.HasPrefix(r.msg, tc.want) {
			t.Errorf("%s: %+v, want %q", tc.name, r, tc.want)
		}
		if r.action == 3 && tc.want == "connection id expired" && len(reply) > len(pkt) {
			t.Errorf("%s: %d-byte error for a %d-byte packet", tc.name, len(reply), len(pkt))
		}
	}

	// BEP 41 URL data carries the passkey, possibly split over options.
	id = connect(src)
	g := good
	g.options = append(append(append([]byte{1}, pk("/pk-")...), pk("u41/announce?x=1")...), 0, 2, 5)
	n := mem.Len()
	if r := parseUDPResp(t, handle(g.packet(id, 1), src), false); r.action != 1 {
		t.Fatalf("announce with options: %+v", r)
	}
	if got := mem.Announces()[n].Passkey; got != "pk-u41" {
		t.Errorf("passkey from URL data %q, want pk-u41", got)
	}

	// The loopback IP field becomes the peer's address for others.
	lo := netip.MustParseAddrPort("127.0.0.1:7000")
	lid := connect(lo)
	ih := ih2
	handle(udpAnnounceReq{ih: ih, peerID: pid("lo"), left: 0, numWant: -1, port: 7000, ip: 0xc6336409}.packet(lid, 1), lo)
	r := parseUDPResp(t, handle(udpAnnounceReq{ih: ih, peerID: pid("other"), left: 1, numWant: -1, port: 7001}.packet(id, 1), src), false)
	if len(r.peers) != 1 || r.peers[0] != netip.MustParseAddrPort("198.51.100.9:7000") {
		t.Errorf("peer from loopback with IP field: %v", r.peers)
	}
}

func TestParseBEP41(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{nil, ""},
		{[]byte{0, 2, 3, 'a', 'b', 'c'}, ""},
		{[]byte{2, 3, 'a', 'b', 'c', 1, 2, 1, 'd'}, "abcd"},
		{[]byte{2, 9, 'a'}, ""},
		{[]byte{7, 2, 'x', 'y', 2, 1, 'z'}, "z"},
		{[]byte{2}, ""},
		{append([]byte{2, 255}, bytes.Repeat([]byte{'a'}, 255)...), strings.Repeat("a", 255)},
	} {
		if got := parseBEP41(tc.in); got != tc.want {
			t.Errorf("parseBEP41(%x) = %q, want %q", tc.in, got, tc.want)
		}
	}
	var long []byte
	for range 10 {
		long = append(long, 2, 200)
		long = append(long, bytes.Repeat([]byte{'u'}, 200)...)
	}
	if got := parseBEP41(long); len(got) > udpMaxURLData {
		t.Errorf("URL data of %d bytes kept", len(got))
	}
}
