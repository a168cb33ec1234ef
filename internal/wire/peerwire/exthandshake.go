package peerwire

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// ExtHandshake is what a peer told us in its BEP 10 extension handshake.
// Fields a peer omits, or sends with the wrong type, stay zero: peers in the
// wild send all sorts, and one odd field must not cost us the others.
type ExtHandshake struct {
	Client       string         `json:"v,omitempty"`
	Reqq         int            `json:"reqq,omitempty"`
	Extensions   map[string]int `json:"m,omitempty"`
	YourIP       netip.Addr     `json:"yourip,omitzero"`
	UploadOnly   bool           `json:"upload_only,omitempty"`
	Encryption   bool           `json:"e,omitempty"`
	MetadataSize int64          `json:"metadata_size,omitempty"`
	ListenPort   int            `json:"p,omitempty"`
	Unknown      []string       `json:"unknown_keys,omitempty"`
}

// Extension message names we speak.
const (
	ExtPEX      = "ut_pex"
	ExtMetadata = "ut_metadata"
)

// Our local extension ids (what we put in our "m" dictionary).
const (
	LocalPEXID      = 1
	LocalMetadataID = 2
)

// maxExtHandshake bounds the handshake payload we parse.
const maxExtHandshake = 64 << 10

// ParseExtHandshake decodes an extension handshake payload (the bytes after
// the extended message id 0): a bencoded dictionary, read by a scanner of
// our own that allocates only for the fields it keeps (every probe parses
// one, and a reflective decoder cost kilobytes of garbage each).
func ParseExtHandshake(payload []byte) (ExtHandshake, error) {
	if len(payload) > maxExtHandshake {
		return ExtHandshake{}, fmt.Errorf("extension handshake of %d bytes exceeds %d", len(payload), maxExtHandshake)
	}
	var h ExtHandshake
	sc := scanner{b: payload}
	err := sc.dict(func(k, v []byte) error {
		switch string(k) {
		case "v":
			if s, ok := bString(v); ok && len(s) <= 256 {
				h.Client = string(s)
			}
		case "reqq":
			h.Reqq = clampInt(decodeInt(v), 0, 1<<16)
		case "m":
			if len(v) > 0 && v[0] == 'd' {
				h.Extensions = map[string]int{}
				inner := scanner{b: v}
				_ = inner.dict(func(name, id []byte) error {
					if n := decodeInt(id); n >= 0 && n <= 255 && len(name) <= 64 && len(h.Extensions) < 64 {
						h.Extensions[string(name)] = int(n)
					}
					return nil
				})
			}
		case "yourip":
			if b, ok := bString(v); ok {
				if a, ok := netip.AddrFromSlice(b); ok && (len(b) == 4 || len(b) == 16) {
					h.YourIP = a.Unmap()
				}
			}
		case "upload_only":
			h.UploadOnly = decodeInt(v) > 0
		case "e":
			h.Encryption = decodeInt(v) > 0
		case "metadata_size":
			h.MetadataSize = max(decodeInt(v), 0)
		case "p":
			h.ListenPort = clampInt(decodeInt(v), 0, 65535)
		default:
			if len(h.Unknown) < 32 && len(k) <= 64 {
				h.Unknown = append(h.Unknown, string(k))
			}
		}
		return nil
	})
	if err != nil {
		return ExtHandshake{}, fmt.Errorf("extension handshake: %w", err)
	}
	if sc.pos != len(payload) {
		return ExtHandshake{}, fmt.Errorf("extension handshake: %d bytes after the dictionary", len(payload)-sc.pos)
	}
	sort.Strings(h.Unknown)
	return h, nil
}

// ExtensionID returns the id the peer wants for extension name, and whether
// it supports it (id 0 means disabled, BEP 10).
func (h ExtHandshake) ExtensionID(name string) (pp.ExtensionNumber, bool) {
	id, ok := h.Extensions[name]
	if !ok || id == 0 {
		return 0, false
	}
	return pp.ExtensionNumber(id), true
}

// maxBencodeDepth bounds the nesting the scanner follows.
const maxBencodeDepth = 32

// scanner walks bencoded data without decoding what it skips.
type scanner struct {
	b     []byte
	pos   int
	depth int
}

var errBencode = errors.New("malformed bencode")

// dict reads a dictionary at pos and calls f with each key and the raw
// bytes of its value.
func (s *scanner) dict(f func(k, v []byte) error) error {
	if s.pos >= len(s.b) || s.b[s.pos] != 'd' {
		return fmt.Errorf("%w: not a dictionary", errBencode)
	}
	s.pos++
	for {
		if s.pos >= len(s.b) {
			return fmt.Errorf("%w: unterminated dictionary", errBencode)
		}
		if s.b[s.pos] == 'e' {
			s.pos++
			return nil
		}
		k, err := s.str()
		if err != nil {
			return err
		}
		start := s.pos
		if err := s.skip(); err != nil {
			return err
		}
		if err := f(k, s.b[start:s.pos]); err != nil {
			return err
		}
	}
}

