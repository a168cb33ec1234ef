package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/httptracker"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// counts is how much a database holds for one swarm.
type counts struct{ snapshots, haves, probes, events int }

func countObservations(t *testing.T, db string, ih [20]byte) counts {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(ctx); err != nil {
		t.Fatalf("integrity: %v", err)
	}
	sw, err := st.LookupSwarm(ctx, ih)
	if err != nil {
		t.Fatal(err)
	}
	var c counts
	snaps, err := st.Snapshots(ctx, sw.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range snaps {
		c.snapshots += len(l)
	}
	haves, err := st.Haves(ctx, sw.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range haves {
		c.haves += len(l)
	}
	probes, err := st.Probes(ctx, sw.ID)
	if err != nil {
		t.Fatal(err)
	}
	c.probes = len(probes)
	events, err := st.ConnEvents(ctx, sw.ID)
	if err != nil {
		t.Fatal(err)
	}
	c.events = len(events)
	return c
}

// TestSurvivesSIGKILL kills a running audit — `swarmaudit audit`, and
// `swarmaudit serve` with the torrent in its watch folder — with SIGKILL,
// checks that every observation committed before the kill is still in the
// database, and restarts it on the same database, which continues the
// swarm (serve is then stopped by SIGTERM and must exit 0).
func TestSurvivesSIGKILL(t *testing.T) {
	for _, mode := range []string{"audit", "serve", "audit on postgres"} {
		t.Run(mode, func(t *testing.T) { testSurvivesSIGKILL(t, mode) })
	}
}

func testSurvivesSIGKILL(t *testing.T, mode string) {
	dir := t.TempDir()
	bin := builtBinary(t)
	payload, tor, err := swarmsim.NewPayload("crash.bin", 4<<20, 64<<10, 31)
	if err != nil {
		t.Fatal(err)
	}
	n := tor.NumPieces
	half := bitfield.New(n)
	for i := 0; i < n/2; i++ {
		half.Set(i)
	}
	var peers []*swarmsim.Peer
	for _, cfg := range []swarmsim.PeerConfig{
		{Have: bitfield.Full(n), UploadRate: 2 << 20, Encryption: swarmsim.EncRequired},
		{Have: half, Encryption: swarmsim.EncDisabled},
	} {
		cfg.Payload = payload
		p, err := swarmsim.StartPeer("127.0.0.1:0", cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		peers = append(peers, p)
	}
	grower := peers[1]
	stopGrowing := make(chan struct{})
	defer close(stopGrowing)
	go func() { // the leecher keeps gaining pieces: HAVEs flow all along
		for i := n / 2; i < n; i++ {
			select {
			case <-stopGrowing:
				return
			case <-time.After(300 * time.Millisecond):
				grower.Gain(i)
			}
		}
	}()
	trackerAddr := fmt.Sprintf("127.0.0.1:%d", testclients.FreePort(t, "127.0.0.1"))
	mi, err := swarmsim.MetainfoFile(tor, "http://"+trackerAddr+"/announce")
	if err != nil {
		t.Fatal(err)
	}
	torrentPath := filepath.Join(dir, "crash.torrent")
	if err := os.WriteFile(torrentPath, mi, 0o644); err != nil {
		t.Fatal(err)
	}
	db := testclients.StoreDB(t, filepath.Join(dir, "audit.db"))
	if mode == "audit on postgres" {
		db = testclients.StartPostgres(context.Background(), t)
	}
	var childOut bytes.Buffer // the audits' output, shown on failure
	defer func() {
		if t.Failed() {
			t.Logf("audit output:\n%s", childOut.String())
		}
	}()
	watchDir := filepath.Join(dir, "watch")
	if err := os.Mkdir(watchDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watchDir, "crash.torrent"), mi, 0o644); err != nil {
		t.Fatal(err)
	}
	audit := func(duration string) *exec.Cmd {
		args := []string{"audit", "--torrent", torrentPath, "--duration", duration}
		if mode == "serve" {
			args = []string{"serve", "--watch", watchDir, "--api-listen", "127.0.0.1:0", "--poll-interval", "200ms", "--judge-interval", "1s", "--peer-probe-gap", "1s"}
		}
		args = append(args, "--db", db, "--tracker-listen", trackerAddr, "--no-dht", "--no-trackers", "--snapshot-interval", "500ms",
			"--probe-interval", "2s", "--probe-bytes", "256KiB", "--probe-timeout", "5s")
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &childOut, &childOut
		return cmd
	}
	first := audit("5m")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill()
	waitListening(t, trackerAddr)
	for i, p := range peers {
		announceTo(t, "http://"+trackerAddr+"/announce", tor.InfoHash, fmt.Sprintf("-XX0000-crash%07d", i), p.Addr().Port())
	}
	// Let it observe, then read what is committed and kill it at once.
	var before counts
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(time.Second)
		before = countObservations(t, db, tor.InfoHash)
		if (before.haves > 3 && before.probes >= 2) || time.Now().After(deadline) {
			break
		}
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	after := countObservations(t, db, tor.InfoHash)
	t.Logf("committed before the kill %+v, found after %+v", before, after)
	if before.haves <= 3 || before.probes < 2 || before.snapshots == 0 {
		t.Fatalf("the audit recorded too little to test: %+v", before)
	}
	if after.snapshots < before.snapshots || after.haves < before.haves || after.probes < before.probes || after.events < before.events {
		t.Fatalf("observations lost: before %+v, after %+v", before, after)
	}

	// A restart on the same database continues the same swarm.
	second := audit("4s")
	if mode == "serve" {
		if err := second.Start(); err != nil {
			t.Fatal(err)
		}
		waitListening(t, trackerAddr)
		for i, p := range peers { // the peers announce again, as they would
			announceTo(t, "http://"+trackerAddr+"/announce", tor.InfoHash, fmt.Sprintf("-XX0000-crash%07d", i), p.Addr().Port())
		}
		// Let it observe until it has added to the database, then stop it.
		for limit := time.Now().Add(30 * time.Second); countObservations(t, db, tor.InfoHash).snapshots <= after.snapshots; {
			if time.Now().After(limit) {
				t.Fatal("the restarted serve added no observation in 30 s")
			}
			time.Sleep(250 * time.Millisecond) // polling interval
		}
		if err := second.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := second.Wait(); err != nil {
			t.Fatalf("serve after SIGTERM: %v", err)
		}
	} else if err := second.Run(); exitCode(asExit(err)) != exitOK && exitCode(asExit(err)) != exitFlagged {
		t.Fatalf("restart: %v", err)
	}
	final := countObservations(t, db, tor.InfoHash)
	if final.snapshots <= after.snapshots || final.probes < after.probes {
		t.Fatalf("the restart did not add to the earlier observations: %+v then %+v", after, final)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runs, err := st.Runs(ctx, 0)
	if err != nil || len(runs) != 2 {
		t.Fatalf("runs %+v, %v; want the killed run and the restart", runs, err)
	}
	sw, _ := st.LookupSwarm(ctx, tor.InfoHash)
	vs, err := st.Verdicts(ctx, sw.ID)
	if err != nil || len(vs) == 0 {
		t.Fatalf("verdicts after the restart: %v, %v", vs, err)
	}
}

// announceTo sends one started announce for a peer at port.
func announceTo(t *testing.T, announce string, ih [20]byte, peerID string, port uint16) {
	t.Helper()
	u := fmt.Sprintf("%s?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=0&event=started&compact=1",
		announce, httptracker.Escape(ih[:]), httptracker.Escape([]byte(peerID)), port)
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "failure reason") {
		t.Fatalf("announce refused: %s %s", resp.Status, body)
	}
}

// asExit turns a child's exit status into the error exitCode reads.
func asExit(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case exitFlagged:
			return flaggedError{}
		case exitUsage:
			return usageError{err}
		}
	}
	return err
}
