package reported

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
	"unicode/utf8"
)

// The JSON-lines format, one announce per line:
//
//	{"time":"2026-01-02T03:04:05.123456789Z","info_hash":"<40 hex>","peer_id":"<40 hex>",
//	 "ip":"192.0.2.7","port":51413,"uploaded":1024,"downloaded":0,"left":0,
//	 "event":"started","key":"a1b2c3d4","passkey":"...","user_agent":"...",
//	 "source":"http","user_id":"..."}
//
// Required: time (RFC 3339, fractional seconds allowed, years 1970..2199,
// read into UTC), info_hash (40 hex
// digits), ip, port, uploaded, downloaded, left (non-negative integers).
// Optional: peer_id, event (see ParseEvent), key, passkey, user_agent, source,
// user_id. Unknown fields are ignored.
//
// peer_id is written as 40 hex digits. On import it may also be the raw
// 20-byte id as a JSON string: either 20 bytes as they are (e.g.
// "-TR3000-abcdefghijkl"), or 20 characters each in U+0000..U+00FF, taken as
// one byte each (Latin-1), which is what a logger that decoded the raw bytes
// as Latin-1 writes, e.g. Python's json.dumps(peer_id.decode("latin-1")). A
// missing or empty peer_id imports as all zero bytes.
type jsonLine struct {
	Time       string `json:"time"`
	InfoHash   string `json:"info_hash"`
	PeerID     string `json:"peer_id,omitempty"`
	IP         string `json:"ip"`
	Port       uint16 `json:"port"`
	Uploaded   int64  `json:"uploaded"`
	Downloaded int64  `json:"downloaded"`
	Left       int64  `json:"left"`
	Event      string `json:"event,omitempty"`
	Key        string `json:"key,omitempty"`
	Passkey    string `json:"passkey,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
	Source     string `json:"source,omitempty"`
	UserID     string `json:"user_id,omitempty"`
}

// jsonLineIn is jsonLine with pointers where a missing field must be told
// apart from a zero one.
type jsonLineIn struct {
	Time       *string `json:"time"`
	InfoHash   *string `json:"info_hash"`
	PeerID     string  `json:"peer_id"`
	IP         *string `json:"ip"`
	Port       *uint16 `json:"port"`
	Uploaded   *int64  `json:"uploaded"`
	Downloaded *int64  `json:"downloaded"`
	Left       *int64  `json:"left"`
	Event      string  `json:"event"`
	Key        string  `json:"key"`
	Passkey    string  `json:"passkey"`
	UserAgent  string  `json:"user_agent"`
	Source     string  `json:"source"`
	UserID     string  `json:"user_id"`
}

// AppendJSONLine appends a, in the format ImportJSONLines reads, and a
// newline to dst. The time is written in UTC with nanoseconds.
func AppendJSONLine(dst []byte, a Announce) ([]byte, error) {
	var zeroID [20]byte
	l := jsonLine{
		Time:       a.At.UTC().Format(time.RFC3339Nano),
		InfoHash:   a.InfoHash.HexString(),
		Port:       a.Port,
		Uploaded:   a.Uploaded,
		Downloaded: a.Downloaded,
		Left:       a.Left,
		Event:      string(a.Event),
		Key:        a.Key,
		Passkey:    a.Passkey,
		UserAgent:  a.UserAgent,
		Source:     a.Source,
		UserID:     a.UserID,
	}
	if a.PeerID != zeroID {
		l.PeerID = hex.EncodeToString(a.PeerID[:])
	}
	if a.IP.IsValid() {
		l.IP = a.IP.String()
	}
	b, err := json.Marshal(l)
	if err != nil {
		return dst, fmt.Errorf("encode announce %s: %w", a.InfoHash, err)
	}
	return append(append(dst, b...), '\n'), nil
}

// ImportJSONLines reads announces in the JSON-lines format (see AppendJSONLine
// and the format notes above jsonLine) and hands each to fn, in input order.
// When source is not empty it replaces each line's own "source"; when empty,
// the line's "source" is kept. Blank lines are skipped. A line that is not a
// valid announce, or longer than MaxLineBytes, is counted in the stats with
// its line number and skipped. The returned error is only for a read error or
// an error from fn, which stops the import.
func ImportJSONLines(r io.Reader, source string, fn func(Announce) error) (ImportStats, error) {
	return importLines(r, func(line []byte, _ int) (Announce, bool, error) {
		a, err := parseJSONLine(line)
		if err != nil {
			return Announce{}, false, err
		}
		if source != "" {
			a.Source = source
		}
		return a, false, nil
	}, fn)
}

func parseJSONLine(line []byte) (Announce, error) {
	var in jsonLineIn
	if err := json.Unmarshal(line, &in); err != nil {
		return Announce{}, fmt.Errorf("%w: not a JSON announce object: %v", ErrInvalidField, err)
	}
	var a Announce
	var err error
	if in.Time == nil {
		return a, missingField("time")
	}
	if a.At, err = parseTime(*in.Time); err != nil {
		return a, invalidField("time", err)
	}
	if in.InfoHash == nil {
		return a, missingField("info_hash")
	}
	if err := a.InfoHash.FromHexString(*in.InfoHash); err != nil {
		return a, invalidField("info_hash", err)
	}
	if a.PeerID, err = parsePeerID(in.PeerID); err != nil {
		return a, invalidField("peer_id", err)
	}
	if in.IP == nil {
		return a, missingField("ip")
	}
	if a.IP, err = parseIP(*in.IP); err != nil {
		return a, invalidField("ip", err)
	}
	if in.Port == nil {
		return a, missingField("port")
	}
	a.Port = *in.Port
	for _, c := range []struct {
		name string
		in   *int64
		out  *int64
	}{
		{"uploaded", in.Uploaded, &a.Uploaded},
		{"downloaded", in.Downloaded, &a.Downloaded},
		{"left", in.Left, &a.Left},
	} {
		if c.in == nil {
			return a, missingField(c.name)
		}
		if *c.in < 0 {
			return a, invalidField(c.name, fmt.Errorf("negative value %d", *c.in))
		}
		*c.out = *c.in
	}
	if a.Event, err = ParseEvent(in.Event); err != nil {
		return a, invalidField("event", err)
	}
	a.Key, a.Passkey, a.UserAgent, a.Source, a.UserID = in.Key, in.Passkey, in.UserAgent, in.Source, in.UserID
	return a, nil
}

var errPeerIDForm = errors.New("want 40 hex digits or a raw 20-byte id")

// parsePeerID reads the peer_id forms documented above jsonLine.
func parsePeerID(s string) (id [20]byte, err error) {
	switch {
	case s == "":
		return id, nil
	case len(s) == 2*len(id):
		if _, err := hex.Decode(id[:], []byte(s)); err == nil {
			return id, nil
		}
	case len(s) == len(id):
		copy(id[:], s)
		return id, nil
	}
	if utf8.RuneCountInString(s) != len(id) {
		return id, errPeerIDForm
	}
	i := 0
	for _, r := range s {
		if r > 0xff {
			return id, errPeerIDForm
		}
		id[i] = byte(r)
		i++
	}
	return id, nil
}

// parseIP reads an address without zone; IPv4-mapped IPv6 becomes IPv4, as
// the tracker records it.
func parseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	}
	return ip.Unmap(), nil
}

// parseAddrPort reads ip:port without zone, unmapping IPv4-mapped IPv6.
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("address %q has a zone", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
