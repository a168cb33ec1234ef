package trackerserver

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/wire/compact"
)

type routeKind int

const (
	routeAnnounce routeKind = iota + 1
	routeScrape
)

const maxPasskeyLen = 128

// route maps a request path to announce or scrape and its passkey ("" for
// none). ok is false for any other path or an invalid passkey.
func route(path string) (kind routeKind, passkey string, ok bool) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	name := func(s string) routeKind {
		switch s {
		case "announce":
			return routeAnnounce
		case "scrape":
			return routeScrape
		}
		return 0
	}
	switch len(segs) {
	case 1:
		kind = name(segs[0])
	case 2:
		if kind = name(segs[0]); kind != 0 {
			passkey = segs[1]
		} else if kind = name(segs[1]); kind != 0 {
			passkey = segs[0]
		}
		if !validPasskey(passkey) {
			return 0, "", false
		}
	}
	return kind, passkey, kind != 0
}

func validPasskey(p string) bool {
	if p == "" || len(p) > maxPasskeyLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-') {
			return false
		}
	}
	return true
}

// Handler serves the tracker's HTTP endpoints. It works without Start, e.g.
// in-process or behind another http.Server; the source address is taken from
// Request.RemoteAddr.
func (s *Server) Handler() http.Handler { return httpHandler{s} }

type httpHandler struct{ s *Server }

func (h httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	kind, passkey, ok := route(r.URL.Path)
	if !ok {
		writeFailure(w, http.StatusNotFound, "unknown path: announce to /announce or /announce/<passkey>, scrape at /scrape")
		return
	}
	if r.Method != http.MethodGet {
		writeFailure(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	if len(r.URL.RawQuery) > MaxQueryBytes {
		writeFailure(w, http.StatusOK, fmt.Sprintf("bad request: query longer than %d bytes", MaxQueryBytes))
		return
	}
	src, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		s.log.Error("unparsable remote address", "remote", r.RemoteAddr, "err", err)
		writeFailure(w, http.StatusInternalServerError, "cannot determine your address")
		return
	}
	src = sourceAddr(src)
	switch kind {
	case routeAnnounce:
		s.serveAnnounce(w, r, passkey, src)
	case routeScrape:
		s.serveScrape(w, r, passkey)
	}
}

// announceQuery is a parsed HTTP announce query.
type announceQuery struct {
	infoHash   [20]byte
	peerID     [20]byte
	port       uint16
	uploaded   int64
	downloaded int64
	left       int64
	event      reported.Event
	numWant    int // -1 when not given
	compact    bool
	noPeerID   bool
	key        string
	trackerID  string
	ip         netip.Addr // claimed address; honoured only from loopback
}

const maxKeyLen = 128

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// parseAnnounce reads a BEP 3 announce query. info_hash and peer_id are raw
// percent-encoded bytes; port, uploaded, downloaded and left are required.
// Errors wrap ErrBadRequest and are meant for the "failure reason".
func parseAnnounce(rawQuery string) (announceQuery, error) {
	q := announceQuery{numWant: -1, compact: true}
	if len(rawQuery) > MaxQueryBytes {
		return q, badRequest("query longer than %d bytes", MaxQueryBytes)
	}
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return q, badRequest("malformed query: %v", err)
	}
	for _, f := range []struct {
		name string
		dst  *[20]byte
	}{{"info_hash", &q.infoHash}, {"peer_id", &q.peerID}} {
		vs := vals[f.name]
		switch {
		case len(vs) == 0:
			return q, badRequest("missing %s", f.name)
		case len(vs) > 1:
			return q, badRequest("%s given %d times", f.name, len(vs))
		case len(vs[0]) != 20:
			return q, badRequest("%s must be 20 bytes, got %d", f.name, len(vs[0]))
		}
		copy(f.dst[:], vs[0])
	}
	port := vals.Get("port")
	if port == "" {
		return q, badRequest("missing port")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return q, badRequest("port %.20q is not a number in 0..65535", port)
	}
	q.port = uint16(p)
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"uploaded", &q.uploaded}, {"downloaded", &q.downloaded}, {"left", &q.left}} {
		v := vals.Get(f.name)
		if v == "" {
			return q, badRequest("missing %s", f.name)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return q, badRequest("%s %.30q is not a byte count in 0..2^63-1", f.name, v)
		}
		*f.dst = n
	}
	if q.event, err = reported.ParseEvent(vals.Get("event")); err != nil {
		return q, badRequest("%v", err)
	}
	if v := vals.Get("numwant"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return q, badRequest("numwant %.20q is not a number", v)
		}
		if n >= 0 {
			q.numWant = int(n)
		}
	}
	q.compact = vals.Get("compact") != "0"
	q.noPeerID = vals.Get("no_peer_id") == "1"
	q.key = vals.Get("key")
	q.trackerID = vals.Get("trackerid")
	if len(q.key) > maxKeyLen || len(q.trackerID) > maxKeyLen {
		return q, badRequest("key or trackerid longer than %d bytes", maxKeyLen)
	}
	if ip, err := netip.ParseAddr(vals.Get("ip")); err == nil {
		q.ip = ip.Unmap().WithZone("")
	}
	return q, nil
}

