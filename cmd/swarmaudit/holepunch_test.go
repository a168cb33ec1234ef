package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/labnet"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// TestAuditReachesNATedLeecherByHolepunch: in a lab of the test's own, a
// real libtorrent leecher behind a NAT (its netns behind a router netns
// that masquerades and lets nothing in) downloads over uTP from a real
// libtorrent seeder. The audit, with default flags, cannot connect to the
// leecher; it asks the watched seeder to introduce it (BEP 55), and
// reaches the leecher through the hole: its report row says reach
// "holepunch" over uTP, with its piece set observed.
func TestAuditReachesNATedLeecherByHolepunch(t *testing.T) {
	testclients.Require(t, string(testclients.Libtorrent), "nft")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nw := labnet.ForTest(t, ctx, "sachp", 224)
	relayHost, err := nw.AddHost(ctx, "relay", labnet.Caps{})
	if err != nil {
		t.Fatal(err)
	}
	natHost, err := nw.AddNATHost(ctx, "leech", labnet.Caps{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	trackerAddr := netip.AddrPortFrom(nw.BridgeIP, uint16(testclients.FreePort(t, nw.BridgeIP.String())))
	announce := "http://" + trackerAddr.String() + "/announce"
	payload := testclients.MakePayload(t, filepath.Join(dir, "seed"), 16<<20, 53)
	torrent, _ := testclients.MakeTorrent(t, payload, 256<<10, []string{announce}, false)
	report := filepath.Join(dir, "audit.json")
	done := make(chan error, 1)
	var output string
	go func() {
		var err error
		output, err = run(t, "audit", "--torrent", torrent, "--tracker-listen", trackerAddr.String(),
			"--duration", "45s", "--db", testclients.StoreDB(t, filepath.Join(dir, "audit.db")), "--json-out", report,
			"--no-dht", "--no-trackers", "--snapshot-interval", "2s", "--probe-interval", "15s",
			"--probe-bytes", "256KiB", "--probe-timeout", "6s")
		done <- err
	}()
	waitListening(t, trackerAddr.String())
	seeder := testclients.Start(ctx, t, testclients.Options{
		Kind: testclients.Libtorrent, TorrentFile: torrent, DataDir: filepath.Dir(payload), Seed: true,
		Netns: relayHost.Netns, IP: relayHost.IP.String(), Port: 6881, UTP: true,
	})
	leecher := testclients.Start(ctx, t, testclients.Options{
		Kind: testclients.Libtorrent, TorrentFile: torrent, DataDir: filepath.Join(dir, "leech"),
		Netns: natHost.Netns, IP: natHost.IP.String(), Port: 6881, UTPOnly: true, DownloadLimitKiB: 128,
	})
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		t.Fatal("the audit did not end")
	}
	leecher.Stop()
	seeder.Stop()
	t.Logf("audit output:\n%s", output)
	if code := exitCode(runErr); code != exitOK && code != exitFlagged {
		t.Fatalf("audit: %v (exit %d)", runErr, code)
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Peers []peerRow `json:"peers"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	behindNAT := netip.AddrPortFrom(natHost.Public, 6881).String()
	var rows []string
	for _, p := range rep.Peers {
		rows = append(rows, fmt.Sprintf("%s %s over %q %v", p.Address, p.Verdict, p.Transport, p.Reach))
		if p.Address != behindNAT {
			continue
		}
		if !slices.Contains(p.Reach, "holepunch") || p.Transport != "utp" {
			t.Errorf("the leecher behind the NAT: reach %v over %q; want holepunch over utp", p.Reach, p.Transport)
		}
		t.Logf("the leecher behind the NAT: %s over %s, %s", p.Reach, p.Transport, p.Verdict)
		if p.Verdict == "misreporting" || p.Verdict == "suspect" {
			t.Errorf("the honest leecher behind the NAT is %s", p.Verdict)
		}
		return
	}
	t.Fatalf("no row for the leecher behind the NAT (%s): %v", behindNAT, rows)
}
