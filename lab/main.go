// Command lab is swarmaudit's accuracy lab: it runs scenarios of real
// BitTorrent clients and cheaters in network namespaces, audits each swarm
// with `swarmaudit audit`, and measures the audit against ground truth (tc
// caps, the clients' own counters, who cheats), printing a table and writing
// docs/accuracy.md.
//
//	go run ./lab -scenario short            # one scenario (name in lab/scenarios, or a path)
//	go run ./lab -all                       # every scenario; writes docs/accuracy.md
//	go run ./lab -rejudge DIR               # judge the runs in DIR again with this tree's swarmaudit
//
// It needs root (network namespaces, tc) and the client programs (see
// internal/testclients). Everything it creates is named "salab-*" and removed
// at the end, also on error, SIGINT and SIGTERM; run directories (logs,
// report.json, truth.jsonl) are kept.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/reports"
)

func main() {
	if isHelper() {
		os.Exit(helperMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(labMain(os.Args[1:], os.Stdout, os.Stderr))
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func labMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var names multiFlag
	fs.Var(&names, "scenario", "scenario to run: a name in lab/scenarios or a path (repeatable)")
	all := fs.Bool("all", false, "run every scenario in lab/scenarios and write -out")
	out := fs.String("out", "", "write the accuracy document here (default with -all: docs/accuracy.md)")
	keep := fs.String("keep", "", "directory for the run directories (default: a new one under the temp dir; always kept)")
	keepData := fs.Bool("keep-data", false, "keep the payload and the clients' data in the run directories")
	verbose := fs.Bool("v", false, "debug logging")
	rejudge := fs.String("rejudge", "", "judge again every run directory under DIR (from an earlier -keep) with this tree's swarmaudit report, without running any client")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lab: unexpected arguments %q\n", fs.Args())
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	if *rejudge != "" {
		if err := rejudgeRuns(*rejudge, *out, args, stdout, log); err != nil {
			fmt.Fprintf(stderr, "lab: %v\n", err)
			return 1
		}
		return 0
	}
	if err := run(names, *all, *out, *keep, *keepData, args, stdout, log); err != nil {
		fmt.Fprintf(stderr, "lab: %v\n", err)
		return 1
	}
	return 0
}

func run(names []string, all bool, out, keep string, keepData bool, args []string, stdout io.Writer, log *slog.Logger) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, tc, veth): run it as root, e.g. sudo go run ./lab")
	}
	if !all && len(names) == 0 {
		return errors.New("nothing to run: give -scenario NAME (repeatable) or -all")
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, "lab", "scenarios")
	var scs []*Scenario
	if all {
		if scs, err = AllScenarios(dir); err != nil {
			return err
		}
		if out == "" {
			out = filepath.Join(root, "docs", "accuracy.md")
		}
	}
	for _, n := range names {
		s, err := LoadScenario(dir, n)
		if err != nil {
			return err
		}
		scs = append(scs, s)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	base := keep
	if base == "" {
		if base, err = os.MkdirTemp("", "swarmaudit-lab-"); err != nil {
			return err
		}
	}
	if base, err = filepath.Abs(base); err != nil {
		return err
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	bin, err := buildAuditor(ctx, root, base)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("lab executable: %w", err)
	}
	log.Info("lab", "scenarios", len(scs), "runs", base)
	var runs []ScenarioRun
	var failed []string
	for _, sc := range scs {
		r := RunScenario(ctx, sc, Options{Dir: filepath.Join(base, sc.Name), Bin: bin, Self: self, Log: log}, keepData)
		runs = append(runs, r)
		if r.Err != "" {
			failed = append(failed, sc.Name)
			log.Error("scenario failed", "scenario", sc.Name, "err", r.Err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w (run directories in %s)", ctx.Err(), base)
		}
	}
	if err := writeResults(ctx, runs, base, out, root, args, stdout, log); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "run directories: %s\n", base)
	if len(failed) > 0 {
		return fmt.Errorf("scenarios failed: %v", failed)
	}
	return nil
}

// rejudgeRuns runs `swarmaudit report` on the stored evidence of every run
// directory under base (the auditor's database and the run's .torrent),
// then evaluates the new reports against the stored truth, as a lab run
// does. The audit's own report stays as report.audit.json.
func rejudgeRuns(base, out string, args []string, stdout io.Writer, log *slog.Logger) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp("", "swarmaudit-rejudge-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin, err := buildAuditor(ctx, root, tmp)
	if err != nil {
		return err
	}
	dirs, err := filepath.Glob(filepath.Join(base, "*", runFile))
	if err != nil || len(dirs) == 0 {
		return fmt.Errorf("no run directories (with %s) under %s", runFile, base)
	}
	var runs []ScenarioRun
	for _, rf := range dirs {
		dir := filepath.Dir(rf)
		r, err := rejudgeDir(ctx, bin, root, dir)
		if err != nil {
			log.Error("rejudge", "dir", dir, "err", err)
			r.Err = err.Error()
		}
		runs = append(runs, r)
	}
	return writeResults(ctx, runs, base, out, root, args, stdout, log)
}

