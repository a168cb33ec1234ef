// Package testclients runs real third-party BitTorrent clients (Transmission,
// libtorrent, qBittorrent, aria2) and the opentracker tracker, on loopback
// addresses or in network namespaces, and reads each client's own
// ground-truth counters through its control API.
//
// Everything a client does stays where it is put: it binds to the address in
// Options.IP, DHT bootstraps only from the nodes the caller names, LSD, UPnP,
// NAT-PMP and uTP are off, and proxy variables of the caller's environment
// are not passed on. Each client runs in its own directory (Options.Dir), in
// its own process group; Stop ends only that group, and a client dies with
// the process that launched it even if Stop never runs.
//
// Tests use Start, StartOpentracker, MakePayload and MakeTorrent, which skip
// or fail the test themselves (so they must be called from the test's own
// goroutine) and register Stop with t.Cleanup:
//
//	payload := testclients.MakePayload(t, t.TempDir(), 1<<20, 1)
//	tr := testclients.StartOpentracker(ctx, t)
//	torrent, ih := testclients.MakeTorrent(t, payload, 64<<10, []string{tr.HTTP}, true)
//	tr.Allow(ctx, t, ih)
//	seed := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Transmission,
//		TorrentFile: torrent, DataDir: filepath.Dir(payload), Seed: true})
//	st, err := seed.Stats(ctx)
//
// Other programs use the functions they wrap, which return errors and leave
// Stop to the caller: Launch, LaunchOpentracker, WritePayload and
// CreateTorrent. Without Options.Netns a client must bind to 127.0.0.0/8.
//
// # Network namespaces
//
// With Options.Netns (and OpentrackerOptions.Netns) the program runs as
// `ip netns exec NETNS PROGRAM ...` in a namespace the caller made (root
// only). ip execs the program in place, so PID, process group and
// parent-death signal stay the program's. The caller also sets up the
// network: Options.IP is an address of the namespace that the root
// namespace routes to, for example a namespace joined to a bridge:
//
//	ip netns add h1
//	ip link add h1-br type veth peer name h1-in
//	ip link set h1-br master br0 up            # br0: 10.77.0.1/24 in the root namespace
//	ip link set h1-in netns h1
//	ip -n h1 addr add 10.77.0.11/24 dev h1-in
//	ip -n h1 link set h1-in up
//	ip -n h1 link set lo up
//
// and then, in Go:
//
//	payload, err := testclients.WritePayload(dir+"/seed/data", 8<<20, 1)
//	torrent, ih, err := testclients.CreateTorrent(payload, 256<<10, []string{trackerURL}, true)
//	c, err := testclients.Launch(ctx, testclients.Options{Kind: testclients.QBittorrent,
//		TorrentFile: torrent, Dir: dir + "/seed", Netns: "h1", IP: "10.77.0.11",
//		Port: 6881, Seed: true}) // API on 10.77.0.11:7881 (Port+1000)
//	defer c.Stop()
//
// In a namespace the peer port (Options.Port) is required, the API port
// defaults to Port+1000, and the package talks to the client from the root
// namespace: its API (which accepts unauthenticated requests from IP's /24,
// so the root namespace's address must be in it), the readiness probe of
// Options.Seed (from the root namespace's own address; it is closed before
// Launch returns, so it does not hold Transmission's one connection per peer
// IP) and Stop. DHT nodes must be in IP's /24, or loopback (the namespace's own).
// aria2 cannot bind its RPC to one address: in a namespace it listens on all
// of the namespace's addresses.
//
// Client quirks that shape tests:
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
	"crypto/sha256"
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
	"syscall"
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
	// Dir is the client's private directory: configuration, state and logs
	// (required by Launch, created if missing; Start uses a new t.TempDir). It
	// should be new: state an earlier client left there (resume files) would
	// be picked up.
	Dir string
	// DataDir is where the payload lives or is downloaded to (default
	// Dir/data, created if missing). If the payload is complete there, the
	// client seeds it.
	DataDir string

	UploadLimitKiB   int // the client's own upload cap in KiB/s; 0 = unlimited
	DownloadLimitKiB int // the client's own download cap in KiB/s; 0 = unlimited

	// Netns, when set, is the name of a network namespace (one `ip netns add`
	// made, under /run/netns) the client runs in: its command becomes
	// `ip netns exec NETNS PROGRAM ARGS...`, which switches namespace and
	// execs the program, so the PID and process group are the program's own.
	// The caller must be root and route the root namespace to IP; the
	// package's own requests (API, readiness probe, Stop) come from the root
	// namespace.
	Netns string
	// IP is the IPv4 address the client binds to: its peer port, its API and
	// its outgoing connections. Without Netns it must be loopback (default
	// "127.0.0.1"; any 127.0.0.0/8 address works on Linux without setup).
	// With Netns it is required and may be any IPv4 unicast address of the
	// namespace; the client's API then accepts unauthenticated requests from
	// IP's /24 (and loopback), so the root namespace's address on the link
	// must be in that /24.
	IP string
	// Port is the BitTorrent TCP listen port. 0 picks a free one (FreePort);
	// with Netns it is required, since a port cannot be probed from outside
	// the namespace.
	Port int
	// APIPort is the port of the client's control API (Transmission RPC,
	// qBittorrent Web UI, aria2 JSON-RPC; libtorrent has none and ignores
	// it). 0 picks a free one, or Port+1000 with Netns.
	APIPort int

	PEX bool // enable peer exchange (ut_pex); default off
	// DHT enables the mainline DHT with DHTNodes as its only bootstrap nodes.
	// Only libtorrent and aria2 support it: Transmission 3.00 and
	// qBittorrent 4.5 fall back to hard-coded public routers, which must
	// never be contacted, so Launch refuses DHT for them. The DHT listens on
	// UDP Port; aria2's, without Netns, on a port of its own.
	DHT bool
	// DHTNodes are the bootstrap nodes (aria2 uses the first). Without Netns
	// they must be loopback addresses; with Netns they must be in IP's /24 or
	// loopback (which then is the namespace's own).
	DHTNodes []netip.AddrPort

	// UTP (libtorrent only) turns uTP (BEP 29) on next to TCP, as
	// libtorrent's defaults have it; without UTP or UTPOnly the lab's
	// libtorrent speaks TCP only.
	UTP bool
	// UTPOnly (libtorrent only) makes the client take and make peer
	// connections over uTP only (BEP 29), as a libtorrent whose TCP is
	// off: its TCP port still accepts, then hangs up. Launch's readiness
	// handshake for Seed is then skipped (it speaks TCP).
	UTPOnly bool
	// NoIncomingTCP (libtorrent only) refuses incoming TCP peers (accepted
	// by the socket, then dropped) while connecting out over TCP: a peer
	// nobody can connect to, as behind a NAT, that still connects to the
	// peers its tracker names. Launch's readiness handshake is skipped.
	NoIncomingTCP bool
	// LSD (libtorrent only) turns on its Local Service Discovery (BEP 14):
	// it multicasts announces on its namespace's interfaces. Only in a
	// namespace of the test's own (Netns).
	LSD bool

	// Seed makes Launch wait until the client reports the torrent complete,
	// verified and seeding, and then completes a BitTorrent handshake (MSE
	// when encryption is required) on its peer port: one short connection
	// with peer ID "-SA0000-readyprobe00", from ProbeSource, or with Netns
	// from the root namespace's own address on the link to IP.
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

