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

	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// Kind names a cheating behaviour. docs/cheats.md describes each one and
// the public tool it is modelled on.
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

	// RatioMaster is RatioMaster.NET: an emulated client that starts as a
	// leecher at a set "finished" percentage, reports downloaded growing and
	// left falling at its download speed until it sends completed, and an
	// upload drawn afresh between a minimum and a maximum speed at every
	// update; it announces at the tracker's interval; nothing listens.
	RatioMaster Kind = "ratiomaster"
	// JOAL seeds only: left=0 and downloaded=0, an upload speed drawn
	// between a minimum and a maximum and kept for 20 minutes, dispatched
	// only to torrents whose last announce reply listed leechers. It binds
	// its announced port but never speaks BitTorrent on it.
	JOAL Kind = "joal"
	// Rustatio is a fake seeder with randomized rates per announce that
	// idles (claims nothing) while the tracker lists no leechers; on the
	// wire it answers a plaintext handshake and closes the connection two
	// seconds later without a bitfield.
	Rustatio Kind = "rustatio"
	// RatioPy is Ratio.py: a fake seeder claiming a constant upload speed
	// at the tracker's interval; nothing listens.
	RatioPy Kind = "ratiopy"
	// SilentSeeder answers every handshake with a full bitfield, stays
	// connected, and never unchokes anyone, while claiming uploads.
	SilentSeeder Kind = "silent_seeder"
	// FlashBurst refuses every connection and, once every announce
	// interval, sends started and then stopped 15 ms later claiming an
	// interval's worth of upload.
	FlashBurst Kind = "flash_burst"
)

// Kinds lists every announcer kind (the rewriting proxy is separate).
func Kinds() []Kind {
	return []Kind{Ghost, Mute, NoBitfield, LeecherFollower, FlashSession, RatioMaster, JOAL, Rustatio, RatioPy, SilentSeeder, FlashBurst}
}

// Config describes one cheater.
type Config struct {
	Kind     Kind
	Announce string // tracker announce URL
	InfoHash infohash.T
	Size     int64 // torrent size: a fake seeder reports left=0
	// PieceLength is the torrent's piece length; SilentSeeder needs it for
	// its bitfield (default 256 KiB).
	PieceLength int64
	// Rate is the upload it claims, in bytes per second (the middle of the
	// range for the tools that draw a random speed).
	Rate float64
	// Interval between announces; 0 follows the tracker's interval, as the
	// real tools do (tests set a short one).
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

// Start starts announcing (and, for the kinds that listen, listening).
func Start(ctx context.Context, cfg Config) (*Cheater, error) {
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	if cfg.PieceLength <= 0 {
		cfg.PieceLength = 256 << 10
	}
	if cfg.PeerID == ([20]byte{}) {
		copy(cfg.PeerID[:], fmt.Sprintf("%s%012d", peerIDPrefix(cfg.Kind), cfg.Seed))
	}
	c := &Cheater{cfg: cfg, client: &http.Client{Timeout: 5 * time.Second}}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.IP, "0"))
	if err != nil {
		return nil, fmt.Errorf("cheat %s: %w", cfg.Kind, err)
	}
	c.Addr = netip.MustParseAddrPort(ln.Addr().String())
	ctx, c.cancel = context.WithCancel(ctx)
	var serve func(context.Context)
	switch cfg.Kind {
	case Ghost, LeecherFollower, FlashSession, RatioMaster, RatioPy, FlashBurst:
		ln.Close() // nobody home: the port is announced but refuses connections
	case Mute, JOAL:
		serve = c.serveMute
	case NoBitfield:
		serve = c.serveNoBitfield
	case Rustatio:
		serve = c.serveHandshakeAndClose
	case SilentSeeder:
		serve = c.serveSilentSeeder
	default:
		ln.Close()
		return nil, fmt.Errorf("cheat: unknown kind %q", cfg.Kind)
	}
	if serve != nil {
		c.ln = ln
		c.wg.Go(func() { serve(ctx) })
	}
	c.wg.Go(func() { c.announceLoop(ctx) })
	return c, nil
}

