// Package httptracker is a client for HTTP(S) BitTorrent trackers: announce
// (BEP 3) with compact (BEP 23) and dictionary peer lists and "peers6"
// (BEP 7), and scrape (BEP 48). Every reply is bounded in size and time,
// redirects never change scheme, and tracker hosts can be restricted to
// public addresses.
//
// Replies are decoded with github.com/anacrolix/torrent/bencode. The
// library's own client (github.com/anacrolix/torrent/tracker/http) is not
// used: it disables TLS certificate checks, follows redirects to any scheme,
// drops "min interval", "warning message" and "tracker id" from its result,
// has no numwant, skips unparsable peer entries silently, and derives the
// scrape URL by path joining instead of the BEP 48 "announce" → "scrape"
// rule.
package httptracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
	"github.com/swarmaudit/swarmaudit/internal/wire/compact"
)

// Defaults of Options.
const (
	DefaultMaxReply  = 2 << 20
	DefaultTimeout   = 30 * time.Second
	DefaultUserAgent = "swarmaudit/0.1"
	maxRedirects     = 5
	maxTextLen       = 512
)

// Options configure a Client. The zero value is usable.
type Options struct {
	// MaxReply bounds a reply body (DefaultMaxReply if <= 0); larger
	// replies fail with trackerclient.ErrTooLarge.
	MaxReply int64
	// Timeout bounds each request including reading the body
	// (DefaultTimeout if <= 0); the caller's context may end it sooner.
	Timeout time.Duration
	// DenyPrivate refuses tracker hosts (also after redirects and DNS) that
	// resolve to loopback, private or other non-public addresses.
	DenyPrivate bool
	UserAgent   string
	// Transport replaces the HTTP transport (tests); DenyPrivate is then
	// the transport's business.
	Transport http.RoundTripper
}

// Client announces to and scrapes one HTTP(S) tracker URL. It is safe for
// concurrent use.
type Client struct {
	url  *url.URL
	opts Options
	hc   *http.Client
	sent atomic.Int64
}

// New returns a client for an http:// or https:// announce URL.
func New(rawURL string, opts Options) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("tracker url %s: %w", trackerclient.Redact(rawURL), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("tracker url %s: %w", trackerclient.Redact(rawURL), trackerclient.ErrUnsupportedScheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("tracker url %s: no host", trackerclient.Redact(rawURL))
	}
	if opts.MaxReply <= 0 {
		opts.MaxReply = DefaultMaxReply
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.UserAgent == "" {
		opts.UserAgent = DefaultUserAgent
	}
	rt := opts.Transport
	if rt == nil {
		deny := opts.DenyPrivate
		d := &net.Dialer{
			Timeout: opts.Timeout,
			// The check runs on the resolved address of every connection,
			// so redirects and DNS answers cannot sneak past it.
			Control: func(network, address string, _ syscall.RawConn) error {
				return trackerclient.CheckAddr(deny, address)
			},
		}
		rt = &http.Transport{
			DialContext:            d.DialContext,
			TLSHandshakeTimeout:    opts.Timeout,
			ResponseHeaderTimeout:  opts.Timeout,
			MaxResponseHeaderBytes: 64 << 10,
			DisableKeepAlives:      true,
			Proxy:                  nil,
		}
	}
	scheme := u.Scheme
	c := &Client{url: u, opts: opts}
	c.hc = &http.Client{
		Transport: countingTransport{rt: rt, sent: &c.sent},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			if req.URL.Scheme != scheme {
				return fmt.Errorf("redirect from %s to %s refused: scheme change", scheme, req.URL.Scheme)
			}
			return nil
		},
	}
	return c, nil
}

// URL returns the announce URL.
func (c *Client) URL() string { return c.url.String() }

// Sent returns the number of HTTP requests sent (redirects included).
func (c *Client) Sent() int64 { return c.sent.Load() }

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Escape percent-encodes every byte outside the RFC 3986 unreserved set,
// as trackers expect for the binary info_hash and peer_id (url.QueryEscape
// writes a space as '+', which some trackers do not decode).
func Escape(b []byte) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for _, c := range b {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			sb.WriteByte(c)
		} else {
			sb.WriteByte('%')
			sb.WriteByte(hex[c>>4])
			sb.WriteByte(hex[c&15])
		}
	}
	return sb.String()
}

