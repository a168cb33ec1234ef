package peerid

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// announceTracker is an HTTP tracker on 127.0.0.1 that reports the peer_id
// of each announce and answers with no peers.
func announceTracker(t *testing.T) (announceURL string, ids <-chan []byte) {
	t.Helper()
	ch := make(chan []byte, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case ch <- []byte(q.Get("peer_id")):
		default:
		}
		w.Write([]byte("d8:intervali1800e5:peers0:e"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/announce", ch
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func versionOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// TestRealClientPeerIDs runs each installed client against a loopback
// tracker and checks that the peer_id it announces decodes to the name and
// version the client reports for itself.
func TestRealClientPeerIDs(t *testing.T) {
	tests := []struct {
		name string
		// start launches the client on torrent (data in dir) and returns the
		// expected ClientName.
		start func(t *testing.T, ctx context.Context, dir, torrent string) (*exec.Cmd, string)
	}{
		{"aria2", func(t *testing.T, ctx context.Context, dir, torrent string) (*exec.Cmd, string) {
			bin := testclients.Program(t, "aria2c")
			m := regexp.MustCompile(`aria2 version (\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(versionOutput(t, bin, "--version"))
			if m == nil {
				t.Fatal("cannot read aria2 version")
			}
			cmd := exec.CommandContext(ctx, bin, "--dir="+dir, "--enable-dht=false", "--enable-dht6=false",
				"--bt-enable-lpd=false", "--enable-peer-exchange=false", "--disable-ipv6=true",
				fmt.Sprintf("--listen-port=%d", freePort(t)), "--seed-ratio=0.0", "--check-integrity=true",
				"--summary-interval=0", "--console-log-level=warn", torrent)
			return cmd, fmt.Sprintf("aria2 %s.%s.%s", m[1], m[2], m[3])
		}},
		{"libtorrent", func(t *testing.T, ctx context.Context, dir, torrent string) (*exec.Cmd, string) {
			py := "/usr/bin/python3"
			out, err := exec.Command(py, "-c", "import libtorrent; print(libtorrent.__version__)").Output()
			if err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("python3-libtorrent is required when CI=true: %v", err)
				}
				t.Skipf("python3-libtorrent not available: %v", err)
			}
			m := regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(string(out))
			if m == nil {
				t.Fatalf("cannot read libtorrent version from %q", out)
			}
			const script = `
import sys, time, libtorrent as lt
s = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                "enable_upnp": False, "enable_natpmp": False})
s.add_torrent({"ti": lt.torrent_info(sys.argv[1]), "save_path": sys.argv[2]})
time.sleep(60)
`
			return exec.CommandContext(ctx, py, "-c", script, torrent, dir),
				fmt.Sprintf("libtorrent (Rasterbar) %s.%s.%s", m[1], m[2], m[3])
		}},
		{"transmission", func(t *testing.T, ctx context.Context, dir, torrent string) (*exec.Cmd, string) {
			bin := testclients.Program(t, "transmission-daemon")
			m := regexp.MustCompile(`transmission-daemon (\d+\.\d+(?:\.\d+)?)`).FindStringSubmatch(versionOutput(t, bin, "--version"))
			if m == nil {
				t.Fatal("cannot read transmission version")
			}
			cfg, watch := filepath.Join(dir, "config"), filepath.Join(dir, "watch")
			for _, d := range []string{cfg, watch} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			settings := fmt.Sprintf(`{
  "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1",
  "peer-port": %d, "peer-port-random-on-start": false, "port-forwarding-enabled": false,
  "dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
  "blocklist-enabled": false, "rpc-enabled": false,
  "download-dir": %q, "watch-dir-enabled": true, "watch-dir": %q
}`, freePort(t), dir, watch)
			if err := os.WriteFile(filepath.Join(cfg, "settings.json"), []byte(settings), 0o644); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(torrent)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(watch, "t.torrent"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(ctx, bin, "-f", "-g", cfg, "--log-error")
			cmd.Env = append(os.Environ(), "HOME="+dir)
			return cmd, "Transmission " + m[1]
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			announce, ids := announceTracker(t)
			dir := t.TempDir()
			payload := filepath.Join(dir, "payload.bin")
			if err := os.WriteFile(payload, bytes.Repeat([]byte("swarmaudit"), 10000), 0o644); err != nil {
				t.Fatal(err)
			}
			data, _, err := torrentmeta.Build(torrentmeta.BuildOptions{
				Path: payload, PieceLength: 1 << 15, Private: true, Trackers: [][]string{{announce}},
			})
			if err != nil {
				t.Fatal(err)
			}
			torrent := filepath.Join(dir, "t.torrent")
			if err := os.WriteFile(torrent, data, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd, want := tt.start(t, ctx, dir, torrent)
			var logs bytes.Buffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			cmd.WaitDelay = 5 * time.Second
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cancel()
				cmd.Wait()
			}()
			select {
			case raw := <-ids:
				if len(raw) != 20 {
					t.Fatalf("peer_id %q is %d bytes", raw, len(raw))
				}
				got := ClientName([20]byte(raw))
				t.Logf("peer_id %q -> %s", raw[:8], got)
				if got != want {
					t.Errorf("ClientName(%q) = %q, want %q", raw, got, want)
				}
			case <-ctx.Done():
				t.Fatalf("no announce within the deadline; client output:\n%s", logs.Bytes())
			}
		})
	}
}
