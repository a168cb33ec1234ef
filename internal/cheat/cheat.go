// Package cheat runs the ratio-cheating tools users meet in the wild as
// scripted peers on loopback: fake announcers that report uploads they
// never made, in the ways such tools do. Tests, the demo and the accuracy
// lab use them as cheaters whose truth is known.
package cheat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/peerwire"
)

// Kind names a cheating behaviour.
type Kind string

// The kinds.
const (
	// Ghost announces uploads from a port where nothing listens.
	Ghost Kind = "ghost"
	// Mute accepts TCP connections but never answers the handshake.
	Mute Kind = "mute"
	// NoBitfield completes the BitTorrent handshake but never says which
	// pieces it has (it has none), while claiming uploads.
	NoBitfield Kind = "no_bitfield"
	// LeecherFollower claims uploads, with random jitter, only while the
	// tracker reports leechers, so that its claims look plausible.
	LeecherFollower Kind = "leecher_follower"
	// FlashSession announces started, then stopped seconds later claiming
	// a whole interval's worth of upload.
	FlashSession Kind = "flash_session"
)

// Kinds lists every announcer kind (the multiplying proxy is separate).
func Kinds() []Kind { return []Kind{Ghost, Mute, NoBitfield, LeecherFollower, FlashSession} }

// Config describes one cheater.
type Config struct {
	Kind     Kind
	Announce string // tracker announce URL
	InfoHash infohash.T
	Size     int64 // torrent size: a fake seeder reports left=0
	// Rate is the upload it claims, in bytes per second.
	Rate float64
	// Interval between announces (default 2 s: tests are short).
	Interval time.Duration
	// IP is the loopback address it listens on and announces from
	// (default 127.0.0.1).
	IP     string
	PeerID [20]byte
	Seed   uint64
}

// Cheater is a running cheater.
type Cheater struct {
	cfg    Config
	Addr   netip.AddrPort
	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	claims int64
	client *http.Client
}

// Start starts announcing (and, for Mute and NoBitfield, listening).
func Start(ctx context.Context, cfg Config) (*Cheater, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	if cfg.PeerID == ([20]byte{}) {
		copy(cfg.PeerID[:], fmt.Sprintf("-UT3550-%012d", cfg.Seed))
	}
	c := &Cheater{cfg: cfg, client: &http.Client{Timeout: 5 * time.Second}}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.IP, "0"))
	if err != nil {
		return nil, fmt.Errorf("cheat %s: %w", cfg.Kind, err)
	}
	c.Addr = netip.MustParseAddrPort(ln.Addr().String())
	ctx, c.cancel = context.WithCancel(ctx)
	switch cfg.Kind {
	case Ghost, LeecherFollower, FlashSession:
		ln.Close() // nobody home: the port is announced but refuses connections
	case Mute:
		c.ln = ln
		c.wg.Add(1)
		go c.serveMute(ctx)
	case NoBitfield:
		c.ln = ln
		c.wg.Add(1)
		go c.serveNoBitfield(ctx)
	default:
		ln.Close()
		return nil, fmt.Errorf("cheat: unknown kind %q", cfg.Kind)
	}
	c.wg.Add(1)
	go c.announceLoop(ctx)
	return c, nil
}

// Claimed is the upload it has reported so far.
func (c *Cheater) Claimed() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.claims
}

// Close stops it (announcing stopped first where the kind does) and waits.
func (c *Cheater) Close() {
	c.cancel()
	if c.ln != nil {
		c.ln.Close()
	}
	c.wg.Wait()
}

func (c *Cheater) announceLoop(ctx context.Context) {
	defer c.wg.Done()
	r := rand.New(rand.NewPCG(c.cfg.Seed, 7))
	step := c.cfg.Rate * c.cfg.Interval.Seconds()
	if c.cfg.Kind == FlashSession {
		// started, a short pause, then stopped claiming a full 30-minute
		// interval of upload at Rate.
		c.announce(ctx, "started")
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.cfg.Interval):
		}
		c.add(int64(c.cfg.Rate * 1800))
		c.announce(context.WithoutCancel(ctx), "stopped")
		return
	}
	leechers := c.announce(ctx, "started")
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.announce(context.WithoutCancel(ctx), "stopped")
			return
		case <-t.C:
		}
		switch c.cfg.Kind {
		case LeecherFollower:
			if leechers > 0 {
				c.add(int64(step * (0.7 + 0.6*r.Float64())))
			}
		default:
			c.add(int64(step))
		}
		leechers = c.announce(ctx, "")
	}
}

func (c *Cheater) add(n int64) {
	c.mu.Lock()
	c.claims += n
	c.mu.Unlock()
}

// announce sends one announce and returns the leecher count the tracker
// gave (0 if unknown).
func (c *Cheater) announce(ctx context.Context, event string) int64 {
	c.mu.Lock()
	up := c.claims
	c.mu.Unlock()
	q := url.Values{}
	q.Set("info_hash", string(c.cfg.InfoHash[:]))
	q.Set("peer_id", string(c.cfg.PeerID[:]))
	q.Set("port", strconv.Itoa(int(c.Addr.Port())))
	q.Set("uploaded", strconv.FormatInt(up, 10))
	q.Set("downloaded", "0")
	q.Set("left", "0")
	q.Set("compact", "1")
	if event != "" {
		q.Set("event", event)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.Announce+"?"+encodeQuery(q), nil)
	if err != nil {
		return 0
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var reply struct {
		Incomplete int64 `bencode:"incomplete"`
	}
	if bencode.Unmarshal(body, &reply) != nil {
		return 0
	}
	return reply.Incomplete
}

// serveMute accepts connections and holds them without a word.
func (c *Cheater) serveMute(ctx context.Context) {
	defer c.wg.Done()
	var conns []net.Conn
	defer func() {
		for _, k := range conns {
			k.Close()
		}
	}()
	for {
		k, err := c.ln.Accept()
		if err != nil {
			return
		}
		conns = append(conns, k)
		if ctx.Err() != nil {
			return
		}
	}
}

// serveNoBitfield completes handshakes (plaintext or MSE) and then only
// reads, never sending a bitfield, HaveNone or anything else.
func (c *Cheater) serveNoBitfield(ctx context.Context) {
	defer c.wg.Done()
	ih := c.cfg.InfoHash
	ac := peerwire.AcceptConfig{
		PeerID: c.cfg.PeerID, AllowPlaintext: true, AllowMSEPlaintext: true,
		Known:    func(h infohash.T) bool { return h == ih },
		InfoHash: func(yield func(infohash.T) bool) { yield(ih) },
		// No extension bits: a bare client that must send a bitfield if it
		// had anything.
		Reserved: [8]byte{0, 0, 0, 0, 0, 0, 0, 0x01},
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		raw, err := c.ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			conn, err := peerwire.Accept(hctx, raw, ac)
			cancel()
			if err != nil {
				return
			}
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			for {
				if _, err := conn.ReadMessage(); err != nil && !errors.Is(err, peerwire.ErrProtocol) {
					return
				}
			}
		}()
	}
}