// str reads a byte string ("len:bytes").
func (s *scanner) str() ([]byte, error) {
	colon := bytes.IndexByte(s.b[s.pos:min(len(s.b), s.pos+12)], ':')
	if colon <= 0 {
		return nil, fmt.Errorf("%w: bad string length", errBencode)
	}
	n, err := strconv.ParseUint(string(s.b[s.pos:s.pos+colon]), 10, 31)
	if err != nil {
		return nil, fmt.Errorf("%w: bad string length", errBencode)
	}
	start := s.pos + colon + 1
	if uint64(len(s.b)-start) < n {
		return nil, fmt.Errorf("%w: string past the end", errBencode)
	}
	s.pos = start + int(n)
	return s.b[start:s.pos], nil
}

// skip moves past one value of any type.
func (s *scanner) skip() error {
	if s.pos >= len(s.b) {
		return fmt.Errorf("%w: value missing", errBencode)
	}
	switch c := s.b[s.pos]; {
	case c == 'i':
		end := bytes.IndexByte(s.b[s.pos:], 'e')
		if end < 2 {
			return fmt.Errorf("%w: bad integer", errBencode)
		}
		if _, err := strconv.ParseInt(string(s.b[s.pos+1:s.pos+end]), 10, 64); err != nil {
			return fmt.Errorf("%w: bad integer", errBencode)
		}
		s.pos += end + 1
		return nil
	case c >= '0' && c <= '9':
		_, err := s.str()
		return err
	case c == 'l' || c == 'd':
		if s.depth >= maxBencodeDepth {
			return fmt.Errorf("%w: nested deeper than %d", errBencode, maxBencodeDepth)
		}
		s.depth++
		defer func() { s.depth-- }()
		s.pos++
		for {
			if s.pos >= len(s.b) {
				return fmt.Errorf("%w: unterminated list or dictionary", errBencode)
			}
			if s.b[s.pos] == 'e' {
				s.pos++
				return nil
			}
			if c == 'd' {
				if _, err := s.str(); err != nil {
					return err
				}
			}
			if err := s.skip(); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: unexpected byte %q", errBencode, c)
	}
}

// bString reads v as a whole byte string.
func bString(v []byte) ([]byte, bool) {
	s := scanner{b: v}
	b, err := s.str()
	return b, err == nil && s.pos == len(v)
}

// decodeInt reads v as a whole bencoded integer, or -1 if it is not one.
func decodeInt(v []byte) int64 {
	if len(v) < 3 || v[0] != 'i' || v[len(v)-1] != 'e' {
		return -1
	}
	n, err := strconv.ParseInt(string(v[1:len(v)-1]), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func clampInt(v int64, lo, hi int) int {
	if v < int64(lo) {
		return lo
	}
	if v > int64(hi) {
		return hi
	}
	return int(v)
}

// OurExtHandshake builds the extension handshake we send: the extensions we
// read (PEX, metadata), our client name and request queue, and, when we know
// it, the size of the info dictionary we can serve. For a private torrent
// (BEP 27) it offers no PEX.
func OurExtHandshake(client string, reqq int, metadataSize int, private bool) pp.Message {
	key := extHelloKey{client, reqq, metadataSize, private}
	if payload, ok := extHellos.Load(key); ok {
		return pp.Message{Type: pp.Extended, ExtendedID: pp.HandshakeExtendedID, ExtendedPayload: payload.([]byte)}
	}
	payload := marshalExtHello(key)
	if n := extHellosLen.Add(1); n <= maxCachedExtHellos {
		extHellos.Store(key, payload)
	}
	return pp.Message{Type: pp.Extended, ExtendedID: pp.HandshakeExtendedID, ExtendedPayload: payload}
}

// The encoded extension handshakes, by their parameters: a process sends
// the same few to every peer, and encoding one costs more than the rest of
// the hello. Callers must not modify ExtendedPayload.
var (
	extHellos    sync.Map // extHelloKey → []byte
	extHellosLen atomic.Int64
)

const maxCachedExtHellos = 64

type extHelloKey struct {
	client       string
	reqq         int
	metadataSize int
	private      bool
}

func marshalExtHello(k extHelloKey) []byte {
	client, reqq, metadataSize, private := k.client, k.reqq, k.metadataSize, k.private
	m := map[string]int{ExtPEX: LocalPEXID, ExtMetadata: LocalMetadataID}
	if private {
		delete(m, ExtPEX)
	}
	d := map[string]any{
		"m":    m,
		"v":    client,
		"reqq": reqq,
	}
	if metadataSize > 0 {
		d["metadata_size"] = metadataSize
	}
	payload, err := bencode.Marshal(d)
	if err != nil {
		// Marshalling a map of strings and ints cannot fail.
		panic(err)
	}
	return payload
}
