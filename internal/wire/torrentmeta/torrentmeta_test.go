package torrentmeta

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/types/infohash"
)

// payload is the deterministic content of the fixture files; see
// testdata/make-testdata.sh.
func payload(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i/251 + seed)
	}
	return b
}

// writeTree writes files (slash paths relative to dir) and returns dir.
func writeTree(t *testing.T, dir string, files map[string][]byte) string {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// stream returns the v1 byte stream of t, reading each non-pad file from
// content (keyed by File.Path) and using zeros for pad files.
func stream(t *testing.T, tor *Torrent, content map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, f := range tor.Files {
		if f.Padding {
			buf.Write(make([]byte, f.Length))
			continue
		}
		data, ok := content[f.Path]
		if !ok {
			t.Fatalf("no content for %q", f.Path)
		}
		if int64(len(data)) != f.Length {
			t.Fatalf("%s: content %d bytes, torrent says %d", f.Path, len(data), f.Length)
		}
		buf.Write(data)
	}
	return buf.Bytes()
}

// checkPieces verifies every piece of tor against data, and that a
// corrupted or truncated piece fails.
func checkPieces(t *testing.T, tor *Torrent, data []byte) {
	t.Helper()
	if int64(len(data)) != tor.TotalLength {
		t.Fatalf("stream is %d bytes, TotalLength %d", len(data), tor.TotalLength)
	}
	var sum int64
	for i := range tor.NumPieces {
		size := tor.PieceSize(i)
		piece := data[int64(i)*tor.PieceLength : int64(i)*tor.PieceLength+size]
		if !tor.VerifyPiece(i, piece) {
			t.Errorf("piece %d does not verify", i)
		}
		if got, want := tor.PieceHash(i), sha1.Sum(piece); got != want {
			t.Errorf("PieceHash(%d) = %x, want %x", i, got, want)
		}
		bad := bytes.Clone(piece)
		bad[len(bad)/2] ^= 1
		if tor.VerifyPiece(i, bad) {
			t.Errorf("corrupted piece %d verifies", i)
		}
		if tor.VerifyPiece(i, piece[:len(piece)-1]) {
			t.Errorf("truncated piece %d verifies", i)
		}
		sum += size
	}
	if sum != tor.TotalLength {
		t.Errorf("piece sizes sum to %d, want %d", sum, tor.TotalLength)
	}
}

func mustHash(t *testing.T, s string) infohash.T {
	t.Helper()
	var h infohash.T
	if err := h.FromHexString(s); err != nil {
		t.Fatal(err)
	}
	return h
}

// multiContent is the "multi" fixtures' payload (make-testdata.sh).
var multiContent = map[string][]byte{
	"multi/a.bin":     payload(50000, 1),
	"multi/sub/b.bin": payload(30000, 2),
}

func TestLoadFixtures(t *testing.T) {
	tests := []struct {
		file        string
		infoHash    string // from libtorrent's torrent_info, see make-testdata.sh
		name        string
		pieceLength int64
		total       int64
		numPieces   int
		private     bool
		hybrid      bool
		trackers    [][]string
		files       []File
		content     map[string][]byte
	}{
		{
			file: "mktorrent-single.torrent", infoHash: "079613d8f1b4998a954f396e6cf7c8e6e7196b4b",
			name: "payload.bin", pieceLength: 32768, total: 100000, numPieces: 4, private: true,
			trackers: [][]string{{"http://127.0.0.1:6969/announce"}},
			files:    []File{{Path: "payload.bin", Length: 100000}},
			content:  map[string][]byte{"payload.bin": payload(100000, 0)},
		},
		{
			file: "mktorrent-multi.torrent", infoHash: "7a65701e5cc51e18d386953a6c451b74608e33f0",
			name: "multi", pieceLength: 32768, total: 80000, numPieces: 3,
			trackers: [][]string{
				{"http://127.0.0.1:6969/announce", "http://127.0.0.2:6969/announce"},
				{"udp://127.0.0.1:6969"},
			},
			files: []File{
				{Path: "multi/a.bin", Length: 50000},
				{Path: "multi/sub/b.bin", Length: 30000, Offset: 50000},
			},
			content: multiContent,
		},
		{
			file: "hybrid.torrent", infoHash: "8b4dde2a667f578a8f2433c144358c10dc8fd503",
			name: "multi", pieceLength: 16384, total: 98304, numPieces: 6, hybrid: true,
			trackers: [][]string{{"http://127.0.0.1:6969/announce"}},
			files: []File{
				{Path: "multi/a.bin", Length: 50000},
				{Path: "multi/.pad/15536", Length: 15536, Offset: 50000, Padding: true},
				{Path: "multi/sub/b.bin", Length: 30000, Offset: 65536},
				{Path: "multi/.pad/2768", Length: 2768, Offset: 95536, Padding: true},
			},
			content: multiContent,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			tor, err := Load(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHash(t, tt.infoHash); tor.InfoHash != want {
				t.Errorf("InfoHash = %s, want %s", tor.InfoHash.HexString(), tt.infoHash)
			}
			if tor.InfoHash != infohash.HashBytes(tor.InfoBytes) {
				t.Error("InfoHash is not SHA-1 of InfoBytes")
			}
			if tor.Name != tt.name || tor.PieceLength != tt.pieceLength || tor.TotalLength != tt.total ||
				tor.NumPieces != tt.numPieces || tor.Private != tt.private || tor.Hybrid != tt.hybrid {
				t.Errorf("got name %q pl %d total %d pieces %d private %v hybrid %v",
					tor.Name, tor.PieceLength, tor.TotalLength, tor.NumPieces, tor.Private, tor.Hybrid)
			}
			if !reflect.DeepEqual(tor.Trackers, tt.trackers) {
				t.Errorf("Trackers = %q, want %q", tor.Trackers, tt.trackers)
			}
			if !reflect.DeepEqual(tor.Files, tt.files) {
				t.Errorf("Files = %+v, want %+v", tor.Files, tt.files)
			}
			checkPieces(t, tor, stream(t, tor, tt.content))
		})
	}
}

// TestLoadV2: a v2-only torrent made by libtorrent (make-testdata.sh) loads
// with its v2 layout (each file from a piece boundary, the last piece of
// each file short) and the truncated SHA-256 info hash; each piece checks
// against its SHA-256 merkle root (the piece layers), and a corrupted or
// truncated one does not. The hybrid of the same files checks both hashes.
func TestLoadV2(t *testing.T) {
	tor, err := Load(filepath.Join("testdata", "v2only.torrent"))
	if err != nil {
		t.Fatal(err)
	}
	if !tor.V2 || tor.Hybrid || tor.PieceHashes() != "SHA-256" || tor.InfoHashV2 != sha256.Sum256(tor.InfoBytes) ||
		!bytes.Equal(tor.InfoHash[:], tor.InfoHashV2[:20]) {
		t.Fatalf("v2 %v hybrid %v hashes %s, info hash %x of v2 %x", tor.V2, tor.Hybrid, tor.PieceHashes(), tor.InfoHash, tor.InfoHashV2)
	}
	wantFiles := []File{{Path: "multi/a.bin", Length: 50000}, {Path: "multi/sub/b.bin", Length: 30000, Offset: 65536}}
	if tor.Name != "multi" || tor.NumPieces != 6 || tor.TotalLength != 80000 || !reflect.DeepEqual(tor.Files, wantFiles) {
		t.Fatalf("name %q, %d pieces, %d bytes, files %+v", tor.Name, tor.NumPieces, tor.TotalLength, tor.Files)
	}
	sizes := []int64{16384, 16384, 16384, 50000 - 3*16384, 16384, 30000 - 16384}
	var sum int64
	for i, want := range sizes {
		size := tor.PieceSize(i)
		if size != want {
			t.Errorf("piece %d: %d bytes, want %d", i, size, want)
		}
		sum += size
		f := tor.Files[0]
		content := multiContent["multi/a.bin"]
		if i >= 4 {
			f, content = tor.Files[1], multiContent["multi/sub/b.bin"]
		}
		from := int64(i)*tor.PieceLength - f.Offset
		piece := content[from : from+size]
		if !tor.VerifyPiece(i, piece) {
			t.Errorf("piece %d does not verify", i)
		}
		bad := bytes.Clone(piece)
		bad[len(bad)-1] ^= 1
		if tor.VerifyPiece(i, bad) || tor.VerifyPiece(i, piece[:len(piece)-1]) {
			t.Errorf("a corrupted or truncated piece %d verifies", i)
		}
	}
	if sum != tor.TotalLength {
		t.Errorf("pieces sum to %d bytes, want %d", sum, tor.TotalLength)
	}
	hybrid, err := Load(filepath.Join("testdata", "hybrid.torrent"))
	if err != nil {
		t.Fatal(err)
	}
	if hybrid.PieceHashes() != "SHA-1+SHA-256" {
		t.Fatalf("hybrid checks %s", hybrid.PieceHashes())
	}
}

// TestHybridChecksSHA256: a hybrid's piece whose SHA-1 matches but whose
// SHA-256 merkle root does not fails: both descriptions are checked. (The
// v1 hash is made to match by swapping in a forged piece list.)
func TestHybridChecksSHA256(t *testing.T) {
	tor, err := Load(filepath.Join("testdata", "hybrid.torrent"))
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Repeat([]byte{7}, int(tor.PieceSize(0)))
	h := sha1.Sum(forged)
	tor.pieces = append(h[:], tor.pieces[sha1.Size:]...)
	if tor.VerifyPiece(0, forged) {
		t.Fatal("a piece that matches only its SHA-1 verifies")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.torrent")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxTorrentSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tests := []struct {
		name, path string
		is         error
		msg        string
	}{
		{"missing", filepath.Join(dir, "nope.torrent"), os.ErrNotExist, "nope.torrent"},
		{"directory", dir, nil, "not a regular file"},
		{"too large", big, ErrTooLarge, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.path)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to contain %q", err, tt.msg)
			}
		})
	}
}