// numWant is how many peers to hand out for a requested count (-1: none asked).
func (s *Server) numWant(n int) int {
	if n < 0 {
		n = DefaultNumWant
	}
	return min(n, s.cfg.MaxPeersPerReply)
}

type announceReply struct {
	Interval    int64  `bencode:"interval"`
	MinInterval int64  `bencode:"min interval"`
	TrackerID   string `bencode:"tracker id,omitempty"`
	Complete    int    `bencode:"complete"`
	Incomplete  int    `bencode:"incomplete"`
	Downloaded  int64  `bencode:"downloaded"`
	Peers       any    `bencode:"peers"` // compact string, or []dictPeer
	Peers6      string `bencode:"peers6,omitempty"`
	ExternalIP  string `bencode:"external ip,omitempty"` // BEP 24
}

type dictPeer struct {
	PeerID string `bencode:"peer id,omitempty"`
	IP     string `bencode:"ip"`
	Port   uint16 `bencode:"port"`
}

func (s *Server) serveAnnounce(w http.ResponseWriter, r *http.Request, passkey string, src netip.AddrPort) {
	now := s.cfg.Now()
	q, err := parseAnnounce(r.URL.RawQuery)
	if err != nil {
		s.log.Debug("bad announce", "src", src, "err", err)
		writeFailure(w, http.StatusOK, err.Error())
		return
	}
	ua := r.UserAgent()
	if len(ua) > maxUserAgentBytes {
		ua = ua[:maxUserAgentBytes]
	}
	a := reported.Announce{
		At: now, InfoHash: q.infoHash, PeerID: q.peerID, IP: src.Addr(), Port: q.port,
		Uploaded: q.uploaded, Downloaded: q.downloaded, Left: q.left, Event: q.event,
		Key: q.key, Passkey: passkey, UserAgent: ua, Source: "http",
	}
	if s.upstream != nil && s.upstream.udp {
		s.translateHTTP(w, r, a, int32(q.numWant))
		return
	}
	if s.upstream != nil {
		// Recorded only once the upstream has answered, with its verdict:
		// an announce it refused is no report of the user's.
		a.Source = "upstream"
		if s.proxy(w, r, routeAnnounce, passkey, src.Addr()) {
			s.record(a)
		}
		return
	}
	s.record(a) // a failure is the owner's to act on (OnRecordError); the peer still gets its answer

	ip := src.Addr()
	if q.ip.IsValid() && ip.IsLoopback() {
		ip = q.ip
	}
	want := s.numWant(q.numWant)
	if q.event == reported.EventStopped {
		want = 0
	}
	peers := make([]peerInfo, 0, want)
	if self, ok := s.self(r, q.infoHash); ok && want > 0 {
		peers = append(peers, self) // counted in want: the swarm fills the rest
	}
	peers, st, err := s.swarms.announce(now, announceArgs{
		infoHash: q.infoHash,
		key:      peerKey{id: q.peerID, ip: src.Addr()},
		addr:     netip.AddrPortFrom(ip, q.port),
		left:     q.left,
		event:    q.event,
		numWant:  want,
	}, peers)
	if err != nil {
		s.log.Warn("announce refused", "info_hash", fmt.Sprintf("%x", q.infoHash), "src", src, "err", err)
		writeFailure(w, http.StatusOK, err.Error())
		return
	}
	reply := announceReply{
		Interval:    int64(s.cfg.Interval / time.Second),
		MinInterval: int64(s.cfg.MinInterval / time.Second),
		TrackerID:   s.cfg.TrackerID,
		Complete:    st.seeders,
		Incomplete:  st.leechers,
		Downloaded:  st.completed,
		ExternalIP:  string(src.Addr().AsSlice()),
	}
	if q.compact {
		var v4, v6 []byte
		for _, p := range peers {
			if p.addr.Addr().Is4() {
				v4 = compact.AppendAddr(v4, p.addr)
			} else {
				v6 = compact.AppendAddr(v6, p.addr)
			}
		}
		reply.Peers, reply.Peers6 = string(v4), string(v6)
	} else {
		list := make([]dictPeer, 0, len(peers))
		for _, p := range peers {
			d := dictPeer{IP: p.addr.Addr().String(), Port: p.addr.Port()}
			if !q.noPeerID {
				d.PeerID = string(p.id[:])
			}
			list = append(list, d)
		}
		reply.Peers = list
	}
	writeBencode(w, s, reply)
}

