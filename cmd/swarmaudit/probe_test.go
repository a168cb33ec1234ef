package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// run executes the CLI in-process and returns its stdout.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// TestProbeJSONAgainstEncryptedTransmission is the foundation's acceptance
// check: `swarmaudit probe --json` against an encryption-required
// Transmission on loopback reports rc4 and a non-zero throughput.
func TestProbeJSONAgainstEncryptedTransmission(t *testing.T) {
	dir := t.TempDir()
	payload := testclients.MakePayload(t, dir, 4<<20, 7)
	tpath, _ := testclients.MakeTorrent(t, payload, 256<<10, nil, false)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := testclients.Start(ctx, t, testclients.Options{
		Kind: testclients.Transmission, Encryption: testclients.EncRequired,
		TorrentFile: tpath, DataDir: filepath.Dir(payload), Seed: true,
	})
	// Transmission drops a connection from an address it still counts
	// (Launch's readiness handshake): wait until it counts none.
	c.WaitNoPeers(ctx)
	// Under CI's load a just-started encryption-required Transmission has
	// twice closed both handshakes of the first probe (0 of 60 probes in a
	// row failed once it had settled, here): a handshake failure is tried
	// again, at most twice, and logged.
	var r probe.Result
	var out string
	for attempt := 1; ; attempt++ {
		var err error
		out, err = run(t, "probe", "--torrent", tpath, "--peer", c.Addr.String(), "--json", "--probe-bytes", "1MiB")
		if err != nil {
			t.Fatalf("probe: %v\n%s", err, out)
		}
		r = probe.Result{}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("output is not one JSON object: %v\n%s", err, out)
		}
		if r.Outcome != probe.OutcomeHandshakeFailed || attempt == 3 {
			break
		}
		t.Logf("attempt %d: %s (%s); again in 2 s", attempt, r.Outcome, r.Error)
		time.Sleep(2 * time.Second) // the client settling: no event to wait for
	}
	if r.Encryption != "rc4" || r.ThroughputBytesPerSec <= 0 || r.Outcome != probe.OutcomeOK || r.PiecesVerified == 0 {
		t.Fatalf("encryption=%q throughput=%.0f outcome=%s verified=%d\n%s", r.Encryption, r.ThroughputBytesPerSec, r.Outcome, r.PiecesVerified, out)
	}
	if r.Client != "Transmission 3.00" || !r.Seeder {
		t.Fatalf("client %q seeder %v", r.Client, r.Seeder)
	}
}

// TestProbeSim runs the self-contained simulated-swarm probe and checks
// each peer's outcome against what it really is.
func TestProbeSim(t *testing.T) {
	out, err := run(t, "probe", "--sim", "--json", "--probe-bytes", "512KiB", "--probe-timeout", "5s")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Truth  string       `json:"truth"`
		Result probe.Result `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	want := []probe.Outcome{probe.OutcomeOK, probe.OutcomeOK, probe.OutcomeOK, probe.OutcomeBadData, probe.OutcomeChoked, probe.OutcomeRefused}
	if len(rows) != len(want) {
		t.Fatalf("%d rows", len(rows))
	}
	for i, row := range rows {
		if row.Result.Outcome != want[i] {
			t.Errorf("%s: outcome %s, want %s", row.Truth, row.Result.Outcome, want[i])
		}
	}
	if rows[0].Result.Encryption != "rc4" {
		t.Errorf("encryption-required peer probed with %q", rows[0].Result.Encryption)
	}
}
