// Package reported holds what peers say about themselves: the announce
// records a tracker receives (uploaded, downloaded, left, event), and the
// importers that read them from tracker logs. Nothing here is trusted; the
// audit checks it against what the wire shows.
package reported

import (
	"net/netip"
	"time"

	"github.com/anacrolix/torrent/types/infohash"
)

// Event is the announce `event` parameter (BEP 3); the empty string is a
// regular periodic announce.
type Event string

// The announce events of BEP 3.
const (
	EventNone      Event = ""
	EventStarted   Event = "started"
	EventCompleted Event = "completed"
	EventStopped   Event = "stopped"
)

// Announce is one announce as a tracker received it.
type Announce struct {
	At         time.Time  `json:"time"`
	InfoHash   infohash.T `json:"info_hash"`
	PeerID     [20]byte   `json:"-"`
	IP         netip.Addr `json:"ip"`
	Port       uint16     `json:"port"`
	Uploaded   int64      `json:"uploaded"`
	Downloaded int64      `json:"downloaded"`
	Left       int64      `json:"left"`
	Event      Event      `json:"event,omitempty"`
	Key        string     `json:"key,omitempty"`
	Passkey    string     `json:"passkey,omitempty"`
	UserAgent  string     `json:"user_agent,omitempty"`
	Source     string     `json:"source,omitempty"`  // "http", "udp", "import:FILE", "upstream"
	UserID     string     `json:"user_id,omitempty"` // from logs that carry a user id
}

// AddrPort is the announced address (IP and the announced port).
func (a Announce) AddrPort() netip.AddrPort { return netip.AddrPortFrom(a.IP, a.Port) }

// Recorder receives announces as they arrive. Implementations must be safe
// for concurrent use and must not keep references to the argument.
type Recorder interface {
	RecordAnnounce(Announce) error
}
