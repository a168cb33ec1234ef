package testclients

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
)

// Tracker is a running opentracker.
//
// Debian builds opentracker with an info-hash whitelist (WANT_ACCESSLIST_WHITE)
// and no way to turn it off: it refuses every torrent not on the list. Allow
// and AllowHashes add torrents to the list; announces for other torrents get
// a "failure reason" answer.
type Tracker struct {
	HTTP string // HTTP announce URL, "http://IP:PORT/announce"
	UDP  string // UDP announce URL (BEP 15), "udp://IP:PORT/announce"

	dir      string
	ownDir   bool // dir was made by LaunchOpentracker: Stop removes it
	proc     *process
	http     *http.Client
	stopOnce sync.Once

	mu      sync.Mutex // serialises allow
	allowed []string   // hex infohashes
}

// OpentrackerOptions configures one opentracker.
type OpentrackerOptions struct {
	// IP is the IPv4 address it serves HTTP and UDP on. Without Netns it must
	// be loopback (default "127.0.0.1"); with Netns it is required, as for
	// Options.IP.
	IP string
	// Port serves both HTTP and UDP; 0 picks a free one (FreePort), which
	// with Netns is not possible: then it is required.
	Port int
	// Netns runs it in this network namespace, as Options.Netns does for a
	// client.
	Netns string
	// Dir is its working directory, holding the whitelist and its log
	// (created if missing, and made readable for others: run as root,
	// opentracker runs as nobody). "" makes a new one under os.TempDir,
	// which Stop removes; Stop leaves a given Dir in place.
	Dir string
	// Allow is the initial whitelist.
	Allow [][20]byte
}

// opentracker whitelist file name, relative to its working directory.
const whitelistName = "whitelist"

// nobody is the user and group ID opentracker runs as when started by root.
const nobody = "65534"

// StartOpentracker is LaunchOpentracker on 127.0.0.1 for tests: it skips the
// test when opentracker is missing (see Require), fails it on error, and
// registers Stop with t.Cleanup. Start it before the clients that use it:
// cleanups run last-in first-out, so it is stopped after them and receives
// their 'stopped' announces.
func StartOpentracker(ctx context.Context, t testing.TB, allow ...[20]byte) *Tracker {
	t.Helper()
	Require(t, opentrackerPrograms()...)
	tr, err := LaunchOpentracker(ctx, OpentrackerOptions{Allow: allow})
	return started(t, tr, err)
}

// opentrackerPrograms are the programs LaunchOpentracker needs.
func opentrackerPrograms() []string {
	if os.Geteuid() == 0 {
		return []string{"opentracker", "setpriv"}
	}
	return []string{"opentracker"}
}

