// Package metadata fetches a torrent's info dictionary from peers with the
// ut_metadata extension (BEP 9), for magnet links. It does no I/O: the peer
// connection feeds it extension message payloads and sends the request
// payloads it produces; the Fetcher checks every reply against the size the
// peer announced and the assembled bytes against the info hash.
//
// Messages are bencoded with github.com/anacrolix/torrent/bencode. The
// library's peer_protocol.ExtendedMetadataRequestMsg is not used because it
// always encodes total_size (also in requests) and offers no validation of
// the data part; the piece bookkeeping is this package's job.
package metadata

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/types/infohash"
)

// ExtensionName is the name of the extension in the BEP 10 handshake "m"
// dictionary; the handshake's "metadata_size" gives the total size.
const ExtensionName = "ut_metadata"

// PieceSize is the metadata piece size fixed by BEP 9.
const PieceSize = 16 << 10

// MaxSize is the largest metadata_size accepted. Real info dictionaries are
// well below it (a 1 TiB torrent with 16 MiB pieces has 1.2 MiB of hashes).
const MaxSize = 16 << 20

// MsgType is the BEP 9 msg_type.
type MsgType int

// The BEP 9 message types.
const (
	Request MsgType = 0
	Data    MsgType = 1
	Reject  MsgType = 2
)