// ErrNotInstalled is returned (wrapped) by Launch and LaunchOpentracker when
// a program they need is missing.
var ErrNotInstalled = errors.New("program not installed")

// Client is one running client process with one torrent.
type Client struct {
	Kind       Kind
	Encryption Encryption
	Netns      string         // the network namespace it runs in; "" for the caller's
	Addr       netip.AddrPort // BitTorrent TCP listen address
	APIAddr    netip.AddrPort // control API address; zero for libtorrent (stdin/stdout)
	DHTAddr    netip.AddrPort // DHT UDP address; zero unless Options.DHT
	InfoHash   [20]byte
	DataDir    string
	Dir        string // the client's private directory (config, logs)

	api      controller
	proc     *process
	probeSrc netip.Addr // source of the readiness probe; zero: the kernel's choice
	utpOnly  bool       // Options.UTPOnly or NoIncomingTCP: no readiness handshake
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
	defaultStartTimeout = 60 * time.Second // when Launch's ctx has no deadline
	requestTimeout      = 5 * time.Second  // one API request
	stopGrace           = 10 * time.Second // graceful exit before SIGKILL
	pollInterval        = 100 * time.Millisecond
	maxResponse         = 4 << 20 // bytes of one API response
	logTail             = 32 << 10
)

// apiPortOffset derives Options.APIPort from Options.Port with Netns.
const apiPortOffset = 1000

