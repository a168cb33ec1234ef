package reported

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"
)

var (
	ihA = infohash.FromHexString("0123456789abcdef0123456789abcdef01234567")
	ihB = infohash.FromHexString("fedcba9876543210fedcba9876543210fedcba98")
)

func peerID(s string) (id [20]byte) {
	copy(id[:], s)
	return id
}

func sampleAnnounces() []Announce {
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	return []Announce{
		{
			At: t0, InfoHash: ihA, PeerID: peerID("-TR3000-abcdefghijkl"),
			IP: netip.MustParseAddr("192.0.2.7"), Port: 51413,
			Uploaded: 1 << 40, Downloaded: 12345, Left: 0, Event: EventStarted,
			Key: "a1b2c3d4", Passkey: "pk0", UserAgent: `Transmission/3.00 "q" <&>`, Source: "http",
		},
		{
			At: t0.Add(time.Second), InfoHash: ihB, PeerID: [20]byte{0, 0xff, 0x80, '\n', '"'},
			IP: netip.MustParseAddr("2001:db8::1"), Port: 6881,
			Uploaded: 0, Downloaded: 0, Left: 999, Event: EventNone, Source: "udp", UserID: "42",
		},
		{
			At: t0.Add(2 * time.Second), InfoHash: ihA,
			IP: netip.MustParseAddr("10.0.0.1"), Port: 1, Event: EventPaused, UserAgent: "üñí",
		},
	}
}

func sameAnnounce(a, b Announce) bool {
	if !a.At.Equal(b.At) {
		return false
	}
	a.At, b.At = time.Time{}, time.Time{}
	return a == b
}

