package testclients

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// pythonPath is Debian's python3, the one with the libtorrent bindings (a
// pyenv python3 earlier on PATH has none).
const pythonPath = "/usr/bin/python3"

// programs maps the Kind names accepted by Require to their programs.
var programs = map[string]string{
	string(Transmission): "transmission-daemon",
	string(QBittorrent):  "qbittorrent-nox",
	string(Aria2):        "aria2c",
}

// Require skips the test when one of the named programs is missing, or fails
// it when the environment variable CI is "true" (CI installs every client).
// A name is a program looked up in PATH, or a Kind name: "transmission" means
// transmission-daemon, "libtorrent" means /usr/bin/python3 with the
// libtorrent module, and so on.
func Require(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if err := have(n); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("testclients: missing %v (Debian: apt-get install transmission-daemon qbittorrent-nox aria2 python3-libtorrent opentracker mariadb-server)", missing)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
		return
	}
	t.Skip(msg)
}

var haveCache sync.Map // name -> error (nil when present)

func have(name string) error {
	if v, ok := haveCache.Load(name); ok {
		if v == nil {
			return nil
		}
		return v.(error)
	}
	var err error
	switch {
	case name == string(Libtorrent):
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, pythonPath, "-c", "import libtorrent")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "PYTHONNOUSERSITE=1"}
		if out, e := cmd.CombinedOutput(); e != nil {
			err = fmt.Errorf("%s with the libtorrent module (python3-libtorrent): %v %s", pythonPath, e, lastLine(out))
		}
	default:
		prog := name
		if p, ok := programs[name]; ok {
			prog = p
		}
		if _, e := exec.LookPath(prog); e != nil {
			err = fmt.Errorf("%s", prog)
		}
	}
	if err == nil {
		haveCache.Store(name, nil)
	} else {
		haveCache.Store(name, err)
	}
	return err
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{} // handed out by FreePort in this process
)

// FreePort returns a port number that is free for both TCP and UDP on ip and
// that this process has not handed out before. Another process may still take
// it before the caller binds it; that is rare and makes the caller's start fail
// loudly. It fails the test when there is none.
func FreePort(t testing.TB, ip string) int {
	t.Helper()
	port, err := freePort(ip)
	if err != nil {
		t.Fatalf("testclients: %v", err)
	}
	return port
}

// freePort is FreePort without the test.
//
// The port is drawn below the kernel's ephemeral range (32768 and up on
// Linux): between this check and the client's own bind, an ephemeral port
// the kernel hands out — a probe's source port, a uTP or DHT socket bound
// to port 0 — cannot take it.
func freePort(ip string) (int, error) {
	var lastErr error
	for range 200 {
		port := minPickedPort + rand.IntN(maxPickedPort-minPickedPort)
		l, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			lastErr = err // taken (or ip is no address of ours): draw again
			continue
		}
		u, uerr := net.ListenPacket("udp4", net.JoinHostPort(ip, fmt.Sprint(port)))
		l.Close()
		if uerr != nil {
			lastErr = uerr
			continue
		}
		u.Close()
		portsMu.Lock()
		taken := ports[port]
		ports[port] = true
		portsMu.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free for both TCP and UDP on %s after 200 tries: %w", ip, lastErr)
}

// The range freePort draws from: below Linux's default ephemeral range.
const (
	minPickedPort = 20000
	maxPickedPort = 32768
)

// MakePayload is WritePayload for tests: it fails the test on error.
func MakePayload(t testing.TB, dir string, size int64, seed int64) string {
	t.Helper()
	path, err := WritePayload(dir, size, seed)
	if err != nil {
		t.Fatalf("testclients: %v", err)
	}
	return path
}

