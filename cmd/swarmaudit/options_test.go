package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExitCodes drives every command with bad command lines and checks
// the documented exit code and that the message names what is wrong.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.torrent")
	if err := os.WriteFile(bad, []byte("d4:infoi1ee"), 0o644); err != nil {
		t.Fatal(err)
	}
	allBad := filepath.Join(dir, "all-bad.jsonl")
	if err := os.WriteFile(allBad, []byte("not json\n{\"uploaded\": \"x\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		says string // the message names this
	}{
		{"unknown command", []string{"frobnicate"}, exitUsage, "frobnicate"},
		{"no command", nil, exitUsage, "command"},
		{"unknown flag", []string{"audit", "--torrent", bad, "--bogus"}, exitUsage, "--bogus"},
		{"positional argument", []string{"report", "x.torrent"}, exitUsage, "no arguments"},
		{"audit without torrent", []string{"audit"}, exitUsage, "--torrent"},
		{"audit zero duration", []string{"audit", "--torrent", bad, "--duration", "0s"}, exitUsage, "--duration"},
		{"audit negative duration", []string{"audit", "--torrent", bad, "--duration", "-5s"}, exitUsage, "--duration"},
		{"audit bad probe size", []string{"audit", "--torrent", bad, "--probe-bytes", "lots"}, exitUsage, "--probe-bytes"},
		{"audit zero probe size", []string{"audit", "--torrent", bad, "--probe-bytes", "0"}, exitUsage, "--probe-bytes"},
		{"audit negative timeout", []string{"audit", "--torrent", bad, "--probe-timeout", "-1s"}, exitUsage, "--probe-timeout"},
		{"audit zero conns", []string{"audit", "--torrent", bad, "--max-conns", "0"}, exitUsage, "--max-conns"},
		{"audit bad rate", []string{"audit", "--torrent", bad, "--max-auditor-rate", "fast"}, exitUsage, "--max-auditor-rate"},
		{"audit bad slack", []string{"audit", "--torrent", bad, "--slack", "some"}, exitUsage, "--slack"},
		{"audit bad factors", []string{"audit", "--torrent", bad, "--suspect-factor", "3", "--misreport-factor", "2"}, exitUsage, "factor"},
		{"audit bad encryption", []string{"audit", "--torrent", bad, "--encryption", "maybe"}, exitUsage, "--encryption"},
		{"audit unreadable torrent", []string{"audit", "--torrent", bad, "--duration", "1s"}, exitError, "bad.torrent"},
		{"probe without peer", []string{"probe", "--torrent", bad}, exitUsage, "--peer"},
		{"probe bad policy", []string{"probe", "--sim", "--encryption", "maybe"}, exitUsage, "--encryption"},
		{"probe bad size", []string{"probe", "--sim", "--probe-bytes", "lots"}, exitUsage, "--probe-bytes"},
		{"probe negative timeout", []string{"probe", "--sim", "--probe-timeout", "-1s"}, exitUsage, "--probe-timeout"},
		{"probe missing file", []string{"probe", "--torrent", filepath.Join(dir, "none.torrent"), "--peer", "127.0.0.1:1"}, exitError, "none.torrent"},
		{"probe bad peer", []string{"probe", "--torrent", bad, "--peer", "nope"}, exitUsage, "--peer"},
		{"discover both inputs", []string{"discover", "--torrent", bad, "--magnet", "magnet:?xt=urn:btih:" + strings.Repeat("a", 40)}, exitUsage, "--magnet"},
		{"discover zero duration", []string{"discover", "--torrent", bad, "--duration", "0s"}, exitUsage, "--duration"},
		{"discover bad magnet", []string{"discover", "--magnet", "magnet:?xt=nothing"}, exitUsage, "--magnet"},
		{"report without db", []string{"report", "--torrent", bad, "--db", filepath.Join(dir, "none.db")}, exitError, "bad.torrent"},
		{"report zero csv step", []string{"report", "--torrent", bad, "--csv-step", "0s"}, exitUsage, "--csv-step"},
		{"tracker nothing to listen on", []string{"tracker", "--tracker-listen", "", "--db", filepath.Join(dir, "t.db")}, exitUsage, "--tracker-listen"},
		{"tracker zero interval", []string{"tracker", "--interval", "0s", "--db", filepath.Join(dir, "t.db")}, exitUsage, "--interval"},
		{"demo too short", []string{"demo", "--duration", "5s", "--out", dir}, exitUsage, "--duration"},
		{"demo too many cheaters", []string{"demo", "--peers", "4", "--cheaters", "3", "--out", dir}, exitUsage, "--cheaters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, tt.args...)
			if got := exitCode(err); got != tt.code {
				t.Fatalf("exit %d (%v), want %d\n%s", got, err, tt.code, out)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("message %q does not name %q", err, tt.says)
			}
		})
	}
	t.Run("import with no good line", func(t *testing.T) {
		_, err := importReported(judgeFlags{reportedPath: allBad}, nil, &strings.Builder{})
		if exitCode(err) != exitError || !strings.Contains(err.Error(), "no announce") {
			t.Fatalf("err %v", err)
		}
	})
}

func TestExitCodeMapping(t *testing.T) {
	for _, tt := range []struct {
		err  error
		code int
	}{
		{nil, exitOK},
		{errors.New("disk full"), exitError},
		{usagef("--x: bad"), exitUsage},
		{flaggedError{misreporting: 1}, exitFlagged},
		{errors.Join(errors.New("wrapped"), flaggedError{suspect: 2}), exitFlagged},
	} {
		if got := exitCode(tt.err); got != tt.code {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.code)
		}
	}
}
