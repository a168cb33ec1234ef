package testclients

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
)

// testNet holds the links TestLaunchInNetns creates: 10.78.K.0/30 for
// subtest K, the root namespace at .1, the test's namespace at .2.
var testNet = netip.MustParsePrefix("10.78.0.0/16")

// TestLaunchInNetns runs each kind through Launch in a network namespace of
// its own, joined to the root namespace by a veth pair, next to an
// opentracker launched in the same namespace. From the root namespace the
// test reads the client's API, completes a handshake on its peer port (and a
// DHT ping where it has one), sees its announce counted by the tracker, and
// after Stop finds no process left in the namespace.
func TestLaunchInNetns(t *testing.T) {
	requireRoot(t)
	Require(t, "ip")
	if err := checkUnrouted(testNet); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel) // not defer: the parallel subtests run after this function returns
	var rnd [3]byte
	rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])

	cases := []struct {
		kind Kind
		enc  Encryption
	}{
		{Transmission, EncRequired},
		{QBittorrent, EncPreferred},
		{Aria2, EncPreferred},
		{Libtorrent, EncRequired},
	}
	for k, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			Require(t, string(tc.kind), "opentracker")
			t.Parallel()
			ns := newTestNetns(ctx, t, suffix, k)
			const size = 256 << 10
			dir := t.TempDir()
			payload, err := WritePayload(filepath.Join(dir, "data"), size, int64(k+1))
			if err != nil {
				t.Fatal(err)
			}
			tr, err := LaunchOpentracker(ctx, OpentrackerOptions{IP: ns.ip.String(), Port: 6969, Netns: ns.name})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tr.Stop)
			torrent, ih, err := CreateTorrent(payload, 32<<10, []string{tr.HTTP}, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.AllowHashes(ctx, ih); err != nil {
				t.Fatal(err)
			}
			dht := tc.kind == Libtorrent || tc.kind == Aria2
			c, err := Launch(ctx, Options{Kind: tc.kind, Encryption: tc.enc, TorrentFile: torrent,
				Dir: filepath.Join(dir, "client"), DataDir: filepath.Dir(payload),
				Netns: ns.name, IP: ns.ip.String(), Port: 6881, DHT: dht, Seed: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Stop)
			pid := c.proc.cmd.Process.Pid

			wantAPI := netip.AddrPortFrom(ns.ip, 7881)
			if tc.kind == Libtorrent {
				wantAPI = netip.AddrPort{}
			}
			if c.Addr != netip.AddrPortFrom(ns.ip, 6881) || c.APIAddr != wantAPI || c.Netns != ns.name {
				t.Errorf("client at %s, API %s, netns %q; want %s:6881, API %s, netns %s", c.Addr, c.APIAddr, c.Netns, ns.ip, wantAPI, ns.name)
			}
			if err := ns.holds(pid); err != nil {
				t.Error(err)
			}

			st, err := c.Stats(ctx)
			if err != nil {
				t.Fatalf("Stats: %v\n%s", err, c.Log())
			}
			if !st.Seeding || st.Size != size || st.Left != 0 {
				t.Errorf("Stats = %v; want seeding %d bytes", st, size)
			}
			if err := probeHandshake(ctx, c.Addr, ih, tc.enc, netip.Addr{}); err != nil {
				t.Errorf("handshake from the root namespace: %v\n%s", err, c.Log())
			}
			_, err = plainHandshake(ctx, c.Addr, ih, 5*time.Second)
			if tc.enc == EncRequired && !errors.Is(err, errDropped) {
				t.Errorf("plaintext handshake to an encryption-required %s: %v, want dropped", tc.kind, err)
			} else if tc.enc != EncRequired && err != nil {
				t.Errorf("plaintext handshake: %v", err)
			}
			if dht {
				if err := dhtPing(ctx, c.DHTAddr, 3*time.Second); err != nil {
					t.Errorf("DHT ping %s: %v\n%s", c.DHTAddr, err, c.Log())
				}
			}
			for {
				n, err := scrapePeers(ctx, tr, ih)
				if err == nil && n > 0 {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("the tracker never counted the client (last: %d peers, %v)\n%s\n%s", n, err, c.Log(), tr.Log())
				}
				time.Sleep(100 * time.Millisecond)
			}

			c.Stop()
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !c.proc.hasExited() || !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("pid %d still there after Stop (/proc: %v)", pid, err)
			}
			if pids, err := ns.pids(ctx); err != nil || slices.Contains(pids, pid) {
				t.Errorf("after Stop the namespace holds %v (%v), the client was %d", pids, err, pid)
			}
			tr.Stop()
			if pids, err := ns.pids(ctx); err != nil || len(pids) != 0 {
				t.Errorf("after both Stops the namespace holds %v (%v)", pids, err)
			}
		})
	}
}

