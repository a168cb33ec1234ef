package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/serve"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/trackerserver"
)

// TestTwoNodesShareSwarms: two `swarmaudit serve` nodes on one PostgreSQL
// and one watch folder split its swarms — four simulated ones and one of
// a real Transmission seeder — (each swarm audited by one node only, and
// both nodes' APIs list every swarm with its node); SIGKILL of one hands
// its swarms to the other within the lease, which reaches the real seeder;
// no observation committed before the kill is lost.
func TestTwoNodesShareSwarms(t *testing.T) {
	testclients.Require(t, "transmission-daemon")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := builtBinary(t)
	dbURL := testclients.StartPostgres(ctx, t)
	tr, err := trackerserver.New(trackerserver.Config{HTTPAddr: "127.0.0.1:0", Interval: 2 * time.Second, Recorder: reported.NewJSONLinesRecorder(io.Discard)}) // it only introduces the peers
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	dir := t.TempDir()
	watch := filepath.Join(dir, "watch")
	if err := os.Mkdir(watch, 0o755); err != nil {
		t.Fatal(err)
	}
	var hashes []string
	for i := range 4 {
		payload, tor, err := swarmsim.NewPayload(fmt.Sprintf("nodes-%d.bin", i), 2<<20, 64<<10, uint64(40+i))
		if err != nil {
			t.Fatal(err)
		}
		sw, err := swarmsim.StartSwarm(ctx, swarmsim.SwarmConfig{Payload: payload, InfoBytes: tor.InfoBytes, Tracker: tr.HTTPURL(),
			AnnounceInterval: 2 * time.Second, Seed: uint64(i + 1), Peers: []swarmsim.PeerSpec{
				{Role: swarmsim.RoleSeeder, Have: 1, UploadRate: 1 << 20},
				{Role: swarmsim.RoleLeecher, UploadRate: 256 << 10, DownloadRate: 256 << 10},
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer sw.Close()
		mi, err := swarmsim.MetainfoFile(tor, tr.HTTPURL())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(watch, tor.Name+".torrent"), mi, 0o644); err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, tor.InfoHash.HexString())
	}
	// The real swarm: Transmission seeding a torrent that announces to the
	// same tracker.
	realDir := filepath.Join(dir, "real")
	if err := os.Mkdir(realDir, 0o755); err != nil {
		t.Fatal(err)
	}
	realPayload := testclients.MakePayload(t, realDir, 4<<20, 48)
	realTorrent, realHash := testclients.MakeTorrent(t, realPayload, 256<<10, []string{tr.HTTPURL()}, false)
	seeder := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Transmission, TorrentFile: realTorrent, Seed: true, DataDir: realDir, UploadLimitKiB: 1024})
	defer seeder.Stop()
	raw, err := os.ReadFile(realTorrent)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watch, "real.torrent"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	hashes = append(hashes, hex.EncodeToString(realHash[:]))
	outs := map[string]*bytes.Buffer{}
	defer func() {
		if t.Failed() {
			for n, b := range outs {
				t.Logf("node %s's output:\n%s", n, b.String())
			}
		}
	}()
	apis := map[string]string{}
	node := func(name string) *exec.Cmd {
		api := fmt.Sprintf("127.0.0.1:%d", testclients.FreePort(t, "127.0.0.1"))
		apis[name] = "http://" + api
		cmd := exec.Command(bin, "serve", "--watch", watch, "--db", dbURL, "--node-id", name, "--lease", "2s",
			"--api-listen", api, "--poll-interval", "200ms", "--judge-interval", "1s", "--no-dht",
			"-v", "--snapshot-interval", "500ms", "--probe-interval", "2s", "--probe-bytes", "128KiB", "--probe-timeout", "5s", "--peer-probe-gap", "1s")
		outs[name] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[name], outs[name]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	a, b := node("a"), node("b")
	reached := map[string]int{}                  // peers reached per swarm, by the node auditing it
	local := func(name string) map[string]bool { // swarms the node audits itself
		var got []serve.SwarmStatus
		resp, err := http.Get(apis[name] + "/api/v1/swarms")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&got) != nil {
			return nil
		}
		m := map[string]bool{}
		for _, s := range got {
			if s.Node == name && !s.Since.IsZero() {
				m[s.InfoHash] = true
				reached[s.InfoHash] = s.Progress.Reached
			}
		}
		return m
	}
	// Both nodes up and every swarm audited by exactly one of them.
	split := func() bool {
		la, lb := local("a"), local("b")
		for h := range la {
			if lb[h] {
				for _, n := range []string{"a", "b"} {
					resp, err := http.Get(apis[n] + "/api/v1/swarms")
					if err == nil {
						var buf bytes.Buffer
						buf.ReadFrom(resp.Body)
						resp.Body.Close()
						t.Logf("node %s: %s", n, buf.String())
					}
				}
				t.Fatalf("swarm %s audited by both nodes", h)
			}
		}
		return len(la)+len(lb) == len(hashes) && len(la) > 0 && len(lb) > 0
	}
	waitUntil(t, 60*time.Second, "the nodes split the swarms", split)
	for range 5 { // it stays split
		split()
	}
	aSwarms := local("a")
	var before []counts
	for _, h := range hashes {
		before = append(before, countByHash(t, dbURL, h))
	}
	if err := a.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.Wait()
	killed := time.Now()
	waitUntil(t, 30*time.Second, "node b audits every swarm", func() bool { return len(local("b")) == len(hashes) })
	t.Logf("node a's %d swarms taken over by b %v after the kill (lease 2 s)", len(aSwarms), time.Since(killed).Round(100*time.Millisecond))
	real := hex.EncodeToString(realHash[:])
	waitUntil(t, 30*time.Second, "node b reaches the real seeder", func() bool { local("b"); return reached[real] >= 1 })
	for i, h := range hashes {
		if after := countByHash(t, dbURL, h); after.snapshots < before[i].snapshots || after.probes < before[i].probes || after.events < before[i].events {
			t.Errorf("swarm %s lost observations: %+v then %+v", h, before[i], after)
		}
	}
	if err := b.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(); err != nil {
		t.Fatalf("node b after SIGTERM: %v", err)
	}
}

// countByHash counts a swarm's observations in the database.
func countByHash(t *testing.T, db, hash string) counts {
	t.Helper()
	var ih [20]byte
	if b, err := hex.DecodeString(hash); err != nil || copy(ih[:], b) != 20 {
		t.Fatalf("info hash %q: %v", hash, err)
	}
	return countObservations(t, db, ih)
}

// waitUntil polls cond every 200 ms until it holds or limit passes.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
}
