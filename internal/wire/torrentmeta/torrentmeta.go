// Package torrentmeta loads, validates and builds BitTorrent metainfo
// (.torrent files, raw info dictionaries fetched by magnet): v1 (BEP 3),
// v2 (BEP 52) and hybrids, so the rest of swarmaudit can rely on a checked
// piece layout, info hash and piece check (SHA-1, SHA-256 merkle trees, or
// both).
//
// Decoding is done by github.com/anacrolix/torrent/metainfo and bencode; this
// package adds the validation those leave out (piece counts versus lengths,
// unsafe file paths, size limits) and a flat, read-only view of the result.
package torrentmeta

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/merkle"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/types/infohash"
)

// Limits applied to hostile input.
const (
	// MaxTorrentSize bounds a .torrent file and a raw info dictionary.
	MaxTorrentSize = 32 << 20
	// MaxPieceLength bounds the piece length we accept; whole pieces are
	// held in memory when verified.
	MaxPieceLength = 256 << 20
	// MinBuildPieceLength is the smallest piece length Build accepts.
	MinBuildPieceLength = 1 << 10
)

var (
	// ErrInvalid is wrapped by every error about malformed metainfo.
	ErrInvalid = errors.New("invalid torrent")
	// ErrNoPieceLayers: a v2 file longer than a piece has no piece layer
	// (in a .torrent; or, fetched by magnet, not yet: SetPieceLayer).
	ErrNoPieceLayers = errors.New("v2 piece layer missing")
	// ErrBadPieceLayer: a piece layer given to SetPieceLayer does not hash
	// to its file's pieces root, or was not asked for.
	ErrBadPieceLayer = errors.New("bad v2 piece layer")
	// ErrTooLarge is returned when a file or info dictionary exceeds
	// MaxTorrentSize.
	ErrTooLarge = errors.New("torrent data too large")
	// ErrInfoHashMismatch is matched (errors.Is) by *InfoHashMismatchError.
	ErrInfoHashMismatch = errors.New("info hash mismatch")
)

// InfoHashMismatchError reports info bytes whose SHA-1 is not the expected
// info hash.
type InfoHashMismatchError struct {
	Want, Got infohash.T
}

func (e *InfoHashMismatchError) Error() string {
	return fmt.Sprintf("info hash mismatch: want %s, got %s", e.Want.HexString(), e.Got.HexString())
}

// Is makes errors.Is(err, ErrInfoHashMismatch) true.
func (e *InfoHashMismatchError) Is(target error) bool { return target == ErrInfoHashMismatch }

// File is one file of the torrent in v1 piece layout order.
type File struct {
	// Path is the slash-separated path where a client stores the file,
	// relative to its download directory: the torrent name for a
	// single-file torrent, name/dir/.../file for a multi-file one.
	Path string
	// Length in bytes.
	Length int64
	// Offset of the file's first byte in the concatenated torrent data.
	Offset int64
	// Padding marks a BEP 47 pad file (attr "p"), whose bytes are zeros
	// that clients do not store.
	Padding bool
}

// Torrent is a validated v1, v2 or hybrid torrent. Treat it as read-only.
type Torrent struct {
	// InfoHash names the swarm on the wire, to trackers and the DHT: the
	// v1 info hash (SHA-1 of InfoBytes) of a v1 or hybrid torrent, the v2
	// info hash truncated to 20 bytes (BEP 52) of a v2-only one.
	InfoHash    infohash.T
	Name        string
	PieceLength int64
	TotalLength int64
	NumPieces   int
	Private     bool
	// V2 is true for a torrent with a v2 description (meta version 2):
	// v2-only or hybrid. InfoHashV2 is then SHA-256 of InfoBytes.
	V2         bool
	InfoHashV2 [32]byte
	// Hybrid is true for a v1/v2 hybrid torrent (meta version 2 with v1
	// pieces): its pieces are checked against both descriptions (the v2
	// one only when the piece layers are known: not from a magnet).
	Hybrid bool
	// Trackers are BEP 12 tiers; a lone "announce" becomes one tier.
	// Empty URLs and tiers are dropped.
	Trackers [][]string
	Files    []File
	// InfoBytes is the raw bencoded info dictionary, as hashed.
	InfoBytes []byte
	CreatedBy string
	Comment   string

	pieces []byte    // concatenated 20-byte SHA-1 piece hashes (v1, hybrid)
	v2     []v2Piece // v2 and hybrid, when the piece layers are known
	needs  []PieceLayerNeed
	layers map[string]string // piece layers by pieces root (BEP 52 "piece layers")
}