// WritePayload writes a file of size pseudo-random bytes, determined by seed
// alone, to dir/payload-<seed>-<size>.bin (creating dir if missing) and
// returns its path. The same (size, seed) always gives the same bytes and
// name, so two directories can hold the same payload for two clients.
func WritePayload(dir string, size int64, seed int64) (string, error) {
	if size < 0 {
		return "", fmt.Errorf("payload size %d < 0", size)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("payload dir: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("payload-%d-%d.bin", seed, size))
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	var key [32]byte
	for i := range 8 {
		key[i] = byte(uint64(seed) >> (8 * i))
	}
	w := bufio.NewWriterSize(f, 256<<10)
	if _, err := io.CopyN(w, rand.NewChaCha8(key), size); err != nil {
		f.Close()
		return "", fmt.Errorf("payload %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", fmt.Errorf("payload %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("payload %s: %w", path, err)
	}
	return path, nil
}

// MakeTorrent is CreateTorrent for tests, except that it writes the .torrent
// to a new t.TempDir as <name>.torrent; it fails the test on error.
func MakeTorrent(t testing.TB, payload string, pieceLength int64, trackers []string, private bool) (path string, ih [20]byte) {
	t.Helper()
	b, name, ih, err := encodeTorrent(payload, pieceLength, trackers, private)
	if err == nil {
		path = filepath.Join(t.TempDir(), name+".torrent")
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		t.Fatalf("testclients: torrent of %s: %v", payload, err)
	}
	return path, ih
}

// CreateTorrent builds a .torrent for payload (a file, or a directory for a
// multi-file torrent) with anacrolix/torrent's metainfo builder. Each tracker
// URL gets its own tier, in order (as mktorrent does); clients in this
// package announce to all tiers. It writes the file next to the payload as
// <payload>.<16 hex digits>.torrent, the digits from a hash of the file's
// content: torrents of one payload with other trackers, piece lengths or
// private flags do not overwrite each other, and the same call twice gives
// the same file. It returns the file's path and the v1 infohash.
func CreateTorrent(payload string, pieceLength int64, trackers []string, private bool) (path string, ih [20]byte, err error) {
	b, _, ih, err := encodeTorrent(payload, pieceLength, trackers, private)
	if err != nil {
		return "", ih, fmt.Errorf("torrent of %s: %w", payload, err)
	}
	sum := sha256.Sum256(b)
	path = fmt.Sprintf("%s.%x.torrent", filepath.Clean(payload), sum[:8])
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", ih, fmt.Errorf("torrent of %s: %w", payload, err)
	}
	return path, ih, nil
}

// encodeTorrent returns the bencoded .torrent of CreateTorrent, the
// torrent's name and its infohash.
func encodeTorrent(payload string, pieceLength int64, trackers []string, private bool) (b []byte, name string, ih [20]byte, err error) {
	info := metainfo.Info{PieceLength: pieceLength}
	if err := info.BuildFromFilePath(payload); err != nil {
		return nil, "", ih, err
	}
	if private {
		info.Private = &private
	}
	ib, err := bencode.Marshal(info)
	if err != nil {
		return nil, "", ih, fmt.Errorf("encode info: %w", err)
	}
	mi := metainfo.MetaInfo{InfoBytes: ib, CreatedBy: "swarmaudit testclients"}
	if len(trackers) > 0 {
		mi.Announce = trackers[0]
		for _, tr := range trackers {
			mi.AnnounceList = append(mi.AnnounceList, []string{tr})
		}
	}
	if b, err = bencode.Marshal(mi); err != nil {
		return nil, "", ih, fmt.Errorf("encode: %w", err)
	}
	return b, info.Name, mi.HashInfoBytes(), nil
}

// readBody reads at most maxResponse bytes of an API response.
func readBody(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxResponse+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxResponse {
		return nil, fmt.Errorf("response larger than %d bytes", maxResponse)
	}
	return b, nil
}

// Program returns the path of an installed program, skipping the test
// when it is missing (failing it under CI=true, see Require).
func Program(t testing.TB, name string) string {
	t.Helper()
	Require(t, name)
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// MakeTorrentV2 builds a BitTorrent v2 (BEP 52) .torrent for payload with
// libtorrent's own creator (python3-libtorrent): v2-only, or a v1/v2
// hybrid when hybrid is set, with its piece layers. It writes it to a new
// t.TempDir and returns its path; the test is skipped (failed in CI)
// without python3-libtorrent.
func MakeTorrentV2(t testing.TB, payload string, pieceLength int64, trackers []string, hybrid bool) string {
	t.Helper()
	Require(t, string(Libtorrent))
	const script = `import os, sys, libtorrent as lt
payload, piece_length, out, hybrid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "hybrid"
fs = lt.file_storage()
lt.add_files(fs, payload)
ct = lt.create_torrent(fs, piece_length, flags=0 if hybrid else lt.create_torrent.v2_only)
for tier, url in enumerate(sys.argv[5:]):
    ct.add_tracker(url, tier)
lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(payload)))
open(out, "wb").write(lt.bencode(ct.generate()))
`
	mode := "v2"
	if hybrid {
		mode = "hybrid"
	}
	out := filepath.Join(t.TempDir(), filepath.Base(payload)+"."+mode+".torrent")
	args := append([]string{"-c", script, payload, strconv.FormatInt(pieceLength, 10), out, mode}, trackers...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, pythonPath, args...).CombinedOutput(); err != nil {
		t.Fatalf("testclients: v2 torrent of %s: %v: %s", payload, err, lastLine(b))
	}
	return out
}