// requireRoot skips the test when not root, or fails it when CI is "true".
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "testclients: needs root to create network namespaces"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// checkUnrouted fails when any route of any table, other than a default
// route, overlaps p: then the test's links could clash with a real network.
func checkUnrouted(p netip.Prefix) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "-4", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip route: %v: %s", err, out)
	}
	routeTypes := []string{"unicast", "local", "broadcast", "multicast", "anycast", "unreachable", "blackhole", "prohibit", "throw", "nat"}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && slices.Contains(routeTypes, f[0]) {
			f = f[1:]
		}
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		dst, err := netip.ParsePrefix(f[0])
		if err != nil {
			a, aerr := netip.ParseAddr(f[0])
			if aerr != nil {
				return fmt.Errorf("ip route: cannot parse %q", line)
			}
			dst = netip.PrefixFrom(a, a.BitLen())
		}
		if dst.Overlaps(p) {
			return fmt.Errorf("%s is already routed on this machine (%q): the test's links would clash with it; remove that route or change testNet", p, line)
		}
	}
	return nil
}

// testNetns is a network namespace made by the test, linked to the root
// namespace by a veth pair.
type testNetns struct {
	name string
	ip   netip.Addr // the namespace's address; the root namespace's is ip-1
}

// newTestNetns creates namespace sa-tc-SUFFIX-K with the veth pair
// satcSUFFIXKr (root, 10.78.K.1/30) and satcSUFFIXKn (namespace,
// 10.78.K.2/30) and lo up. t.Cleanup deletes what was created, and only that.
func newTestNetns(ctx context.Context, t *testing.T, suffix string, k int) testNetns {
	t.Helper()
	ns := testNetns{name: fmt.Sprintf("sa-tc-%s-%d", suffix, k), ip: netip.AddrFrom4([4]byte{10, 78, byte(k), 2})}
	host := netip.AddrFrom4([4]byte{10, 78, byte(k), 1})
	rootIf, nsIf := fmt.Sprintf("satc%s%dr", suffix, k), fmt.Sprintf("satc%s%dn", suffix, k)
	must := func(args ...string) {
		t.Helper()
		if err := runIP(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	undo := func(args ...string) {
		t.Cleanup(func() {
			if err := runIP(context.Background(), args...); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	must("netns", "add", ns.name)
	undo("netns", "del", ns.name)
	must("link", "add", rootIf, "type", "veth", "peer", "name", nsIf)
	undo("link", "del", rootIf) // deletes its peer too; runs before the namespace goes
	must("link", "set", nsIf, "netns", ns.name)
	must("addr", "add", netip.PrefixFrom(host, 30).String(), "dev", rootIf)
	must("link", "set", rootIf, "up")
	must("-n", ns.name, "addr", "add", netip.PrefixFrom(ns.ip, 30).String(), "dev", nsIf)
	must("-n", ns.name, "link", "set", nsIf, "up")
	must("-n", ns.name, "link", "set", "lo", "up")
	return ns
}

func runIP(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// holds checks that pid is in the namespace and is no longer `ip`: ip netns
// exec switched namespace and exec'd the client in place.
func (ns testNetns) holds(pid int) error {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, ns.name), &want); err != nil {
		return err
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return err
	}
	if wantLink := fmt.Sprintf("net:[%d]", want.Ino); link != wantLink {
		return fmt.Errorf("pid %d is in %s, want %s (netns %s)", pid, link, wantLink, ns.name)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return err
	}
	if filepath.Base(exe) == "ip" {
		return fmt.Errorf("pid %d is still %s: ip forked instead of exec'ing the client", pid, exe)
	}
	return nil
}

// pids lists the processes in the namespace.
func (ns testNetns) pids(ctx context.Context) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns.name).Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns pids %s: %w", ns.name, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("ip netns pids %s: %q", ns.name, f)
		}
		pids = append(pids, p)
	}
	return pids, nil
}

// scrapePeers returns the seeders plus leechers the tracker knows for ih.
func scrapePeers(ctx context.Context, tr *Tracker, ih [20]byte) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	u := strings.TrimSuffix(tr.HTTP, "/announce") + "/scrape?info_hash=" + percentEncode(ih[:])
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := tr.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body)
	if err != nil {
		return 0, err
	}
	var r struct {
		Files map[string]struct {
			Complete   int64 `bencode:"complete"`
			Incomplete int64 `bencode:"incomplete"`
		} `bencode:"files"`
	}
	if err := bencode.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("scrape %s: %w: %q", u, err, b)
	}
	f := r.Files[string(ih[:])]
	return f.Complete + f.Incomplete, nil
}

// TestCheckUnrouted: the guard of TestLaunchInNetns sees a routed prefix
// (loopback is always in the local table).
func TestCheckUnrouted(t *testing.T) {
	Require(t, "ip")
	if err := checkUnrouted(netip.MustParsePrefix("127.0.0.0/16")); err == nil || !strings.Contains(err.Error(), "already routed") {
		t.Errorf("checkUnrouted(127.0.0.0/16) = %v, want already routed", err)
	}
}
