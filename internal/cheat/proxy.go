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

	"github.com/swarmaudit/swarmaudit/internal/discover/tracker/httptracker"
)

// Proxy is the "ratio booster" proxy: a real client announces through it,
// and it multiplies the client's reported upload before forwarding the
// announce to the real tracker. The client is honest on the wire, so only
// bandwidth and conservation bounds can catch it.
type Proxy struct {
	URL    string // announce URL to give the client
	srv    *http.Server
	ln     net.Listener
	target *url.URL
}

// StartProxy listens on ip:0 and forwards announces to upstream (an http
// announce URL) with uploaded multiplied by factor.
func StartProxy(ip, upstream string, factor float64) (*Proxy, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, URL: "http://" + ln.Addr().String() + "/announce"}
	client := &http.Client{Timeout: 10 * time.Second}
	p.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if up, err := strconv.ParseInt(q.Get("uploaded"), 10, 64); err == nil {
			q.Set("uploaded", strconv.FormatInt(int64(float64(up)*factor), 10))
		}
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
