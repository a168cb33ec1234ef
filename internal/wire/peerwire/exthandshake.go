package peerwire

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// ExtHandshake is what a peer told us in its BEP 10 extension handshake.
// Fields a peer omits, or sends with the wrong type, stay zero: peers in the
// wild send all sorts, and one odd field must not cost us the others.
type ExtHandshake struct {
	Client       string            `json:"v,omitempty"`
	Reqq         int               `json:"reqq,omitempty"`
	Extensions   map[string]int    `json:"m,omitempty"`
	YourIP       netip.Addr        `json:"yourip,omitzero"`
	UploadOnly   bool              `json:"upload_only,omitempty"`
	Encryption   bool              `json:"e,omitempty"`
	MetadataSize int64             `json:"metadata_size,omitempty"`
	ListenPort   int               `json:"p,omitempty"`
	Unknown      []string          `json:"unknown_keys,omitempty"`
	raw          map[string][]byte // undecoded values, for extensions we add later
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
// the extended message id 0).
func ParseExtHandshake(payload []byte) (ExtHandshake, error) {
	if len(payload) > maxExtHandshake {
		return ExtHandshake{}, fmt.Errorf("extension handshake of %d bytes exceeds %d", len(payload), maxExtHandshake)
	}
	var top map[string]bencode.Bytes
	if err := bencode.Unmarshal(payload, &top); err != nil {
		return ExtHandshake{}, fmt.Errorf("extension handshake: %w", err)
	}
	var h ExtHandshake
	h.raw = make(map[string][]byte, len(top))
	for k, v := range top {
		h.raw[k] = v
		switch k {
		case "v":
			var s string
			if bencode.Unmarshal(v, &s) == nil && len(s) <= 256 {
				h.Client = s
			}
		case "reqq":
			h.Reqq = clampInt(decodeInt(v), 0, 1<<16)
		case "m":
			var m map[string]bencode.Bytes
			if bencode.Unmarshal(v, &m) == nil {
				h.Extensions = make(map[string]int, len(m))
				for name, id := range m {
					if n := decodeInt(id); n >= 0 && n <= 255 && len(name) <= 64 {
						h.Extensions[name] = int(n)
					}
				}
			}
		case "yourip":
			var b []byte
			if bencode.Unmarshal(v, &b) == nil {
				if a, ok := netip.AddrFromSlice(b); ok && (len(b) == 4 || len(b) == 16) {
					h.YourIP = a.Unmap()
				}
			}
		case "upload_only":
			h.UploadOnly = decodeInt(v) != 0
		case "e":
			h.Encryption = decodeInt(v) != 0
		case "metadata_size":
			h.MetadataSize = max(decodeInt(v), 0)
		case "p":
			h.ListenPort = clampInt(decodeInt(v), 0, 65535)
		default:
			if len(h.Unknown) < 32 && len(k) <= 64 {
				h.Unknown = append(h.Unknown, k)
			}
		}
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

// Raw returns the undecoded bencoded value of key k.
func (h ExtHandshake) Raw(k string) []byte { return h.raw[k] }

// decodeInt reads a bencoded integer, or -1 if v is not one.
func decodeInt(v []byte) int64 {
	var n int64
	if err := bencode.Unmarshal(v, &n); err != nil {
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
