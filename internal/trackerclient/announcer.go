package trackerclient

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

// Defaults of AnnouncerConfig.
const (
	DefaultInterval      = 30 * time.Minute
	DefaultFloor         = 60 * time.Second
	DefaultRetryBase     = 15 * time.Second
	DefaultStopTimeout   = 10 * time.Second
	DefaultScrapeTimeout = 20 * time.Second
	maxRetryWait         = 30 * time.Minute
	maxTrackers          = 64
)

// AnnouncerConfig configures an Announcer.
type AnnouncerConfig struct {
	// Tiers is the BEP 12 announce-list. At most 64 URLs are used.
	Tiers [][]string
	// Dial makes the client for a URL (by scheme).
	Dial func(url string) (Client, error)
	// Request is the template of every announce: InfoHash, PeerID, Port,
	// Left, Key and NumWant. Event, Uploaded, Downloaded and TrackerID are
	// filled in per announce.
	Request Request
	// Stats returns the caller's true uploaded and downloaded byte counts
	// at announce time (zero if nil).
	Stats func() (uploaded, downloaded int64)
	// StrictTiers announces to the first working tracker of the first
	// working tier only, the literal BEP 12 behaviour. By default one
	// tracker of every tier is used (libtorrent's announce_to_all_tiers),
	// which finds more peers.
	StrictTiers bool
	// Floor is the least time between two announces to a tracker whatever
	// the tracker says (DefaultFloor if <= 0), so a hostile interval of 0
	// cannot make the announcer hammer.
	Floor time.Duration
	// RetryBase is the wait after every tracker of a tier failed; it
	// doubles per consecutive failure up to 30 min (DefaultRetryBase if
	// <= 0).
	RetryBase time.Duration
	// StopTimeout bounds the event=stopped announces sent when Run ends
	// (DefaultStopTimeout if <= 0).
	StopTimeout time.Duration
	// Scrape scrapes each tracker once after its first successful
	// announce.
	Scrape bool
	// OnPeers receives the peers of every successful announce. It must not
	// block for long.
	OnPeers func(url string, peers []Peer)
	Logger  *slog.Logger
	// Shuffle reorders a tier (BEP 12: shuffled once at start); the
	// default is a random permutation. Tests pass a no-op for determinism.
	Shuffle func([]string)
}

// Status is what happened with one tracker.
type Status struct {
	URL          string    `json:"url"` // redacted (see Redact)
	Tier         int       `json:"tier"`
	Announces    int       `json:"announces"`
	Failures     int       `json:"failures"`
	LastError    string    `json:"last_error,omitempty"`
	LastAnnounce time.Time `json:"last_announce,omitzero"`
	IntervalS    int64     `json:"interval_s,omitempty"`     // last interval given
	MinIntervalS int64     `json:"min_interval_s,omitempty"` // last min interval given
	Warning      string    `json:"warning,omitempty"`
	Seeders      int64     `json:"seeders"`  // from the last announce, -1 unknown
	Leechers     int64     `json:"leechers"` // from the last announce, -1 unknown
	Peers        int       `json:"peers"`    // peer entries received, all announces
	Started      bool      `json:"started"`
	Stopped      bool      `json:"stopped"`
	Scrape       *Scrape   `json:"scrape,omitempty"`
	ScrapeError  string    `json:"scrape_error,omitempty"`
	Sent         int64     `json:"sent"` // requests (HTTP) or packets (UDP)
}

// Announcer announces one torrent to its trackers until its context ends,
// then tells every tracker it started with that it stopped.
type Announcer struct {
	cfg AnnouncerConfig

	mu        sync.Mutex
	clients   map[string]Client
	status    map[string]*Status
	order     []string
	trackerID map[string]string
}

// NewAnnouncer checks the configuration and returns an announcer.
func NewAnnouncer(cfg AnnouncerConfig) (*Announcer, error) {
	if cfg.Dial == nil {
		return nil, errors.New("announcer: no Dial function")
	}
	if cfg.Floor <= 0 {
		cfg.Floor = DefaultFloor
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Shuffle == nil {
		cfg.Shuffle = func(s []string) { rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] }) }
	}
	a := &Announcer{cfg: cfg, clients: map[string]Client{}, status: map[string]*Status{}, trackerID: map[string]string{}}
	// Copy the tiers, dropping duplicates and empty tiers, bounded.
	var tiers [][]string
	for ti, tier := range cfg.Tiers {
		var t []string
		for _, u := range tier {
			if u == "" || a.status[u] != nil || len(a.order) >= maxTrackers {
				continue
			}
			a.status[u] = &Status{URL: u, Tier: ti, Seeders: -1, Leechers: -1}
			a.order = append(a.order, u)
			t = append(t, u)
		}
		if len(t) > 0 {
			cfg.Shuffle(t)
			tiers = append(tiers, t)
		}
	}
	if len(tiers) == 0 {
		return nil, errors.New("announcer: no trackers")
	}
	a.cfg.Tiers = tiers
	return a, nil
}

// Run announces until ctx ends, then sends the stopped announces (bounded
// by StopTimeout) and closes the clients. It returns nil when ctx ended
// normally.
func (a *Announcer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if a.cfg.StrictTiers {
		wg.Go(func() { a.runGroup(ctx, a.cfg.Tiers) })
	} else {
		for _, t := range a.cfg.Tiers {
			wg.Go(func() { a.runGroup(ctx, [][]string{t}) })
		}
	}
	wg.Wait()
	a.stopAll(context.WithoutCancel(ctx))
	return nil
}