// InfoHashV2Truncated is the v2 info hash truncated to 20 bytes, which
// names a torrent's v2 swarm on the wire, to trackers and the DHT (BEP 52);
// zero for a v1 torrent.
func (t *Torrent) InfoHashV2Truncated() infohash.T {
	var ih infohash.T
	if t.V2 {
		copy(ih[:], t.InfoHashV2[:])
	}
	return ih
}

// Load reads and parses a .torrent file of at most MaxTorrentSize bytes.
func Load(path string) (*Torrent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load torrent: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load torrent %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load torrent %s: not a regular file", path)
	}
	if fi.Size() > MaxTorrentSize {
		return nil, fmt.Errorf("load torrent %s: %w: %d bytes, limit %d", path, ErrTooLarge, fi.Size(), MaxTorrentSize)
	}
	// The file may grow after Stat; never read past the limit.
	data, err := io.ReadAll(io.LimitReader(f, MaxTorrentSize+1))
	if err != nil {
		return nil, fmt.Errorf("load torrent %s: %w", path, err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load torrent %s: %w", path, err)
	}
	return t, nil
}

// Parse decodes and validates the bencoded contents of a .torrent file.
func Parse(data []byte) (*Torrent, error) {
	if len(data) > MaxTorrentSize {
		return nil, fmt.Errorf("parse torrent: %w: %d bytes, limit %d", ErrTooLarge, len(data), MaxTorrentSize)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("parse torrent: %w: empty input", ErrInvalid)
	}
	if data[0] != 'd' {
		return nil, fmt.Errorf("parse torrent: %w: metainfo is not a bencoded dictionary", ErrInvalid)
	}
	var mi metainfo.MetaInfo
	if err := bencode.Unmarshal(data, &mi); err != nil {
		return nil, fmt.Errorf("parse torrent: %w: decode metainfo: %w", ErrInvalid, err)
	}
	if len(mi.InfoBytes) == 0 {
		return nil, fmt.Errorf("parse torrent: %w: missing info dictionary", ErrInvalid)
	}
	t, err := parseInfo(mi.InfoBytes, mi.PieceLayers, false)
	if err != nil {
		return nil, fmt.Errorf("parse torrent: %w", err)
	}
	t.Trackers = cleanTiers(mi.UpvertedAnnounceList())
	t.CreatedBy = mi.CreatedBy
	t.Comment = mi.Comment
	return t, nil
}

