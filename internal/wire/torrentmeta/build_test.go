package torrentmeta

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// needLibtorrent checks that Debian's /usr/bin/python3 can import
// libtorrent, with needProgram's skip/fail rule.
func needLibtorrent(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	err := exec.Command(py, "-c", "import libtorrent").Run()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-libtorrent is required when CI=true: %v", err)
		}
		t.Skipf("python3-libtorrent not available: %v", err)
	}
	return py
}

func runCmd(t *testing.T, dir, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, stderr.Bytes())
	}
	return out
}

func TestBuild(t *testing.T) {
	single := payload(100000, 0)
	tree := map[string][]byte{"d/z.bin": payload(5, 9), "d/sub/y.bin": payload(70000, 8), "d/a.bin": payload(0, 0)}
	tests := []struct {
		name      string
		files     map[string][]byte
		opts      BuildOptions // Path is relative to the temp dir
		wantName  string
		wantFiles []File
	}{
		{
			name:  "single file",
			files: map[string][]byte{"payload.bin": single},
			opts: BuildOptions{Path: "payload.bin", PieceLength: 32768, Private: true,
				Trackers: [][]string{{"http://127.0.0.1:6969/announce"}}},
			wantName:  "payload.bin",
			wantFiles: []File{{Path: "payload.bin", Length: 100000}},
		},
		{
			name:  "single file renamed, auto piece length",
			files: map[string][]byte{"payload.bin": single},
			opts: BuildOptions{Path: "payload.bin", Name: "other.bin",
				Trackers: [][]string{{"http://127.0.0.1:1/a", "http://127.0.0.1:2/a"}, {}, {"udp://127.0.0.1:3"}}},
			wantName:  "other.bin",
			wantFiles: []File{{Path: "other.bin", Length: 100000}},
		},
		{
			name:     "directory, sorted, empty file kept",
			files:    tree,
			opts:     BuildOptions{Path: "d", PieceLength: 16384},
			wantName: "d",
			wantFiles: []File{
				{Path: "d/a.bin", Length: 0},
				{Path: "d/sub/y.bin", Length: 70000},
				{Path: "d/z.bin", Length: 5, Offset: 70000},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, t.TempDir(), tt.files)
			opts := tt.opts
			opts.Path = filepath.Join(dir, opts.Path)
			data, tor, err := Build(opts)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again, tor) {
				t.Errorf("Parse(data) = %+v, Build returned %+v", again, tor)
			}
			if tor.Name != tt.wantName || tor.Private != opts.Private || tor.CreatedBy != CreatedBy {
				t.Errorf("name %q private %v created by %q", tor.Name, tor.Private, tor.CreatedBy)
			}
			if !reflect.DeepEqual(tor.Files, tt.wantFiles) {
				t.Errorf("Files = %+v, want %+v", tor.Files, tt.wantFiles)
			}
			if want := cleanTiers(opts.Trackers); !reflect.DeepEqual(tor.Trackers, want) {
				t.Errorf("Trackers = %q, want %q", tor.Trackers, want)
			}
			if opts.PieceLength != 0 && tor.PieceLength != opts.PieceLength {
				t.Errorf("PieceLength = %d, want %d", tor.PieceLength, opts.PieceLength)
			}
			content := make(map[string][]byte)
			for p, b := range tt.files {
				// Map fixture paths to torrent paths (the name may be overridden).
				rel := strings.TrimPrefix(p, strings.Split(tt.opts.Path, "/")[0])
				content[tor.Name+rel] = b
			}
			checkPieces(t, tor, stream(t, tor, content))
			data2, _, err := Build(opts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, data2) {
				t.Error("Build is not deterministic")
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	dir := writeTree(t, t.TempDir(), map[string][]byte{"f": payload(10, 0), "empty/e": nil})
	tests := []struct {
		name string
		opts BuildOptions
		msg  string
	}{
		{"no path", BuildOptions{}, "no path given"},
		{"missing path", BuildOptions{Path: filepath.Join(dir, "nope")}, "no such file"},
		{"no data", BuildOptions{Path: filepath.Join(dir, "empty")}, "total length 0"},
		{"piece length not power of two", BuildOptions{Path: filepath.Join(dir, "f"), PieceLength: 30000}, "not a power of two"},
		{"piece length too small", BuildOptions{Path: filepath.Join(dir, "f"), PieceLength: 512}, "not a power of two in"},
		{"piece length negative", BuildOptions{Path: filepath.Join(dir, "f"), PieceLength: -16384}, "not a power of two in"},
		{"bad name", BuildOptions{Path: filepath.Join(dir, "f"), Name: "../x"}, "path separator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Build(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want it to contain %q", err, tt.msg)
			}
		})
	}
}

