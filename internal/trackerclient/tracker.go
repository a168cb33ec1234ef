// Package trackerclient holds what HTTP and UDP tracker clients share: the
// announce request and response, scrape results, the errors callers check,
// the address policy for tracker hosts, and the announcer that works
// through the tiers of a torrent's tracker list (BEP 12) with started,
// periodic and stopped announces. The wire protocols live in the
// httptracker and udptracker sub-packages.
package trackerclient

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

// Request is one announce. Uploaded and Downloaded are the caller's true
// counters; Left is the number of bytes still missing (the full size for an
// auditor that downloads nothing, -1 when unknown as for a magnet link).
type Request struct {
	InfoHash   infohash.T
	PeerID     [20]byte
	Port       uint16
	Uploaded   int64
	Downloaded int64
	Left       int64
	Event      reported.Event
	Key        uint32
	NumWant    int32  // -1: tracker default
	TrackerID  string // from a previous HTTP response, echoed back
	// IP, when valid, is the peer's address for the tracker to record
	// instead of the request's source (a recording proxy speaking for a
	// peer): HTTP "ip", BEP 15's IPv4 field.
	IP netip.Addr
}

// Peer is one peer from an announce reply.
type Peer struct {
	Addr netip.AddrPort
	ID   []byte // only from dictionary-model HTTP replies
}

// Response is a successful announce reply. Seeders and Leechers are -1 when
// the tracker did not say.
type Response struct {
	Interval    time.Duration
	MinInterval time.Duration
	TrackerID   string
	Warning     string
	Seeders     int64
	Leechers    int64
	Peers       []Peer
	// Skipped counts peer entries dropped from the reply: dictionary entries
	// with a missing or non-IP address or an out-of-range port.
	Skipped int
}

// Scrape is the swarm size a tracker reports for one info hash (BEP 48 /
// BEP 15).
type Scrape struct {
	Seeders   int64 `json:"seeders"`   // "complete"
	Leechers  int64 `json:"leechers"`  // "incomplete"
	Completed int64 `json:"completed"` // "downloaded": finished downloads ever
}

// Client speaks to one tracker URL.
type Client interface {
	Announce(ctx context.Context, req Request) (Response, error)
	Scrape(ctx context.Context, ih infohash.T) (Scrape, error)
	// Sent returns the number of requests (HTTP) or packets (UDP) sent.
	Sent() int64
	Close() error
}

// Errors shared by the clients, checkable with errors.Is.
var (
	// ErrFailure: the tracker answered with a failure (HTTP "failure
	// reason", UDP error action). Use errors.As with *FailureError for the
	// text.
	ErrFailure = errors.New("tracker failure")
	// ErrTooLarge: the reply exceeded the size limit.
	ErrTooLarge = errors.New("tracker reply too large")
	// ErrMalformed: the reply could not be decoded.
	ErrMalformed = errors.New("malformed tracker reply")
	// ErrScrapeUnsupported: the tracker URL has no scrape convention.
	ErrScrapeUnsupported = errors.New("tracker does not support scrape")
	// ErrDeniedAddress: the tracker host resolved to an address refused by
	// policy (loopback, private, link-local, ... with DenyPrivate).
	ErrDeniedAddress = errors.New("tracker address denied by policy")
	// ErrUnsupportedScheme: the URL scheme is not http, https or udp.
	ErrUnsupportedScheme = errors.New("unsupported tracker URL scheme")
	// ErrTimeout: no reply within the retransmission schedule or deadline.
	ErrTimeout = errors.New("tracker timed out")
)

// FailureError is a failure the tracker reported.
type FailureError struct {
	Reason string
	// RetryIn is the BEP 31 "retry in" hint (0: none; -1: "never").
	RetryIn time.Duration
}

func (e *FailureError) Error() string { return fmt.Sprintf("tracker failure: %q", e.Reason) }

// Is makes errors.Is(err, ErrFailure) true.
func (e *FailureError) Is(target error) bool { return target == ErrFailure }

// Sanitize bounds tracker-supplied text (failure reasons, warnings) to n
// bytes so logs and reports stay readable.
func Sanitize(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// DeniedAddr reports whether ip is refused under the DenyPrivate policy:
// loopback, private (RFC 1918, RFC 4193), link-local, shared (RFC 6598
// 100.64/10), unspecified, multicast or 0.0.0.0/8.
func DeniedAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() {
		return true
	}
	if ip.Is4() {
		b := ip.As4()
		if b[0] == 0 || (b[0] == 100 && b[1]&0xc0 == 64) || b == [4]byte{255, 255, 255, 255} {
			return true
		}
	}
	return false
}

// CheckAddr returns an ErrDeniedAddress error when deny is set and the
// address (an "ip:port" string as given to a dialer's Control function) is
// refused by DeniedAddr.
func CheckAddr(deny bool, address string) error {
	if !deny {
		return nil
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", ErrDeniedAddress, address)
	}
	if DeniedAddr(ip) {
		return fmt.Errorf("%w: %s", ErrDeniedAddress, ip)
	}
	return nil
}

// NewKey returns a random announce key.
func NewKey() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