// runGroup works through tiers in order: the first tracker that answers is
// moved to the front of its tier (BEP 12) and re-announced to after its
// interval; when all fail the group waits and starts over.
func (a *Announcer) runGroup(ctx context.Context, tiers [][]string) {
	failures := 0
	for ctx.Err() == nil {
		var wait time.Duration
		ok := false
	tiersLoop:
		for _, tier := range tiers {
			for i, u := range tier {
				resp, err := a.announce(ctx, u, "")
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					continue
				}
				copy(tier[1:i+1], tier[:i])
				tier[0] = u
				ok = true
				wait = a.nextWait(resp)
				break tiersLoop
			}
		}
		if ok {
			failures = 0
		} else {
			failures++
			wait = min(a.cfg.RetryBase<<min(failures-1, 20), maxRetryWait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// nextWait is the tracker's interval, never less than its min interval or
// the configured floor.
func (a *Announcer) nextWait(r Response) time.Duration {
	w := r.Interval
	if w <= 0 {
		w = DefaultInterval
	}
	return max(w, r.MinInterval, a.cfg.Floor)
}

func (a *Announcer) client(u string) (Client, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.clients[u]; ok {
		return c, nil
	}
	c, err := a.cfg.Dial(u)
	if err != nil {
		return nil, err
	}
	a.clients[u] = c
	return c, nil
}

// announce sends one announce to u. An empty event means "started" for a
// tracker not yet started, else a regular announce.
func (a *Announcer) announce(ctx context.Context, u string, ev reported.Event) (Response, error) {
	c, err := a.client(u)
	if err != nil {
		a.record(u, Response{}, err)
		return Response{}, err
	}
	req := a.cfg.Request
	a.mu.Lock()
	st := a.status[u]
	if ev == "" && !st.Started {
		ev = reported.EventStarted
	}
	req.TrackerID = a.trackerID[u]
	a.mu.Unlock()
	req.Event = ev
	if ev == reported.EventStopped {
		req.NumWant = 0
	}
	if a.cfg.Stats != nil {
		req.Uploaded, req.Downloaded = a.cfg.Stats()
	}
	resp, err := c.Announce(ctx, req)
	if err != nil && ctx.Err() != nil {
		return Response{}, err // cancelled mid-announce: not the tracker's fault
	}
	first := a.record(u, resp, err)
	if err != nil {
		a.cfg.Logger.Debug("announce failed", "tracker", Redact(u), "event", ev, "err", err)
		return Response{}, err
	}
	a.mu.Lock()
	switch ev {
	case reported.EventStarted:
		st.Started = true
	case reported.EventStopped:
		st.Stopped = true
	}
	a.mu.Unlock()
	a.cfg.Logger.Debug("announced", "tracker", Redact(u), "event", ev, "peers", len(resp.Peers), "interval", resp.Interval)
	if len(resp.Peers) > 0 && a.cfg.OnPeers != nil {
		a.cfg.OnPeers(u, resp.Peers)
	}
	if first && a.cfg.Scrape && ev != reported.EventStopped {
		a.scrape(ctx, u, c)
	}
	return resp, nil
}

// record updates the status of u; it returns true on the first success.
func (a *Announcer) record(u string, r Response, err error) (first bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.status[u]
	if err != nil {
		st.Failures++
		st.LastError = err.Error()
		return false
	}
	first = st.Announces == 0
	st.Announces++
	st.LastError = ""
	st.LastAnnounce = time.Now()
	st.IntervalS, st.MinIntervalS = int64(r.Interval/time.Second), int64(r.MinInterval/time.Second)
	st.Seeders, st.Leechers = r.Seeders, r.Leechers
	st.Peers += len(r.Peers)
	if r.Warning != "" {
		st.Warning = r.Warning
	}
	if r.TrackerID != "" {
		a.trackerID[u] = r.TrackerID
	}
	return first
}

func (a *Announcer) scrape(ctx context.Context, u string, c Client) {
	ctx, cancel := context.WithTimeout(ctx, DefaultScrapeTimeout)
	defer cancel()
	s, err := c.Scrape(ctx, a.cfg.Request.InfoHash)
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.status[u]
	if err != nil {
		st.ScrapeError = err.Error()
		return
	}
	st.Scrape, st.ScrapeError = &s, ""
}

// stopAll scrapes every started tracker once more (with Scrape: the report
// sets the trackers' counts against the wire at the audit's end, not at its
// start), sends it event=stopped, concurrently, within StopTimeout, and
// closes all clients.
func (a *Announcer) stopAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StopTimeout)
	defer cancel()
	var started []string
	a.mu.Lock()
	for _, u := range a.order {
		if st := a.status[u]; st.Started && !st.Stopped {
			started = append(started, u)
		}
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, u := range started {
		wg.Go(func() {
			if a.cfg.Scrape {
				if c, err := a.client(u); err == nil {
					a.scrape(ctx, u, c)
				}
			}
			if _, err := a.announce(ctx, u, reported.EventStopped); err != nil {
				a.cfg.Logger.Debug("stopped announce failed", "tracker", Redact(u), "err", err)
			}
		})
	}
	wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	for u, c := range a.clients {
		c.Close()
		a.status[u].Sent = c.Sent()
	}
}

// Status returns the status of every tracker in announce-list order.
func (a *Announcer) Status() []Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Status, 0, len(a.order))
	for _, u := range a.order {
		st := *a.status[u]
		st.URL = Redact(st.URL) // a summary is shown and stored: no passkey
		if c, ok := a.clients[u]; ok {
			st.Sent = c.Sent()
		}
		if st.Scrape != nil {
			s := *st.Scrape
			st.Scrape = &s
		}
		out = append(out, st)
	}
	return out
}

// Sent returns the requests/packets sent to all trackers so far.
func (a *Announcer) Sent() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int64
	for _, c := range a.clients {
		n += c.Sent()
	}
	return n
}