// Start is Launch for tests: it gives the client a new t.TempDir as Dir
// unless o.Dir is set, skips the test when the client program is missing
// (see Require), fails it with the client's log on any error, and registers
// Stop with t.Cleanup.
func Start(ctx context.Context, t testing.TB, o Options) *Client {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if err := o.normalize(); err != nil {
		t.Fatalf("testclients: %v", err)
	}
	Require(t, string(o.Kind))
	if o.Netns != "" {
		Require(t, "ip")
	}
	c, err := Launch(ctx, o)
	c = started(t, c, err)
	// A failed test shows how each of its clients fared: the tail of its
	// log, with the Python stack of a libtorrent that crashed.
	t.Cleanup(func() {
		if t.Failed() {
			exited := ""
			if c.proc.hasExited() {
				exited = " (its process had exited, or the test stopped it)"
			}
			t.Logf("testclients: %s at %s%s, log tail:\n%s", c.Kind, c.Addr, exited, c.Log())
		}
	})
	return c
}

// started is the end of Start and StartOpentracker: it fails the test on
// err, or registers v.Stop with t.Cleanup.
func started[T interface{ Stop() }](t testing.TB, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatalf("testclients: %v", err)
	}
	t.Cleanup(v.Stop)
	return v
}

// Launch starts a client, adds o.TorrentFile and waits until the client's
// API reports the torrent (and, with o.Seed, until it seeds and accepts a
// peer). ctx bounds the start-up (default 60 s when it has no deadline). On
// error nothing of the client is left running, and the error carries the
// tail of its log; a missing program gives an error wrapping
// ErrNotInstalled. The caller must call Stop.
func Launch(ctx context.Context, o Options) (*Client, error) {
	if err := o.normalize(); err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	if err := have(string(o.Kind)); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", o.Kind, ErrNotInstalled, err)
	}
	if o.Netns != "" {
		if err := netnsReady(o.Netns); err != nil {
			return nil, fmt.Errorf("%s: %w", o.Kind, err)
		}
	}
	mi, err := metainfo.LoadFromFile(o.TorrentFile)
	if err != nil {
		return nil, fmt.Errorf("load torrent %s: %w", o.TorrentFile, err)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return nil, fmt.Errorf("torrent %s: info: %w", o.TorrentFile, err)
	}
	ih := mi.HashInfoBytes()
	if !info.HasV1() && info.HasV2() { // v2 only: the swarm of the truncated SHA-256 (BEP 52)
		v2 := sha256.Sum256(mi.InfoBytes)
		copy(ih[:], v2[:20])
	}
	if err := o.makeDirs(); err != nil {
		return nil, fmt.Errorf("%s: %w", o.Kind, err)
	}
	if err := o.assignPorts(); err != nil {
		return nil, fmt.Errorf("%s: %w", o.Kind, err)
	}
	ip := netip.MustParseAddr(o.IP)
	c := &Client{
		Kind:       o.Kind,
		Encryption: o.Encryption,
		Netns:      o.Netns,
		Addr:       netip.AddrPortFrom(ip, uint16(o.Port)),
		InfoHash:   ih,
		DataDir:    o.DataDir,
		Dir:        o.Dir,
		proc:       newProcess(),
		utpOnly:    o.UTPOnly || o.NoIncomingTCP,
	}
	if (o.UTP || o.UTPOnly || o.NoIncomingTCP) && o.Kind != Libtorrent {
		return nil, fmt.Errorf("%s: UTP, UTPOnly and NoIncomingTCP are libtorrent's", o.Kind)
	}
	if o.Kind != Libtorrent {
		apiIP := ip
		if o.Kind == Aria2 && o.Netns == "" {
			apiIP = netip.MustParseAddr("127.0.0.1") // see prepareAria2
		}
		c.APIAddr = netip.AddrPortFrom(apiIP, uint16(o.APIPort))
	}
	if o.Netns == "" {
		c.probeSrc = probeSource
	}
	if o.DHT {
		// libtorrent's DHT shares the BitTorrent port number (UDP); aria2
		// takes its own, except in a namespace, where no port can be probed.
		port := o.Port
		if o.Kind == Aria2 && o.Netns == "" {
			if port, err = freePort(o.IP); err != nil {
				return nil, fmt.Errorf("%s: DHT port: %w", o.Kind, err)
			}
		}
		c.DHTAddr = netip.AddrPortFrom(ip, uint16(port))
	}
	cmd, err := c.prepare(o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Kind, err)
	}
	if o.Netns != "" {
		if err := inNetns(cmd, o.Netns); err != nil {
			return nil, fmt.Errorf("%s: %w", o.Kind, err)
		}
	}
	if err := c.proc.launch(cmd, c.Dir, "client.log", c.clientEnv()); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", o.Kind, err, c.Log())
	}

	ctx, cancel := withDefaultDeadline(ctx, defaultStartTimeout)
	defer cancel()
	if err := c.waitReady(ctx, o.Seed); err != nil {
		c.Stop()
		where := c.Addr.String()
		if c.Netns != "" {
			where += " in netns " + c.Netns
		}
		return nil, fmt.Errorf("start %s (%s, %s): %w\n--- %s log ---\n%s", o.Kind, where, o.Encryption, err, o.Kind, c.Log())
	}
	return c, nil
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
	if o.Dir == "" {
		return errors.New("Options.Dir is empty")
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"Port", o.Port}, {"APIPort", o.APIPort}} {
		if p.v < 0 || p.v > 65535 {
			return fmt.Errorf("option %s %d out of range", p.name, p.v)
		}
	}
	if o.Netns != "" {
		if err := o.normalizeNetns(); err != nil {
			return err
		}
	} else {
		if o.IP == "" {
			o.IP = "127.0.0.1"
		}
		ip, err := netip.ParseAddr(o.IP)
		if err != nil || !ip.Is4() || !ip.IsLoopback() {
			return fmt.Errorf("Options.IP %q: want an IPv4 loopback address (127.0.0.0/8), or a Netns", o.IP)
		}
		for _, n := range o.DHTNodes {
			if !n.Addr().IsLoopback() {
				return fmt.Errorf("DHT node %s is not a loopback address", n)
			}
		}
	}
	if o.Port != 0 && o.Port == o.APIPort && o.Kind != Libtorrent {
		return fmt.Errorf("Options.Port and APIPort are both %d", o.Port)
	}
	if o.UploadLimitKiB < 0 || o.DownloadLimitKiB < 0 {
		return fmt.Errorf("negative rate limit (up %d, down %d KiB/s)", o.UploadLimitKiB, o.DownloadLimitKiB)
	}
	if o.DHT && (o.Kind == Transmission || o.Kind == QBittorrent) {
		return fmt.Errorf("DHT with %s: it bootstraps from hard-coded public routers, which must not be contacted", o.Kind)
	}
	return nil
}

