package trackerserver

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	trudp "github.com/anacrolix/torrent/tracker/udp"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/wire/compact"
)

// BEP 15 sizes and bounds.
const (
	udpHeaderLen     = 16   // connection id, action, transaction id
	udpAnnounceLen   = 82   // announce body after the header
	udpMaxPacket     = 2048 // a longer datagram is dropped unread
	udpMaxScrape     = 74   // BEP 15: "up to about 74 torrents"
	udpMaxURLData    = 1024 // BEP 41 URL data kept (the rest is ignored)
	udpMaxPeersV4    = (1472 - 20) / 6
	udpMaxPeersV6    = (1232 - 20) / 18
	udpMaxReadErrors = 100 // consecutive read errors before giving up
	// A connection id is valid in the minute it was issued and the next:
	// one to two minutes, as BEP 15 asks.
	connIDEpoch = time.Minute
)

// udpRequest is a parsed BEP 15 request.
type udpRequest struct {
	header   trudp.RequestHeader
	announce trudp.AnnounceRequest
	urlData  string // BEP 41 URL data of an announce, concatenated
	scrape   [][20]byte
}

var errUDPShort = fmt.Errorf("%w: packet shorter than a BEP 15 header", ErrBadRequest)

// parseUDPRequest reads one datagram. It fails with errUDPShort when there
// is no header; other errors come with the header parsed, so that an error
// reply can carry the transaction id.
func parseUDPRequest(b []byte) (udpRequest, error) {
	var req udpRequest
	if len(b) < udpHeaderLen {
		return req, errUDPShort
	}
	r := bytes.NewReader(b)
	if err := trudp.Read(r, &req.header); err != nil {
		return req, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	switch req.header.Action {
	case trudp.ActionConnect:
	case trudp.ActionAnnounce:
		if r.Len() < udpAnnounceLen {
			return req, fmt.Errorf("%w: announce of %d bytes, want at least %d", ErrBadRequest, len(b), udpHeaderLen+udpAnnounceLen)
		}
		if err := trudp.Read(r, &req.announce); err != nil {
			return req, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		req.urlData = parseBEP41(b[udpHeaderLen+udpAnnounceLen:])
	case trudp.ActionScrape:
		n := r.Len()
		if n == 0 || n%20 != 0 || n/20 > udpMaxScrape {
			return req, fmt.Errorf("%w: scrape body of %d bytes, want 1 to %d info hashes", ErrBadRequest, n, udpMaxScrape)
		}
		req.scrape = make([][20]byte, n/20)
		for i := range req.scrape {
			copy(req.scrape[i][:], b[udpHeaderLen+20*i:])
		}
	default:
		return req, fmt.Errorf("%w: unknown action %d", ErrBadRequest, req.header.Action)
	}
	return req, nil
}

// parseBEP41 returns the URL data of BEP 41 announce options, skipping NOPs
// and options of other types by their length byte. Truncated options end the
// list; nothing in them is an error, since options are advisory.
func parseBEP41(opts []byte) string {
	var url []byte
	for len(opts) > 0 {
		typ := opts[0]
		opts = opts[1:]
		switch typ {
		case 0: // end of options
			return string(url)
		case 1: // NOP
			continue
		}
		if len(opts) == 0 {
			break
		}
		n := int(opts[0])
		opts = opts[1:]
		if n > len(opts) {
			break
		}
		if typ == 2 && len(url)+n <= udpMaxURLData {
			url = append(url, opts[:n]...)
		}
		opts = opts[n:]
	}
	return string(url)
}

// connectionID is the id handed to src in epoch e: an HMAC of the address and
// the epoch under a key made at New, so it cannot be forged or reused from
// another address.
func (s *Server) connectionID(src netip.AddrPort, e int64) uint64 {
	var msg [16 + 2 + 8]byte
	a := src.Addr().As16()
	copy(msg[:16], a[:])
	binary.BigEndian.PutUint16(msg[16:], src.Port())
	binary.BigEndian.PutUint64(msg[18:], uint64(e))
	m := hmac.New(sha256.New, s.connKey[:])
	m.Write(msg[:])
	return binary.BigEndian.Uint64(m.Sum(nil))
}

func epoch(t time.Time) int64 { return t.Unix() / int64(connIDEpoch/time.Second) }

func (s *Server) validConnectionID(id uint64, src netip.AddrPort, now time.Time) bool {
	e := epoch(now)
	return id == s.connectionID(src, e) || id == s.connectionID(src, e-1)
}

// serveUDP is one UDP worker: read, handle, reply, until the socket closes.
func (s *Server) serveUDP(conn *net.UDPConn) {
	buf := make([]byte, udpMaxPacket)
	var out bytes.Buffer
	fails := 0
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-s.quit:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if fails++; fails > udpMaxReadErrors {
				s.fail(fmt.Errorf("udp read: %w", err))
				return
			}
			s.log.Debug("udp read", "err", err)
			continue
		}
		fails = 0
		if n == len(buf) {
			s.log.Debug("udp packet too long, dropped", "src", src)
			continue
		}
		out.Reset()
		s.handleUDP(buf[:n], src, &out)
		if out.Len() > 0 {
			if _, err := conn.WriteToUDPAddrPort(out.Bytes(), src); err != nil {
				s.log.Debug("udp write", "dst", src, "err", err)
			}
		}
	}
}

