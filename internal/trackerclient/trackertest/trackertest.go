// Package trackertest runs synthetic BitTorrent trackers on loopback for
// tests and benchmarks: an HTTP tracker (BEP 3/23/48) and a UDP tracker
// (BEP 15) serving one swarm of made-up peers and recording every announce
// they receive, with knobs for misbehaviour.
package trackertest

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/wire/compact"
)

// Announce is one announce a test tracker received.
type Announce struct {
	reported.Announce
	NumWant   int
	TrackerID string // the trackerid parameter echoed by the client
	Proto     string // "http" or "udp"
}

// Swarm is the state the test trackers share: the peers handed out and the
// announces received. Set the exported fields before starting a server.
type Swarm struct {
	InfoHash    infohash.T
	Peers       []netip.AddrPort // handed out, numwant at a time, rotating
	Interval    int              // seconds; 1800 if 0
	MinInterval int              // seconds; omitted if 0
	TrackerID   string           // sent in HTTP replies if set
	Seeders     int
	Leechers    int
	Completed   int

	mu        sync.Mutex
	next      int
	announces []Announce
}

// Announces returns the announces received so far.
func (s *Swarm) Announces() []Announce {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Announce(nil), s.announces...)
}

func (s *Swarm) record(a Announce) (peers []netip.AddrPort, interval, minInterval int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.At = time.Now()
	s.announces = append(s.announces, a)
	n := a.NumWant
	if n < 0 || n > len(s.Peers) {
		n = min(len(s.Peers), 50)
	}
	for i := 0; i < n && len(s.Peers) > 0; i++ {
		peers = append(peers, s.Peers[s.next%len(s.Peers)])
		s.next++
	}
	interval = s.Interval
	if interval == 0 {
		interval = 1800
	}
	return peers, interval, s.MinInterval
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// StartHTTP starts an HTTP tracker on 127.0.0.1 for the swarm and returns
// its announce URL; /scrape answers BEP 48 scrapes. It stops at the end
// of the test.
func StartHTTP(tb testing.TB, s *Swarm) string {
	tb.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/announce", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("info_hash") != string(s.InfoHash[:]) {
			fmt.Fprint(w, "d14:failure reason17:torrent not founde")
			return
		}
		var a Announce
		a.InfoHash = s.InfoHash
		copy(a.PeerID[:], q.Get("peer_id"))
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			a.IP = ap.Addr()
		}
		a.Port = uint16(atoi(q.Get("port")))
		a.Uploaded, a.Downloaded, a.Left = atoi(q.Get("uploaded")), atoi(q.Get("downloaded")), atoi(q.Get("left"))
		a.Event = reported.Event(q.Get("event"))
		a.Key = q.Get("key")
		a.NumWant = -1
		if q.Has("numwant") {
			a.NumWant = int(atoi(q.Get("numwant")))
		}
		a.TrackerID = q.Get("trackerid")
		a.Proto = "http"
		peers, interval, minInterval := s.record(a)
		reply := map[string]any{
			"interval":   interval,
			"complete":   s.Seeders,
			"incomplete": s.Leechers,
			"peers":      string(compact.Append(nil, peers, compact.Size4)),
		}
		if p6 := compact.Append(nil, peers, compact.Size6); len(p6) > 0 {
			reply["peers6"] = string(p6)
		}
		if minInterval > 0 {
			reply["min interval"] = minInterval
		}
		if s.TrackerID != "" {
			reply["tracker id"] = s.TrackerID
		}
		b, _ := bencode.Marshal(reply)
		w.Write(b)
	})
	mux.HandleFunc("/scrape", func(w http.ResponseWriter, r *http.Request) {
		files := map[string]any{}
		for _, h := range r.URL.Query()["info_hash"] {
			if h == string(s.InfoHash[:]) {
				files[h] = map[string]int{"complete": s.Seeders, "incomplete": s.Leechers, "downloaded": s.Completed}
			}
		}
		b, _ := bencode.Marshal(map[string]any{"files": files})
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv.URL + "/announce"
}

// UDP is a BEP 15 tracker for a swarm. Set the knobs before Start.
type UDP struct {
	Swarm *Swarm
	// Network is "udp4" (127.0.0.1, the default) or "udp6" ([::1]).
	Network string
	// DropFirst silently drops the first n datagrams (retransmission
	// tests).
	DropFirst int
	// ErrorMessage, if set, answers announces and scrapes with an error
	// action carrying it.
	ErrorMessage string
	// BadPeers appends one stray byte to the peer list of announce replies.
	BadPeers bool
	// Stray sends a datagram with a wrong transaction id before each
	// real reply.
	Stray bool

	conn     net.PacketConn
	mu       sync.Mutex
	received int
	connects int
	connIDs  map[uint64]bool
}

// Start listens on loopback and serves until the end of the test; it
// returns the announce URL.
func (u *UDP) Start(tb testing.TB) string {
	tb.Helper()
	network, addr := "udp4", "127.0.0.1:0"
	if u.Network == "udp6" {
		network, addr = "udp6", "[::1]:0"
	}
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		tb.Fatalf("udp tracker listen %s: %v", addr, err)
	}
	u.conn = pc
	u.connIDs = map[uint64]bool{}
	done := make(chan struct{})
	tb.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			u.handle(buf[:n], from)
		}
	}()
	return "udp://" + pc.LocalAddr().String() + "/announce"
}

