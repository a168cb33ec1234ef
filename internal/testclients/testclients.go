// Package testclients starts real third-party BitTorrent clients (Transmission,
// libtorrent, qBittorrent, aria2) and the opentracker tracker on loopback
// addresses for the project's integration tests, and reads each client's own
// ground-truth counters through its control API.
//
// Everything a client does stays on 127.0.0.0/8: it binds to the address in
// Options.IP, DHT bootstraps only from loopback nodes the test names, LSD,
// UPnP, NAT-PMP and uTP are off, and proxy variables of the test's environment
// are not passed on. Each client runs in its own t.TempDir, in its own process
// group; Stop (registered with t.Cleanup) ends only that group.
//
// A typical test:
//
//	payload := testclients.MakePayload(t, t.TempDir(), 1<<20, 1)
//	tr := testclients.StartOpentracker(ctx, t)
//	torrent, ih := testclients.MakeTorrent(t, payload, 64<<10, []string{tr.HTTP}, true)
//	tr.Allow(ctx, t, ih)
//	seed := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Transmission,
//		TorrentFile: torrent, DataDir: filepath.Dir(payload), Seed: true})
//	st, err := seed.Stats(ctx)
//
// Start and the other helpers that take a testing.TB fail or skip the test
// themselves, so they must be called from the test's own goroutine.
//
// Client quirks that shape loopback tests:
//   - Transmission 3.00 ignores 127.0.0.0/8 addresses it learns from trackers
//     or PEX ("martian"); it only takes incoming connections from them. Start a
//     Transmission leecher before its seeders, so that a seeder's first
//     announce returns it; a Transmission seeder is found by leechers.
//   - Transmission accepts one connection per peer IP per torrent, and only
//     unchokes on its 10 s rechoke tick, so it starts transferring late.
//   - Counters are updated on each client's own timer (libtorrent and
//     qBittorrent about once a second): poll Stats until they settle.
//   - aria2 reports no downloaded-bytes counter (Stats.Downloaded is Unknown)
//     and cannot refuse MSE.
//   - opentracker's announce interval is compiled in (~30 min): clients
//     announce when they start and stop, rarely in between.
package testclients

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// Kind names a BitTorrent client program.
type Kind string

// The supported clients (Debian 12 packages).
const (
	Transmission Kind = "transmission" // transmission-daemon 3.00
	Libtorrent   Kind = "libtorrent"   // python3-libtorrent 2.0 under /usr/bin/python3, embedded script
	QBittorrent  Kind = "qbittorrent"  // qbittorrent-nox 4.5
	Aria2        Kind = "aria2"        // aria2c 1.36
)

// Kinds lists every supported client kind.
func Kinds() []Kind { return []Kind{Transmission, Libtorrent, QBittorrent, Aria2} }

// Encryption is a client's Message Stream Encryption (MSE) policy.
type Encryption string

// Encryption policies. The mapping per client:
//
//	           transmission  libtorrent            qBittorrent  aria2
//	required   encryption=2  pe_forced, rc4        Encryption=1 --bt-require-crypto --bt-min-crypto-level=arc4
//	preferred  encryption=1  pe_enabled, both      Encryption=0 defaults
//	disabled   encryption=0  pe_disabled           Encryption=2 defaults (aria2 cannot refuse MSE)
//
// "required" clients drop a plaintext handshake. "disabled" Transmission only
// prefers plaintext and still accepts MSE/RC4; aria2 cannot disable MSE at all,
// so for it "disabled" behaves as "preferred".
const (
	EncRequired  Encryption = "required"
	EncPreferred Encryption = "preferred"
	EncDisabled  Encryption = "disabled"
)

// Encryptions lists every encryption policy.
func Encryptions() []Encryption { return []Encryption{EncRequired, EncPreferred, EncDisabled} }

