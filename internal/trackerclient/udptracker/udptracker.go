// Package udptracker is a client for UDP BitTorrent trackers (BEP 15):
// connect, announce and scrape with connection-id reuse for one minute,
// retransmission on the spec's 15·2^n s schedule (base configurable),
// error replies, IPv6 trackers with 18-byte peer entries, and the BEP 41
// URL-data option for trackers with a path or passkey.
//
// It is written by hand rather than taken from
// github.com/anacrolix/torrent/tracker/udp because that client hard-codes
// the 15 s retransmission base (tests would take minutes), reads replies
// into a 2 KiB buffer (truncating peer lists past ~330 entries), offers no
// packet count, and listens on all interfaces; the protocol is four
// fixed-layout packets.
package udptracker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
	"github.com/swarmaudit/swarmaudit/internal/wire/compact"
)

// Protocol constants of BEP 15.
const (
	ProtocolID     uint64 = 0x41727101980
	ActionConnect  uint32 = 0
	ActionAnnounce uint32 = 1
	ActionScrape   uint32 = 2
	ActionError    uint32 = 3
)

// Defaults of Options.
const (
	DefaultBackoffBase = 15 * time.Second
	DefaultMaxRetries  = 8
	// ConnIDLifetime is how long a connection id is reused (BEP 15: one
	// minute for the client).
	ConnIDLifetime = time.Minute
	maxPacket      = 64 << 10
	maxTextLen     = 512
)

// Options configure a Client. The zero value is usable.
type Options struct {
	// BackoffBase is the first retransmission timeout; attempt n waits
	// BackoffBase·2^n (BEP 15: 15 s). DefaultBackoffBase if <= 0.
	BackoffBase time.Duration
	// MaxRetries is the number of retransmissions after the first send
	// (BEP 15: 8, i.e. up to 3840 s). DefaultMaxRetries if <= 0.
	MaxRetries int
	// DenyPrivate refuses tracker hosts that resolve to loopback, private
	// or other non-public addresses.
	DenyPrivate bool
	Logger      *slog.Logger
	// Now is the clock for connection-id expiry (time.Now if nil).
	Now func() time.Time
}

// Client talks to one UDP tracker. It is safe for concurrent use; requests
// are serialised on one socket.
type Client struct {
	rawURL string
	host   string // host:port
	urlOpt []byte // BEP 41 URL data, nil if none
	opts   Options

	mu       sync.Mutex // serialises requests and guards the fields below
	conn     *net.UDPConn
	ipv6     bool
	connID   uint64
	connTime time.Time
	sent     atomic.Int64
}

// New returns a client for a udp:// announce URL. Nothing is sent until the
// first request.
func New(rawURL string, opts Options) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("tracker url %s: %w", trackerclient.Redact(rawURL), err)
	}
	if u.Scheme != "udp" {
		return nil, fmt.Errorf("tracker url %s: %w", trackerclient.Redact(rawURL), trackerclient.ErrUnsupportedScheme)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("tracker url %s: no port", trackerclient.Redact(rawURL))
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("tracker url %s: bad port", trackerclient.Redact(rawURL))
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = DefaultBackoffBase
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = DefaultMaxRetries
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Client{rawURL: rawURL, host: u.Host, opts: opts}
	// BEP 41: send the path and query when they carry something beyond
	// the conventional "/announce" (e.g. a passkey).
	if rq := u.RequestURI(); rq != "/" && rq != "/announce" && rq != "" {
		c.urlOpt = urlDataOption(rq)
	}
	return c, nil
}

// urlDataOption encodes BEP 41 option 2 (URL data) in chunks of at most
// 255 bytes, followed by end-of-options.
func urlDataOption(s string) []byte {
	var b []byte
	for len(s) > 0 {
		n := min(len(s), 255)
		b = append(b, 2, byte(n))
		b = append(b, s[:n]...)
		s = s[n:]
	}
	return append(b, 0)
}

// URL returns the announce URL.
func (c *Client) URL() string { return c.rawURL }

// Sent returns the number of UDP packets sent (retransmissions included).
func (c *Client) Sent() int64 { return c.sent.Load() }

// Close closes the socket.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		err := c.conn.Close()
		c.conn = nil
		return err
	}
	return nil
}

