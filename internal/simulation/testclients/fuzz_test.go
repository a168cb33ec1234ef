package testclients

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// FuzzDecodeStats feeds hostile API replies to every client's decoder: they
// must return an error or a Stats, never panic.
func FuzzDecodeStats(f *testing.F) {
	for _, s := range []string{trSeeding, trLeeching, trError, qbSeeding, qbChecking, qbLeeching,
		a2Seeding, a2Leeching, a2Checking, ltSeeding, ltPaused, ltFailed} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeTransmission(b)
		decodeQBittorrent(b)
		if st, err := decodeAria2(b); err == nil && (st.Left < 0 || st.Size < 0 || st.Uploaded < 0) {
			t.Errorf("aria2 decoded negative counters: %v", st)
		}
		decodeLibtorrent(b)
	})
}

// FuzzDecodeAnnounce: a tracker's reply is hostile input too.
func FuzzDecodeAnnounce(f *testing.F) {
	f.Add([]byte("d8:completei0e10:incompletei0e8:intervali1864e12:min intervali932e5:peers0:e"))
	f.Add([]byte("d14:failure reason63:Requested download is not authorized for use with this tracker.e"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeAnnounce(b)
		if err == nil && d == nil {
			t.Error("no error and no dictionary")
		}
	})
}

// FuzzLibtorrentReadLoop feeds arbitrary output of the Python script to the
// reader: it must end at EOF without panicking, whatever the lines hold.
func FuzzLibtorrentReadLoop(f *testing.F) {
	f.Add([]byte(`{"type": "ready", "port": 1}` + "\n" + ltSeeding + "\n" + `{"type": "log", "msg": "x"}` + "\n"))
	f.Add([]byte(`{"type": "fatal", "msg": "listen failed"}` + "\nnot json\n"))
	f.Add([]byte(strings.Repeat("x", 70000) + "\n" + ltSeeding))
	f.Fuzz(func(t *testing.T, b []byte) {
		lt := &libtorrent{log: &lockedWriter{w: io.Discard}, readyCh: make(chan struct{}), replies: make(chan json.RawMessage, 1)}
		lt.readLoop(io.NopCloser(bytes.NewReader(b)))
		// Twice "ready" must not close the channel twice; one buffered reply at most.
		if len(lt.replies) > 1 {
			t.Errorf("%d buffered replies", len(lt.replies))
		}
	})
}