// Options configures one client.
type Options struct {
	Kind       Kind
	Encryption Encryption // default EncPreferred

	TorrentFile string // the .torrent to add (required)
	// DataDir is where the payload lives or is downloaded to (default: a new
	// t.TempDir). If the payload is complete there, the client seeds it.
	DataDir string

	UploadLimitKiB   int // the client's own upload cap in KiB/s; 0 = unlimited
	DownloadLimitKiB int // the client's own download cap in KiB/s; 0 = unlimited

	// IP is the IPv4 loopback address the client binds to (default
	// "127.0.0.1"). Any 127.0.0.0/8 address works on Linux without setup.
	IP string

	PEX bool // enable peer exchange (ut_pex); default off
	// DHT enables the mainline DHT with DHTNodes as its only bootstrap nodes.
	// Only libtorrent and aria2 support it: Transmission 3.00 and
	// qBittorrent 4.5 fall back to hard-coded public routers, which these
	// tests must never contact, so Start fails the test for them.
	DHT      bool
	DHTNodes []netip.AddrPort // loopback bootstrap nodes (aria2 uses the first)

	// Seed makes Start wait until the client reports the torrent complete,
	// verified and seeding, and then completes a BitTorrent handshake (MSE
	// when encryption is required) on its peer port: one short connection
	// from ProbeSource with peer ID "-SA0000-readyprobe00".
	Seed bool
}

// Unknown marks a counter the client does not expose.
const Unknown = -1

// Stats is a client's own view of the torrent: its ground truth, as its API
// reports it (Transmission torrent-get, qBittorrent torrents/info, aria2
// tellStatus, libtorrent torrent_status).
type Stats struct {
	Uploaded   int64 // payload bytes uploaded since the client started
	Downloaded int64 // payload bytes downloaded since the client started; Unknown for aria2
	Size       int64 // payload bytes of the torrent
	Left       int64 // bytes still missing (not yet verified)
	Progress   float64
	Seeding    bool // complete, verified and seeding
	Checking   bool // hash check running or queued
	NumPeers   int  // connected peers (right after Start with Seed, may still count the probe)
	// UploadRate and DownloadRate are the client's own payload rates in
	// bytes/s (each client averages over its own window).
	UploadRate   int64
	DownloadRate int64
	State        string // the client's own state word, for messages
	Error        string // the client's error for this torrent, "" if none
}

func (s Stats) String() string {
	return fmt.Sprintf("state=%s progress=%.4f left=%d up=%d down=%d peers=%d uprate=%d downrate=%d seeding=%v checking=%v error=%q",
		s.State, s.Progress, s.Left, s.Uploaded, s.Downloaded, s.NumPeers, s.UploadRate, s.DownloadRate,
		s.Seeding, s.Checking, s.Error)
}

// ErrExited is returned (wrapped) when the client process is gone.
var ErrExited = errors.New("client process exited")

// Client is one running client process with one torrent.
type Client struct {
	Kind       Kind
	Encryption Encryption
	Addr       netip.AddrPort // BitTorrent TCP listen address
	DHTAddr    netip.AddrPort // DHT UDP address; zero unless Options.DHT
	InfoHash   [20]byte
	DataDir    string
	Dir        string // the client's private directory (config, logs)

	api      controller
	proc     *process
	stopOnce sync.Once
}

// controller is one client kind's API.
type controller interface {
	// ready returns nil once the client's API answers and the torrent is added.
	ready(ctx context.Context) error
	stats(ctx context.Context) (Stats, error)
	// stop asks the client to stop gracefully: announce 'stopped', then exit.
	stop(ctx context.Context) error
}

// Timeouts; every wait in this package is bounded.
const (
	defaultStartTimeout = 60 * time.Second // when Start's ctx has no deadline
	requestTimeout      = 5 * time.Second  // one API request
	stopGrace           = 10 * time.Second // graceful exit before SIGKILL
	pollInterval        = 100 * time.Millisecond
	maxResponse         = 4 << 20 // bytes of one API response
	logTail             = 32 << 10
)

