package torrentmeta

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"github.com/anacrolix/torrent/merkle"
	"github.com/anacrolix/torrent/metainfo"
)

// BitTorrent v2 (BEP 52). A v2 info dictionary describes its files in a
// "file tree", each file with the root of a SHA-256 merkle tree over its
// 16 KiB blocks ("pieces root"); every file starts on a piece boundary, so
// a piece never spans two files. The .torrent carries, outside the info
// dictionary, each larger-than-a-piece file's "piece layer": the roots of
// its piece-sized subtrees, which is what a piece is checked against. A
// hybrid torrent has both a v1 and a v2 description of the same pieces
// (its v1 file list pads each file to a piece boundary).

const (
	// maxTreeDepth bounds how deep a file tree nests.
	maxTreeDepth = 64 // as anacrolix/bencode allows in the whole .torrent
	// v2BlockSize is the leaf size of the merkle trees.
	v2BlockSize = merkle.BlockSize
)

// v2Piece is what checking one v2 piece needs.
type v2Piece struct {
	hash [sha256.Size]byte // its piece-layer entry, or the file's pieces root
	// length is the file's bytes in the piece (a hybrid's v1 piece may
	// add padding after them).
	length int64
	// leaves is the number of 16 KiB leaves of the subtree whose root is
	// hash: a whole piece's for a file longer than a piece, else the
	// file's block count rounded up to a power of two.
	leaves int
	// missing: hash is not known yet (its file's piece layer is to be
	// fetched, see PieceLayerNeed); the piece cannot be checked.
	missing bool
}

// PieceLayerNeed is a piece layer a v2 torrent fetched by magnet still
// needs before its pieces can be checked: the layer of the file whose
// pieces root is Root, Pieces hashes for its pieces from First on. A
// peer gives it in answer to BEP 52 hash requests (SetPieceLayer).
type PieceLayerNeed struct {
	Root   [sha256.Size]byte
	Pieces int
	First  int
}

// v2File is one file of a v2 file tree, in tree order.
type v2File struct {
	path   []string
	length int64
	root   []byte // nil for an empty file
}

// parseFileTree reads a BEP 52 file tree (raw bencode) in tree order. It
// reads each byte once, so a hostile tree costs time and memory linear in
// its size.
func parseFileTree(raw []byte) ([]v2File, error) {
	d := &bdec{b: raw}
	var files []v2File
	if err := d.tree(nil, 0, &files); err != nil {
		return nil, err
	}
	if d.i != len(raw) {
		return nil, invalid("file tree: trailing bytes")
	}
	if len(files) == 0 {
		return nil, invalid("file tree has no files")
	}
	return files, nil
}

// v2Layout checks a v2 description against the piece length and the piece
// layers and lists its pieces. A file longer than a piece whose layer is
// not in layers is an error, or with fetched (an info dictionary fetched
// by magnet) a need: its pieces are listed as missing.
func v2Layout(files []v2File, pieceLength int64, layers map[string]string, fetched bool) ([]v2Piece, []PieceLayerNeed, error) {
	if pieceLength < v2BlockSize || bits.OnesCount64(uint64(pieceLength)) != 1 {
		return nil, nil, invalid("v2 piece length %d is not a power of two of at least 16 KiB", pieceLength)
	}
	pad := metainfo.HashForPiecePad(pieceLength)
	var pieces []v2Piece
	var needs []PieceLayerNeed
	for _, f := range files {
		if f.length == 0 {
			continue
		}
		if len(f.root) != sha256.Size {
			return nil, nil, invalid("file %q: pieces root of %d bytes", strings.Join(f.path, "/"), len(f.root))
		}
		n := (f.length + pieceLength - 1) / pieceLength
		if int64(len(pieces))+n > math.MaxInt32 {
			return nil, nil, invalid("too many pieces")
		}
		if n == 1 {
			p := v2Piece{length: f.length, leaves: 1 << bits.Len64(uint64((f.length+v2BlockSize-1)/v2BlockSize-1))}
			copy(p.hash[:], f.root)
			pieces = append(pieces, p)
			continue
		}
		layer, ok := layers[string(f.root)]
		if !ok && fetched {
			needs = append(needs, PieceLayerNeed{Root: [sha256.Size]byte(f.root), Pieces: int(n), First: len(pieces)})
			for i := range n {
				pieces = append(pieces, v2Piece{length: min(pieceLength, f.length-i*pieceLength), leaves: int(pieceLength / v2BlockSize), missing: true})
			}
			continue
		}
		if !ok {
			return nil, nil, fmt.Errorf("%w: %w: file %q has no piece layer", ErrInvalid, ErrNoPieceLayers, strings.Join(f.path, "/"))
		}
		if int64(len(layer)) != n*sha256.Size {
			return nil, nil, invalid("file %q: piece layer of %d bytes for %d pieces", strings.Join(f.path, "/"), len(layer), n)
		}
		hashes, _ := merkle.CompactLayerToSliceHashes(layer)
		if merkle.RootWithPadHash(hashes, pad) != [sha256.Size]byte(f.root) {
			return nil, nil, invalid("file %q: its piece layer does not hash to its pieces root", strings.Join(f.path, "/"))
		}
		for i, h := range hashes {
			pieces = append(pieces, v2Piece{hash: h, length: min(pieceLength, f.length-int64(i)*pieceLength), leaves: int(pieceLength / v2BlockSize)})
		}
	}
	if len(pieces) == 0 {
		return nil, nil, invalid("torrent has no data (all %d files are empty)", len(files))
	}
	return pieces, needs, nil
}