// goodInfo is a valid single-file info dict: 20000 bytes in 2 pieces.
func goodInfo() map[string]any {
	return map[string]any{
		"name":         "file.bin",
		"piece length": int64(16384),
		"length":       int64(20000),
		"pieces":       string(make([]byte, 40)),
	}
}

func multiInfo(files ...map[string]any) map[string]any {
	info := goodInfo()
	delete(info, "length")
	list := make([]any, len(files))
	for i, f := range files {
		list[i] = f
	}
	info["files"] = list
	return info
}

func file(length int64, path ...string) map[string]any {
	p := make([]any, len(path))
	for i, s := range path {
		p[i] = s
	}
	return map[string]any{"length": length, "path": p}
}

func with(m map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
		} else {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	return m
}

func metaWith(t *testing.T, info any) []byte {
	t.Helper()
	b, err := bencode.Marshal(map[string]any{"announce": "http://127.0.0.1:6969/announce", "info": info})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseErrors(t *testing.T) {
	good := metaWith(t, goodInfo())
	if _, err := Parse(good); err != nil {
		t.Fatalf("goodInfo does not parse: %v", err)
	}
	tests := []struct {
		name string
		data []byte
		is   error
		msg  string
	}{
		{"empty", nil, ErrInvalid, "empty input"},
		{"list", []byte("le"), ErrInvalid, "not a bencoded dictionary"},
		{"integer", []byte("i42e"), ErrInvalid, "not a bencoded dictionary"},
		{"string", []byte("4:spam"), ErrInvalid, "not a bencoded dictionary"},
		{"truncated", good[:len(good)-5], ErrInvalid, "decode metainfo"},
		{"trailing bytes", append(bytes.Clone(good), "xx"...), ErrInvalid, "trailing"},
		{"huge string length", []byte("d4:info99999999999:"), ErrInvalid, "decode metainfo"},
		{"deep nesting", []byte("d4:info" + strings.Repeat("l", 10000) + strings.Repeat("e", 10000) + "e"), ErrInvalid, "nesting depth"},
		{"no info key", []byte("d8:announce3:abce"), ErrInvalid, "missing info dictionary"},
		{"info not a dict", metaWith(t, int64(5)), ErrInvalid, "info is not a bencoded dictionary"},
		{"info is a list", metaWith(t, []any{"a"}), ErrInvalid, "info is not a bencoded dictionary"},
		{"pieces not multiple of 20", metaWith(t, with(goodInfo(), "pieces", string(make([]byte, 39)))), ErrInvalid, "pieces length 39 is not a multiple of 20"},
		{"missing pieces", metaWith(t, with(goodInfo(), "pieces", nil)), ErrInvalid, "missing pieces"},
		{"too few pieces", metaWith(t, with(goodInfo(), "pieces", string(make([]byte, 20)))), ErrInvalid, "1 piece hashes, but total length 20000 with piece length 16384 needs 2"},
		{"too many pieces", metaWith(t, with(goodInfo(), "pieces", string(make([]byte, 60)))), ErrInvalid, "3 piece hashes"},
		{"zero piece length", metaWith(t, with(goodInfo(), "piece length", int64(0))), ErrInvalid, "piece length 0 is not positive"},
		{"negative piece length", metaWith(t, with(goodInfo(), "piece length", int64(-16384))), ErrInvalid, "piece length -16384 is not positive"},
		{"missing piece length", metaWith(t, with(goodInfo(), "piece length", nil)), ErrInvalid, "piece length 0 is not positive"},
		{"huge piece length", metaWith(t, with(goodInfo(), "piece length", int64(1)<<40)), ErrInvalid, "exceeds limit"},
		{"piece length not an integer", metaWith(t, with(goodInfo(), "piece length", "16384")), ErrInvalid, "decode info"},
		{"negative length", metaWith(t, with(goodInfo(), "length", int64(-1))), ErrInvalid, "negative length -1"},
		{"no data", metaWith(t, with(goodInfo(), "length", nil)), ErrInvalid, "torrent has no data"},
		{"empty name", metaWith(t, with(goodInfo(), "name", "")), ErrInvalid, "name is empty"},
		{"missing name", metaWith(t, with(goodInfo(), "name", nil)), ErrInvalid, "name is empty"},
		{"name dotdot", metaWith(t, with(goodInfo(), "name", "..")), ErrInvalid, "path traversal"},
		{"name with slash", metaWith(t, with(goodInfo(), "name", "a/b")), ErrInvalid, "path separator"},
		{"name.utf-8 traversal", metaWith(t, with(goodInfo(), "name.utf-8", "..")), ErrInvalid, "name.utf-8"},
		{"meta version 3", metaWith(t, with(goodInfo(), "meta version", int64(3))), ErrInvalid, "unsupported meta version 3"},
		{"v2 without a file tree", metaWith(t, with(goodInfo(), "meta version", int64(2), "pieces", nil)), ErrInvalid, "meta version 2 without a file tree"},
		{"length and files", metaWith(t, with(multiInfo(file(20000, "a")), "length", int64(20000))), ErrInvalid, "both length and files"},
		{"negative file length", metaWith(t, multiInfo(file(30000, "a"), file(-10000, "b"))), ErrInvalid, "file 1: negative length -10000"},
		{"file lengths overflow", metaWith(t, multiInfo(file(1<<62, "a"), file(1<<62, "b"), file(1<<62, "c"))), ErrInvalid, "overflows"},
		{"all files empty", metaWith(t, multiInfo(file(0, "a"), file(0, "b"))), ErrInvalid, "all 2 files are empty"},
		{"dotdot in path", metaWith(t, multiInfo(file(20000, "..", "etc", "passwd"))), ErrInvalid, "path traversal"},
		{"dot in path", metaWith(t, multiInfo(file(20000, "a", ".", "b"))), ErrInvalid, "path traversal"},
		{"slash in path component", metaWith(t, multiInfo(file(20000, "/etc/passwd"))), ErrInvalid, "path separator"},
		{"backslash in path component", metaWith(t, multiInfo(file(20000, `..\x`))), ErrInvalid, "path separator"},
		{"NUL in path", metaWith(t, multiInfo(file(20000, "a\x00b"))), ErrInvalid, "NUL"},
		{"empty path", metaWith(t, multiInfo(file(20000))), ErrInvalid, "file 0: empty path"},
		{"empty component", metaWith(t, multiInfo(file(20000, "a", ""))), ErrInvalid, "empty path component"},
		{"path.utf-8 traversal", metaWith(t, multiInfo(with(file(20000, "a"), "path.utf-8", []any{".."}))), ErrInvalid, "path.utf-8"},
		{"duplicate path", metaWith(t, multiInfo(file(10000, "a"), file(10000, "a"))), ErrInvalid, "used twice"},
		{"file is also a dir", metaWith(t, multiInfo(file(10000, "a"), file(10000, "a", "b"))), ErrInvalid, "both a file and a directory"},
		{"dir is also a file", metaWith(t, multiInfo(file(10000, "a", "b"), file(10000, "a"))), ErrInvalid, "used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tor, err := Parse(tt.data)
			if err == nil {
				t.Fatalf("no error; got %+v", tor)
			}
			t.Log(err)
			if !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to contain %q", err, tt.msg)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	_, err := Parse(make([]byte, MaxTorrentSize+1))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestParseTrackers(t *testing.T) {
	tests := []struct {
		name string
		meta map[string]any
		want [][]string
	}{
		{"none", map[string]any{}, nil},
		{"announce only", map[string]any{"announce": "http://a/ann"}, [][]string{{"http://a/ann"}}},
		{"list overrides announce", map[string]any{
			"announce":      "http://a/ann",
			"announce-list": []any{[]any{"http://b/ann", "http://c/ann"}, []any{"udp://d:1"}},
		}, [][]string{{"http://b/ann", "http://c/ann"}, {"udp://d:1"}}},
		{"empty urls and tiers dropped", map[string]any{
			"announce-list": []any{[]any{""}, []any{}, []any{"", "http://b/ann"}},
		}, [][]string{{"http://b/ann"}}},
		{"malformed list falls back to announce", map[string]any{
			"announce": "http://a/ann", "announce-list": "junk",
		}, [][]string{{"http://a/ann"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.meta["info"] = goodInfo()
			data, err := bencode.Marshal(tt.meta)
			if err != nil {
				t.Fatal(err)
			}
			tor, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tor.Trackers, tt.want) {
				t.Errorf("Trackers = %q, want %q", tor.Trackers, tt.want)
			}
		})
	}
}

func TestPieceAccessorsOutOfRange(t *testing.T) {
	tor, err := Parse(metaWith(t, goodInfo()))
	if err != nil {
		t.Fatal(err)
	}
	if tor.PieceSize(0) != 16384 || tor.PieceSize(1) != 20000-16384 {
		t.Errorf("PieceSize = %d, %d", tor.PieceSize(0), tor.PieceSize(1))
	}
	for _, i := range []int{-1, 2, 1 << 40} {
		if s := tor.PieceSize(i); s != 0 {
			t.Errorf("PieceSize(%d) = %d, want 0", i, s)
		}
		if h := tor.PieceHash(i); h != ([20]byte{}) {
			t.Errorf("PieceHash(%d) = %x, want zero", i, h)
		}
		if tor.VerifyPiece(i, nil) {
			t.Errorf("VerifyPiece(%d, nil) = true", i)
		}
	}
}

func TestFromInfoBytes(t *testing.T) {
	_, built, err := Build(BuildOptions{
		Path:        writeTree(t, t.TempDir(), map[string][]byte{"x/a": payload(40000, 3), "x/b": payload(1, 4)}),
		PieceLength: 16384,
		Trackers:    [][]string{{"http://127.0.0.1:1/announce"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tor, err := FromInfoBytes(built.InfoBytes, built.InfoHash)
	if err != nil {
		t.Fatal(err)
	}
	want := *built
	want.Trackers, want.CreatedBy = nil, ""
	if !reflect.DeepEqual(*tor, want) {
		t.Errorf("FromInfoBytes = %+v\nwant %+v", *tor, want)
	}

	wrong := built.InfoHash
	wrong[0] ^= 0xff
	_, err = FromInfoBytes(built.InfoBytes, wrong)
	if !errors.Is(err, ErrInfoHashMismatch) {
		t.Fatalf("err = %v, want ErrInfoHashMismatch", err)
	}
	var mm *InfoHashMismatchError
	if !errors.As(err, &mm) || mm.Want != wrong || mm.Got != built.InfoHash {
		t.Errorf("mismatch error = %#v", mm)
	}

	bad := []byte("d4:name1:xe")
	if _, err := FromInfoBytes(bad, infohash.HashBytes(bad)); !errors.Is(err, ErrInvalid) {
		t.Errorf("err = %v, want ErrInvalid", err)
	}
	huge := make([]byte, MaxTorrentSize+1)
	if _, err := FromInfoBytes(huge, infohash.T{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("err = %v, want ErrTooLarge", err)
	}
	v2, err := os.ReadFile(filepath.Join("testdata", "v2only.torrent")) // by magnet: no piece layers
	if err != nil {
		t.Fatal(err)
	}
	var mi struct {
		Info bencode.Bytes `bencode:"info"`
	}
	if err := bencode.Unmarshal(v2, &mi); err != nil {
		t.Fatal(err)
	}
	if _, err := FromInfoBytes(mi.Info, infohash.HashBytes(mi.Info)); !errors.Is(err, ErrInfoHashMismatch) {
		t.Errorf("a v2 info dictionary named by its SHA-1: err = %v, want ErrInfoHashMismatch", err)
	}
}

// TestFromInfoBytesV2: a v2-only info dictionary fetched by magnet is
// named by its truncated SHA-256 and lacks its piece layers; its pieces
// cannot be checked (VerifyPiece is false, never an accusation the
// caller could not tell apart) until SetPieceLayer gives each layer, which
// must hash to its file's pieces root.
func TestFromInfoBytesV2(t *testing.T) {
	full, err := Load(filepath.Join("testdata", "v2only.torrent"))
	if err != nil {
		t.Fatal(err)
	}
	tor, err := FromInfoBytes(full.InfoBytes, full.InfoHash)
	if err != nil {
		t.Fatal(err)
	}
	needs := tor.MissingLayers()
	if len(needs) == 0 || tor.InfoHashV2 != full.InfoHashV2 || tor.NumPieces != full.NumPieces {
		t.Fatalf("fetched: %d layers missing, %d pieces (the .torrent has %d)", len(needs), tor.NumPieces, full.NumPieces)
	}
	layer := func(n PieceLayerNeed) [][32]byte {
		var hs [][32]byte
		for i := range n.Pieces {
			hs = append(hs, full.v2[n.First+i].hash)
		}
		return hs
	}
	for _, n := range needs {
		bad := layer(n)
		bad[0][0] ^= 1
		if err := tor.SetPieceLayer(n.Root, bad); !errors.Is(err, ErrBadPieceLayer) {
			t.Fatalf("a layer that does not hash to its root: %v", err)
		}
		if err := tor.SetPieceLayer(n.Root, layer(n)[1:]); !errors.Is(err, ErrBadPieceLayer) {
			t.Fatalf("a layer one hash short: %v", err)
		}
		if !tor.v2[n.First].missing {
			t.Fatal("a refused layer filled the pieces")
		}
	}
	for _, n := range needs {
		if err := tor.SetPieceLayer(n.Root, layer(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tor.SetPieceLayer(needs[0].Root, layer(needs[0])); !errors.Is(err, ErrBadPieceLayer) {
		t.Fatalf("a layer given twice: %v", err)
	}
	if len(tor.MissingLayers()) != 0 || !reflect.DeepEqual(tor.v2, full.v2) {
		t.Fatal("the fetched torrent's pieces differ from the .torrent's")
	}
	m := &Magnet{InfoHash: tor.InfoHash, InfoHashV2: tor.InfoHashV2, V2: true}
	b, err := m.Metainfo(tor, "test")
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(b)
	if err != nil || again.InfoHashV2 != full.InfoHashV2 || !reflect.DeepEqual(again.v2, full.v2) {
		t.Fatalf("the .torrent written from the magnet does not load as the original: %v", err)
	}
}

func TestTorrentMagnet(t *testing.T) {
	tor, err := Load(filepath.Join("testdata", "mktorrent-multi.torrent"))
	if err != nil {
		t.Fatal(err)
	}
	m := tor.Magnet()
	want := &Magnet{
		InfoHash: tor.InfoHash,
		Name:     "multi",
		Trackers: []string{"http://127.0.0.1:6969/announce", "http://127.0.0.2:6969/announce", "udp://127.0.0.1:6969"},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("Magnet() = %+v, want %+v", m, want)
	}
	back, err := ParseMagnet(m.String())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, want) {
		t.Errorf("round trip = %+v, want %+v", back, want)
	}
}

// hostileFileTree is a hybrid torrent whose BEP 52 file tree nests depth
// levels around a file whose dictionary holds a pieces root of rootLen
// bytes and an unknown key of padLen bytes.
func hostileFileTree(depth, padLen, rootLen int) []byte {
	leaf := "d0:d6:lengthi1e11:pieces root" + strconv.Itoa(rootLen) + ":" + strings.Repeat("r", rootLen) +
		"1:x" + strconv.Itoa(padLen) + ":" + strings.Repeat("x", padLen) + "ee"
	tree := strings.Repeat("d1:a", depth) + leaf + strings.Repeat("e", depth)
	info := "d9:file tree" + tree + "6:lengthi1e12:meta versioni2e4:name1:x12:piece lengthi16384e6:pieces20:" +
		strings.Repeat("z", 20) + "e"
	return []byte("d4:info" + info + "e")
}

// A deep v2 file tree costs memory linear in the input, read or refused.
// (Decoding it with metainfo.Info allocates about depth times the input.)
func TestParseHostileFileTree(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		depth, padLen, rootz int
		err                  string // "" for a torrent that loads
	}{
		{"deep, huge pieces root", 58, 0, 4 << 20, "pieces root of 4194304 bytes"},
		{"deep, huge file entry", 58, 4 << 20, 32, ""},
		{"too deep", 100, 0, 32, "nesting depth"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := hostileFileTree(tt.depth, tt.padLen, tt.rootz)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			tor, err := Parse(data)
			runtime.ReadMemStats(&after)
			if tt.err == "" && err != nil {
				t.Fatal(err)
			}
			if tt.err != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(fmt.Sprint(err), tt.err)) {
				t.Fatalf("err = %v, want ErrInvalid: %s", err, tt.err)
			}
			if err == nil && (!tor.Hybrid || tor.TotalLength != 1) {
				t.Errorf("got %+v", tor)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16*uint64(len(data))+1<<20 {
				t.Errorf("parsing %d bytes allocated %d bytes", len(data), alloc)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	hybrid, err := os.ReadFile(filepath.Join("testdata", "hybrid.torrent"))
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"hybrid fixture", hybrid},
		{"hostile file tree 4MiB", hostileFileTree(58, 4<<20, 32)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(c.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