// Start starts a client on loopback, adds o.TorrentFile and waits until the
// client's API reports the torrent (and, with o.Seed, until it seeds). It
// skips the test when the client program is missing (see Require), fails it
// with the client's log on any error, and registers Stop with t.Cleanup.
// ctx bounds the start-up (default 60 s when it has no deadline).
func Start(ctx context.Context, t testing.TB, o Options) *Client {
	t.Helper()
	if err := o.normalize(); err != nil {
		t.Fatalf("testclients: %v", err)
	}
	Require(t, string(o.Kind))
	mi, err := metainfo.LoadFromFile(o.TorrentFile)
	if err != nil {
		t.Fatalf("testclients: load torrent %s: %v", o.TorrentFile, err)
	}
	if _, err := mi.UnmarshalInfo(); err != nil {
		t.Fatalf("testclients: torrent %s: info: %v", o.TorrentFile, err)
	}
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.DataDir, err = filepath.Abs(o.DataDir); err != nil {
		t.Fatalf("testclients: data dir: %v", err)
	}
	ip := netip.MustParseAddr(o.IP)
	c := &Client{
		Kind:       o.Kind,
		Encryption: o.Encryption,
		Addr:       netip.AddrPortFrom(ip, uint16(FreePort(t, o.IP))),
		InfoHash:   mi.HashInfoBytes(),
		DataDir:    o.DataDir,
		Dir:        t.TempDir(),
		proc:       newProcess(),
	}
	if o.DHT {
		// libtorrent's DHT shares the BitTorrent port number (UDP); aria2 takes its own.
		port := c.Addr.Port()
		if o.Kind == Aria2 {
			port = uint16(FreePort(t, o.IP))
		}
		c.DHTAddr = netip.AddrPortFrom(ip, port)
	}
	cmd, err := c.prepare(t, o)
	if err != nil {
		t.Fatalf("testclients: %s: %v", o.Kind, err)
	}
	if err := c.proc.launch(cmd, c.Dir, "client.log", c.clientEnv()); err != nil {
		t.Fatalf("testclients: %s: %v\n%s", o.Kind, err, c.Log())
	}
	t.Cleanup(c.Stop)

	ctx, cancel := withDefaultDeadline(ctx, defaultStartTimeout)
	defer cancel()
	if err := c.waitReady(ctx, o.Seed); err != nil {
		c.Stop()
		t.Fatalf("testclients: start %s (%s, %s): %v\n--- %s log ---\n%s", o.Kind, c.Addr, o.Encryption, err, o.Kind, c.Log())
	}
	return c
}

func (o *Options) normalize() error {
	if !slices.Contains(Kinds(), o.Kind) {
		return fmt.Errorf("unknown client kind %q (want one of %v)", o.Kind, Kinds())
	}
	if o.Encryption == "" {
		o.Encryption = EncPreferred
	}
	if !slices.Contains(Encryptions(), o.Encryption) {
		return fmt.Errorf("unknown encryption %q (want one of %v)", o.Encryption, Encryptions())
	}
	if o.TorrentFile == "" {
		return errors.New("Options.TorrentFile is empty")
	}
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(o.IP)
	if err != nil || !ip.Is4() || !ip.IsLoopback() {
		return fmt.Errorf("Options.IP %q: want an IPv4 loopback address (127.0.0.0/8)", o.IP)
	}
	if o.UploadLimitKiB < 0 || o.DownloadLimitKiB < 0 {
		return fmt.Errorf("negative rate limit (up %d, down %d KiB/s)", o.UploadLimitKiB, o.DownloadLimitKiB)
	}
	if o.DHT && (o.Kind == Transmission || o.Kind == QBittorrent) {
		return fmt.Errorf("DHT with %s: it bootstraps from hard-coded public routers, which tests must not contact", o.Kind)
	}
	for _, n := range o.DHTNodes {
		if !n.Addr().IsLoopback() {
			return fmt.Errorf("DHT node %s is not a loopback address", n)
		}
	}
	return nil
}