// self is the auditor as a peer of ih for an HTTP announce (Config.Self):
// at the address the request reached us on.
func (s *Server) self(r *http.Request, ih infohash.T) (peerInfo, bool) {
	if s.cfg.Self == nil {
		return peerInfo{}, false
	}
	port, id, ok := s.cfg.Self(ih)
	if !ok || port == 0 {
		return peerInfo{}, false
	}
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	ap, err := netip.ParseAddrPort(fmt.Sprint(local))
	if err != nil || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return peerInfo{}, false
	}
	return peerInfo{addr: netip.AddrPortFrom(ap.Addr().Unmap(), port), id: id}, true
}

type scrapeFile struct {
	Complete   int   `bencode:"complete"`
	Downloaded int64 `bencode:"downloaded"`
	Incomplete int   `bencode:"incomplete"`
}

type scrapeReply struct {
	Files map[string]scrapeFile `bencode:"files"`
}

// parseScrape reads the info_hash values of a BEP 48 scrape query.
func parseScrape(rawQuery string) ([][20]byte, error) {
	if len(rawQuery) > MaxQueryBytes {
		return nil, badRequest("query longer than %d bytes", MaxQueryBytes)
	}
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, badRequest("malformed query: %v", err)
	}
	vs := vals["info_hash"]
	if len(vs) > MaxScrapeHashes {
		return nil, badRequest("more than %d info_hash values", MaxScrapeHashes)
	}
	ihs := make([][20]byte, len(vs))
	for i, v := range vs {
		if len(v) != 20 {
			return nil, badRequest("info_hash must be 20 bytes, got %d", len(v))
		}
		copy(ihs[i][:], v)
	}
	return ihs, nil
}

func (s *Server) serveScrape(w http.ResponseWriter, r *http.Request, passkey string) {
	ihs, err := parseScrape(r.URL.RawQuery)
	if err != nil {
		writeFailure(w, http.StatusOK, err.Error())
		return
	}
	if s.upstream != nil {
		src, _ := netip.ParseAddrPort(r.RemoteAddr)
		s.proxy(w, r, routeScrape, passkey, sourceAddr(src).Addr())
		return
	}
	got, stats, ok := s.swarms.scrape(s.cfg.Now(), ihs, MaxFullScrape)
	reply := scrapeReply{Files: make(map[string]scrapeFile, len(got))}
	for i, ih := range got {
		if ok[i] {
			reply.Files[string(ih[:])] = scrapeFile{Complete: stats[i].seeders, Downloaded: stats[i].completed, Incomplete: stats[i].leechers}
		}
	}
	writeBencode(w, s, reply)
}

func writeBencode(w http.ResponseWriter, s *Server, v any) {
	b, err := bencode.Marshal(v)
	if err != nil {
		s.log.Error("encode reply", "err", err)
		writeFailure(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(b)
}

// writeFailure answers with a bencoded {"failure reason": msg}. Protocol
// errors use status 200 so that clients show the reason.
func writeFailure(w http.ResponseWriter, status int, msg string) {
	b, err := bencode.Marshal(map[string]string{"failure reason": msg})
	if err != nil { // a map of strings always encodes
		b = []byte("d14:failure reason14:internal errore")
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	w.Write(b)
}

// translateHTTP answers an HTTP announce through a UDP upstream: the same
// counters announced over BEP 15, the reply bencoded back; recorded only
// when the upstream answered.
func (s *Server) translateHTTP(w http.ResponseWriter, r *http.Request, a reported.Announce, numWant int32) {
	a.Source = "upstream"
	resp, err := s.announceUpstream(r.Context(), a, numWant)
	if err != nil {
		s.log.Warn("upstream exchange failed", "src", a.IP, "err", err)
		writeFailure(w, http.StatusOK, fmt.Sprintf("%v: exchange failed", ErrUpstream))
		return
	}
	s.record(a)
	var v4, v6 []byte
	for _, p := range resp.Peers {
		if p.Addr.Addr().Is4() {
			v4 = compact.AppendAddr(v4, p.Addr)
		} else {
			v6 = compact.AppendAddr(v6, p.Addr)
		}
	}
	writeBencode(w, s, announceReply{
		Interval: int64(resp.Interval / time.Second), MinInterval: int64(resp.MinInterval / time.Second),
		Complete: int(max(resp.Seeders, 0)), Incomplete: int(max(resp.Leechers, 0)), Peers: string(v4), Peers6: string(v6),
	})
}