// AnnounceURL returns the announce URL for req. Parameters are appended to
// any query the tracker URL already has (private trackers put a passkey
// there and some insist it stays first).
func AnnounceURL(base *url.URL, req trackerclient.Request) string {
	var q strings.Builder
	q.WriteString("info_hash=" + Escape(req.InfoHash[:]))
	q.WriteString("&peer_id=" + Escape(req.PeerID[:]))
	q.WriteString("&port=" + strconv.Itoa(int(req.Port)))
	q.WriteString("&uploaded=" + strconv.FormatInt(req.Uploaded, 10))
	q.WriteString("&downloaded=" + strconv.FormatInt(req.Downloaded, 10))
	left := req.Left
	if left < 0 {
		// Unknown size (magnet without metadata): not a seeder. The
		// largest value every tracker parses is what libraries send.
		left = 1<<63 - 1
	}
	q.WriteString("&left=" + strconv.FormatInt(left, 10))
	q.WriteString("&compact=1")
	if req.Event != reported.EventNone {
		q.WriteString("&event=" + url.QueryEscape(string(req.Event)))
	}
	if req.NumWant >= 0 {
		q.WriteString("&numwant=" + strconv.Itoa(int(req.NumWant)))
	}
	q.WriteString(fmt.Sprintf("&key=%08X", req.Key))
	if req.TrackerID != "" {
		q.WriteString("&trackerid=" + url.QueryEscape(req.TrackerID))
	}
	q.WriteString("&supportcrypto=1")
	if req.IP.IsValid() {
		q.WriteString("&ip=" + url.QueryEscape(req.IP.String()))
	}
	u := *base
	if u.RawQuery != "" {
		u.RawQuery += "&" + q.String()
	} else {
		u.RawQuery = q.String()
	}
	return u.String()
}

// Announce sends one announce and decodes the reply.
func (c *Client) Announce(ctx context.Context, req trackerclient.Request) (trackerclient.Response, error) {
	body, err := c.get(ctx, AnnounceURL(c.url, req))
	if err != nil {
		return trackerclient.Response{}, trackerclient.ScrubError(fmt.Errorf("announce %s: %w", trackerclient.Redact(c.url.String()), err), c.url.String())
	}
	resp, err := ParseAnnounce(body)
	if err != nil {
		return trackerclient.Response{}, trackerclient.ScrubError(fmt.Errorf("announce %s: %w", trackerclient.Redact(c.url.String()), err), c.url.String())
	}
	resp.Warning = trackerclient.Scrub(resp.Warning, trackerclient.Secrets(c.url.String()))
	return resp, nil
}

// ScrapeURL derives the BEP 48 scrape URL: the last path component must
// begin with "announce", which is replaced by "scrape".
func ScrapeURL(announce *url.URL) (*url.URL, error) {
	i := strings.LastIndexByte(announce.Path, '/')
	if i < 0 || !strings.HasPrefix(announce.Path[i+1:], "announce") {
		return nil, fmt.Errorf("%w: path %q", trackerclient.ErrScrapeUnsupported, announce.Path)
	}
	u := *announce
	u.Path = announce.Path[:i+1] + "scrape" + strings.TrimPrefix(announce.Path[i+1:], "announce")
	u.RawPath = ""
	return &u, nil
}

// Scrape asks the tracker for the swarm size of ih.
func (c *Client) Scrape(ctx context.Context, ih infohash.T) (trackerclient.Scrape, error) {
	su, err := ScrapeURL(c.url)
	if err != nil {
		return trackerclient.Scrape{}, trackerclient.ScrubError(fmt.Errorf("scrape %s: %w", trackerclient.Redact(c.url.String()), err), c.url.String())
	}
	if su.RawQuery != "" {
		su.RawQuery += "&"
	}
	su.RawQuery += "info_hash=" + Escape(ih[:])
	body, err := c.get(ctx, su.String())
	if err != nil {
		return trackerclient.Scrape{}, trackerclient.ScrubError(fmt.Errorf("scrape %s: %w", trackerclient.Redact(su.String()), err), su.String())
	}
	s, err := ParseScrape(body, ih)
	if err != nil {
		return trackerclient.Scrape{}, trackerclient.ScrubError(fmt.Errorf("scrape %s: %w", trackerclient.Redact(su.String()), err), su.String())
	}
	return s, nil
}

type countingTransport struct {
	rt   http.RoundTripper
	sent *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.sent.Add(1)
	return t.rt.RoundTrip(r)
}