// prepare writes the client's configuration and returns its command.
func (c *Client) prepare(t testing.TB, o Options) (*exec.Cmd, error) {
	switch o.Kind {
	case Transmission:
		return c.prepareTransmission(t, o)
	case Libtorrent:
		return c.prepareLibtorrent(o)
	case QBittorrent:
		return c.prepareQBittorrent(t, o)
	case Aria2:
		return c.prepareAria2(t, o)
	}
	return nil, fmt.Errorf("unknown kind %q", o.Kind)
}

// clientEnv is the whole environment of a client: no proxy settings or other
// variables of the test's environment reach it.
func (c *Client) clientEnv() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	return []string{
		"PATH=" + path,
		"HOME=" + c.Dir,
		"TMPDIR=" + c.Dir,
		"XDG_CONFIG_HOME=" + filepath.Join(c.Dir, "xdg", "config"),
		"XDG_DATA_HOME=" + filepath.Join(c.Dir, "xdg", "data"),
		"XDG_CACHE_HOME=" + filepath.Join(c.Dir, "xdg", "cache"),
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
	}
}

func (c *Client) waitReady(ctx context.Context, seed bool) error {
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		last = c.api.ready(rctx)
		cancel()
		if last == nil {
			break
		}
		if err := c.sleep(ctx); err != nil {
			return fmt.Errorf("waiting for the API: %w (last: %v)", err, last)
		}
	}
	if !seed {
		return nil
	}
	var st Stats
	for {
		st, last = c.Stats(ctx)
		if last == nil && st.Seeding {
			break
		}
		if err := c.sleep(ctx); err != nil {
			if last != nil {
				return fmt.Errorf("waiting to seed: %w (last error: %v)", err, last)
			}
			return fmt.Errorf("waiting to seed: %w (last stats: %v; is the payload complete in %s?)", err, st, c.DataDir)
		}
	}
	for {
		last = probeHandshake(ctx, c.Addr, c.InfoHash, c.Encryption)
		if last == nil {
			return nil
		}
		if err := c.sleep(ctx); err != nil {
			return fmt.Errorf("seeding, but not accepting peers: %w (last: %v)", err, last)
		}
	}
}

// sleep waits one poll interval; it fails when ctx ends or the process exits.
func (c *Client) sleep(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.proc.exited:
		return ErrExited
	case <-time.After(pollInterval):
		return nil
	}
}

// Stats asks the client for its own counters of the torrent.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	if c.proc.hasExited() {
		return Stats{}, fmt.Errorf("%s stats: %w", c.Kind, ErrExited)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	st, err := c.api.stats(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("%s stats: %w", c.Kind, err)
	}
	return st, nil
}

// Stop stops the client gracefully (it announces 'stopped' to its trackers),
// then kills whatever is left of its process group. It is idempotent, safe
// for concurrent use, and bounded (about 15 s at worst).
func (c *Client) Stop() {
	c.stopOnce.Do(func() {
		if c.proc.cmd != nil && !c.proc.hasExited() {
			ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
			if err := c.api.stop(ctx); err != nil {
				slog.Warn("testclients: graceful stop", "kind", c.Kind, "addr", c.Addr, "err", err)
			}
			select {
			case <-c.proc.exited:
			case <-ctx.Done():
				slog.Warn("testclients: client ignored the stop request; killing it", "kind", c.Kind, "pid", c.proc.cmd.Process.Pid)
			}
			cancel()
		}
		c.proc.kill()
	})
}

// Log returns the tail of the client's log files (its output and, where it
// keeps one, its own log), for test failure messages.
func (c *Client) Log() string { return c.proc.log() }

func withDefaultDeadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// newHTTPClient talks to a client's API on loopback: no proxy, bounded.
func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, DisableCompression: true},
		Timeout:   2 * requestTimeout,
	}
}