func (t MsgType) String() string {
	switch t {
	case Request:
		return "request"
	case Data:
		return "data"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("msg_type %d", int(t))
}

// Errors, checkable with errors.Is.
var (
	ErrMalformed    = errors.New("malformed ut_metadata message")
	ErrSize         = errors.New("bad metadata size")
	ErrPieceRange   = errors.New("metadata piece out of range")
	ErrPieceLength  = errors.New("metadata piece has wrong length")
	ErrDuplicate    = errors.New("duplicate metadata piece")
	ErrTotalSize    = errors.New("metadata total_size differs from the handshake")
	ErrRejected     = errors.New("peer rejected metadata request")
	ErrHashMismatch = errors.New("metadata does not match info hash")
	ErrIncomplete   = errors.New("metadata incomplete")
)

// Message is a decoded ut_metadata message.
type Message struct {
	Type  MsgType
	Piece int
	// TotalSize is the data message's total_size (-1 if absent).
	TotalSize int64
	// Data is the raw piece following the dictionary of a data message; it
	// aliases the payload given to Parse.
	Data []byte
}

type wireMsg struct {
	MsgType   *int64 `bencode:"msg_type"`
	Piece     *int64 `bencode:"piece"`
	TotalSize *int64 `bencode:"total_size"`
}

// Parse decodes a ut_metadata payload (after the extended message id): a
// bencoded dictionary, followed by the piece bytes for data messages. Bytes
// after the dictionary of a request or reject are an error.
func Parse(payload []byte) (Message, error) {
	if len(payload) == 0 || payload[0] != 'd' {
		return Message{}, fmt.Errorf("%w: not a dictionary", ErrMalformed)
	}
	var w wireMsg
	var rest []byte
	err := bencode.Unmarshal(payload, &w)
	var trailing bencode.ErrUnusedTrailingBytes
	if errors.As(err, &trailing) {
		rest = payload[len(payload)-trailing.NumUnusedBytes:]
	} else if err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if w.MsgType == nil || w.Piece == nil {
		return Message{}, fmt.Errorf("%w: msg_type or piece missing", ErrMalformed)
	}
	m := Message{Type: MsgType(*w.MsgType), TotalSize: -1}
	if *w.Piece < 0 || *w.Piece > MaxSize/PieceSize {
		return Message{}, fmt.Errorf("%w: piece %d", ErrPieceRange, *w.Piece)
	}
	m.Piece = int(*w.Piece)
	switch m.Type {
	case Data:
		if w.TotalSize == nil {
			return Message{}, fmt.Errorf("%w: data without total_size", ErrMalformed)
		}
		m.TotalSize = *w.TotalSize
		m.Data = rest
	case Request, Reject:
		if len(rest) != 0 {
			return Message{}, fmt.Errorf("%w: %d bytes after %s", ErrMalformed, len(rest), m.Type)
		}
	default:
		return Message{}, fmt.Errorf("%w: unknown %s", ErrMalformed, m.Type)
	}
	return m, nil
}

// RequestPayload returns the payload of a request for piece.
func RequestPayload(piece int) []byte {
	return fmt.Appendf(nil, "d8:msg_typei%de5:piecei%dee", Request, piece)
}

// RejectPayload returns the payload rejecting a peer's request for piece,
// the answer of a client that does not serve metadata.
func RejectPayload(piece int) []byte {
	return fmt.Appendf(nil, "d8:msg_typei%de5:piecei%dee", Reject, piece)
}

// DataPayload returns the payload of a data message for one piece of the
// whole metadata (used to serve metadata, and by tests).
func DataPayload(piece int, metadata []byte) []byte {
	start := piece * PieceSize
	end := min(start+PieceSize, len(metadata))
	if start < 0 || start > end {
		start, end = 0, 0
	}
	b := fmt.Appendf(nil, "d8:msg_typei%de5:piecei%de10:total_sizei%dee", Data, piece, len(metadata))
	return append(b, metadata[start:end]...)
}

// Fetcher assembles the metadata of one info hash from data messages. It is
// not safe for concurrent use; one peer connection drives it, or the caller
// serialises access.
type Fetcher struct {
	infoHash infohash.T
	size     int
	buf      []byte
	have     []bool
	missing  int
}

// NewFetcher starts assembling metadata of the size a peer announced in
// its extension handshake ("metadata_size").
func NewFetcher(ih infohash.T, metadataSize int64) (*Fetcher, error) {
	if metadataSize <= 0 || metadataSize > MaxSize {
		return nil, fmt.Errorf("%w: %d (want 1..%d)", ErrSize, metadataSize, MaxSize)
	}
	n := int((metadataSize + PieceSize - 1) / PieceSize)
	return &Fetcher{
		infoHash: ih,
		size:     int(metadataSize),
		buf:      make([]byte, metadataSize),
		have:     make([]bool, n),
		missing:  n,
	}, nil
}

// Size returns the metadata size.
func (f *Fetcher) Size() int { return f.size }

// NumPieces returns the number of 16 KiB pieces.
func (f *Fetcher) NumPieces() int { return len(f.have) }

// Missing returns the pieces not yet received, in order.
func (f *Fetcher) Missing() []int {
	out := make([]int, 0, f.missing)
	for i, h := range f.have {
		if !h {
			out = append(out, i)
		}
	}
	return out
}

// Requests returns one request payload per missing piece.
func (f *Fetcher) Requests() [][]byte {
	miss := f.Missing()
	out := make([][]byte, len(miss))
	for i, p := range miss {
		out[i] = RequestPayload(p)
	}
	return out
}

// Complete reports whether every piece has arrived.
func (f *Fetcher) Complete() bool { return f.missing == 0 }

func (f *Fetcher) pieceLen(i int) int {
	if i == len(f.have)-1 {
		return f.size - i*PieceSize
	}
	return PieceSize
}

// Handle takes one ut_metadata payload from the peer. It returns the
// decoded message (a Request from the peer is returned for the caller to
// answer, e.g. with RejectPayload). A reject gives ErrRejected; a data
// message with a wrong total_size, out-of-range piece, wrong length or a
// piece already held gives the matching error and changes nothing.
func (f *Fetcher) Handle(payload []byte) (Message, error) {
	m, err := Parse(payload)
	if err != nil {
		return Message{}, err
	}
	switch m.Type {
	case Request:
		return m, nil
	case Reject:
		return m, fmt.Errorf("%w: piece %d", ErrRejected, m.Piece)
	}
	if m.TotalSize != int64(f.size) {
		return m, fmt.Errorf("%w: %d, handshake said %d", ErrTotalSize, m.TotalSize, f.size)
	}
	if m.Piece >= len(f.have) {
		return m, fmt.Errorf("%w: piece %d of %d", ErrPieceRange, m.Piece, len(f.have))
	}
	if want := f.pieceLen(m.Piece); len(m.Data) != want {
		return m, fmt.Errorf("%w: piece %d has %d bytes, want %d", ErrPieceLength, m.Piece, len(m.Data), want)
	}
	if f.have[m.Piece] {
		return m, fmt.Errorf("%w: piece %d", ErrDuplicate, m.Piece)
	}
	copy(f.buf[m.Piece*PieceSize:], m.Data)
	f.have[m.Piece] = true
	f.missing--
	return m, nil
}

// InfoBytes returns the assembled info dictionary once complete and its
// SHA-1 equals the info hash, or (a v2 swarm, BEP 52) its SHA-256
// truncated to 20 bytes does. On a mismatch every piece is discarded (one
// of the peers lied; which one is unknown) and ErrHashMismatch is returned,
// so the fetch can start again from other peers. Pass the result to
// torrentmeta.FromInfoBytes.
func (f *Fetcher) InfoBytes() ([]byte, error) {
	if f.missing != 0 {
		return nil, fmt.Errorf("%w: %d of %d pieces missing", ErrIncomplete, f.missing, len(f.have))
	}
	sum := sha1.Sum(f.buf)
	v2 := sha256.Sum256(f.buf)
	if !bytes.Equal(sum[:], f.infoHash[:]) && !bytes.Equal(v2[:20], f.infoHash[:]) {
		for i := range f.have {
			f.have[i] = false
		}
		f.missing = len(f.have)
		return nil, fmt.Errorf("%w: got %x, want %x", ErrHashMismatch, sum, f.infoHash)
	}
	return append([]byte(nil), f.buf...), nil
}