// verifyV2 reports whether data starts with the file bytes of piece p
// (SHA-256 merkle root of its 16 KiB blocks, padded with zero leaves).
func verifyV2(p v2Piece, data []byte) bool {
	if p.missing || int64(len(data)) < p.length {
		return false
	}
	data = data[:p.length]
	leaves := make([][sha256.Size]byte, p.leaves)
	for i := 0; len(data) > 0; i++ {
		if i >= len(leaves) {
			return false
		}
		n := min(len(data), v2BlockSize)
		leaves[i] = sha256.Sum256(data[:n])
		data = data[n:]
	}
	return merkle.Root(leaves) == p.hash
}

// bdec reads bencode from b, one value at a time.
type bdec struct {
	b []byte
	i int
}

func (d *bdec) errf(format string, args ...any) error {
	return invalid("file tree at byte %d: %s", d.i, fmt.Sprintf(format, args...))
}

func (d *bdec) peek() (byte, error) {
	if d.i >= len(d.b) {
		return 0, d.errf("truncated")
	}
	return d.b[d.i], nil
}

// str reads a byte string.
func (d *bdec) str() ([]byte, error) {
	j := bytes.IndexByte(d.b[d.i:], ':')
	if j <= 0 || j > 10 {
		return nil, d.errf("bad string length")
	}
	n, err := strconv.Atoi(string(d.b[d.i : d.i+j]))
	if err != nil || n < 0 || n > len(d.b)-d.i-j-1 {
		return nil, d.errf("bad string length")
	}
	s := d.b[d.i+j+1 : d.i+j+1+n]
	d.i += j + 1 + n
	return s, nil
}

// int reads an integer.
func (d *bdec) int() (int64, error) {
	if c, err := d.peek(); err != nil || c != 'i' {
		return 0, d.errf("want an integer")
	}
	j := bytes.IndexByte(d.b[d.i:], 'e')
	if j < 2 || j > 21 {
		return 0, d.errf("bad integer")
	}
	v, err := strconv.ParseInt(string(d.b[d.i+1:d.i+j]), 10, 64)
	if err != nil {
		return 0, d.errf("bad integer")
	}
	d.i += j + 1
	return v, nil
}

// skip steps over one value of any kind, nested at most depth levels.
func (d *bdec) skip(depth int) error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	switch {
	case c == 'i':
		_, err := d.int()
		return err
	case c >= '0' && c <= '9':
		_, err := d.str()
		return err
	case c == 'l' || c == 'd':
		if depth >= maxTreeDepth {
			return d.errf("nested deeper than %d", maxTreeDepth)
		}
		d.i++
		for {
			c, err := d.peek()
			if err != nil {
				return err
			}
			if c == 'e' {
				d.i++
				return nil
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
		}
	}
	return d.errf("unexpected byte %q", c)
}

// tree reads a directory of the file tree at path (a dictionary whose
// keys are path components, or "" for a file node's leaf).
func (d *bdec) tree(path []string, depth int, files *[]v2File) error {
	if depth >= maxTreeDepth {
		return d.errf("nested deeper than %d", maxTreeDepth)
	}
	if c, err := d.peek(); err != nil || c != 'd' {
		return d.errf("want a dictionary")
	}
	d.i++
	file, dir := false, false
	for {
		c, err := d.peek()
		if err != nil {
			return err
		}
		if c == 'e' {
			d.i++
			return nil
		}
		key, err := d.str()
		if err != nil {
			return err
		}
		if file && dir || len(key) == 0 && (file || dir) || len(key) > 0 && file {
			return invalid("file tree: %q is both a file and a directory", strings.Join(path, "/"))
		}
		if len(key) == 0 {
			file = true
			if len(path) == 0 {
				return d.errf("a file with no name")
			}
			f, err := d.leaf(path)
			if err != nil {
				return err
			}
			*files = append(*files, f)
			continue
		}
		dir = true
		if err := checkComponent(string(key)); err != nil {
			return invalid("file tree: %q: %s", string(key), err)
		}
		if err := d.tree(append(path[:len(path):len(path)], string(key)), depth+1, files); err != nil {
			return err
		}
	}
}

// leaf reads a file's dictionary: its length and pieces root.
func (d *bdec) leaf(path []string) (v2File, error) {
	f := v2File{path: path, length: -1}
	if c, err := d.peek(); err != nil || c != 'd' {
		return f, d.errf("want a file dictionary")
	}
	d.i++
	for {
		c, err := d.peek()
		if err != nil {
			return f, err
		}
		if c == 'e' {
			d.i++
			break
		}
		key, err := d.str()
		if err != nil {
			return f, err
		}
		switch string(key) {
		case "length":
			if f.length, err = d.int(); err != nil {
				return f, err
			}
		case "pieces root":
			if f.root, err = d.str(); err != nil {
				return f, err
			}
		default:
			if err := d.skip(0); err != nil {
				return f, err
			}
		}
	}
	if f.length < 0 {
		return f, invalid("file %q: no length, or a negative one", strings.Join(path, "/"))
	}
	if f.length > 0 && f.root == nil {
		return f, invalid("file %q: no pieces root", strings.Join(path, "/"))
	}
	return f, nil
}