// Received returns the number of datagrams received (dropped ones
// included) and of connect requests answered.
func (u *UDP) Received() (datagrams, connects int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.received, u.connects
}

func (u *UDP) handle(p []byte, from net.Addr) {
	u.mu.Lock()
	u.received++
	drop := u.received <= u.DropFirst
	u.mu.Unlock()
	if drop || len(p) < 16 {
		return
	}
	connID := binary.BigEndian.Uint64(p[0:])
	action := binary.BigEndian.Uint32(p[8:])
	tid := binary.BigEndian.Uint32(p[12:])
	reply := func(action uint32, body []byte) {
		if u.Stray {
			h := binary.BigEndian.AppendUint32(nil, action)
			h = binary.BigEndian.AppendUint32(h, tid+1)
			u.conn.WriteTo(append(h, body...), from)
		}
		h := binary.BigEndian.AppendUint32(nil, action)
		h = binary.BigEndian.AppendUint32(h, tid)
		u.conn.WriteTo(append(h, body...), from)
	}
	if action == 0 {
		if connID != 0x41727101980 {
			return
		}
		var b [8]byte
		rand.Read(b[:])
		id := binary.BigEndian.Uint64(b[:])
		u.mu.Lock()
		u.connIDs[id] = true
		u.connects++
		u.mu.Unlock()
		reply(0, b[:])
		return
	}
	u.mu.Lock()
	known := u.connIDs[connID]
	u.mu.Unlock()
	if !known {
		reply(3, []byte("Connection ID missmatch.\x00"))
		return
	}
	if u.ErrorMessage != "" {
		reply(3, []byte(u.ErrorMessage))
		return
	}
	s := u.Swarm
	switch action {
	case 1:
		if len(p) < 98 || string(p[16:36]) != string(s.InfoHash[:]) {
			reply(3, []byte("bad announce"))
			return
		}
		var a Announce
		a.InfoHash = s.InfoHash
		copy(a.PeerID[:], p[36:56])
		a.Downloaded = int64(binary.BigEndian.Uint64(p[56:]))
		a.Left = int64(binary.BigEndian.Uint64(p[64:]))
		a.Uploaded = int64(binary.BigEndian.Uint64(p[72:]))
		a.Event = [...]reported.Event{"", reported.EventCompleted, reported.EventStarted, reported.EventStopped, ""}[min(binary.BigEndian.Uint32(p[80:]), 4)]
		a.Key = fmt.Sprintf("%08X", binary.BigEndian.Uint32(p[88:]))
		a.NumWant = int(int32(binary.BigEndian.Uint32(p[92:])))
		a.Port = binary.BigEndian.Uint16(p[96:])
		if ap, err := netip.ParseAddrPort(from.String()); err == nil {
			a.IP = ap.Addr()
		}
		a.Proto = "udp"
		peers, interval, _ := s.record(a)
		body := binary.BigEndian.AppendUint32(nil, uint32(interval))
		body = binary.BigEndian.AppendUint32(body, uint32(s.Leechers))
		body = binary.BigEndian.AppendUint32(body, uint32(s.Seeders))
		if u.Network == "udp6" {
			// BEP 15 over IPv6 carries 18-byte entries, IPv4 peers mapped.
			for _, pr := range peers {
				a16 := pr.Addr().As16()
				body = append(body, a16[:]...)
				body = binary.BigEndian.AppendUint16(body, pr.Port())
			}
		} else {
			body = compact.Append(body, peers, compact.Size4)
		}
		if u.BadPeers {
			body = append(body, 0)
		}
		reply(1, body)
	case 2:
		var body []byte
		for off := 16; off+20 <= len(p); off += 20 {
			if string(p[off:off+20]) == string(s.InfoHash[:]) {
				body = binary.BigEndian.AppendUint32(body, uint32(s.Seeders))
				body = binary.BigEndian.AppendUint32(body, uint32(s.Completed))
				body = binary.BigEndian.AppendUint32(body, uint32(s.Leechers))
			} else {
				body = append(body, make([]byte, 12)...)
			}
		}
		reply(2, body)
	}
}

// Bstr bencodes a byte string, for hand-built replies and messages.
func Bstr(b []byte) string { return fmt.Sprintf("%d:%s", len(b), b) }

// Compact4 and Compact6 are compact peer lists (BEP 23, BEP 7) of
// "ip:port" strings, for hand-built replies and PEX messages.
func Compact4(s ...string) []byte { return compactList(compact.Size4, s) }

// Compact6: see Compact4.
func Compact6(s ...string) []byte { return compactList(compact.Size6, s) }

func compactList(size int, s []string) []byte {
	var aps []netip.AddrPort
	for _, x := range s {
		aps = append(aps, netip.MustParseAddrPort(x))
	}
	return compact.Append(nil, aps, size)
}
