package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// TestCatalogueEvidence judges again the evidence a real catalogue run
// stored (testdata/catalogue-evidence: the auditor's database and the
// torrent of a run with Transmission, libtorrent, qBittorrent and aria2
// clients and six fake announcers), as `swarmaudit report` does: every
// cheater is flagged, every honest client is ok, and the libtorrent seed
// behind a ×2 proxy — which announced only at its start and stop, one
// pair under every bound's tolerance — is flagged because the swarm's
// claims fit together only without its own.
func TestCatalogueEvidence(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "catalogue-evidence"))); err != nil {
		t.Fatal(err)
	}
	var info RunInfo
	b, err := os.ReadFile(filepath.Join(dir, runFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	tor, err := torrentmeta.Load(filepath.Join(dir, torrentFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vc := verdict.DefaultConfig()
	vc.Estimate.ClockSlack = estimate.SameClockSlack // as `swarmaudit report` without --reported
	res, err := audit.Rejudge(ctx, st, tor, nil, vc)
	if err != nil {
		t.Fatal(err)
	}
	worst := map[string]*verdict.Verdict{} // host IP → its most severe verdict
	for k := range res.Report.Verdicts {
		v := &res.Report.Verdicts[k]
		for _, a := range append(v.WirePeers, v.Identity.Addrs...) {
			ip := a.Addr().String()
			if w, ok := worst[ip]; !ok || v.Status.Severity() > w.Status.Severity() {
				worst[ip] = v
			}
		}
	}
	judged := 0
	for _, h := range info.Hosts {
		v, ok := worst[h.IP]
		if !ok || h.Role == "auditor" {
			continue
		}
		judged++
		flagged := v.Status.Severity() >= verdict.StatusSuspect.Severity()
		if flagged != h.Cheater {
			t.Errorf("%s (%s, cheater %v): %s", h.Name, h.Kind, h.Cheater, v.Status)
		}
		if h.Proxy == 2 && !hasCode(v, verdict.CodeClaimsDoNotFit) {
			t.Errorf("%s: no %s finding: %+v", h.Name, verdict.CodeClaimsDoNotFit, v.Reasons)
		}
	}
	if judged < 10 {
		t.Fatalf("only %d hosts judged", judged)
	}
}

func hasCode(v *verdict.Verdict, c verdict.Code) bool {
	for _, r := range v.Reasons {
		if r.Code == c {
			return true
		}
	}
	return false
}
