package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// TestImportReported: --reported reads JSON lines and CSV logs, keeps the
// announces of the audited torrent, and reports every bad line with its
// number.
func TestImportReported(t *testing.T) {
	ih := infohash.T{0xaa}
	other := infohash.T{0xbb}
	tor := &torrentmeta.Torrent{InfoHash: ih}
	dir := t.TempDir()
	jsonl := strings.Join([]string{
		`{"time":"2026-11-01T10:00:00Z","info_hash":"` + ih.HexString() + `","ip":"192.0.2.1","port":6881,"uploaded":0,"downloaded":0,"left":100,"event":"started"}`,
		`{"time":"2026-11-01T10:30:00Z","info_hash":"` + ih.HexString() + `","ip":"192.0.2.1","port":6881,"uploaded":5000,"downloaded":100,"left":0}`,
		`{"time":"not a time","info_hash":"` + ih.HexString() + `","ip":"192.0.2.1","port":6881,"uploaded":0,"downloaded":0,"left":0}`,
		`{"time":"2026-11-01T10:00:00Z","info_hash":"` + other.HexString() + `","ip":"192.0.2.9","port":1,"uploaded":0,"downloaded":0,"left":0}`,
	}, "\n")
	csv := "TorrentID,UserID,Addr,Event,Uploaded,Downloaded,Left\n" +
		ih.HexString() + ",7,192.0.2.3:51413,started,0,0,100\n" +
		ih.HexString() + ",7,192.0.2.3:51413,,-5,0,100\n" +
		ih.HexString() + ",7,192.0.2.3:51413,stopped,900,100,0\n"
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		fl       judgeFlags
		want     int
		badLine  string
		wantErr  bool
		firstAt  time.Time
		secondUp int64
	}{
		{name: "json lines", fl: judgeFlags{reportedPath: write("a.jsonl", jsonl)}, want: 2, badLine: "line 3", firstAt: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), secondUp: 5000},
		{name: "csv with a clock", fl: judgeFlags{reportedPath: write("b.csv", csv), csvStart: "2026-11-01T12:00:00Z", csvStep: time.Minute}, want: 2, badLine: "line 3", firstAt: time.Date(2026, 11, 1, 12, 1, 0, 0, time.UTC), secondUp: 900},
		{name: "csv without a clock", fl: judgeFlags{reportedPath: write("c.csv", csv)}, wantErr: true},
		{name: "missing file", fl: judgeFlags{reportedPath: filepath.Join(dir, "none.jsonl")}, wantErr: true},
		{name: "no good line", fl: judgeFlags{reportedPath: write("d.jsonl", "{\"bad\": 1}\nnot json\n")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var msgs bytes.Buffer
			got, err := importReported(tt.fl, tor, &msgs)
			if tt.wantErr {
				if err == nil {
					t.Fatal("expected an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want || !strings.Contains(msgs.String(), tt.badLine) {
				t.Fatalf("imported %d (want %d); messages:\n%s", len(got), tt.want, msgs.String())
			}
			if !got[0].At.Equal(tt.firstAt) || got[1].Uploaded != tt.secondUp {
				t.Fatalf("announces %+v", got)
			}
		})
	}
}