// writeResults aggregates the runs, prints the table, writes
// base/accuracy.json and, with out, the accuracy document.
func writeResults(ctx context.Context, runs []ScenarioRun, base, out, root string, args []string, stdout io.Writer, log *slog.Logger) error {
	results := make([]ScenarioResult, len(runs))
	for i, r := range runs {
		results[i] = r.Result
	}
	o := Aggregate(results)
	WriteTable(stdout, runs, o)
	if err := writeJSON(filepath.Join(base, "accuracy.json"), map[string]any{"scenarios": results, "overall": o}); err != nil {
		log.Warn("accuracy.json", "err", err)
	}
	if out != "" {
		var buf bytes.Buffer
		WriteMarkdown(&buf, header(ctx, root, args), runs, o)
		if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", out, err)
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", out)
	}
	return nil
}

func rejudgeDir(ctx context.Context, bin, root, dir string) (ScenarioRun, error) {
	r := ScenarioRun{Dir: dir, Scenario: &Scenario{Name: filepath.Base(dir)}}
	b, err := os.ReadFile(filepath.Join(dir, runFile))
	if err != nil {
		return r, err
	}
	var info RunInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return r, fmt.Errorf("%s: %w", runFile, err)
	}
	r.Result.Scenario = info.Scenario
	r.Wall = info.Ended.Sub(info.Started) // the audit's run, not this rejudgement
	if sc, err := LoadScenario(filepath.Join(root, "lab", "scenarios"), info.Scenario); err == nil {
		r.Scenario = sc
	}
	torrent := filepath.Join(dir, torrentFile)
	report := filepath.Join(dir, reportFile)
	orig := filepath.Join(dir, "report.audit.json")
	if _, err := os.Stat(orig); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(report, orig); err != nil {
			return r, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, "report", "--torrent", torrent, "--db", filepath.Join(dir, "audit.db"),
		"--json-out", report, "--html-out", filepath.Join(dir, "report.html"))
	if outb, err := cmd.CombinedOutput(); flaggedIsDone(err) != nil {
		return r, fmt.Errorf("swarmaudit report: %w\n%s", err, outb)
	}
	res, err := EvaluateDir(dir, &info)
	if err != nil {
		return r, err
	}
	r.Result = res
	return r, writeJSON(filepath.Join(dir, "accuracy.json"), res)
}

// RunScenario runs one scenario and evaluates it; a failed run is reported
// in ScenarioRun.Err, with what could be evaluated.
func RunScenario(ctx context.Context, sc *Scenario, o Options, keepData bool) ScenarioRun {
	start := time.Now()
	r := ScenarioRun{Scenario: sc, Dir: o.Dir, Result: ScenarioResult{Scenario: sc.Name}}
	info, err := Run(ctx, sc, o)
	r.Wall = time.Since(start)
	if !keepData {
		for _, g := range []string{"payload", filepath.Join("clients", "*", "data")} {
			ds, _ := filepath.Glob(filepath.Join(o.Dir, g))
			for _, d := range ds {
				if rerr := os.RemoveAll(d); rerr != nil {
					o.Log.Warn("remove data", "dir", d, "err", rerr)
				}
			}
		}
	}
	if err != nil {
		r.Err = err.Error()
	}
	if info == nil {
		return r
	}
	res, eerr := EvaluateDir(o.Dir, info)
	if eerr != nil {
		r.Err = strings.TrimPrefix(r.Err+"; "+eerr.Error(), "; ")
		return r
	}
	r.Result = res
	if err := writeJSON(filepath.Join(o.Dir, "accuracy.json"), res); err != nil {
		o.Log.Warn("accuracy.json", "err", err)
	}
	return r
}

// EvaluateDir reads a run directory's report and truth and evaluates them.
func EvaluateDir(dir string, info *RunInfo) (ScenarioResult, error) {
	f, err := os.Open(filepath.Join(dir, reportFile))
	if err != nil {
		return ScenarioResult{}, fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	rep, err := reports.ReadJSON(f)
	if err != nil {
		return ScenarioResult{}, err
	}
	tf, err := os.Open(filepath.Join(dir, truthFile))
	if err != nil {
		return ScenarioResult{}, fmt.Errorf("truth: %w", err)
	}
	defer tf.Close()
	truth, err := ReadTruth(tf)
	if err != nil {
		return ScenarioResult{}, err
	}
	return Evaluate(info, rep, truth), nil
}

// moduleRoot finds the directory of go.mod from the working directory up.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 32 {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	return "", errors.New("no go.mod above the working directory: run the lab from the swarmaudit module")
}

// buildAuditor builds cmd/swarmaudit into dir, bounded by five minutes.
func buildAuditor(ctx context.Context, root, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	goBin := goBinary()
	bin := filepath.Join(dir, "swarmaudit")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/swarmaudit")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build swarmaudit: %w\n%s", err, out)
	}
	return bin, nil
}

// header describes the machine, the commit and the command of this run.
func header(ctx context.Context, root string, args []string) Header {
	h := Header{Date: time.Now(), Go: runtime.Version(), Command: "go run ./lab " + strings.Join(args, " ")}
	sh := func(name string, a ...string) string {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, a...)
		cmd.Dir = root
		b, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	h.Commit = sh("git", "rev-parse", "--short=12", "HEAD")
	if h.Commit == "" {
		h.Commit = "unknown"
	} else if sh("git", "status", "--porcelain", "--untracked-files=no") != "" {
		h.Commit += " (with uncommitted changes in the working tree)"
	}
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	h.Machine = fmt.Sprintf("%s, %s, %d CPUs", sh("uname", "-srm"), cpu, runtime.NumCPU())
	return h
}