// get fetches u with the client's time and size bounds.
func (c *Client) get(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("request for %s: invalid URL", trackerclient.Redact(u))
	}
	req.Header.Set("User-Agent", c.opts.UserAgent)
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := c.hc.Do(req)
	if err != nil {
		// net/http puts the whole URL, passkey and all, in its errors.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = trackerclient.Redact(ue.URL)
		}
		// Our deadline, or the transport's header timeout (the same length:
		// either may fire first), is a tracker that timed out.
		var ne net.Error
		if (errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, fmt.Errorf("%w: %v", trackerclient.ErrTimeout, err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > c.opts.MaxReply {
		return nil, fmt.Errorf("%w: Content-Length %d > %d", trackerclient.ErrTooLarge, resp.ContentLength, c.opts.MaxReply)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxReply+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: reading reply: %v", trackerclient.ErrTimeout, err)
		}
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	if int64(len(body)) > c.opts.MaxReply {
		return nil, fmt.Errorf("%w: more than %d bytes", trackerclient.ErrTooLarge, c.opts.MaxReply)
	}
	if resp.StatusCode != http.StatusOK {
		// Some trackers send a bencoded failure with a non-200 status.
		if _, err := ParseAnnounce(body); errors.Is(err, trackerclient.ErrFailure) {
			return nil, fmt.Errorf("HTTP %s: %w", resp.Status, err)
		}
		return nil, fmt.Errorf("HTTP %s: %q", resp.Status, trackerclient.Sanitize(string(body), 200))
	}
	return body, nil
}

// announceReply is the bencoded announce reply. Peers stays raw because
// it is either a compact string or a list of dictionaries.
type announceReply struct {
	FailureReason *string       `bencode:"failure reason"`
	RetryIn       any           `bencode:"retry in"`
	Warning       string        `bencode:"warning message"`
	Interval      *int64        `bencode:"interval"`
	MinInterval   *int64        `bencode:"min interval"`
	TrackerID     string        `bencode:"tracker id"`
	Complete      *int64        `bencode:"complete"`
	Incomplete    *int64        `bencode:"incomplete"`
	Peers         bencode.Bytes `bencode:"peers"`
	Peers6        []byte        `bencode:"peers6"`
}

type dictPeer struct {
	IP     string `bencode:"ip"`
	Port   int64  `bencode:"port"`
	PeerID []byte `bencode:"peer id"`
}

// maxInterval caps intervals a tracker gives (a day), so a hostile value
// cannot overflow durations or park an announcer forever.
const maxInterval = 24 * time.Hour

func seconds(v *int64) time.Duration {
	if v == nil || *v <= 0 {
		return 0
	}
	if *v > int64(maxInterval/time.Second) {
		return maxInterval
	}
	return time.Duration(*v) * time.Second
}

// ParseAnnounce decodes an announce reply body. A "failure reason" gives a
// *trackerclient.FailureError (errors.Is trackerclient.ErrFailure); undecodable input
// and compact lists of bad length give errors wrapping
// trackerclient.ErrMalformed.
func ParseAnnounce(body []byte) (trackerclient.Response, error) {
	var r announceReply
	if len(body) == 0 || body[0] != 'd' {
		return trackerclient.Response{}, fmt.Errorf("%w: not a bencoded dictionary: %q", trackerclient.ErrMalformed, trackerclient.Sanitize(string(body), 64))
	}
	if err := bencode.Unmarshal(body, &r); err != nil {
		var trailing bencode.ErrUnusedTrailingBytes
		if !errors.As(err, &trailing) { // trailing junk is common (newlines) and harmless
			return trackerclient.Response{}, fmt.Errorf("%w: %v", trackerclient.ErrMalformed, err)
		}
	}
	if r.FailureReason != nil {
		fe := &trackerclient.FailureError{Reason: trackerclient.Sanitize(*r.FailureReason, maxTextLen)}
		switch v := r.RetryIn.(type) {
		case int64:
			if v > 0 {
				fe.RetryIn = min(time.Duration(v)*time.Minute, maxInterval)
			}
		case string:
			if v == "never" {
				fe.RetryIn = -1
			}
		}
		return trackerclient.Response{}, fe
	}
	resp := trackerclient.Response{
		Interval:    seconds(r.Interval),
		MinInterval: seconds(r.MinInterval),
		TrackerID:   trackerclient.Sanitize(r.TrackerID, maxTextLen),
		Warning:     trackerclient.Sanitize(r.Warning, maxTextLen),
		Seeders:     -1,
		Leechers:    -1,
	}
	if r.Complete != nil && *r.Complete >= 0 {
		resp.Seeders = *r.Complete
	}
	if r.Incomplete != nil && *r.Incomplete >= 0 {
		resp.Leechers = *r.Incomplete
	}
	if len(r.Peers) > 0 {
		switch r.Peers[0] {
		case 'l':
			var list []dictPeer
			if err := bencode.Unmarshal(r.Peers, &list); err != nil {
				return trackerclient.Response{}, fmt.Errorf("%w: peers list: %v", trackerclient.ErrMalformed, err)
			}
			for _, p := range list {
				ip, err := netip.ParseAddr(p.IP)
				// BEP 3 allows a DNS name here; resolving names a tracker
				// hands out is not done (hostile input, network policy).
				if err != nil || ip.Zone() != "" || p.Port <= 0 || p.Port > 65535 {
					resp.Skipped++
					continue
				}
				peer := trackerclient.Peer{Addr: netip.AddrPortFrom(ip.Unmap(), uint16(p.Port))}
				if len(p.PeerID) == 20 {
					peer.ID = p.PeerID
				}
				resp.Peers = append(resp.Peers, peer)
			}
		default:
			var s string
			if err := bencode.Unmarshal(r.Peers, &s); err != nil {
				return trackerclient.Response{}, fmt.Errorf("%w: peers: %v", trackerclient.ErrMalformed, err)
			}
			addrs, _, err := compact.Decode([]byte(s), compact.Size4, 0)
			if err != nil {
				return trackerclient.Response{}, fmt.Errorf("%w: peers: %w", trackerclient.ErrMalformed, err)
			}
			for _, a := range addrs {
				resp.Peers = append(resp.Peers, trackerclient.Peer{Addr: a})
			}
		}
	}
	if len(r.Peers6) > 0 {
		addrs, _, err := compact.Decode(r.Peers6, compact.Size6, 0)
		if err != nil {
			return trackerclient.Response{}, fmt.Errorf("%w: peers6: %w", trackerclient.ErrMalformed, err)
		}
		for _, a := range addrs {
			resp.Peers = append(resp.Peers, trackerclient.Peer{Addr: a})
		}
	}
	return resp, nil
}

type scrapeFile struct {
	Complete   int64 `bencode:"complete"`
	Incomplete int64 `bencode:"incomplete"`
	Downloaded int64 `bencode:"downloaded"`
}

type scrapeReply struct {
	FailureReason *string               `bencode:"failure reason"`
	Files         map[string]scrapeFile `bencode:"files"`
}

// ErrNotInScrape is returned when a scrape reply does not list the info
// hash (trackers omit torrents they do not track).
var ErrNotInScrape = errors.New("info hash not in scrape reply")

// ParseScrape decodes a scrape reply body and returns the counts of ih.
func ParseScrape(body []byte, ih infohash.T) (trackerclient.Scrape, error) {
	if len(body) == 0 || body[0] != 'd' {
		return trackerclient.Scrape{}, fmt.Errorf("%w: not a bencoded dictionary: %q", trackerclient.ErrMalformed, trackerclient.Sanitize(string(body), 64))
	}
	var r scrapeReply
	if err := bencode.Unmarshal(body, &r); err != nil {
		var trailing bencode.ErrUnusedTrailingBytes
		if !errors.As(err, &trailing) {
			return trackerclient.Scrape{}, fmt.Errorf("%w: %v", trackerclient.ErrMalformed, err)
		}
	}
	if r.FailureReason != nil {
		return trackerclient.Scrape{}, &trackerclient.FailureError{Reason: trackerclient.Sanitize(*r.FailureReason, maxTextLen)}
	}
	f, ok := r.Files[string(ih[:])]
	if !ok {
		return trackerclient.Scrape{}, fmt.Errorf("%w: %d entries", ErrNotInScrape, len(r.Files))
	}
	if f.Complete < 0 || f.Incomplete < 0 || f.Downloaded < 0 {
		return trackerclient.Scrape{}, fmt.Errorf("%w: negative count", trackerclient.ErrMalformed)
	}
	return trackerclient.Scrape{Seeders: f.Complete, Leechers: f.Incomplete, Completed: f.Downloaded}, nil
}
