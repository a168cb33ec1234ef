package trackerserver

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
	"sync"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/httptracker"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/udptracker"
)

const (
	passkeyPlaceholder = "{passkey}"
	// passkeyMarker stands in for the placeholder while the URL is parsed:
	// net/url would escape the braces.
	passkeyMarker  = "swarmaudit-passkey-placeholder"
	maxRedirects   = 5
	maxReasonBytes = 200
)

// upstream is the recording proxy's view of the upstream tracker.
type upstream struct {
	announce string // URL template, may hold passkeyMarker
	scrape   string // derived by BEP 48's rule; "" when there is none
	client   *http.Client
	udp      bool // a udp:// upstream: every announce is translated

	// Tracker clients for translated announces, by upstream URL (one per
	// passkey); bounded.
	mu      sync.Mutex
	clients map[string]trackerclient.Client
}

func newUpstream(raw string, timeout time.Duration) (*upstream, error) {
	tmpl := strings.ReplaceAll(raw, passkeyPlaceholder, passkeyMarker)
	u, err := url.Parse(tmpl)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "udp" {
		return nil, fmt.Errorf("scheme %q: only http, https and udp upstreams are proxied", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("no host")
	}
	if strings.Contains(u.Host, passkeyMarker) || strings.Contains(u.RawQuery, passkeyMarker) {
		return nil, errors.New("the {passkey} placeholder may only appear in the path")
	}
	up := &upstream{announce: u.String(), udp: u.Scheme == "udp", clients: map[string]trackerclient.Client{}}
	segs := strings.Split(u.Path, "/")
	for i := len(segs) - 1; i >= 0; i-- {
		if rest, ok := strings.CutPrefix(segs[i], "announce"); ok {
			segs[i] = "scrape" + rest
			su := *u
			su.Path = strings.Join(segs, "/")
			su.RawPath = ""
			up.scrape = su.String()
			break
		}
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	up.client = &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil, // never an environment proxy: the upstream is dialled directly
			DialContext:            dialer.DialContext,
			TLSHandshakeTimeout:    timeout,
			ResponseHeaderTimeout:  timeout,
			MaxResponseHeaderBytes: 64 << 10,
			MaxIdleConnsPerHost:    16,
			MaxConnsPerHost:        64,
			IdleConnTimeout:        90 * time.Second,
			ForceAttemptHTTP2:      true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("%w: more than %d redirects", ErrUpstream, maxRedirects)
			}
			if req.URL.Scheme != via[0].URL.Scheme {
				return fmt.Errorf("%w: redirect from %s to %s refused", ErrUpstream, via[0].URL.Scheme, req.URL.Scheme)
			}
			return nil
		},
		Timeout: timeout,
	}
	return up, nil
}

// target builds the upstream URL for one request: the passkey put in the
// placeholder or appended as a last path segment, and the client's raw query
// appended after the upstream URL's own query.
func (up *upstream) target(kind routeKind, passkey, rawQuery string) (string, error) {
	tmpl := up.announce
	if kind == routeScrape {
		tmpl = up.scrape
		if tmpl == "" {
			return "", fmt.Errorf("%w: no scrape URL (the upstream path has no segment starting with \"announce\")", ErrUpstream)
		}
	}
	if strings.Contains(tmpl, passkeyMarker) {
		if passkey == "" {
			return "", fmt.Errorf("%w: the upstream needs a passkey: use /announce/<passkey>", ErrBadRequest)
		}
		tmpl = strings.ReplaceAll(tmpl, passkeyMarker, passkey) // validPasskey: nothing to escape
	}
	u, err := url.Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	if passkey != "" && !strings.Contains(up.announce, passkeyMarker) {
		u = u.JoinPath(passkey)
	}
	if rawQuery != "" {
		if u.RawQuery != "" {
			u.RawQuery += "&" + rawQuery
		} else {
			u.RawQuery = rawQuery
		}
	}
	return u.String(), nil
}

// withIP returns the raw query with every "ip" parameter removed and the
// peer's address appended as "ip"; the other parameters keep their exact
// bytes (info_hash and peer_id are binary and must not be re-encoded).
func withIP(rawQuery string, src netip.Addr) string {
	var kept []string
	for _, kv := range strings.Split(rawQuery, "&") {
		if k, _, _ := strings.Cut(kv, "="); k == "ip" || kv == "" {
			continue
		}
		kept = append(kept, kv)
	}
	return strings.Join(append(kept, "ip="+url.QueryEscape(src.String())), "&")
}

