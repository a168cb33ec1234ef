package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/swarmaudit/swarmaudit/internal/reports"
)

// TestDemo runs `swarmaudit demo --duration 30s` as a user runs the
// README's main command (the binary from go build, default swarm of 40 peers
// and 3 cheaters), validates its report against the JSON Schema, and checks
// the verdicts against the truth: every cheater flagged (suspect or
// misreporting) and no honest peer called misreporting.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, builtBinary(t), "demo", "--duration", "30s", "--out", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	t.Logf("demo output:\n%s", out)
	rep := readValidReport(t, filepath.Join(dir, "report.json"))
	m := rep.Truth.Matrix
	t.Logf("confusion matrix: %+v precision %v recall %v", m, deref(rep.Truth.Precision), deref(rep.Truth.Recall))
	checkNoHonestMisreporting(t, rep)
	for _, p := range rep.Peers {
		if p.Cheater != nil && *p.Cheater && !p.Flagged {
			t.Errorf("cheater %s not flagged: verdict %s", p.Address, p.Verdict)
		}
	}
	if m.TruePositive != 3 || m.FalseNegative != 0 {
		t.Errorf("confusion matrix %+v: want all 3 cheaters flagged", m)
	}
	for _, f := range []string{"report.html", "peers.csv"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestDemoInProcess runs a small demo inside the test process, so that the
// race detector watches the whole pipeline (simulator, tracker, collector,
// analysis, reports) at once. Under the race detector the swarm runs a few
// times slower, so only what does not depend on speed is checked: a valid
// report, and no honest peer called misreporting.
func TestDemoInProcess(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, "demo", "--duration", "20s", "--peers", "12", "--cheaters", "2", "--out", dir)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	rep := readValidReport(t, filepath.Join(dir, "report.json"))
	t.Logf("confusion matrix: %+v", rep.Truth.Matrix)
	checkNoHonestMisreporting(t, rep)
}

// readValidReport reads a demo report, validates it against
// docs/report.schema.json and checks it carries the demo's truth.
func readValidReport(t *testing.T, path string) *reports.Report {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join("..", "..", "docs", "report.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	schemaDoc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("report.schema.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("report.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("report does not validate: %v", err)
	}
	rep, err := reports.ReadJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Truth == nil {
		t.Fatal("the demo's report has no truth section")
	}
	return rep
}

func checkNoHonestMisreporting(t *testing.T, rep *reports.Report) {
	t.Helper()
	for _, p := range rep.Peers {
		if p.Cheater != nil && !*p.Cheater && p.Verdict == "misreporting" {
			t.Errorf("honest peer %s called misreporting: %+v", p.Address, p.Reasons)
		}
	}
}

func deref(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}
