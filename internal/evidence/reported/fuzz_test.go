package reported

import (
	"bytes"
	"errors"
	"testing"

	"github.com/anacrolix/torrent/types/infohash"
)

// checkStats fails when the counts of an import that read its whole input do
// not account for every line.
func checkStats(t *testing.T, st ImportStats) {
	t.Helper()
	if st.Lines != st.Imported+st.Skipped+st.BadLines || len(st.Bad) > MaxBadLines || len(st.Bad) > st.BadLines {
		t.Fatalf("inconsistent stats %v (len(Bad) %d)", st, len(st.Bad))
	}
	for _, e := range st.Bad {
		if e.Line < 1 || e.Line > st.Lines || e.Err == nil {
			t.Fatalf("bad LineError %#v for %d lines", e, st.Lines)
		}
	}
}

// FuzzImportJSONLines: any input imports without error, and every announce
// imported survives a write/import round trip unchanged.
func FuzzImportJSONLines(f *testing.F) {
	f.Add([]byte(goodJSON + "\n"))
	f.Add([]byte(`{"time":"2026-01-02T03:04:05.5+02:00","info_hash":"0123456789abcdef0123456789abcdef01234567","peer_id":"-TR3000-\u00ff\u00fe\u0000bcdefghij","ip":"2001:db8::1","port":65535,"uploaded":9223372036854775807,"downloaded":0,"left":0,"event":"completed","key":"k","passkey":"p","user_agent":"ua","source":"s","user_id":"u"}` + "\r\n\n"))
	f.Add([]byte("null\n[1]\n{\"time\":1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var imported []Announce
		st, err := ImportJSONLines(bytes.NewReader(data), "", func(a Announce) error {
			imported = append(imported, a)
			return nil
		})
		if err != nil {
			t.Fatalf("import of an in-memory input failed: %v", err)
		}
		checkStats(t, st)
		if st.Imported != len(imported) {
			t.Fatalf("stats say %d imported, fn saw %d", st.Imported, len(imported))
		}
		for _, a := range imported {
			line, err := AppendJSONLine(nil, a)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", a, err)
			}
			var again []Announce
			st, err := ImportJSONLines(bytes.NewReader(line), "", func(b Announce) error {
				again = append(again, b)
				return nil
			})
			if err != nil || len(again) != 1 || !sameAnnounce(a, again[0]) {
				t.Fatalf("round trip of %+v via %s: %+v, %v, %v", a, line, again, err, st.Bad)
			}
		}
	})
}

// FuzzImportCSV: any input either is refused as a whole for its header or
// imports with stats that account for every line.
func FuzzImportCSV(f *testing.F) {
	f.Add([]byte("TorrentID,UserID,Addr,Event,Uploaded,Downloaded,Left\n17,8,192.0.2.1:6881,started,0,0,1000\n"))
	f.Add([]byte("TorrentID,UserID,Addr,Event,Uploaded,Downloaded,Left\r\n0123456789abcdef0123456789abcdef01234567,\"a,b\",[2001:db8::1]:1,,1,2,3\r\nTorrentID,UserID,Addr,Event,Uploaded,Downloaded,Left\r\n"))
	f.Add([]byte("left,addr,torrentid,event,uploaded,userid,downloaded\n\n\"broken,x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := CSVOptions{TorrentIDs: map[string]infohash.T{"17": ihB}}
		n := 0
		st, err := ImportCSV(bytes.NewReader(data), "fuzz", opts, func(a Announce) error {
			n++
			if a.Source != "fuzz" || a.Uploaded < 0 || a.Downloaded < 0 || a.Left < 0 || !a.IP.IsValid() {
				t.Fatalf("implausible announce %+v", a)
			}
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrBadHeader) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		checkStats(t, st)
		if st.Imported != n {
			t.Fatalf("stats say %d imported, fn saw %d", st.Imported, n)
		}
	})
}