// normalizeNetns checks the options that differ in a network namespace.
func (o *Options) normalizeNetns() error {
	if err := checkNetnsName(o.Netns); err != nil {
		return err
	}
	ip, err := parseNetnsIP(o.IP)
	if err != nil {
		return fmt.Errorf("Options.IP: %w", err)
	}
	if o.Port == 0 {
		return fmt.Errorf("Options.Port is required with Netns %s", o.Netns)
	}
	if o.APIPort == 0 && o.Kind != Libtorrent {
		if o.Port+apiPortOffset > 65535 {
			return fmt.Errorf("Options.APIPort: Port %d + %d is out of range; set APIPort", o.Port, apiPortOffset)
		}
		o.APIPort = o.Port + apiPortOffset
	}
	lan := lan24(ip)
	for _, n := range o.DHTNodes {
		if !n.Addr().IsLoopback() && !lan.Contains(n.Addr()) {
			return fmt.Errorf("DHT node %s is neither in %s nor loopback", n, lan)
		}
	}
	return nil
}

// makeDirs makes Dir and DataDir absolute and creates them.
func (o *Options) makeDirs() error {
	var err error
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return fmt.Errorf("dir: %w", err)
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(o.Dir, "data")
	}
	if o.DataDir, err = filepath.Abs(o.DataDir); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	for _, d := range []string{o.Dir, o.DataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return nil
}

