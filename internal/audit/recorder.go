package audit

import (
	"net/netip"

	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

// SourceEmbeddedTracker is the address book source of peers that announced
// to swarmaudit's own tracker.
const SourceEmbeddedTracker = "tracker:embedded"

// SourceStored marks peers known from an earlier run on the same database
// that recorded no source.
const SourceStored = "stored"

// TeeRecorder records announces to the store (or any recorder) and puts
// every announced address in the book, so that each reporting peer is
// audited on the wire — including those that never answer.
type TeeRecorder struct {
	Next reported.Recorder
	Book *addrbook.Book
}

// RecordAnnounce implements reported.Recorder.
func (t TeeRecorder) RecordAnnounce(a reported.Announce) error {
	if a.Port != 0 && a.Event != reported.EventStopped {
		t.Book.Add(netip.AddrPortFrom(a.IP.Unmap(), a.Port), SourceEmbeddedTracker, 0)
	}
	return t.Next.RecordAnnounce(a)
}