// peerIDPrefix is the Azureus-style prefix of the client the tool emulates.
func peerIDPrefix(k Kind) string {
	switch k {
	case RatioMaster:
		return "-UT2210-" // µTorrent 2.2.1, RatioMaster's default profile
	case JOAL, Rustatio, RatioPy:
		return "-qB4520-" // qBittorrent, the client these tools emulate by default
	}
	return "-UT3550-"
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

// counters are what an announce reports.
type counters struct{ up, down, left int64 }

// reply is what the tool reads from the tracker's answer.
type reply struct {
	interval time.Duration
	leechers int64
	seeders  int64
}

func (c *Cheater) announceLoop(ctx context.Context) {
	r := rand.New(rand.NewPCG(c.cfg.Seed, 7))
	switch c.cfg.Kind {
	case FlashSession:
		// started, a short pause, then stopped claiming a full 30-minute
		// interval of upload at Rate.
		rep := c.announce(ctx, "started", counters{})
		if !sleep(ctx, c.wait(rep)) {
			return
		}
		c.add(int64(c.cfg.Rate * 1800))
		c.announce(context.WithoutCancel(ctx), "stopped", counters{up: c.Claimed()})
		return
	case FlashBurst:
		c.flashBursts(ctx)
		return
	}
	sc := newScript(c.cfg, r)
	st := sc.start()
	rep := c.announce(ctx, "started", st)
	for {
		wait := c.wait(rep)
		if !sleep(ctx, wait) {
			c.announce(context.WithoutCancel(ctx), "stopped", st)
			return
		}
		event := sc.step(&st, wait, rep)
		c.setClaims(st.up)
		rep = c.announce(ctx, event, st)
	}
}

// flashBursts: every interval a started announce, and 15 ms later a
// stopped one claiming an interval's worth of upload.
func (c *Cheater) flashBursts(ctx context.Context) {
	rep := reply{}
	for {
		base := c.Claimed()
		c.announce(ctx, "started", counters{up: base})
		time.Sleep(15 * time.Millisecond)
		wait := c.wait(rep)
		c.add(int64(c.cfg.Rate * wait.Seconds()))
		rep = c.announce(context.WithoutCancel(ctx), "stopped", counters{up: c.Claimed()})
		if !sleep(ctx, wait) {
			return
		}
	}
}

// wait is the time to the next announce: the configured interval, else the
// tracker's, else 30 s.
func (c *Cheater) wait(rep reply) time.Duration {
	switch {
	case c.cfg.Interval > 0:
		return c.cfg.Interval
	case rep.interval > 0:
		return rep.interval
	}
	return 30 * time.Second
}

// sleep waits d or until ctx is done; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *Cheater) add(n int64) {
	c.mu.Lock()
	c.claims += n
	c.mu.Unlock()
}

func (c *Cheater) setClaims(n int64) {
	c.mu.Lock()
	c.claims = n
	c.mu.Unlock()
}

// announce sends one announce and returns what the tool reads from the
// reply (zero when it failed).
func (c *Cheater) announce(ctx context.Context, event string, st counters) reply {
	q := url.Values{}
	q.Set("info_hash", string(c.cfg.InfoHash[:]))
	q.Set("peer_id", string(c.cfg.PeerID[:]))
	q.Set("port", strconv.Itoa(int(c.Addr.Port())))
	q.Set("uploaded", strconv.FormatInt(st.up, 10))
	q.Set("downloaded", strconv.FormatInt(st.down, 10))
	q.Set("left", strconv.FormatInt(st.left, 10))
	q.Set("compact", "1")
	if event != "" {
		q.Set("event", event)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.Announce+"?"+encodeQuery(q), nil)
	if err != nil {
		return reply{}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return reply{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var raw struct {
		Interval   int64 `bencode:"interval"`
		Complete   int64 `bencode:"complete"`
		Incomplete int64 `bencode:"incomplete"`
	}
	if bencode.Unmarshal(body, &raw) != nil {
		return reply{}
	}
	rep := reply{leechers: raw.Incomplete, seeders: raw.Complete}
	if raw.Interval > 0 && raw.Interval < 86400 {
		rep.interval = time.Duration(raw.Interval) * time.Second
	}
	return rep
}

// serveMute accepts connections and holds them without a word.
func (c *Cheater) serveMute(ctx context.Context) {
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
	// No extension bits: a bare client that must send a bitfield if it had
	// anything.
	c.serveHandshakes(ctx, [8]byte{7: 0x01}, true, func(ctx context.Context, conn *peerwire.Conn) {
		drain(conn)
	})
}

// serveHandshakes accepts connections, completes the BitTorrent handshake
// for the cheater's torrent (MSE too when mse is set) and hands each
// connection to talk, which runs until the connection or ctx ends.
func (c *Cheater) serveHandshakes(ctx context.Context, reserved [8]byte, mse bool, talk func(context.Context, *peerwire.Conn)) {
	ih := c.cfg.InfoHash
	ac := peerwire.AcceptConfig{
		PeerID: c.cfg.PeerID, AllowPlaintext: true, AllowMSEPlaintext: mse,
		Known:    func(h infohash.T) bool { return h == ih },
		InfoHash: func(yield func(infohash.T) bool) { yield(ih) },
		Reserved: reserved,
	}
	ac.RefuseMSE = !mse
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		raw, err := c.ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			conn, err := peerwire.Accept(hctx, raw, ac)
			cancel()
			if err != nil {
				return // Accept closed it
			}
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			talk(ctx, conn)
		})
	}
}

// drain reads messages until the connection fails.
func drain(conn *peerwire.Conn) {
	for {
		if _, err := conn.ReadMessage(); err != nil && !errors.Is(err, peerwire.ErrProtocol) {
			return
		}
	}
}
