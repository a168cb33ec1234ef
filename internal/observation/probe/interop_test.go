package probe

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
	"github.com/swarmaudit/swarmaudit/internal/wire/utp"
)

// seedWithClient starts a real client seeding a fresh payload and returns
// it with the torrent the probe will use.
func seedWithClient(t *testing.T, kind testclients.Kind, enc testclients.Encryption, size int64, uploadKiB int) (*testclients.Client, *torrentmeta.Torrent) {
	t.Helper()
	dir := t.TempDir()
	payload := testclients.MakePayload(t, dir, size, int64(len(kind))+int64(len(enc)))
	tpath, _ := testclients.MakeTorrent(t, payload, 64<<10, nil, false)
	tor, err := torrentmeta.Load(tpath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := testclients.Start(ctx, t, testclients.Options{
		Kind: kind, Encryption: enc, TorrentFile: tpath, DataDir: filepath.Dir(payload),
		UploadLimitKiB: uploadKiB, Seed: true,
	})
	return c, tor
}

// expectation for one (client policy, probe policy) pair: the outcome, and
// the encryption methods that are acceptable when it is ok.
type expectation struct {
	outcome Outcome
	methods []string
}

// interopMatrix says what a probe must get for each client encryption mode
// and probe policy. Transmission in "disabled" mode only prefers plaintext
// and still accepts RC4, so require works against it; libtorrent's
// pe_disabled refuses MSE.
func interopMatrix(kind testclients.Kind) map[testclients.Encryption]map[peerwire.Policy]expectation {
	ok := func(m ...string) expectation { return expectation{OutcomeOK, m} }
	m := map[testclients.Encryption]map[peerwire.Policy]expectation{
		testclients.EncRequired: {
			peerwire.PolicyAuto:      ok("rc4"),
			peerwire.PolicyRequire:   ok("rc4"),
			peerwire.PolicyPlaintext: {OutcomeEncryptionRequired, nil},
		},
		testclients.EncPreferred: {
			peerwire.PolicyAuto:      ok("rc4", "mse-plaintext"),
			peerwire.PolicyRequire:   ok("rc4"),
			peerwire.PolicyPlaintext: ok("plaintext"),
		},
		testclients.EncDisabled: {
			peerwire.PolicyAuto:      ok("plaintext", "rc4", "mse-plaintext"),
			peerwire.PolicyRequire:   {OutcomeHandshakeFailed, nil},
			peerwire.PolicyPlaintext: ok("plaintext"),
		},
	}
	if kind == testclients.Transmission {
		m[testclients.EncDisabled][peerwire.PolicyRequire] = ok("rc4")
	}
	return m
}

// TestInteropEncryptionMatrix probes real Transmission and libtorrent
// seeders in each encryption mode with each probe policy.
func TestInteropEncryptionMatrix(t *testing.T) {
	for _, kind := range []testclients.Kind{testclients.Transmission, testclients.Libtorrent} {
		for enc, policies := range interopMatrix(kind) {
			t.Run(string(kind)+"/"+string(enc), func(t *testing.T) {
				t.Parallel()
				c, tor := seedWithClient(t, kind, enc, 2<<20, 0)
				// Plaintext first: Transmission 3.00 drops a plaintext handshake
				// that follows another plaintext connection from the same
				// address within a few seconds (MSE handshakes are not affected).
				for _, policy := range []peerwire.Policy{peerwire.PolicyPlaintext, peerwire.PolicyAuto, peerwire.PolicyRequire} {
					// libtorrent takes one connection per IP: a probe that
					// comes while it still counts the previous one is
					// dropped (under auto: MSE dropped, plaintext retried).
					waitNoPeers(t, c)
					want := policies[policy]
					r, err := Run(context.Background(), c.Addr, targetOf(tor), Options{Policy: policy, MaxBytes: 256 << 10, Timeout: 40 * time.Second})
					if err != nil {
						t.Fatal(err)
					}
					if want.outcome == OutcomeOK && r.Outcome == OutcomeHandshakeFailed && kind == testclients.Transmission {
						// Transmission 3.00, under load, can also drop an MSE
						// handshake that follows another connection from the
						// same address closely (CI saw it once): a polite
						// prober comes back later, so the test does too, once.
						t.Logf("%s: %s (%s); trying again in 5 s", policy, r.Outcome, r.Error)
						time.Sleep(5 * time.Second) // the client's reconnect throttle, not synchronisation
						waitNoPeers(t, c)
						if r, err = Run(context.Background(), c.Addr, targetOf(tor), Options{Policy: policy, MaxBytes: 256 << 10, Timeout: 40 * time.Second}); err != nil {
							t.Fatal(err)
						}
					}
					t.Logf("%s: outcome=%s enc=%s client=%q have=%d/%d verified=%d rate=%.0f B/s handshake=%.1fms",
						policy, r.Outcome, r.Encryption, r.Client, r.PiecesHave, r.PiecesTotal, r.PiecesVerified, r.ThroughputBytesPerSec, r.HandshakeMS)
					if r.Outcome != want.outcome {
						t.Errorf("%s: outcome %s (%s), want %s\nclient log:\n%s", policy, r.Outcome, r.Error, want.outcome, c.Log())
						continue
					}
					if want.outcome != OutcomeOK {
						continue
					}
					if !contains(want.methods, r.Encryption) {
						t.Errorf("%s: encryption %q, want one of %v", policy, r.Encryption, want.methods)
					}
					if !r.Seeder || r.PiecesVerified < 1 || r.PiecesFailed != 0 {
						t.Errorf("%s: seeder=%v verified=%d failed=%d", policy, r.Seeder, r.PiecesVerified, r.PiecesFailed)
					}
				}
			})
		}
	}
}

// TestInteropUploadLimit checks the bandwidth estimate against the upload
// cap set in the client: within ±25%.
func TestInteropUploadLimit(t *testing.T) {
	for _, kind := range []testclients.Kind{testclients.Transmission, testclients.Libtorrent} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			const capKiB = 512
			c, tor := seedWithClient(t, kind, testclients.EncRequired, 8<<20, capKiB)
			r, err := Run(context.Background(), c.Addr, targetOf(tor), Options{MaxBytes: 2 << 20, Timeout: 60 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("outcome=%s enc=%s rate=%.0f B/s spread=%.3f ttfb=%.0fms bytes=%d", r.Outcome, r.Encryption, r.ThroughputBytesPerSec, r.ThroughputSpread, r.TTFBMS, r.BytesDownloaded)
			if r.Outcome != OutcomeOK || r.Encryption != "rc4" {
				t.Fatalf("outcome %s enc %s: %s", r.Outcome, r.Encryption, r.Error)
			}
			rel := r.ThroughputBytesPerSec/(capKiB*1024) - 1
			if rel < -0.25 || rel > 0.25 {
				t.Fatalf("measured %.0f B/s against a %d KiB/s cap: %+.0f%%", r.ThroughputBytesPerSec, capKiB, rel*100)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func targetOf(t *torrentmeta.Torrent) Target {
	return Target{InfoHash: t.InfoHash, NumPieces: t.NumPieces, PieceSize: t.PieceSize, Verify: t.VerifyPiece}
}

// waitNoPeers waits until the client counts no connected peer
// (testclients.Client.WaitNoPeers), and says so when it never did.
func waitNoPeers(t *testing.T, c *testclients.Client) {
	t.Helper()
	if !c.WaitNoPeers(context.Background()) {
		t.Logf("the client still counts a peer after 10 s; probing anyway")
	}
}

// TestInteropUTPOnlyLibtorrent: a real libtorrent that takes peers over
// uTP only accepts our TCP connection and hangs up on both the MSE and
// the plaintext handshake. Over TCP alone that is no sign of requiring
// encryption: the outcome is handshake_failed, with the reason, never
// encryption_required. With a uTP socket and the default transport
// (auto), the probe reaches it over uTP, with MSE, and verifies pieces.
func TestInteropUTPOnlyLibtorrent(t *testing.T) {
	testclients.Require(t, "libtorrent")
	dir := t.TempDir()
	payload := testclients.MakePayload(t, dir, 1<<20, 29)
	tpath, _ := testclients.MakeTorrent(t, payload, 64<<10, nil, false)
	tor, err := torrentmeta.Load(tpath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Libtorrent, TorrentFile: tpath, DataDir: dir, Seed: true, UTPOnly: true})
	sock, err := utp.Listen("udp4", "127.0.0.1:0", utp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	target := Target{InfoHash: tor.InfoHash, NumPieces: tor.NumPieces, PieceSize: tor.PieceSize, Verify: tor.VerifyPiece}
	for _, tc := range []struct {
		name      string
		dialer    peerwire.Config
		outcomes  []Outcome
		transport string
	}{
		{"tcp only", peerwire.Config{}, []Outcome{OutcomeHandshakeFailed, OutcomeRefused}, ""},
		{"auto", peerwire.Config{Network: peerwire.Network{UTP: sock}}, []Outcome{OutcomeOK}, "utp"},
		{"utp", peerwire.Config{Network: peerwire.Network{UTP: sock, Transport: peerwire.TransportUTP}}, []Outcome{OutcomeOK}, "utp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			waitNoPeers(t, c) // libtorrent takes one connection per IP
			r, err := Run(ctx, c.Addr, target, Options{Timeout: 20 * time.Second, Dialer: tc.dialer, MaxBytes: 512 << 10})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("outcome %s over %q (%s): %d pieces verified, %.0f B/s, %s", r.Outcome, r.Transport, r.Encryption, r.PiecesVerified, r.ThroughputBytesPerSec, r.Error)
			if !slices.Contains(tc.outcomes, r.Outcome) {
				t.Fatalf("outcome %s (%s), want one of %v", r.Outcome, r.Error, tc.outcomes)
			}
			if r.Outcome != OutcomeOK {
				return
			}
			if r.Transport != tc.transport || r.PiecesVerified == 0 || r.PiecesFailed > 0 || r.Encryption != "rc4" {
				t.Fatalf("over %q with %q: %d pieces verified, %d failed; want %s, rc4, pieces verified", r.Transport, r.Encryption, r.PiecesVerified, r.PiecesFailed, tc.transport)
			}
		})
	}
}
