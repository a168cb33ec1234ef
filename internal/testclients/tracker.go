package testclients

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
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

// Tracker is a running opentracker on 127.0.0.1.
//
// Debian builds opentracker with an info-hash whitelist (WANT_ACCESSLIST_WHITE)
// and no way to turn it off: it refuses every torrent not on the list. Allow
// adds torrents to the list; announces for other torrents get a
// "failure reason" answer.
type Tracker struct {
	HTTP string // HTTP announce URL, "http://127.0.0.1:PORT/announce"
	UDP  string // UDP announce URL (BEP 15), "udp://127.0.0.1:PORT/announce"

	dir  string
	port int
	proc *process
	http *http.Client

	mu      sync.Mutex // serialises Allow
	allowed []string   // hex infohashes
}

// opentracker whitelist file name, relative to its working directory.
const whitelistName = "whitelist"

// StartOpentracker starts Debian's opentracker on 127.0.0.1, HTTP and UDP on
// one free port number, allows the given infohashes and returns once it
// answers. Start it before the clients that use it: cleanups run last-in
// first-out, so it is stopped after them and receives their 'stopped'
// announces. opentracker's announce interval is compiled in (~30 min): clients
// announce when they start and stop, rarely in between.
func StartOpentracker(ctx context.Context, t testing.TB, allow ...[20]byte) *Tracker {
	t.Helper()
	Require(t, "opentracker")
	// Not t.TempDir: as root, opentracker runs as nobody (below), and a
	// t.TempDir's parent is not searchable by others.
	dir, err := os.MkdirTemp("", "opentracker-")
	if err != nil {
		t.Fatalf("testclients: opentracker dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testclients: opentracker dir: %v", err)
	}
	port := FreePort(t, "127.0.0.1")
	tr := &Tracker{
		HTTP: fmt.Sprintf("http://127.0.0.1:%d/announce", port),
		UDP:  fmt.Sprintf("udp://127.0.0.1:%d/announce", port),
		dir:  dir,
		port: port,
		proc: newProcess(),
		http: newHTTPClient(),
	}
	if _, err := tr.writeWhitelist(); err != nil {
		t.Fatalf("testclients: opentracker: %v", err)
	}
	cmd := exec.Command("opentracker", "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-P", strconv.Itoa(port),
		"-d", dir, "-w", whitelistName)
	if os.Geteuid() == 0 {
		// Run it as nobody from the start rather than let it chroot and drop
		// privileges itself: a credential change in the child would clear the
		// parent-death signal that ties it to the test binary.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LANG=C"}
	if err := tr.proc.launch(cmd, dir, "opentracker.log", env); err != nil {
		t.Fatalf("testclients: opentracker: %v", err)
	}
	t.Cleanup(tr.proc.kill)

	ctx, cancel := withDefaultDeadline(ctx, defaultStartTimeout)
	defer cancel()
	if err := tr.allow(ctx, allow...); err != nil {
		tr.proc.kill()
		t.Fatalf("testclients: start opentracker on 127.0.0.1:%d: %v\n%s", port, err, tr.proc.log())
	}
	return tr
}

// Allow adds infohashes to the tracker's whitelist and waits (bounded by
// ctx) until the tracker has reloaded it; it fails the test on error.
func (tr *Tracker) Allow(ctx context.Context, t testing.TB, ih ...[20]byte) {
	t.Helper()
	if err := tr.allow(ctx, ih...); err != nil {
		t.Fatalf("testclients: opentracker allow: %v\n%s", err, tr.proc.log())
	}
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