func TestJSONLinesRoundTrip(t *testing.T) {
	want := sampleAnnounces()
	var buf bytes.Buffer
	rec := NewJSONLinesRecorder(&buf)
	for _, a := range want {
		if err := rec.RecordAnnounce(a); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != len(want) {
		t.Fatalf("%d lines for %d announces:\n%s", n, len(want), buf.String())
	}
	for _, tc := range []struct {
		source string
		want   func(Announce) string
	}{
		{"", func(a Announce) string { return a.Source }},
		{"import:log.jsonl", func(Announce) string { return "import:log.jsonl" }},
	} {
		var got []Announce
		st, err := ImportJSONLines(bytes.NewReader(buf.Bytes()), tc.source, func(a Announce) error {
			got = append(got, a)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if st.Imported != len(want) || st.BadLines != 0 || st.Lines != len(want) {
			t.Fatalf("source %q: stats %v, bad %v", tc.source, st, st.Bad)
		}
		for i := range want {
			w := want[i]
			w.Source = tc.want(w)
			if !sameAnnounce(got[i], w) {
				t.Errorf("source %q: announce %d:\n got %+v\nwant %+v", tc.source, i, got[i], w)
			}
		}
	}
}

func TestJSONLinesRecorderConcurrent(t *testing.T) {
	var buf bytes.Buffer
	rec := NewJSONLinesRecorder(&buf)
	a := sampleAnnounces()[0]
	var wg sync.WaitGroup
	const writers, each = 8, 50
	for range writers {
		wg.Go(func() {
			for range each {
				if err := rec.RecordAnnounce(a); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st, err := ImportJSONLines(&buf, "", func(got Announce) error {
		if !sameAnnounce(got, a) {
			return fmt.Errorf("got %+v", got)
		}
		return nil
	})
	if err != nil || st.Imported != writers*each || st.BadLines != 0 {
		t.Fatalf("stats %v, err %v, bad %v", st, err, st.Bad)
	}
}

func TestMemoryRecorder(t *testing.T) {
	var m MemoryRecorder
	for _, a := range sampleAnnounces() {
		if err := m.RecordAnnounce(a); err != nil {
			t.Fatal(err)
		}
	}
	got := m.Announces()
	if len(got) != 3 || m.Len() != 3 || !sameAnnounce(got[1], sampleAnnounces()[1]) {
		t.Fatalf("got %+v", got)
	}
	got[0].Port = 1 // a copy: must not change the recorder
	if m.Announces()[0].Port != 51413 {
		t.Fatal("Announces returned the recorder's own slice")
	}
}

const goodJSON = `{"time":"2026-01-02T03:04:05Z","info_hash":"0123456789abcdef0123456789abcdef01234567","ip":"192.0.2.1","port":1,"uploaded":1,"downloaded":2,"left":3}`

func TestImportJSONLinesBadLines(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(goodJSON, old, new, 1) }
	tests := []struct {
		name string
		line string
		want error // nil: imported
	}{
		{"good", goodJSON, nil},
		{"good crlf and extra field", replace(`"left":3`, `"left":3,"whatever":[1,2]`) + "\r", nil},
		{"raw peer id", replace(`"port"`, `"peer_id":"-qB4520-abcdefghijkl","port"`), nil},
		{"latin1 peer id", replace(`"port"`, `"peer_id":"-TR3000-\u00ff\u00fe\u0000bcdefghij","port"`), nil},
		{"not json", `time=now`, ErrInvalidField},
		{"array", `[1,2]`, ErrInvalidField},
		{"null", `null`, ErrMissingField},
		{"two objects", goodJSON + goodJSON, ErrInvalidField},
		{"no time", replace(`"time":"2026-01-02T03:04:05Z",`, ``), ErrMissingField},
		{"bad time", replace(`2026-01-02T03:04:05Z`, `yesterday`), ErrInvalidField},
		{"short info hash", replace(`01234567"`, `0123456"`), ErrInvalidField},
		{"no info hash", replace(`"info_hash":"0123456789abcdef0123456789abcdef01234567",`, ``), ErrMissingField},
		{"bad peer id", replace(`"port"`, `"peer_id":"short","port"`), ErrInvalidField},
		{"wide peer id", replace(`"port"`, `"peer_id":"-TR3000-\u0100bcdefghijkl","port"`), ErrInvalidField},
		{"no ip", replace(`"ip":"192.0.2.1",`, ``), ErrMissingField},
		{"bad ip", replace(`192.0.2.1`, `example.com`), ErrInvalidField},
		{"zoned ip", replace(`192.0.2.1`, `fe80::1%eth0`), ErrInvalidField},
		{"port out of range", replace(`"port":1`, `"port":70000`), ErrInvalidField},
		{"no port", replace(`"port":1,`, ``), ErrMissingField},
		{"negative uploaded", replace(`"uploaded":1`, `"uploaded":-1`), ErrInvalidField},
		{"no left", replace(`,"left":3`, ``), ErrMissingField},
		{"float", replace(`"downloaded":2`, `"downloaded":2.5`), ErrInvalidField},
		{"bad event", replace(`"left":3`, `"left":3,"event":"exploded"`), ErrInvalidField},
	}
	var in strings.Builder
	in.WriteString("\n") // blank line 1
	for _, tc := range tests {
		in.WriteString(tc.line + "\n")
	}
	in.WriteString(strings.Repeat("x", MaxLineBytes+1) + "\n") // too long
	in.WriteString("   \n")                                    // blank
	in.WriteString(goodJSON)                                   // last line without newline

	st, err := ImportJSONLines(strings.NewReader(in.String()), "f", func(Announce) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	bad := map[int]error{}
	for _, e := range st.Bad {
		bad[e.Line] = e
	}
	wantBad := 0
	for i, tc := range tests {
		line := i + 2
		got := bad[line]
		if tc.want == nil {
			if got != nil {
				t.Errorf("%s (line %d): rejected: %v", tc.name, line, got)
			}
			continue
		}
		wantBad++
		if !errors.Is(got, tc.want) {
			t.Errorf("%s (line %d): got %v, want %v", tc.name, line, got, tc.want)
		}
		var le LineError
		if got != nil && (!errors.As(got, &le) || le.Line != line || !strings.HasPrefix(le.Error(), fmt.Sprintf("line %d: ", line))) {
			t.Errorf("%s: LineError %#v does not name line %d", tc.name, got, line)
		}
	}
	longLine := len(tests) + 2
	if !errors.Is(bad[longLine], ErrLineTooLong) {
		t.Errorf("line %d: got %v, want ErrLineTooLong", longLine, bad[longLine])
	}
	wantBad++
	wantLines := len(tests) + 4
	if st.Lines != wantLines || st.BadLines != wantBad || st.Skipped != 2 || st.Imported != wantLines-wantBad-2 {
		t.Errorf("stats %v, want %d lines, %d bad, 2 skipped", st, wantLines, wantBad)
	}
	if st.Lines != st.Imported+st.Skipped+st.BadLines {
		t.Errorf("stats do not add up: %v", st)
	}
	if st.String() != fmt.Sprintf("%d lines: %d imported, 2 skipped, %d bad", wantLines, wantLines-wantBad-2, wantBad) {
		t.Errorf("summary %q", st.String())
	}
}

func TestImportStopsOnCallbackError(t *testing.T) {
	boom := errors.New("disk full")
	in := goodJSON + "\n" + goodJSON + "\n" + goodJSON + "\n"
	calls := 0
	st, err := ImportJSONLines(strings.NewReader(in), "", func(Announce) error {
		calls++
		if calls == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "line 2") || calls != 2 || st.Imported != 1 {
		t.Fatalf("err %v, calls %d, stats %v", err, calls, st)
	}
}

func TestImportBadLinesCapped(t *testing.T) {
	in := strings.Repeat("garbage\n", MaxBadLines+10)
	st, err := ImportJSONLines(strings.NewReader(in), "", func(Announce) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.BadLines != MaxBadLines+10 || len(st.Bad) != MaxBadLines || st.Bad[MaxBadLines-1].Line != MaxBadLines {
		t.Fatalf("BadLines %d, len(Bad) %d", st.BadLines, len(st.Bad))
	}
}

func TestParsePeerID(t *testing.T) {
	tests := []struct {
		in      string
		want    [20]byte
		wantErr bool
	}{
		{"", [20]byte{}, false},
		{"2d5452333030302d6162636465666768696a6b6c", peerID("-TR3000-abcdefghijkl"), false},
		{"-TR3000-abcdefghijkl", peerID("-TR3000-abcdefghijkl"), false},
		{"-TR3000-\u00e9bcdefghijkl", peerID("-TR3000-\xe9bcdefghijkl"), false},
		{"zz5452333030302d6162636465666768696a6b6c", [20]byte{}, true},
		{"-TR3000-abcdefghijk", [20]byte{}, true},
		{"-TR3000-\u20acbcdefghijkl", [20]byte{}, true},
	}
	for _, tc := range tests {
		got, err := parsePeerID(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("parsePeerID(%q) = %x, %v", tc.in, got, err)
		}
	}
}

func TestParseEvent(t *testing.T) {
	tests := []struct {
		in      string
		want    Event
		wantErr bool
	}{
		{"", EventNone, false},
		{"empty", EventNone, false},
		{" None ", EventNone, false},
		{"started", EventStarted, false},
		{"COMPLETED", EventCompleted, false},
		{"stopped", EventStopped, false},
		{"paused", EventPaused, false},
		{"1", EventNone, true},
		{"start", EventNone, true},
		{strings.Repeat("x", 1000), EventNone, true},
	}
	for _, tc := range tests {
		got, err := ParseEvent(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseEvent(%.20q) = %q, %v", tc.in, got, err)
		}
		if err != nil && (!errors.Is(err, ErrUnknownEvent) || len(err.Error()) > 100) {
			t.Errorf("ParseEvent(%.20q) error %q", tc.in, err)
		}
	}
}

func TestImportCSV(t *testing.T) {
	in := "\ufeffTorrentID,UserID,Addr,Event,Uploaded,Downloaded,Left\n" +
		"0123456789abcdef0123456789abcdef01234567,7,192.0.2.1:6881,started,0,0,1000\n" + // 2
		"17,8,[2001:db8::2]:51413,,100,200,0\n" + // 3: mapped id
		"99,8,192.0.2.2:1,completed,1,1,0\n" + // 4: unknown id
		"\n" + // 5
		"TorrentID,UserID,Addr,Event,Uploaded,Downloaded,Left\n" + // 6: repeated header
		"17,9,192.0.2.3,stopped,1,1,0\n" + // 7: no port
		"17,9,192.0.2.3:80,stopped,1,-1,0\n" + // 8: negative
		"17,9,192.0.2.3:80,stopped,1,1\n" + // 9: short
		"17,9,192.0.2.3:80,bogus,1,1,0\n" + // 10: bad event
		"\"17\",\"a,b\",192.0.2.4:80,stopped,5,6,7\r\n" + // 11: quoted, CRLF
		"17,9,192.0.2.3:80,\"stopped,1,1,0\n" + // 12: broken quote
		"17,9,[::ffff:192.0.2.5]:80,paused,1,2,3" // 13: mapped address, no final newline
	opts := CSVOptions{TorrentIDs: map[string]infohash.T{"17": ihB}}
	var got []Announce
	st, err := ImportCSV(strings.NewReader(in), "import:events.csv", opts, func(a Announce) error {
		got = append(got, a)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Announce{
		{At: time.Unix(0, 2), InfoHash: ihA, UserID: "7", IP: netip.MustParseAddr("192.0.2.1"), Port: 6881, Event: EventStarted, Left: 1000},
		{At: time.Unix(0, 3), InfoHash: ihB, UserID: "8", IP: netip.MustParseAddr("2001:db8::2"), Port: 51413, Uploaded: 100, Downloaded: 200},
		{At: time.Unix(0, 11), InfoHash: ihB, UserID: "a,b", IP: netip.MustParseAddr("192.0.2.4"), Port: 80, Event: EventStopped, Uploaded: 5, Downloaded: 6, Left: 7},
		{At: time.Unix(0, 13), InfoHash: ihB, UserID: "9", IP: netip.MustParseAddr("192.0.2.5"), Port: 80, Event: EventPaused, Uploaded: 1, Downloaded: 2, Left: 3},
	}
	if len(got) != len(want) {
		t.Fatalf("imported %d, want %d: %+v; bad %v", len(got), len(want), got, st.Bad)
	}
	for i := range want {
		want[i].Source = "import:events.csv"
		if !sameAnnounce(got[i], want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	wantBad := map[int]error{4: ErrUnknownTorrentID, 7: ErrInvalidField, 8: ErrInvalidField, 9: ErrInvalidField, 10: ErrInvalidField, 12: ErrInvalidField}
	if st.BadLines != len(wantBad) || st.Lines != 13 || st.Skipped != 3 || st.Imported != 4 {
		t.Errorf("stats %v; bad %v", st, st.Bad)
	}
	for _, e := range st.Bad {
		if w := wantBad[e.Line]; !errors.Is(e, w) {
			t.Errorf("line %d: got %v, want %v", e.Line, e.Err, w)
		}
	}
	var fe *FieldError
	if len(st.Bad) > 0 && (!errors.As(st.Bad[0], &fe) || fe.Field != "TorrentID") {
		t.Errorf("line 4 error %v is not a TorrentID FieldError", st.Bad[0])
	}
}

func TestImportCSVHeaderAndTime(t *testing.T) {
	start := time.Date(2026, 5, 6, 7, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		in      string
		opts    CSVOptions
		wantErr error
		wantAt  time.Time
	}{
		{
			name:   "reordered header with extra column and line clock",
			in:     "left,extra,EVENT,addr,userid,downloaded,uploaded,torrentid\n\n3,x,,192.0.2.1:1,u,2,1,0123456789abcdef0123456789abcdef01234567\n",
			opts:   CSVOptions{Time: LineClock(start, time.Second)},
			wantAt: start.Add(2 * time.Second),
		},
		{name: "missing column", in: "TorrentID,UserID,Addr,Event,Uploaded,Downloaded\n", wantErr: ErrBadHeader},
		{name: "data first", in: "17,8,192.0.2.1:1,,1,1,0\n", wantErr: ErrBadHeader},
		{name: "unparsable header", in: "\"TorrentID,UserID\n", wantErr: ErrBadHeader},
	}
	for _, tc := range tests {
		var got []Announce
		_, err := ImportCSV(strings.NewReader(tc.in), "", tc.opts, func(a Announce) error {
			got = append(got, a)
			return nil
		})
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.wantErr)
			continue
		}
		if tc.wantErr == nil && (len(got) != 1 || !got[0].At.Equal(tc.wantAt) || got[0].Left != 3 || got[0].UserID != "u") {
			t.Errorf("%s: got %+v", tc.name, got)
		}
	}
}

func TestLineLengthBoundary(t *testing.T) {
	pad := func(n int) string {
		line := strings.Replace(goodJSON, `"left":3`, `"left":3,"user_agent":""`, 1)
		return strings.Replace(line, `"user_agent":""`, `"user_agent":"`+strings.Repeat("u", n-len(line))+`"`, 1)
	}
	in := pad(MaxLineBytes) + "\r\n" + pad(MaxLineBytes+1) + "\n" + pad(3*MaxLineBytes)
	st, err := ImportJSONLines(strings.NewReader(in), "", func(Announce) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.Imported != 1 || st.BadLines != 2 || !errors.Is(st.Bad[0], ErrLineTooLong) || st.Bad[0].Line != 2 || st.Bad[1].Line != 3 {
		t.Fatalf("stats %v, bad %v", st, st.Bad)
	}
}
