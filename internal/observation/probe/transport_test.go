package probe

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/labnet"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
	"github.com/swarmaudit/swarmaudit/internal/wire/utp"
)

// TestUTPMatchesTCPOnCappedLink: a real libtorrent seeder that speaks TCP
// and uTP, in a network namespace of the test's own whose uplink a tbf caps
// at 2 MiB/s, is probed in turn over each transport. The medians of three
// probes each agree within 5%: the probe measures the peer's upload, not
// the transport it reached it by.
func TestUTPMatchesTCPOnCappedLink(t *testing.T) {
	testclients.Require(t, string(testclients.Libtorrent))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nw := labnet.ForTest(t, ctx, "saputp", 222)
	h, err := nw.AddHost(ctx, "lt", labnet.Caps{UpKiB: 2048})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	payload := testclients.MakePayload(t, filepath.Join(dir, "seed"), 48<<20, 43)
	tpath, _ := testclients.MakeTorrent(t, payload, 256<<10, nil, false)
	tor, err := torrentmeta.Load(tpath)
	if err != nil {
		t.Fatal(err)
	}
	c := testclients.Start(ctx, t, testclients.Options{
		Kind: testclients.Libtorrent, TorrentFile: tpath, DataDir: filepath.Dir(payload), Seed: true,
		Netns: h.Netns, IP: h.IP.String(), Port: 6881, UTP: true,
	})
	sock, err := utp.Listen("udp4", netip.AddrPortFrom(nw.BridgeIP, 0).String(), utp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	target := Target{InfoHash: tor.InfoHash, NumPieces: tor.NumPieces, PieceSize: tor.PieceSize, Verify: tor.VerifyPiece}
	rates := map[peerwire.Transport][]float64{}
	for round := range 3 {
		for _, tr := range []peerwire.Transport{peerwire.TransportTCP, peerwire.TransportUTP} {
			waitNoPeers(t, c) // libtorrent takes one connection per IP
			r, err := Run(ctx, c.Addr, target, Options{
				Timeout: 30 * time.Second, MaxBytes: 6 << 20,
				Dialer: peerwire.Config{Network: peerwire.Network{UTP: sock, Transport: tr}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if r.Outcome != OutcomeOK || r.Transport != string(tr) || r.PiecesFailed > 0 {
				t.Fatalf("round %d over %s: outcome %s over %q, %d pieces failed: %s", round, tr, r.Outcome, r.Transport, r.PiecesFailed, r.Error)
			}
			t.Logf("round %d over %s: %.0f KiB/s ±%.1f%% (%d samples, %d pieces verified)", round, tr, r.ThroughputBytesPerSec/1024, 100*r.ThroughputSpread, r.ThroughputSamples, r.PiecesVerified)
			rates[tr] = append(rates[tr], r.ThroughputBytesPerSec)
		}
	}
	tcp, utpRate := median(rates[peerwire.TransportTCP]), median(rates[peerwire.TransportUTP])
	diff := math.Abs(utpRate-tcp) / tcp
	msg := fmt.Sprintf("median over TCP %.0f KiB/s, over uTP %.0f KiB/s: %.1f%% apart", tcp/1024, utpRate/1024, 100*diff)
	t.Log(msg)
	if diff > 0.05 {
		t.Errorf("%s, want within 5%%", msg)
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
