package torrentmeta

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// CreatedBy is the "created by" value Build writes.
const CreatedBy = "swarmaudit"

// BuildOptions configure Build.
type BuildOptions struct {
	// Path is the file or directory to make a torrent of.
	Path string
	// PieceLength is a power of two from MinBuildPieceLength to
	// MaxPieceLength, or 0 to choose one from the total length.
	PieceLength int64
	// Trackers are BEP 12 tiers; the first URL also becomes "announce".
	Trackers [][]string
	Private  bool
	// Name overrides the torrent name (default: base name of Path).
	Name string
}

// Build makes a v1 .torrent from local files. It returns the bencoded
// metainfo and its parsed form. The output carries no creation date, so the
// same input always gives the same bytes.
func Build(opts BuildOptions) ([]byte, *Torrent, error) {
	data, t, err := build(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("build torrent from %s: %w", opts.Path, err)
	}
	return data, t, nil
}

func build(opts BuildOptions) ([]byte, *Torrent, error) {
	if opts.Path == "" {
		return nil, nil, errors.New("no path given")
	}
	if pl := opts.PieceLength; pl != 0 && (pl < MinBuildPieceLength || pl > MaxPieceLength || pl&(pl-1) != 0) {
		return nil, nil, fmt.Errorf("piece length %d is not a power of two in [%d, %d]", pl, MinBuildPieceLength, MaxPieceLength)
	}
	if opts.Name != "" {
		if err := checkComponent(opts.Name); err != nil {
			return nil, nil, fmt.Errorf("name %q: %w", opts.Name, err)
		}
	}
	info := metainfo.Info{PieceLength: opts.PieceLength}
	// Size the tree before hashing, so an impossible torrent fails before
	// BuildFromFilePath reads every byte.
	total, err := treeSize(opts.Path)
	if err != nil {
		return nil, nil, err
	}
	if total == 0 {
		return nil, nil, errors.New("no data to share (total length 0)")
	}
	if info.PieceLength == 0 {
		info.PieceLength = metainfo.ChoosePieceLength(total)
	}
	if pieces := (total + info.PieceLength - 1) / info.PieceLength; pieces*20 > MaxTorrentSize-(1<<20) {
		return nil, nil, fmt.Errorf("%d bytes in pieces of %d need %d piece hashes, too many for a torrent of at most %d bytes",
			total, info.PieceLength, pieces, MaxTorrentSize)
	}
	if err := info.BuildFromFilePath(opts.Path); err != nil {
		return nil, nil, err
	}
	if opts.Name != "" {
		info.Name = opts.Name
	}
	if opts.Private {
		priv := true
		info.Private = &priv
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		return nil, nil, fmt.Errorf("encode info: %w", err)
	}
	mi := metainfo.MetaInfo{InfoBytes: infoBytes, CreatedBy: CreatedBy}
	tiers := cleanTiers(opts.Trackers)
	if len(tiers) > 0 {
		mi.Announce = tiers[0][0]
		if len(tiers) > 1 || len(tiers[0]) > 1 {
			mi.AnnounceList = tiers
		}
	}
	data, err := bencode.Marshal(mi)
	if err != nil {
		return nil, nil, fmt.Errorf("encode metainfo: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("check built torrent: %w", err)
	}
	return data, t, nil
}

// treeSize sums the sizes of the regular files under root (or of root
// itself), following symlinks as metainfo.Info.BuildFromFilePath does.
func treeSize(root string) (int64, error) {
	var total int64
	err := filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			if fi, err = os.Stat(path); err != nil {
				return err
			}
		}
		if fi.Mode().IsRegular() {
			if fi.Size() > math.MaxInt64-total {
				return fmt.Errorf("%s: total size overflows", path)
			}
			total += fi.Size()
		}
		return nil
	})
	return total, err
}