// assignPorts picks free ports for Port and APIPort where they are 0
// (normalize has filled them with Netns). aria2's RPC listens on 127.0.0.1
// outside a namespace, so its port is picked there.
func (o *Options) assignPorts() error {
	var err error
	if o.Port == 0 {
		if o.Port, err = freePort(o.IP); err != nil {
			return fmt.Errorf("peer port: %w", err)
		}
	}
	if o.APIPort == 0 && o.Kind != Libtorrent {
		ip := o.IP
		if o.Kind == Aria2 {
			ip = "127.0.0.1"
		}
		if o.APIPort, err = freePort(ip); err != nil {
			return fmt.Errorf("API port: %w", err)
		}
	}
	return nil
}

// prepare writes the client's configuration and returns its command.
func (c *Client) prepare(o Options) (*exec.Cmd, error) {
	switch o.Kind {
	case Transmission:
		return c.prepareTransmission(o)
	case Libtorrent:
		return c.prepareLibtorrent(o)
	case QBittorrent:
		return c.prepareQBittorrent(o)
	case Aria2:
		return c.prepareAria2(o)
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
	if c.utpOnly {
		return nil // the readiness handshake speaks TCP
	}
	for {
		last = probeHandshake(ctx, c.Addr, c.InfoHash, c.Encryption, c.probeSrc)
		if last == nil {
			return nil
		}
		if err := c.sleep(ctx); err != nil {
			return fmt.Errorf("seeding, but not accepting peers: %w (last: %v)", err, last)
		}
	}
}

// WaitNoPeers waits, up to 10 s (and within ctx), until the client counts
// no connected peer, so that a connection from an address it was just
// connected to (Launch's readiness handshake, an earlier probe) is not
// taken for a second one. It reports whether it saw none. Launch does not
// call it: in a swarm the count need never reach zero.
func (c *Client) WaitNoPeers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if st, err := c.Stats(ctx); err == nil && st.NumPeers == 0 {
			return true
		}
		if c.sleep(ctx) != nil {
			return false
		}
	}
}

// sleep waits one poll interval; it fails when ctx ends or the process exits.
func (c *Client) sleep(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.proc.exited:
		return c.proc.exitErr()
	case <-time.After(pollInterval):
		return nil
	}
}

// Stats asks the client for its own counters of the torrent.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	if c.proc.hasExited() {
		return Stats{}, fmt.Errorf("%s stats: %w", c.Kind, c.proc.exitErr())
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

// Crashed reports whether the client's process died of a fault of its own
// (SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGABRT), and how. python3-libtorrent
// 2.0.8 does at times, inside libtorrent, before any peer reached it; a
// test may then run again rather than judge an auditor that had no client
// to audit.
func (c *Client) Crashed() (string, bool) {
	if !c.proc.hasExited() {
		return "", false
	}
	switch sig := c.proc.sig; sig {
	case syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGILL, syscall.SIGFPE, syscall.SIGABRT:
		return fmt.Sprintf("%s at %s: %s (%v)", c.Kind, c.Addr, c.proc.how, sig), true
	}
	return "", false
}

func withDefaultDeadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// newHTTPClient talks to a client's API: no proxy, bounded.
func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, DisableCompression: true},
		Timeout:   2 * requestTimeout,
	}
}
