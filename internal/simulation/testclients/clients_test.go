package testclients

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// These tests start the real clients (CI installs them all; elsewhere a
// missing client skips its subtest). Each kind seeds a 1 MiB payload in each
// encryption mode on its own 127.0.0.x address and must:
//   - report itself seeding with the whole payload verified,
//   - answer a plaintext handshake, or drop it when encryption is required,
//   - advertise ut_pex exactly when PEX is on, and answer a DHT ping when DHT is on,
//   - announce from its own address, and announce 'stopped' when stopped.
func TestSeedEveryKindAndEncryption(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	t.Cleanup(cancel) // not defer: the parallel subtests run after this function returns
	rec := newRecordingTracker(t)
	const size = 1 << 20
	src := MakePayload(t, t.TempDir(), size, 42)
	torrent, ih := MakeTorrent(t, src, 64<<10, []string{rec.URL}, false)

	for i, kind := range Kinds() {
		for j, enc := range Encryptions() {
			ip := fmt.Sprintf("127.0.0.%d", 20+3*i+j)
			t.Run(string(kind)+"/"+string(enc), func(t *testing.T) {
				t.Parallel()
				pex := enc == EncPreferred
				dht := enc == EncPreferred && (kind == Libtorrent || kind == Aria2)
				dir := t.TempDir() // an own copy of the payload: clients may keep files there
				if got := MakePayload(t, dir, size, 42); filepath.Base(got) != filepath.Base(src) {
					t.Fatalf("payload name %s, want %s", got, src)
				}
				c := Start(ctx, t, Options{Kind: kind, Encryption: enc, TorrentFile: torrent, DataDir: dir,
					IP: ip, PEX: pex, DHT: dht, Seed: true})
				if c.Addr.Addr().String() != ip || c.InfoHash != ih {
					t.Errorf("client at %s for %x, want %s for %x", c.Addr, c.InfoHash, ip, ih)
				}

				st, err := c.Stats(ctx)
				if err != nil {
					t.Fatalf("Stats: %v\n%s", err, c.Log())
				}
				wantDown := int64(0)
				if kind == Aria2 {
					wantDown = Unknown
				}
				if !st.Seeding || st.Checking || st.Progress != 1 || st.Left != 0 || st.Size != size ||
					st.Uploaded != 0 || st.Downloaded != wantDown || st.Error != "" {
					t.Errorf("Stats = %v; want seeding %d bytes, nothing left, nothing transferred", st, size)
				}

				hs, err := plainHandshake(ctx, c.Addr, ih, 5*time.Second)
				switch {
				case enc == EncRequired:
					if err == nil || !errors.Is(err, errDropped) {
						t.Errorf("plaintext handshake to an encryption-required %s: %v, want dropped", kind, err)
					}
				case err != nil:
					t.Errorf("plaintext handshake: %v\n%s", err, c.Log())
				default:
					if got := slices.Contains(hs.extensions, pp.ExtensionNamePex); got != pex {
						t.Errorf("extended handshake offers %v: ut_pex=%v, want %v", hs.extensions, got, pex)
					}
				}

				if dht {
					if err := dhtPing(ctx, c.DHTAddr, 3*time.Second); err != nil {
						t.Errorf("DHT ping %s: %v\n%s", c.DHTAddr, err, c.Log())
					}
				} else if c.DHTAddr.IsValid() {
					t.Errorf("DHTAddr %s with DHT off", c.DHTAddr)
				}

				// Stop after the first announce, or there is nothing to stop.
				for !slices.Contains(rec.events(c.Addr.Port()), "started") {
					if ctx.Err() != nil {
						t.Fatalf("no 'started' announce from port %d\n%s", c.Addr.Port(), c.Log())
					}
					time.Sleep(50 * time.Millisecond)
				}
				c.Stop()
				c.Stop() // idempotent
				if _, err := c.Stats(ctx); !errors.Is(err, ErrExited) {
					t.Errorf("Stats after Stop: %v, want ErrExited", err)
				}
				events := rec.events(c.Addr.Port())
				if !slices.Contains(events, "started") || !slices.Contains(events, "stopped") {
					t.Errorf("announces from port %d: events %q, want started ... stopped\n%s", c.Addr.Port(), events, c.Log())
				}
				if srcs := rec.sources(c.Addr.Port()); len(srcs) == 0 || slices.ContainsFunc(srcs, func(a string) bool { return a != ip }) {
					t.Errorf("announces from port %d came from %v, want only %s", c.Addr.Port(), srcs, ip)
				}
			})
		}
	}
}