// dial resolves the tracker and opens a connected socket (the kernel then
// drops datagrams from any other source). Called with c.mu held.
func (c *Client) dial(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}
	host, port, _ := net.SplitHostPort(c.host)
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return fmt.Errorf("resolve %s: no addresses", host)
	}
	ip := ips[0].Unmap()
	for _, a := range ips { // prefer IPv4, as clients commonly do
		if a.Unmap().Is4() {
			ip = a.Unmap()
			break
		}
	}
	p, _ := strconv.Atoi(port)
	ap := netip.AddrPortFrom(ip, uint16(p))
	if err := trackerclient.CheckAddr(c.opts.DenyPrivate, ap.String()); err != nil {
		return err
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return fmt.Errorf("dial %s: %w", ap, err)
	}
	c.conn, c.ipv6 = conn, ip.Is6()
	return nil
}

// ErrorReply is the message of an error action from the tracker.
func errorReply(msg []byte) error {
	return &trackerclient.FailureError{Reason: trackerclient.Sanitize(string(msg), maxTextLen)}
}

func newTID() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// roundTrip sends pkt (whose transaction id is at [12:16]) and waits for a
// reply with the same transaction id, retransmitting on the back-off
// schedule. It returns the reply after the 8-byte header. An error action
// gives a *trackerclient.FailureError. Called with c.mu held.
func (c *Client) roundTrip(ctx context.Context, pkt []byte, action uint32) ([]byte, error) {
	tid := binary.BigEndian.Uint32(pkt[12:16])
	buf := make([]byte, maxPacket)
	// Cancellation interrupts a blocked read through the read deadline.
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for n := 0; n <= c.opts.MaxRetries; n++ {
		if _, err := c.conn.Write(pkt); err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		c.sent.Add(1)
		deadline := time.Now().Add(c.opts.BackoffBase << min(n, 8))
		for {
			c.conn.SetReadDeadline(deadline)
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("%w: %v", trackerclient.ErrTimeout, err)
			}
			m, err := c.conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // retransmit, or notice cancellation
				}
				return nil, fmt.Errorf("receive: %w", err)
			}
			reply := buf[:m]
			if m < 8 || binary.BigEndian.Uint32(reply[4:8]) != tid {
				c.opts.Logger.Debug("udp tracker: ignoring stray datagram", "tracker", trackerclient.Redact(c.rawURL), "len", m)
				continue
			}
			switch got := binary.BigEndian.Uint32(reply[:4]); got {
			case action:
				return append([]byte(nil), reply[8:]...), nil
			case ActionError:
				c.connTime = time.Time{} // force a new connect next time
				return nil, errorReply(reply[8:])
			default:
				return nil, fmt.Errorf("%w: action %d in reply to %d", trackerclient.ErrMalformed, got, action)
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: %v", trackerclient.ErrTimeout, err)
		}
	}
	return nil, fmt.Errorf("%w: no reply after %d sends", trackerclient.ErrTimeout, c.opts.MaxRetries+1)
}

// connect obtains a connection id, reusing one younger than a minute.
// Called with c.mu held.
func (c *Client) connect(ctx context.Context) (uint64, error) {
	if !c.connTime.IsZero() && c.opts.Now().Sub(c.connTime) < ConnIDLifetime {
		return c.connID, nil
	}
	pkt := make([]byte, 16)
	binary.BigEndian.PutUint64(pkt[0:], ProtocolID)
	binary.BigEndian.PutUint32(pkt[8:], ActionConnect)
	binary.BigEndian.PutUint32(pkt[12:], newTID())
	reply, err := c.roundTrip(ctx, pkt, ActionConnect)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	if len(reply) < 8 {
		return 0, fmt.Errorf("connect: %w: %d-byte reply", trackerclient.ErrMalformed, len(reply)+8)
	}
	c.connID = binary.BigEndian.Uint64(reply)
	c.connTime = c.opts.Now()
	return c.connID, nil
}

func eventCode(e reported.Event) uint32 {
	switch e {
	case reported.EventCompleted:
		return 1
	case reported.EventStarted:
		return 2
	case reported.EventStopped:
		return 3
	}
	return 0
}

// AnnouncePacket builds the 98-byte announce request (plus BEP 41 options).
func AnnouncePacket(connID uint64, tid uint32, req trackerclient.Request, options []byte) []byte {
	pkt := make([]byte, 98, 98+len(options))
	binary.BigEndian.PutUint64(pkt[0:], connID)
	binary.BigEndian.PutUint32(pkt[8:], ActionAnnounce)
	binary.BigEndian.PutUint32(pkt[12:], tid)
	copy(pkt[16:36], req.InfoHash[:])
	copy(pkt[36:56], req.PeerID[:])
	left := req.Left
	if left < 0 {
		left = 1<<63 - 1
	}
	binary.BigEndian.PutUint64(pkt[56:], uint64(req.Downloaded))
	binary.BigEndian.PutUint64(pkt[64:], uint64(left))
	binary.BigEndian.PutUint64(pkt[72:], uint64(req.Uploaded))
	binary.BigEndian.PutUint32(pkt[80:], eventCode(req.Event))
	if ip := req.IP.Unmap(); ip.Is4() { // else the default: the source address
		a := ip.As4()
		copy(pkt[84:88], a[:])
	}
	binary.BigEndian.PutUint32(pkt[88:], req.Key)
	binary.BigEndian.PutUint32(pkt[92:], uint32(req.NumWant))
	binary.BigEndian.PutUint16(pkt[96:], req.Port)
	return append(pkt, options...)
}

