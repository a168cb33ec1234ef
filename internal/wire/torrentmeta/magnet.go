package torrentmeta

import (
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/types/infohash"
)

// MaxMagnetLength bounds the length of a magnet URI.
const MaxMagnetLength = 64 << 10

// ErrInvalidMagnet is wrapped by every error about a malformed magnet link.
var ErrInvalidMagnet = errors.New("invalid magnet link")

// Magnet is a BEP 9 magnet link.
type Magnet struct {
	// InfoHash names the swarm: the btih (v1) info hash, or for a magnet
	// with only a btmh, its v2 info hash truncated to 20 bytes (BEP 52).
	InfoHash infohash.T
	// InfoHashV2 is the btmh (SHA-256) info hash when V2 is set.
	InfoHashV2 [32]byte
	V2         bool
	Name       string   // dn
	Trackers   []string // tr, in order, without duplicates
	Peers      []string // x.pe, host:port as given
}

func badMagnet(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidMagnet}, args...)...)
}

// ParseMagnet parses a magnet URI. It needs an xt=urn:btih: info hash, in
// hex (40 digits) or base32 (32 letters, either case), or an
// xt=urn:btmh: one (BitTorrent v2: a SHA-256 multihash, "1220" and 64 hex
// digits), or both (a hybrid); several xt are allowed as long as those of
// a kind agree.
//
// It is written on net/url rather than metainfo.ParseMagnetV2Uri because
// that parser rejects lowercase base32 hashes and repeated btih values, and
// silently drops malformed query escapes.
func ParseMagnet(uri string) (*Magnet, error) {
	if len(uri) > MaxMagnetLength {
		return nil, badMagnet("%d bytes, limit %d", len(uri), MaxMagnetLength)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, badMagnet("%w", err)
	}
	if u.Scheme != "magnet" {
		return nil, badMagnet("scheme is %q, not magnet", u.Scheme)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, badMagnet("query: %w", err)
	}
	m := &Magnet{}
	var haveV1, haveV2 bool
	for _, xt := range q["xt"] {
		lower := strings.ToLower(xt)
		switch {
		case strings.HasPrefix(lower, "urn:btih:"):
			ih, err := decodeBTIH(xt[len("urn:btih:"):])
			if err != nil {
				return nil, badMagnet("xt %q: %w", xt, err)
			}
			if haveV1 && ih != m.InfoHash {
				return nil, badMagnet("conflicting btih info hashes %s and %s", m.InfoHash.HexString(), ih.HexString())
			}
			m.InfoHash, haveV1 = ih, true
		case strings.HasPrefix(lower, "urn:btmh:"):
			v2, err := decodeBTMH(lower[len("urn:btmh:"):])
			if err != nil {
				return nil, badMagnet("xt %q: %w", xt, err)
			}
			if haveV2 && v2 != m.InfoHashV2 {
				return nil, badMagnet("conflicting btmh info hashes %x and %x", m.InfoHashV2, v2)
			}
			m.InfoHashV2, haveV2 = v2, true
		}
	}
	m.V2 = haveV2
	if !haveV1 {
		if !haveV2 {
			return nil, badMagnet("no xt=urn:btih: or xt=urn:btmh: info hash")
		}
		copy(m.InfoHash[:], m.InfoHashV2[:])
	}
	if dn := q["dn"]; len(dn) > 0 {
		m.Name = dn[0]
	}
	seen := make(map[string]bool)
	for _, tr := range q["tr"] {
		if tr != "" && !seen[tr] {
			seen[tr] = true
			m.Trackers = append(m.Trackers, tr)
		}
	}
	for _, pe := range q["x.pe"] {
		if err := checkHostPort(pe); err != nil {
			return nil, badMagnet("x.pe %q: %w", pe, err)
		}
		m.Peers = append(m.Peers, pe)
	}
	return m, nil
}

func decodeBTIH(s string) (infohash.T, error) {
	var ih infohash.T
	var b []byte
	var err error
	switch len(s) {
	case 40:
		b, err = hex.DecodeString(s)
	case 32:
		b, err = base32.StdEncoding.DecodeString(strings.ToUpper(s))
	default:
		return ih, fmt.Errorf("info hash has %d characters, want 40 (hex) or 32 (base32)", len(s))
	}
	if err != nil {
		return ih, fmt.Errorf("decode info hash: %w", err)
	}
	if len(b) != len(ih) {
		return ih, fmt.Errorf("info hash decodes to %d bytes, want %d", len(b), len(ih))
	}
	copy(ih[:], b)
	return ih, nil
}

// decodeBTMH reads a btmh value: a SHA-256 multihash (code 0x12, length
// 0x20) in hex, the only one BEP 52 defines.
func decodeBTMH(s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != 68 || !strings.HasPrefix(s, "1220") {
		return h, fmt.Errorf("btmh has %d characters, want 68 (1220 and a hex SHA-256)", len(s))
	}
	b, err := hex.DecodeString(s[4:])
	if err != nil {
		return h, fmt.Errorf("decode btmh: %w", err)
	}
	copy(h[:], b)
	return h, nil
}

// TruncatedV2 is the magnet's truncated v2 info hash when it has both a
// btih and a btmh (a hybrid): its v2 swarm; zero otherwise.
func (m *Magnet) TruncatedV2() infohash.T {
	var ih infohash.T
	if m.V2 {
		copy(ih[:], m.InfoHashV2[:])
	}
	if ih == m.InfoHash {
		return infohash.T{}
	}
	return ih
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// String returns the magnet URI: xt with the hex btih info hash and/or
// the btmh one (BEP 52), then dn, tr and x.pe.
func (m *Magnet) String() string {
	vs := url.Values{}
	for _, tr := range m.Trackers {
		vs.Add("tr", tr)
	}
	if m.Name != "" {
		vs.Add("dn", m.Name)
	}
	if len(m.Peers) > 0 {
		vs["x.pe"] = m.Peers
	}
	var xt []string
	if !m.V2 || m.TruncatedV2() != (infohash.T{}) {
		// Unescaped and first, as Transmission and Deluge expect.
		xt = append(xt, "xt=urn:btih:"+m.InfoHash.HexString())
	}
	if m.V2 {
		xt = append(xt, "xt=urn:btmh:1220"+hex.EncodeToString(m.InfoHashV2[:]))
	}
	q := strings.Join(xt, "&")
	if len(vs) > 0 {
		q += "&" + vs.Encode()
	}
	return "magnet:?" + q
}

// Metainfo is the .torrent file of a torrent whose info dictionary was
// fetched for this magnet (BEP 9): the info bytes, and the magnet's
// trackers as its announce list (BEP 12).
func (m *Magnet) Metainfo(t *Torrent, createdBy string) ([]byte, error) {
	mi := metainfo.MetaInfo{InfoBytes: t.InfoBytes, CreatedBy: createdBy, PieceLayers: t.pieceLayers()}
	if len(m.Trackers) > 0 {
		mi.Announce = m.Trackers[0]
		for _, tr := range m.Trackers {
			mi.AnnounceList = append(mi.AnnounceList, []string{tr})
		}
	}
	return bencode.Marshal(mi)
}