// TestDownload has every kind download from another kind through
// opentracker (HTTP and UDP announce URLs, private torrent), so each client
// is seeder once and leecher once. The leecher must end complete with the
// exact payload, and both counters must show the payload moved.
func TestDownload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	t.Cleanup(cancel)
	tr := StartOpentracker(ctx, t)
	const size = 3 << 20

	pairs := []struct {
		seed, leech Kind
		enc         Encryption
	}{
		{Transmission, Libtorrent, EncPreferred},
		{Libtorrent, Aria2, EncRequired},
		{Aria2, QBittorrent, EncPreferred},
		{QBittorrent, Transmission, EncDisabled},
	}
	for i, p := range pairs {
		t.Run(fmt.Sprintf("%s-to-%s", p.seed, p.leech), func(t *testing.T) {
			t.Parallel()
			// A swarm of its own: one payload, torrent and infohash per pair.
			src := MakePayload(t, t.TempDir(), size, int64(100+i))
			torrent, ih := MakeTorrent(t, src, 128<<10, []string{tr.HTTP, tr.UDP}, true)
			tr.Allow(ctx, t, ih)
			want, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			seedOpts := Options{Kind: p.seed, Encryption: p.enc, TorrentFile: torrent,
				DataDir: filepath.Dir(src), IP: fmt.Sprintf("127.0.1.%d", 10+2*i), Seed: true}
			leechOpts := Options{Kind: p.leech, Encryption: p.enc, TorrentFile: torrent,
				IP: fmt.Sprintf("127.0.1.%d", 11+2*i)}
			var seed, leech *Client
			if p.leech == Transmission {
				// Transmission ignores loopback addresses from trackers: the seeder
				// must find it, in the answer to the seeder's first announce.
				leech = Start(ctx, t, leechOpts)
				seed = Start(ctx, t, seedOpts)
			} else {
				seed = Start(ctx, t, seedOpts)
				leech = Start(ctx, t, leechOpts)
			}

			var st Stats
			for !st.Seeding {
				if st, err = leech.Stats(ctx); err != nil || ctx.Err() != nil {
					t.Fatalf("leecher never completed: %v, last stats %v\n--- seeder ---\n%s\n--- leecher ---\n%s", err, st, seed.Log(), leech.Log())
				}
				time.Sleep(200 * time.Millisecond)
			}
			if st.Left != 0 || st.Progress != 1 {
				t.Errorf("leecher complete with %v; want none left", st)
			}
			got, err := os.ReadFile(filepath.Join(leech.DataDir, filepath.Base(src)))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("leecher's copy differs from the payload (%d bytes, err %v)", len(got), err)
			}
			// Clients update their byte counters on a timer (libtorrent: once a
			// second): wait until both show the payload moved.
			var sst Stats
			for sst.Uploaded < size || (st.Downloaded != Unknown && st.Downloaded < size) {
				if ctx.Err() != nil {
					t.Fatalf("counters never reached %d bytes: seeder %v; leecher %v", size, sst, st)
				}
				if sst, err = seed.Stats(ctx); err != nil {
					t.Fatalf("seeder Stats: %v\n%s", err, seed.Log())
				}
				if st, err = leech.Stats(ctx); err != nil {
					t.Fatalf("leecher Stats: %v\n%s", err, leech.Log())
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

func TestOpentrackerWhitelist(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var a, b [20]byte
	rand.Read(a[:])
	rand.Read(b[:])
	tr := StartOpentracker(ctx, t, a)
	if _, err := tr.announce(ctx, a, ""); err != nil {
		t.Errorf("announce of an allowed torrent: %v", err)
	}
	if _, err := tr.announce(ctx, b, ""); !errors.Is(err, errTrackerRefused) {
		t.Errorf("announce before Allow: %v, want refused", err)
	}
	tr.Allow(ctx, t, b)
	for _, ih := range [][20]byte{a, b} {
		if _, err := tr.announce(ctx, ih, "stopped"); err != nil {
			t.Errorf("announce after Allow: %v", err)
		}
	}
}

// TestLaunchOpentrackerDir: a Dir under a private (0700) directory works
// although opentracker may run as nobody, and Stop keeps a given Dir but
// removes one it made.
func TestLaunchOpentrackerDir(t *testing.T) {
	Require(t, "opentracker")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	given := filepath.Join(private, "tracker")
	var a [20]byte
	rand.Read(a[:])
	for _, dir := range []string{given, ""} {
		tr, err := LaunchOpentracker(ctx, OpentrackerOptions{Dir: dir, Allow: [][20]byte{a}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.announce(ctx, a, "stopped"); err != nil {
			t.Errorf("announce of an allowed torrent: %v\n%s", err, tr.Log())
		}
		made := tr.dir
		tr.Stop()
		tr.Stop() // idempotent
		_, err = os.Stat(filepath.Join(made, whitelistName))
		if kept := err == nil; kept != (dir != "") {
			t.Errorf("Dir %q: after Stop, %s: %v; want it kept only when given", dir, made, err)
		}
	}
}

// errDropped: the peer closed the connection or stayed silent instead of
// answering the handshake.
var errDropped = errors.New("handshake dropped")

type handshakeReply struct {
	extensions []pp.ExtensionName // from the BEP 10 extended handshake
}

// plainHandshake sends a plaintext BitTorrent handshake with the extension
// protocol bit, reads the peer's handshake and then its messages until its
// extended handshake. The handshake is written by hand (68 bytes, BEP 3).
func plainHandshake(ctx context.Context, addr netip.AddrPort, ih [20]byte, timeout time.Duration) (handshakeReply, error) {
	var r handshakeReply
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return r, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return r, err
	}
	hs := make([]byte, 0, 68)
	hs = append(hs, 19)
	hs = append(hs, "BitTorrent protocol"...)
	reserved := [8]byte{5: 0x10} // BEP 10 extension protocol
	hs = append(hs, reserved[:]...)
	hs = append(hs, ih[:]...)
	hs = append(hs, "-SA0001-testclients1"...)
	if _, err := conn.Write(hs); err != nil {
		return r, fmt.Errorf("%w: write: %v", errDropped, err)
	}
	br := bufio.NewReader(conn)
	reply := make([]byte, 68)
	if n, err := io.ReadFull(br, reply); err != nil {
		return r, fmt.Errorf("%w: read %d of 68 bytes: %v", errDropped, n, err)
	}
	if !bytes.Equal(reply[:20], hs[:20]) || !bytes.Equal(reply[28:48], ih[:]) {
		return r, fmt.Errorf("bad handshake reply %q", reply)
	}
	if reply[25]&0x10 == 0 {
		return r, errors.New("peer does not support the extension protocol")
	}
	dec := pp.Decoder{R: br, MaxLength: 1 << 20}
	for range 16 {
		var m pp.Message
		if err := dec.Decode(&m); err != nil {
			return r, fmt.Errorf("reading messages: %w", err)
		}
		if m.Type != pp.Extended || m.ExtendedID != pp.HandshakeExtendedID {
			continue
		}
		var eh pp.ExtendedHandshakeMessage
		if err := bencode.Unmarshal(m.ExtendedPayload, &eh); err != nil {
			return r, fmt.Errorf("extended handshake: %w", err)
		}
		for name, id := range eh.M {
			if id != 0 {
				r.extensions = append(r.extensions, name)
			}
		}
		slices.Sort(r.extensions)
		return r, nil
	}
	return r, errors.New("no extended handshake in the first 16 messages")
}

// dhtPing sends a KRPC ping (BEP 5) and waits for the matching reply.
func dhtPing(ctx context.Context, addr netip.AddrPort, timeout time.Duration) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	var id krpc.ID
	rand.Read(id[:])
	q, err := bencode.Marshal(krpc.Msg{T: "pg", Y: "q", Q: "ping", A: &krpc.MsgArgs{ID: id}})
	if err != nil {
		return err
	}
	if _, err := conn.Write(q); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return fmt.Errorf("no reply: %w", err)
		}
		var m krpc.Msg
		if err := bencode.Unmarshal(buf[:n], &m); err != nil {
			continue
		}
		if m.T == "pg" && m.Y == "r" {
			return nil
		}
	}
}

// recordingTracker is a minimal HTTP tracker that records every announce and
// answers with an empty peer list, so the seed tests' clients stay apart.
type recordingTracker struct {
	URL string
	mu  sync.Mutex
	log []announceRecord
}

type announceRecord struct {
	port   uint16
	event  string
	source string
}

func newRecordingTracker(t *testing.T) *recordingTracker {
	rt := &recordingTracker{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		port, err := strconv.ParseUint(q.Get("port"), 10, 16)
		if err != nil {
			http.Error(w, "bad port", http.StatusBadRequest)
			return
		}
		src, _, _ := net.SplitHostPort(r.RemoteAddr)
		rt.mu.Lock()
		rt.log = append(rt.log, announceRecord{port: uint16(port), event: q.Get("event"), source: src})
		rt.mu.Unlock()
		w.Write([]byte("d8:intervali1800e12:min intervali1800e5:peers0:e"))
	}))
	t.Cleanup(srv.Close)
	rt.URL = srv.URL + "/announce"
	return rt
}

func (rt *recordingTracker) events(port uint16) []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var ev []string
	for _, a := range rt.log {
		if a.port == port {
			ev = append(ev, a.event)
		}
	}
	return ev
}

func (rt *recordingTracker) sources(port uint16) []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var s []string
	for _, a := range rt.log {
		if a.port == port {
			s = append(s, a.source)
		}
	}
	return s
}