// FromInfoBytes builds a Torrent from a raw info dictionary, such as one
// fetched from peers for a magnet link (BEP 9). want names the swarm: the
// SHA-1 of info (v1, hybrid), or its SHA-256 truncated to 20 bytes (v2,
// BEP 52); else the error is an *InfoHashMismatchError. The result has no
// trackers. A v2-only torrent may lack piece layers (an info dictionary
// does not carry them): MissingLayers lists them, and its pieces in those
// files cannot be checked until SetPieceLayer gives them. A hybrid
// without its layers is checked by its SHA-1 hashes.
func FromInfoBytes(info []byte, want infohash.T) (*Torrent, error) {
	if len(info) > MaxTorrentSize {
		return nil, fmt.Errorf("info %s: %w: %d bytes, limit %d", want.HexString(), ErrTooLarge, len(info), MaxTorrentSize)
	}
	got := infohash.HashBytes(info)
	v2 := sha256.Sum256(info)
	byV2 := infohash.T(v2[:20]) == want
	if got != want && !byV2 {
		return nil, fmt.Errorf("info %s: %w", want.HexString(), &InfoHashMismatchError{Want: want, Got: got})
	}
	t, err := parseInfo(bytes.Clone(info), nil, true)
	if err != nil {
		return nil, fmt.Errorf("info %s: %w", want.HexString(), err)
	}
	switch {
	case byV2 && got != want && !t.V2:
		return nil, fmt.Errorf("info %s: %w: a v1 info dictionary named by its SHA-256", want.HexString(), ErrInvalid)
	case !byV2 && t.V2 && !t.Hybrid: // a v2-only swarm is named by its SHA-256
		return nil, fmt.Errorf("info %s: %w", want.HexString(), &InfoHashMismatchError{Want: want, Got: infohash.T(v2[:20])})
	}
	return t, nil
}

// MissingLayers lists the piece layers the torrent still needs (see
// FromInfoBytes); empty when every piece can be checked.
func (t *Torrent) MissingLayers() []PieceLayerNeed { return slices.Clone(t.needs) }

// SetPieceLayer gives the piece layer of the file whose pieces root is
// root, one of MissingLayers: its pieces' hashes, which must hash to root.
func (t *Torrent) SetPieceLayer(root [sha256.Size]byte, hashes [][sha256.Size]byte) error {
	k := slices.IndexFunc(t.needs, func(n PieceLayerNeed) bool { return n.Root == root })
	if k < 0 {
		return fmt.Errorf("%w: no layer of pieces root %x is missing", ErrBadPieceLayer, root)
	}
	need := t.needs[k]
	if len(hashes) != need.Pieces {
		return fmt.Errorf("%w: %d hashes for a file of %d pieces", ErrBadPieceLayer, len(hashes), need.Pieces)
	}
	if merkle.RootWithPadHash(hashes, metainfo.HashForPiecePad(t.PieceLength)) != root {
		return fmt.Errorf("%w: the layer does not hash to pieces root %x", ErrBadPieceLayer, root)
	}
	for i, h := range hashes {
		p := &t.v2[need.First+i]
		p.hash, p.missing = h, false
	}
	if t.layers == nil {
		t.layers = map[string]string{}
	}
	layer := make([]byte, 0, len(hashes)*sha256.Size)
	for _, h := range hashes {
		layer = append(layer, h[:]...)
	}
	t.layers[string(root[:])] = string(layer)
	t.needs = slices.Delete(t.needs, k, k+1)
	return nil
}