// ParseAnnounceReply decodes an announce reply after its 8-byte header:
// interval, leechers, seeders, then 6-byte (IPv4 tracker) or 18-byte (IPv6
// tracker) peer entries.
func ParseAnnounceReply(body []byte, ipv6 bool) (trackerclient.Response, error) {
	if len(body) < 12 {
		return trackerclient.Response{}, fmt.Errorf("%w: announce reply of %d bytes", trackerclient.ErrMalformed, len(body)+8)
	}
	interval := binary.BigEndian.Uint32(body[0:])
	resp := trackerclient.Response{
		Interval: time.Duration(min(interval, 86400)) * time.Second,
		Leechers: int64(binary.BigEndian.Uint32(body[4:])),
		Seeders:  int64(binary.BigEndian.Uint32(body[8:])),
	}
	size := compact.Size4
	if ipv6 {
		size = compact.Size6
	}
	addrs, _, err := compact.Decode(body[12:], size, 0)
	if err != nil {
		return trackerclient.Response{}, fmt.Errorf("%w: peers: %w", trackerclient.ErrMalformed, err)
	}
	for _, a := range addrs {
		resp.Peers = append(resp.Peers, trackerclient.Peer{Addr: a})
	}
	return resp, nil
}

// Announce sends one announce.
func (c *Client) Announce(ctx context.Context, req trackerclient.Request) (trackerclient.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, err := c.announce(ctx, req)
	if err != nil {
		return trackerclient.Response{}, trackerclient.ScrubError(fmt.Errorf("announce %s: %w", trackerclient.Redact(c.rawURL), err), c.rawURL)
	}
	return resp, nil
}

func (c *Client) announce(ctx context.Context, req trackerclient.Request) (trackerclient.Response, error) {
	if err := c.dial(ctx); err != nil {
		return trackerclient.Response{}, err
	}
	id, err := c.connect(ctx)
	if err != nil {
		return trackerclient.Response{}, err
	}
	reply, err := c.roundTrip(ctx, AnnouncePacket(id, newTID(), req, c.urlOpt), ActionAnnounce)
	if err != nil {
		return trackerclient.Response{}, err
	}
	return ParseAnnounceReply(reply, c.ipv6)
}

// ParseScrapeReply decodes a scrape reply for one info hash after its
// 8-byte header: seeders, completed, leechers.
func ParseScrapeReply(body []byte) (trackerclient.Scrape, error) {
	if len(body) < 12 {
		return trackerclient.Scrape{}, fmt.Errorf("%w: scrape reply of %d bytes", trackerclient.ErrMalformed, len(body)+8)
	}
	return trackerclient.Scrape{
		Seeders:   int64(binary.BigEndian.Uint32(body[0:])),
		Completed: int64(binary.BigEndian.Uint32(body[4:])),
		Leechers:  int64(binary.BigEndian.Uint32(body[8:])),
	}, nil
}

// Scrape asks for the swarm size of ih.
func (c *Client) Scrape(ctx context.Context, ih infohash.T) (trackerclient.Scrape, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.scrape(ctx, ih)
	if err != nil {
		return trackerclient.Scrape{}, trackerclient.ScrubError(fmt.Errorf("scrape %s: %w", trackerclient.Redact(c.rawURL), err), c.rawURL)
	}
	return s, nil
}

func (c *Client) scrape(ctx context.Context, ih infohash.T) (trackerclient.Scrape, error) {
	if err := c.dial(ctx); err != nil {
		return trackerclient.Scrape{}, err
	}
	id, err := c.connect(ctx)
	if err != nil {
		return trackerclient.Scrape{}, err
	}
	pkt := make([]byte, 36)
	binary.BigEndian.PutUint64(pkt[0:], id)
	binary.BigEndian.PutUint32(pkt[8:], ActionScrape)
	binary.BigEndian.PutUint32(pkt[12:], newTID())
	copy(pkt[16:], ih[:])
	reply, err := c.roundTrip(ctx, pkt, ActionScrape)
	if err != nil {
		return trackerclient.Scrape{}, err
	}
	return ParseScrapeReply(reply)
}