// handleUDP answers one datagram into out, or leaves out empty to drop it.
func (s *Server) handleUDP(pkt []byte, rawSrc netip.AddrPort, out *bytes.Buffer) {
	now := s.cfg.Now()
	src := sourceAddr(rawSrc)
	req, err := parseUDPRequest(pkt)
	if errors.Is(err, errUDPShort) {
		return
	}
	tid := req.header.TransactionId
	if req.header.Action == trudp.ActionConnect {
		if req.header.ConnectionId != trudp.ConnectRequestConnectionId {
			return // not a tracker client: no reply
		}
		trudp.Write(out, trudp.ResponseHeader{Action: trudp.ActionConnect, TransactionId: tid})
		trudp.Write(out, trudp.ConnectionResponse{ConnectionId: s.connectionID(src, epoch(now))})
		return
	}
	// Until the connection id proves the source address, never answer with
	// more bytes than were sent: no amplification for spoofed sources.
	if !s.validConnectionID(req.header.ConnectionId, src, now) {
		const msg = "connection id expired"
		if len(pkt) >= 8+len(msg) {
			udpError(out, tid, msg)
		}
		return
	}
	if err != nil {
		s.log.Debug("bad udp request", "src", src, "err", err)
		udpError(out, tid, err.Error())
		return
	}
	switch req.header.Action {
	case trudp.ActionAnnounce:
		s.udpAnnounce(now, req, src, rawSrc, out)
	case trudp.ActionScrape:
		_, stats, _ := s.swarms.scrape(now, req.scrape, 0)
		trudp.Write(out, trudp.ResponseHeader{Action: trudp.ActionScrape, TransactionId: tid})
		for _, st := range stats {
			trudp.Write(out, trudp.ScrapeInfohashResult{
				Seeders: clamp32(int64(st.seeders)), Completed: clamp32(st.completed), Leechers: clamp32(int64(st.leechers)),
			})
		}
	}
}

var udpEvents = map[trudp.AnnounceEvent]reported.Event{
	0: reported.EventNone, 1: reported.EventCompleted, 2: reported.EventStarted, 3: reported.EventStopped,
}

