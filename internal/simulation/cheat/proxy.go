package cheat

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/trackerclient/httptracker"
)

// Rewrite is what a rewriting proxy does to a client's announce. The zero
// value forwards announces unchanged.
type Rewrite struct {
	// Upload multiplies `uploaded` (GreedyTorrent's upload ratio; 0 or 1:
	// unchanged).
	Upload float64 `json:"upload,omitempty"`
	// HideDownload reports `downloaded` as 0 (GreedyTorrent's download
	// ratio at 0: the download is never charged).
	HideDownload bool `json:"hide_download,omitempty"`
	// DownloadCoupled adds `downloaded` × this to `uploaded` (RatioGhost:
	// upload that grows with what the client downloads).
	DownloadCoupled float64 `json:"download_coupled,omitempty"`
	// LeftZero reports `left=0`: a leecher that passes itself off as a
	// seeder.
	LeftZero bool `json:"left_zero,omitempty"`
}

// Active reports whether the rewrite changes anything.
func (rw Rewrite) Active() bool {
	return (rw.Upload > 0 && rw.Upload != 1) || rw.HideDownload || rw.DownloadCoupled > 0 || rw.LeftZero
}

// apply rewrites an announce query in place.
func (rw Rewrite) apply(q url.Values) {
	up, errU := strconv.ParseInt(q.Get("uploaded"), 10, 64)
	down, errD := strconv.ParseInt(q.Get("downloaded"), 10, 64)
	if errU == nil {
		v := float64(up)
		if rw.Upload > 0 {
			v *= rw.Upload
		}
		if errD == nil && rw.DownloadCoupled > 0 {
			v += float64(down) * rw.DownloadCoupled
		}
		q.Set("uploaded", strconv.FormatInt(int64(v), 10))
	}
	if rw.HideDownload && errD == nil {
		q.Set("downloaded", "0")
	}
	if rw.LeftZero && q.Has("left") {
		q.Set("left", "0")
	}
}

// Proxy is the "ratio booster" proxy (GreedyTorrent, RatioGhost): a real
// client announces through it, and it rewrites the client's reported
// statistics before forwarding the announce to the real tracker. The
// client is honest on the wire, so only the wire's bounds can catch it.
type Proxy struct {
	URL    string // announce URL to give the client
	srv    *http.Server
	ln     net.Listener
	target *url.URL
}

// StartProxy listens on ip:0 and forwards announces to upstream (an http
// announce URL) with uploaded multiplied by factor.
func StartProxy(ip, upstream string, factor float64) (*Proxy, error) {
	return StartRewriter(ip, upstream, Rewrite{Upload: factor})
}

// StartRewriter listens on ip:0 and forwards announces to upstream (an
// http announce URL) rewritten by rw, from ip: run it on the client's
// address, as a proxy on the client's host would be.
func StartRewriter(ip, upstream string, rw Rewrite) (*Proxy, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, URL: "http://" + ln.Addr().String() + "/announce"}
	// Forward from the address it listens on: a proxy runs on the client's
	// own host, so the tracker sees the client's address.
	local := &net.TCPAddr{IP: net.ParseIP(ip)}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}).DialContext,
	}}
	p.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		rw.apply(q)
		u := *p.target
		u.RawQuery = encodeQuery(q)
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header.Set("User-Agent", r.UserAgent())
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, io.LimitReader(resp.Body, 1<<20))
	})}
	go p.srv.Serve(ln)
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

// encodeQuery percent-encodes every byte that is not unreserved, as
// BitTorrent clients do.
func encodeQuery(q url.Values) string {
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, httptracker.Escape([]byte(k))+"="+httptracker.Escape([]byte(v)))
		}
	}
	return strings.Join(parts, "&")
}