// LaunchOpentracker starts Debian's opentracker, HTTP and UDP on one port,
// allows o.Allow and returns once it answers (bounded by ctx, default 60 s).
// As root it runs as nobody (through setpriv, which keeps the parent-death
// signal). opentracker's announce interval is compiled in (~30 min): clients
// announce when they start and stop, rarely in between. On error nothing is
// left running; a missing program gives an error wrapping ErrNotInstalled.
// The caller must call Stop.
func LaunchOpentracker(ctx context.Context, o OpentrackerOptions) (*Tracker, error) {
	if err := o.normalize(); err != nil {
		return nil, fmt.Errorf("opentracker options: %w", err)
	}
	for _, prog := range opentrackerPrograms() {
		if err := have(prog); err != nil {
			return nil, fmt.Errorf("opentracker: %w: %v", ErrNotInstalled, err)
		}
	}
	if o.Netns != "" {
		if err := netnsReady(o.Netns); err != nil {
			return nil, fmt.Errorf("opentracker: %w", err)
		}
	}
	tr := &Tracker{dir: o.Dir, proc: newProcess(), http: newHTTPClient()}
	if err := tr.makeDir(); err != nil {
		return nil, fmt.Errorf("opentracker: %w", err)
	}
	if o.Port == 0 {
		var err error
		if o.Port, err = freePort(o.IP); err != nil {
			tr.Stop()
			return nil, fmt.Errorf("opentracker: %w", err)
		}
	}
	hostPort := net.JoinHostPort(o.IP, strconv.Itoa(o.Port))
	tr.HTTP = "http://" + hostPort + "/announce"
	tr.UDP = "udp://" + hostPort + "/announce"
	if _, err := tr.writeWhitelist(); err != nil {
		tr.Stop()
		return nil, fmt.Errorf("opentracker: %w", err)
	}
	argv := []string{"opentracker", "-i", o.IP, "-p", strconv.Itoa(o.Port), "-P", strconv.Itoa(o.Port),
		"-d", ".", "-w", whitelistName} // "." is tr.dir, reachable even under a private parent
	if os.Geteuid() == 0 {
		// Run it as nobody from the start rather than let it chroot and drop
		// privileges itself: a credential change clears the parent-death
		// signal that ties it to this process, and setpriv sets it again.
		argv = append([]string{"setpriv", "--reuid=" + nobody, "--regid=" + nobody, "--clear-groups",
			"--pdeathsig=SIGKILL"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if o.Netns != "" {
		if err := inNetns(cmd, o.Netns); err != nil {
			tr.Stop()
			return nil, fmt.Errorf("opentracker: %w", err)
		}
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tr.dir, "LANG=C"}
	if err := tr.proc.launch(cmd, tr.dir, "opentracker.log", env); err != nil {
		tr.Stop()
		return nil, fmt.Errorf("opentracker: %w", err)
	}

	ctx, cancel := withDefaultDeadline(ctx, defaultStartTimeout)
	defer cancel()
	if err := tr.allow(ctx, o.Allow...); err != nil {
		log := tr.Log()
		tr.Stop()
		return nil, fmt.Errorf("start opentracker on %s: %w\n%s", hostPort, err, log)
	}
	return tr, nil
}

func (o *OpentrackerOptions) normalize() error {
	if o.Port < 0 || o.Port > 65535 {
		return fmt.Errorf("port %d out of range", o.Port)
	}
	if o.Netns != "" {
		if err := checkNetnsName(o.Netns); err != nil {
			return err
		}
		if _, err := parseNetnsIP(o.IP); err != nil {
			return fmt.Errorf("IP: %w", err)
		}
		if o.Port == 0 {
			return fmt.Errorf("a port is required with netns %s", o.Netns)
		}
		return nil
	}
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if ip, err := netip.ParseAddr(o.IP); err != nil || !ip.Is4() || !ip.IsLoopback() {
		return fmt.Errorf("IP %q: want an IPv4 loopback address (127.0.0.0/8), or a Netns", o.IP)
	}
	return nil
}

// makeDir creates the working directory, readable for nobody. nobody need
// not reach it by its path: opentracker starts in it and is told "-d .".
func (tr *Tracker) makeDir() error {
	var err error
	if tr.dir == "" {
		if tr.dir, err = os.MkdirTemp("", "opentracker-"); err != nil {
			return fmt.Errorf("dir: %w", err)
		}
		tr.ownDir = true
	} else {
		if tr.dir, err = filepath.Abs(tr.dir); err != nil {
			return fmt.Errorf("dir: %w", err)
		}
		if err := os.MkdirAll(tr.dir, 0o755); err != nil {
			return fmt.Errorf("dir: %w", err)
		}
	}
	if err := os.Chmod(tr.dir, 0o755); err != nil {
		return fmt.Errorf("dir: %w", err)
	}
	return nil
}

// Stop kills the tracker and removes its directory if LaunchOpentracker made
// it. It is idempotent and safe for concurrent use.
func (tr *Tracker) Stop() {
	tr.stopOnce.Do(func() {
		tr.proc.kill()
		if tr.ownDir {
			if err := os.RemoveAll(tr.dir); err != nil {
				slog.Warn("testclients: remove opentracker dir", "dir", tr.dir, "err", err)
			}
		}
	})
}

// Allow is AllowHashes for tests: it fails the test on error.
func (tr *Tracker) Allow(ctx context.Context, t testing.TB, ih ...[20]byte) {
	t.Helper()
	if err := tr.AllowHashes(ctx, ih...); err != nil {
		t.Fatalf("testclients: %v", err)
	}
}

// AllowHashes adds infohashes to the tracker's whitelist and waits (bounded
// by ctx) until the tracker has reloaded it. The error carries the tail of
// the tracker's log.
func (tr *Tracker) AllowHashes(ctx context.Context, ih ...[20]byte) error {
	if err := tr.allow(ctx, ih...); err != nil {
		return fmt.Errorf("opentracker allow: %w\n%s", err, tr.Log())
	}
	return nil
}

// Log returns the tail of the tracker's output.
func (tr *Tracker) Log() string { return tr.proc.log() }

// allow rewrites the whitelist with a fresh canary infohash, sends SIGHUP
// (opentracker reloads its access list on it) and polls announces for the
// canary until they are accepted: then the new list, with every hash in it,
// is live. The canary's fake peer is removed with a 'stopped' announce.
func (tr *Tracker) allow(ctx context.Context, ihs ...[20]byte) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, ih := range ihs {
		tr.allowed = append(tr.allowed, hex.EncodeToString(ih[:]))
	}
	canary, err := tr.writeWhitelist()
	if err != nil {
		return err
	}
	// Wait until the server answers at all before the first SIGHUP: early on,
	// its signal handling may not be set up yet.
	var last error
	for {
		_, last = tr.announce(ctx, canary, "")
		if last == nil || errors.Is(last, errTrackerRefused) {
			break
		}
		if err := tr.sleep(ctx); err != nil {
			return fmt.Errorf("waiting for opentracker to answer: %w (last: %v)", err, last)
		}
	}
	var lastHUP time.Time
	for {
		if time.Since(lastHUP) > time.Second {
			if err := tr.proc.signal(syscall.SIGHUP); err != nil {
				return fmt.Errorf("SIGHUP: %w", err)
			}
			lastHUP = time.Now()
		}
		_, last = tr.announce(ctx, canary, "")
		if last == nil {
			break
		}
		if err := tr.sleep(ctx); err != nil {
			return fmt.Errorf("waiting for the whitelist reload: %w (last: %v)", err, last)
		}
	}
	if _, err := tr.announce(ctx, canary, "stopped"); err != nil {
		return fmt.Errorf("remove canary peer: %w", err)
	}
	return nil
}

func (tr *Tracker) sleep(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tr.proc.exited:
		return errors.New("opentracker exited")
	case <-time.After(pollInterval):
		return nil
	}
}

// writeWhitelist atomically replaces the whitelist with the allowed hashes
// plus a new random canary, which it returns.
func (tr *Tracker) writeWhitelist() ([20]byte, error) {
	var canary [20]byte
	if _, err := rand.Read(canary[:]); err != nil {
		return canary, fmt.Errorf("canary: %w", err)
	}
	lines := append(append([]string(nil), tr.allowed...), hex.EncodeToString(canary[:]))
	tmp := filepath.Join(tr.dir, whitelistName+".tmp")
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return canary, fmt.Errorf("write whitelist: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil { // despite the umask: opentracker may run as nobody
		return canary, fmt.Errorf("write whitelist: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(tr.dir, whitelistName)); err != nil {
		return canary, fmt.Errorf("write whitelist: %w", err)
	}
	return canary, nil
}

// errTrackerRefused: the tracker answered with a "failure reason".
var errTrackerRefused = errors.New("tracker refused the announce")

// announce sends one HTTP announce for ih as a fake seeder on port 1 that
// wants no peers.
func (tr *Tracker) announce(ctx context.Context, ih [20]byte, event string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	q := url.Values{
		"peer_id": {"-SA0000-testclients0"}, "port": {"1"}, "uploaded": {"0"}, "downloaded": {"0"},
		"left": {"0"}, "compact": {"1"}, "numwant": {"0"},
	}
	if event != "" {
		q.Set("event", event)
	}
	u := tr.HTTP + "?info_hash=" + percentEncode(ih[:]) + "&" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("announce %s: %w", tr.HTTP, err)
	}
	resp, err := tr.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("announce %s: %w", tr.HTTP, err)
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("announce %s: read: %w", tr.HTTP, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("announce %s: HTTP %s", tr.HTTP, resp.Status)
	}
	d, err := decodeAnnounce(b)
	if err != nil {
		return nil, fmt.Errorf("announce %s: %w", tr.HTTP, err)
	}
	return d, nil
}

// percentEncode escapes every byte as %XX. Not url.QueryEscape: it writes
// a space as '+', which opentracker does not decode, so an infohash with a
// 0x20 byte would never match.
func percentEncode(b []byte) string {
	const hexDigits = "0123456789ABCDEF"
	out := make([]byte, 0, 3*len(b))
	for _, c := range b {
		out = append(out, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return string(out)
}

// decodeAnnounce decodes a bencoded announce reply; a "failure reason"
// becomes an error wrapping errTrackerRefused.
func decodeAnnounce(b []byte) (map[string]any, error) {
	var d map[string]any
	if err := bencode.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decode reply: %w", err)
	}
	if d == nil {
		return nil, errors.New("decode reply: not a dictionary")
	}
	if fr, ok := d["failure reason"]; ok {
		return nil, fmt.Errorf("%w: %v", errTrackerRefused, fr)
	}
	return d, nil
}