// proxy forwards the request to the upstream and relays its reply, bounded
// in size and time, and reports whether the upstream accepted it (answered
// 200 with no failure reason). Failures are answered with a failure reason
// that names neither the upstream URL nor the passkey.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, kind routeKind, passkey string, src netip.Addr) (accepted bool) {
	body, err := s.forward(r.Context(), kind, passkey, r.URL.RawQuery, r.UserAgent(), src)
	if err != nil {
		s.log.Warn("upstream exchange failed", "src", src, "err", trackerclient.ScrubError(err, s.cfg.Upstream))
		reason := err.Error()
		// Transport errors name the upstream's address: keep only their kind.
		var ue *url.Error
		var oe *net.OpError
		switch {
		case errors.As(err, &ue) && errors.Is(ue.Err, ErrUpstream):
			reason = ue.Err.Error()
		case errors.As(err, &ue) && ue.Timeout():
			reason = fmt.Sprintf("%v: timed out", ErrUpstream)
		case errors.As(err, &oe):
			reason = fmt.Sprintf("%v: %s failed: %v", ErrUpstream, oe.Op, oe.Err)
		case errors.As(err, &ue):
			reason = fmt.Sprintf("%v: exchange failed", ErrUpstream)
		}
		if len(reason) > maxReasonBytes {
			reason = reason[:maxReasonBytes]
		}
		writeFailure(w, http.StatusOK, reason)
		return false
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(body)
	var reply struct {
		Failure string `bencode:"failure reason"`
	}
	if err := bencode.Unmarshal(body, &reply); err != nil || reply.Failure != "" {
		s.log.Debug("upstream refused the announce: not recorded", "src", src)
		return false
	}
	return true
}

func (s *Server) forward(ctx context.Context, kind routeKind, passkey, rawQuery, userAgent string, src netip.Addr) ([]byte, error) {
	if kind == routeAnnounce && s.cfg.UpstreamIPParam && src.IsValid() {
		// The peer's address as BEP 3's optional "ip" parameter, replacing
		// any the client sent (the proxy saw where it came from).
		rawQuery = withIP(rawQuery, src)
	}
	target, err := s.upstream.target(kind, passkey, rawQuery)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	if len(userAgent) > maxUserAgentBytes {
		userAgent = userAgent[:maxUserAgentBytes]
	}
	req.Header.Set("User-Agent", userAgent) // "" keeps Go's default out
	if src.IsValid() && s.cfg.UpstreamAddrHeader != "-" {
		req.Header.Set(s.cfg.UpstreamAddrHeader, src.String())
	}
	resp, err := s.upstream.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxUpstreamReplyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading reply: %v", ErrUpstream, err)
	}
	if len(body) > MaxUpstreamReplyBytes {
		return nil, fmt.Errorf("%w: reply larger than %d bytes", ErrUpstream, MaxUpstreamReplyBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: answered %s", ErrUpstream, resp.Status)
	}
	return body, nil
}

// maxUpstreamClients bounds the translated-announce clients kept (one per
// passkey); past it the oldest is closed.
const maxUpstreamClients = 4096

// translatedClient is the tracker client for one passkey's upstream URL.
func (s *Server) translatedClient(passkey string) (trackerclient.Client, error) {
	up := s.upstream
	target, err := up.target(routeAnnounce, passkey, "")
	if err != nil {
		return nil, err
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if c, ok := up.clients[target]; ok {
		return c, nil
	}
	var c trackerclient.Client
	if up.udp {
		c, err = udptracker.New(target, udptracker.Options{BackoffBase: s.cfg.UpstreamTimeout / 4, MaxRetries: 1, Logger: s.log})
	} else {
		c, err = httptracker.New(target, httptracker.Options{Timeout: s.cfg.UpstreamTimeout})
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUpstream, trackerclient.ScrubError(err, target))
	}
	if len(up.clients) >= maxUpstreamClients {
		for k, old := range up.clients {
			old.Close()
			delete(up.clients, k)
			break
		}
	}
	up.clients[target] = c
	return c, nil
}

// closeClients closes the translated-announce clients.
func (up *upstream) closeClients() {
	up.mu.Lock()
	defer up.mu.Unlock()
	for k, c := range up.clients {
		c.Close()
		delete(up.clients, k)
	}
}

// announceUpstream announces a's counters to the upstream with a tracker
// client (a translated announce) and returns its reply.
func (s *Server) announceUpstream(ctx context.Context, a reported.Announce, numWant int32) (trackerclient.Response, error) {
	c, err := s.translatedClient(a.Passkey)
	if err != nil {
		return trackerclient.Response{}, err
	}
	key, _ := strconv.ParseUint(a.Key, 16, 32)
	req := trackerclient.Request{InfoHash: a.InfoHash, PeerID: a.PeerID, Port: a.Port, Uploaded: a.Uploaded,
		Downloaded: a.Downloaded, Left: a.Left, Event: a.Event, Key: uint32(key), NumWant: numWant}
	if s.cfg.UpstreamIPParam {
		req.IP = a.IP
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	resp, err := c.Announce(ctx, req)
	if err != nil {
		return resp, fmt.Errorf("%w: %v", ErrUpstream, trackerclient.ScrubError(err, s.cfg.Upstream))
	}
	return resp, nil
}