// pieceLayers is the torrent's "piece layers" (BEP 52) for a .torrent
// file: those it was loaded with or was given; nil for v1.
func (t *Torrent) pieceLayers() map[string]string {
	if len(t.layers) == 0 {
		return nil
	}
	return t.layers
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// v1Info is metainfo.Info with the BEP 52 "file tree" left raw. It is
// decoded instead of metainfo.Info because that type's tree decoder
// re-parses every level's subtree: a hostile 30 MiB torrent with a deep
// tree costs seconds and gigabytes. Here the tree is read once
// (parseFileTree).
type v1Info struct {
	PieceLength int64               `bencode:"piece length"`
	Pieces      []byte              `bencode:"pieces,omitempty"`
	Name        string              `bencode:"name"`
	NameUtf8    string              `bencode:"name.utf-8,omitempty"`
	Length      int64               `bencode:"length,omitempty"`
	Private     *bool               `bencode:"private,omitempty"`
	Files       []metainfo.FileInfo `bencode:"files,omitempty"`
	MetaVersion int64               `bencode:"meta version,omitempty"`
	FileTree    bencode.Bytes       `bencode:"file tree,omitempty"`
}

// parseInfo validates a raw info dictionary, with the piece layers of its
// .torrent (nil for one fetched by magnet), and returns the torrent it
// describes, without trackers. The torrent keeps raw as InfoBytes.
func parseInfo(raw []byte, layers map[string]string, fetched bool) (*Torrent, error) {
	if len(raw) == 0 || raw[0] != 'd' {
		return nil, invalid("info is not a bencoded dictionary")
	}
	var info v1Info
	if err := bencode.Unmarshal(raw, &info); err != nil {
		return nil, invalid("decode info: %w", err)
	}
	t := &Torrent{
		InfoHash:  infohash.HashBytes(raw),
		InfoBytes: raw,
	}
	switch info.MetaVersion {
	case 0, 1:
	case 2:
		t.V2, t.InfoHashV2 = true, sha256.Sum256(raw)
		t.Hybrid = len(info.Pieces) > 0
	default:
		return nil, invalid("unsupported meta version %d", info.MetaVersion)
	}
	if info.PieceLength <= 0 {
		return nil, invalid("piece length %d is not positive", info.PieceLength)
	}
	if info.PieceLength > MaxPieceLength {
		return nil, invalid("piece length %d exceeds limit %d", info.PieceLength, MaxPieceLength)
	}
	t.PieceLength = info.PieceLength
	if t.V2 {
		if err := t.parseV2(&info, layers, fetched); err != nil {
			return nil, err
		}
		if !t.Hybrid {
			return t, nil
		}
	}
	if len(info.Pieces) == 0 {
		return nil, invalid("missing pieces")
	}
	if len(info.Pieces)%sha1.Size != 0 {
		return nil, invalid("pieces length %d is not a multiple of 20", len(info.Pieces))
	}
	t.pieces = info.Pieces
	t.NumPieces = len(info.Pieces) / sha1.Size

	if err := checkName("name", info.Name); err != nil {
		return nil, err
	}
	if info.NameUtf8 != "" {
		if err := checkName("name.utf-8", info.NameUtf8); err != nil {
			return nil, err
		}
	}
	t.Name = info.Name
	if info.NameUtf8 != "" {
		t.Name = info.NameUtf8
	}
	if info.Private != nil {
		t.Private = *info.Private
	}

	files, total, err := v1Files(&info, t.Name)
	if err != nil {
		return nil, err
	}
	t.Files, t.TotalLength = files, total
	want := total / t.PieceLength
	if total%t.PieceLength != 0 {
		want++
	}
	if int64(t.NumPieces) != want {
		return nil, invalid("%d piece hashes, but total length %d with piece length %d needs %d",
			t.NumPieces, total, t.PieceLength, want)
	}
	if t.v2 != nil && len(t.v2) != t.NumPieces {
		return nil, invalid("hybrid: %d v1 pieces, %d v2 pieces", t.NumPieces, len(t.v2))
	}
	for i, p := range t.v2 {
		if p.length > t.PieceSize(i) {
			return nil, invalid("hybrid: piece %d holds %d bytes of a file in v2, %d in all in v1", i, p.length, t.PieceSize(i))
		}
	}
	return t, nil
}

// parseV2 reads the v2 description: the file tree and, with the piece
// layers, every piece's hash. A v2-only torrent's name, files and pieces
// come from it; a hybrid's from its v1 description, which parseInfo reads
// after (a hybrid fetched by magnet keeps only that one).
func (t *Torrent) parseV2(info *v1Info, layers map[string]string, fetched bool) error {
	if len(info.FileTree) == 0 {
		return invalid("meta version 2 without a file tree")
	}
	files, err := parseFileTree(info.FileTree)
	if err != nil {
		return err
	}
	// A hybrid without its layers keeps its SHA-1 hashes only; a v2-only
	// torrent fetched by magnet lists the layers it needs.
	pieces, needs, err := v2Layout(files, info.PieceLength, layers, fetched && !t.Hybrid)
	if t.Hybrid && errors.Is(err, ErrNoPieceLayers) {
		return nil
	}
	if err != nil {
		return err
	}
	t.v2, t.needs = pieces, needs
	if len(layers) > 0 {
		t.layers = layers
	}
	if t.Hybrid {
		return nil
	}
	name := info.Name
	if info.NameUtf8 != "" {
		name = info.NameUtf8
	}
	if err := checkName("name", name); err != nil {
		return err
	}
	t.Name = name
	if info.Private != nil {
		t.Private = *info.Private
	}
	copy(t.InfoHash[:], t.InfoHashV2[:])
	t.NumPieces = len(pieces)
	single := len(files) == 1 && len(files[0].path) == 1 && files[0].path[0] == name
	var offset int64
	for _, f := range files {
		p := name + "/" + strings.Join(f.path, "/")
		if single {
			p = name
		}
		t.Files = append(t.Files, File{Path: p, Length: f.length, Offset: offset})
		offset += (f.length + t.PieceLength - 1) / t.PieceLength * t.PieceLength
		if f.length > math.MaxInt64-t.TotalLength {
			return invalid("total length overflows")
		}
		t.TotalLength += f.length
	}
	return nil
}

// v1Files lists the files of the v1 layout (including pad files, which take
// part in v1 piece hashing) and checks their lengths and paths.
func v1Files(info *v1Info, name string) ([]File, int64, error) {
	if len(info.Files) == 0 {
		if info.Length < 0 {
			return nil, 0, invalid("negative length %d", info.Length)
		}
		if info.Length == 0 {
			return nil, 0, invalid("torrent has no data (length 0 and no files)")
		}
		return []File{{Path: name, Length: info.Length}}, info.Length, nil
	}
	if info.Length != 0 {
		return nil, 0, invalid("info has both length and files")
	}
	files := make([]File, 0, len(info.Files))
	// Paths taken by files, and paths that must be directories: a file may
	// not share its path with another file or with a directory.
	taken := make(map[string]bool, len(info.Files))
	dirs := make(map[string]bool)
	var total int64
	for i, fi := range info.Files {
		if fi.Length < 0 {
			return nil, 0, invalid("file %d: negative length %d", i, fi.Length)
		}
		if fi.Length > math.MaxInt64-total {
			return nil, 0, invalid("file %d: total length overflows", i)
		}
		if err := checkPath(i, "path", fi.Path); err != nil {
			return nil, 0, err
		}
		if len(fi.PathUtf8) != 0 {
			if err := checkPath(i, "path.utf-8", fi.PathUtf8); err != nil {
				return nil, 0, err
			}
		}
		comps := fi.BestPath()
		p := name + "/" + strings.Join(comps, "/")
		if taken[p] || dirs[p] {
			return nil, 0, invalid("file %d: path %q is used twice", i, p)
		}
		taken[p] = true
		for j := range len(comps) - 1 {
			d := name + "/" + strings.Join(comps[:j+1], "/")
			if taken[d] {
				return nil, 0, invalid("file %d: path %q is both a file and a directory", i, d)
			}
			dirs[d] = true
		}
		files = append(files, File{
			Path:    p,
			Length:  fi.Length,
			Offset:  total,
			Padding: strings.Contains(fi.Attr, "p"),
		})
		total += fi.Length
	}
	if total == 0 {
		return nil, 0, invalid("torrent has no data (all %d files are empty)", len(files))
	}
	return files, total, nil
}

// checkName rejects torrent names a client could not use as a single path
// component.
func checkName(field, s string) error {
	if s == "" {
		return invalid("%s is empty", field)
	}
	if err := checkComponent(s); err != nil {
		return invalid("%s %q: %s", field, s, err)
	}
	return nil
}

func checkPath(i int, field string, comps []string) error {
	if len(comps) == 0 {
		return invalid("file %d: empty %s", i, field)
	}
	for _, c := range comps {
		if err := checkComponent(c); err != nil {
			return invalid("file %d: %s %q: %s", i, field, strings.Join(comps, "/"), err)
		}
	}
	return nil
}

// checkComponent returns why s is not a safe single path component, or nil.
func checkComponent(s string) error {
	switch {
	case s == "":
		return errors.New("empty path component")
	case s == "." || s == "..":
		return errors.New("path traversal component")
	case strings.ContainsAny(s, "/\\"):
		return errors.New("path separator inside a component")
	case strings.IndexByte(s, 0) >= 0:
		return errors.New("NUL byte in path")
	}
	return nil
}

// cleanTiers copies tiers without empty URLs or empty tiers.
func cleanTiers(al metainfo.AnnounceList) [][]string {
	var out [][]string
	for _, tier := range al {
		var t []string
		for _, u := range tier {
			if u != "" {
				t = append(t, u)
			}
		}
		if len(t) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// PieceSize is the length of piece i (the last piece may be shorter, and
// in a v2-only torrent the last piece of each file), or 0 if i is out of
// range.
func (t *Torrent) PieceSize(i int) int64 {
	if i < 0 || i >= t.NumPieces {
		return 0
	}
	if t.v2Only() {
		return t.v2[i].length
	}
	if i == t.NumPieces-1 {
		return t.TotalLength - int64(i)*t.PieceLength
	}
	return t.PieceLength
}

// PieceSizes lists each piece's size when they are not all PieceLength
// but the last (a v2-only torrent); nil otherwise.
func (t *Torrent) PieceSizes() []int64 {
	if !t.v2Only() {
		return nil
	}
	sizes := make([]int64, t.NumPieces)
	for i := range sizes {
		sizes[i] = t.PieceSize(i)
	}
	return sizes
}

// PieceHash is the SHA-1 of piece i, or the zero array if i is out of
// range or the torrent is v2-only.
func (t *Torrent) PieceHash(i int) [20]byte {
	var h [20]byte
	if i < 0 || i >= t.NumPieces || t.pieces == nil {
		return h
	}
	copy(h[:], t.pieces[i*sha1.Size:])
	return h
}

// VerifyPiece reports whether data is exactly piece i: against its SHA-1
// (v1, hybrid) and its SHA-256 merkle root (v2, and a hybrid whose piece
// layers are known), every hash the torrent has for it.
func (t *Torrent) VerifyPiece(i int, data []byte) bool {
	if i < 0 || i >= t.NumPieces || int64(len(data)) != t.PieceSize(i) {
		return false
	}
	if t.pieces != nil && sha1.Sum(data) != t.PieceHash(i) {
		return false
	}
	return t.v2 == nil || verifyV2(t.v2[i], data)
}

// v2Only reports whether the torrent has only a v2 description.
func (t *Torrent) v2Only() bool { return t.pieces == nil && t.v2 != nil }

// PieceLayerHash is piece i's entry in its file's piece layer (or the
// file's pieces root for a one-piece file), zero when the torrent has no
// v2 description or the layer is missing.
func (t *Torrent) PieceLayerHash(i int) [sha256.Size]byte {
	if i < 0 || i >= len(t.v2) || t.v2[i].missing {
		return [sha256.Size]byte{}
	}
	return t.v2[i].hash
}

// PieceHashes names the hashes VerifyPiece checks: "SHA-1", "SHA-256" or
// "SHA-1+SHA-256".
func (t *Torrent) PieceHashes() string {
	switch {
	case t.pieces != nil && t.v2 != nil:
		return "SHA-1+SHA-256"
	case t.v2 != nil:
		return "SHA-256"
	}
	return "SHA-1"
}

// Magnet returns a magnet link for the torrent with its name and trackers.
func (t *Torrent) Magnet() *Magnet {
	m := &Magnet{InfoHash: t.InfoHash, Name: t.Name, InfoHashV2: t.InfoHashV2, V2: t.V2}
	m.Trackers = metainfo.AnnounceList(t.Trackers).DistinctValues()
	return m
}