func (s *Server) udpAnnounce(now time.Time, req udpRequest, src, rawSrc netip.AddrPort, out *bytes.Buffer) {
	ar, tid := req.announce, req.header.TransactionId
	ev, ok := udpEvents[ar.Event]
	if !ok {
		udpError(out, tid, fmt.Sprintf("unknown event %d", ar.Event))
		return
	}
	if ar.Uploaded < 0 || ar.Downloaded < 0 || ar.Left < 0 {
		udpError(out, tid, "negative uploaded, downloaded or left")
		return
	}
	passkey := ""
	if path, _, _ := strings.Cut(req.urlData, "?"); path != "" {
		if kind, pk, ok := route(path); ok && kind == routeAnnounce {
			passkey = pk
		}
	}
	a := reported.Announce{
		At: now, InfoHash: ar.InfoHash, PeerID: ar.PeerId, IP: src.Addr(), Port: ar.Port,
		Uploaded: ar.Uploaded, Downloaded: ar.Downloaded, Left: ar.Left, Event: ev,
		Key: fmt.Sprintf("%08x", uint32(ar.Key)), Passkey: passkey, Source: "udp",
	}
	if s.upstream != nil {
		s.forwardUDP(a, ar.NumWant, tid, rawSrc, out)
		return
	}
	s.record(a)

	ip, family, limit := src.Addr(), 4, udpMaxPeersV4
	if ip.Is6() {
		family, limit = 6, udpMaxPeersV6
	}
	if ar.IPAddress != 0 && ip.IsLoopback() && family == 4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], ar.IPAddress)
		ip = netip.AddrFrom4(b)
	}
	want := min(s.numWant(int(ar.NumWant)), limit)
	if ev == reported.EventStopped {
		want = 0
	}
	peers, st, err := s.swarms.announce(now, announceArgs{
		infoHash: ar.InfoHash,
		key:      peerKey{id: ar.PeerId, ip: src.Addr()},
		addr:     netip.AddrPortFrom(ip, ar.Port),
		left:     ar.Left,
		event:    ev,
		numWant:  want,
		family:   family,
	}, make([]peerInfo, 0, want))
	if err != nil {
		udpError(out, tid, err.Error())
		return
	}
	trudp.Write(out, trudp.ResponseHeader{Action: trudp.ActionAnnounce, TransactionId: tid})
	trudp.Write(out, trudp.AnnounceResponseHeader{
		Interval: clamp32(int64(s.cfg.Interval / time.Second)),
		Leechers: clamp32(int64(st.leechers)),
		Seeders:  clamp32(int64(st.seeders)),
	})
	var list []byte
	for _, p := range peers {
		list = compact.AppendAddr(list, p.addr)
	}
	out.Write(list)
}

func udpError(out *bytes.Buffer, tid trudp.TransactionId, msg string) {
	out.Reset()
	trudp.Write(out, trudp.ResponseHeader{Action: trudp.ActionError, TransactionId: tid})
	out.WriteString(msg)
}

func clamp32(v int64) int32 { return int32(min(v, 1<<31-1)) }

// maxForwards bounds the UDP announces being forwarded at once.
const maxForwards = 64

// forwardUDP answers a UDP announce through the upstream (translated when
// the upstream speaks HTTP), off the packet worker: the reply is sent when
// the upstream answers, and the announce recorded only then. Past
// maxForwards at once the client is told to retry.
func (s *Server) forwardUDP(a reported.Announce, numWant int32, tid trudp.TransactionId, dst netip.AddrPort, out *bytes.Buffer) {
	select {
	case s.forwards <- struct{}{}:
	default:
		udpError(out, tid, "tracker busy, retry")
		return
	}
	a.Source = "upstream-udp"
	s.wg.Go(func() {
		defer func() { <-s.forwards }()
		var reply bytes.Buffer
		resp, err := s.announceUpstream(context.Background(), a, numWant)
		if err != nil {
			s.log.Warn("upstream exchange failed", "src", a.IP, "err", err)
			udpError(&reply, tid, fmt.Sprintf("%v: exchange failed", ErrUpstream))
		} else {
			s.record(a)
			trudp.Write(&reply, trudp.ResponseHeader{Action: trudp.ActionAnnounce, TransactionId: tid})
			trudp.Write(&reply, trudp.AnnounceResponseHeader{
				Interval: clamp32(int64(resp.Interval / time.Second)), Leechers: clamp32(max(resp.Leechers, 0)), Seeders: clamp32(max(resp.Seeders, 0)),
			})
			six, limit := dst.Addr().Unmap().Is6(), udpMaxPeersV4
			if six {
				limit = udpMaxPeersV6
			}
			var list []byte
			for _, p := range resp.Peers {
				if p.Addr.Addr().Is6() == six && limit > 0 {
					list = compact.AppendAddr(list, p.Addr)
					limit--
				}
			}
			reply.Write(list)
		}
		if _, err := s.udpConn.WriteToUDPAddrPort(reply.Bytes(), dst); err != nil {
			s.log.Debug("udp write", "dst", dst, "err", err)
		}
	})
}