// TestBuildMatchesFixtures rebuilds the mktorrent fixtures' content and
// expects the very same info hash: same info dict, independently made.
func TestBuildMatchesFixtures(t *testing.T) {
	tests := []struct {
		fixture string
		files   map[string][]byte
		opts    BuildOptions
	}{
		{"mktorrent-single.torrent", map[string][]byte{"payload.bin": payload(100000, 0)},
			BuildOptions{Path: "payload.bin", PieceLength: 32768, Private: true}},
		{"mktorrent-multi.torrent", map[string][]byte{"multi/a.bin": payload(50000, 1), "multi/sub/b.bin": payload(30000, 2)},
			BuildOptions{Path: "multi", PieceLength: 32768}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			want, err := Load(filepath.Join("testdata", tt.fixture))
			if err != nil {
				t.Fatal(err)
			}
			dir := writeTree(t, t.TempDir(), tt.files)
			tt.opts.Path = filepath.Join(dir, tt.opts.Path)
			_, got, err := Build(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got.InfoHash != want.InfoHash {
				t.Errorf("info hash %s, fixture %s", got.InfoHash.HexString(), want.InfoHash.HexString())
			}
		})
	}
}

// TestInteropMktorrent makes a torrent of the same fresh content with
// mktorrent and with Build, and expects equal info hashes.
func TestInteropMktorrent(t *testing.T) {
	mk := testclients.Program(t, "mktorrent")
	dir := writeTree(t, t.TempDir(), map[string][]byte{
		"set/one.bin":       payload(123457, 5),
		"set/two/three.bin": payload(65536, 6),
		"set/two/four.bin":  payload(1, 7),
	})
	out := filepath.Join(dir, "mk.torrent")
	runCmd(t, dir, mk, "-d", "-l", "16", "-a", "http://127.0.0.1:6969/announce", "-o", out, "set")
	theirs, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	_, ours, err := Build(BuildOptions{Path: filepath.Join(dir, "set"), PieceLength: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	if ours.InfoHash != theirs.InfoHash {
		t.Errorf("Build info hash %s, mktorrent %s", ours.InfoHash.HexString(), theirs.InfoHash.HexString())
	}
}

// TestInteropLibtorrent checks that libtorrent computes our info hash for a
// Build output, and that a hybrid torrent libtorrent makes parses to its v1
// hash with verifying pieces.
func TestInteropLibtorrent(t *testing.T) {
	py := needLibtorrent(t)
	files := map[string][]byte{"lt/a.bin": payload(40001, 1), "lt/b/c.bin": payload(33333, 2)}
	dir := writeTree(t, t.TempDir(), files)
	data, ours, err := Build(BuildOptions{Path: filepath.Join(dir, "lt"), PieceLength: 16384})
	if err != nil {
		t.Fatal(err)
	}
	ourFile := filepath.Join(dir, "ours.torrent")
	if err := os.WriteFile(ourFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	const script = `
import sys, libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
print(ti.info_hashes().v1)
fs = lt.file_storage()
lt.add_files(fs, "lt")
ct = lt.create_torrent(fs, 16384)
lt.set_piece_hashes(ct, ".")
open(sys.argv[2], "wb").write(lt.bencode(ct.generate()))
print(lt.torrent_info(sys.argv[2]).info_hashes().v1)
`
	hybridFile := filepath.Join(dir, "hybrid.torrent")
	out := strings.Fields(string(runCmd(t, dir, py, "-c", script, ourFile, hybridFile)))
	if len(out) != 2 {
		t.Fatalf("unexpected python output %q", out)
	}
	if out[0] != ours.InfoHash.HexString() {
		t.Errorf("libtorrent v1 hash of our torrent %s, ours %s", out[0], ours.InfoHash.HexString())
	}
	hybrid, err := Load(hybridFile)
	if err != nil {
		t.Fatal(err)
	}
	if !hybrid.Hybrid || hybrid.InfoHash.HexString() != out[1] {
		t.Errorf("hybrid: Hybrid=%v hash %s, libtorrent %s", hybrid.Hybrid, hybrid.InfoHash.HexString(), out[1])
	}
	checkPieces(t, hybrid, stream(t, hybrid, files))
}
