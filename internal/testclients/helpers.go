package testclients

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	msg := fmt.Sprintf("testclients: missing %v (Debian: apt-get install transmission-daemon qbittorrent-nox aria2 python3-libtorrent opentracker)", missing)
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
// loudly.
func FreePort(t testing.TB, ip string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp4", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("testclients: free port on %s: %v", ip, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, uerr := net.ListenPacket("udp4", net.JoinHostPort(ip, fmt.Sprint(port)))
		l.Close()
		if uerr != nil {
			continue
		}
		u.Close()
		portsMu.Lock()
		taken := ports[port]
		ports[port] = true
		portsMu.Unlock()
		if !taken {
			return port
		}
	}
	t.Fatalf("testclients: no port free for both TCP and UDP on %s after 50 tries", ip)
	return 0
}

// MakePayload writes a file of size pseudo-random bytes, determined by seed
// alone, to dir/payload-<seed>-<size>.bin and returns its path. The same
// (size, seed) always gives the same bytes and name, so two directories can
// hold the same payload for two clients.
func MakePayload(t testing.TB, dir string, size int64, seed int64) string {
	t.Helper()
	if size < 0 {
		t.Fatalf("testclients: payload size %d < 0", size)
	}
	path := filepath.Join(dir, fmt.Sprintf("payload-%d-%d.bin", seed, size))
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("testclients: payload: %v", err)
	}
	var key [32]byte
	for i := range 8 {
		key[i] = byte(uint64(seed) >> (8 * i))
	}
	w := bufio.NewWriterSize(f, 256<<10)
	if _, err := io.CopyN(w, rand.NewChaCha8(key), size); err != nil {
		f.Close()
		t.Fatalf("testclients: payload %s: %v", path, err)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		t.Fatalf("testclients: payload %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("testclients: payload %s: %v", path, err)
	}
	return path
}

// MakeTorrent builds a .torrent for payload (a file, or a directory for a
// multi-file torrent) with anacrolix/torrent's metainfo builder and writes it
// to a new temp dir. Each tracker URL gets its own tier, in order (as
// mktorrent does); clients in this package announce to all tiers. It returns
// the file's path and the v1 infohash.
func MakeTorrent(t testing.TB, payload string, pieceLength int64, trackers []string, private bool) (path string, ih [20]byte) {
	t.Helper()
	info := metainfo.Info{PieceLength: pieceLength}
	if err := info.BuildFromFilePath(payload); err != nil {
		t.Fatalf("testclients: torrent of %s: %v", payload, err)
	}
	if private {
		info.Private = &private
	}
	ib, err := bencode.Marshal(info)
	if err != nil {
		t.Fatalf("testclients: torrent of %s: encode info: %v", payload, err)
	}
	mi := metainfo.MetaInfo{InfoBytes: ib, CreatedBy: "swarmaudit testclients"}
	if len(trackers) > 0 {
		mi.Announce = trackers[0]
		for _, tr := range trackers {
			mi.AnnounceList = append(mi.AnnounceList, []string{tr})
		}
	}
	path = filepath.Join(t.TempDir(), info.Name+".torrent")
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("testclients: torrent: %v", err)
	}
	if err := mi.Write(f); err != nil {
		f.Close()
		t.Fatalf("testclients: write %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("testclients: write %s: %v", path, err)
	}
	return path, mi.HashInfoBytes()
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
