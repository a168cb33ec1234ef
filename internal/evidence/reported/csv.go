package reported

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/anacrolix/torrent/types/infohash"
)

// CSVColumns are the columns ImportCSV needs, as some tracker forks (e.g. the
// chihaya of Gazelle-style sites, in events/events_<hour>.csv) write them.
var CSVColumns = []string{"TorrentID", "UserID", "Addr", "Event", "Uploaded", "Downloaded", "Left"}

// CSVOptions tunes ImportCSV.
type CSVOptions struct {
	// TorrentIDs maps the TorrentID column to an info hash, for logs that
	// write the tracker's own torrent id. It is consulted first; a TorrentID
	// not in it must be the info hash as 40 hex digits.
	TorrentIDs map[string]infohash.T
	// Time gives the announce time for the record on line n (1-based): the
	// format has no timestamp column. When nil, the time is the Unix epoch
	// plus n nanoseconds (line 42 is 1970-01-01T00:00:00.000000042Z): plainly
	// synthetic, and in file order. LineClock builds a Time from a known start.
	Time func(line int) time.Time
}

// LineClock returns a CSVOptions.Time that gives line n the time
// start + (n-1)*step, e.g. the hour a chihaya events file is named after.
func LineClock(start time.Time, step time.Duration) func(line int) time.Time {
	return func(line int) time.Time { return start.Add(time.Duration(line-1) * step) }
}

// ImportCSV reads a comma-separated announce log whose first non-blank line
// is a header naming at least CSVColumns (case-insensitive, any order, other
// columns ignored) and hands each record to fn, in input order:
//
//   - TorrentID: mapped through opts.TorrentIDs, else an info hash in hex.
//   - UserID: copied to Announce.UserID.
//   - Addr: ip:port ("[v6]:port" for IPv6), the announcing peer's address.
//   - Event: see ParseEvent.
//   - Uploaded, Downloaded, Left: non-negative integers, taken as the
//     cumulative counts the peer reported (BEP 3). A fork that logs
//     per-announce deltas instead imports without error; the numbers then
//     mean something else, which the importer cannot tell.
//
// Announce.At comes from opts.Time, PeerID is zero (the format has none),
// and Source is source. Lines repeating the header (a log reopened mid-file)
// and blank lines are skipped. A record that does not parse, has the wrong
// number of fields, or is longer than MaxLineBytes is counted in the stats
// with its line number and skipped; quoted fields spanning lines are not
// supported. The returned error is for a file that does not start with the
// header (wrapping ErrBadHeader), a read error, or an error from fn.
func ImportCSV(r io.Reader, source string, opts CSVOptions, fn func(Announce) error) (ImportStats, error) {
	var (
		header []string       // normalized header fields, once seen
		col    map[string]int // column name (lower case) to field index
	)
	return importLines(r, func(line []byte, n int) (Announce, bool, error) {
		rec, err := splitCSVLine(line)
		if header == nil {
			if err == nil {
				header, col, err = parseCSVHeader(rec)
			}
			if err != nil {
				return Announce{}, false, fatalError{fmt.Errorf("line %d: %w: %v", n, ErrBadHeader, err)}
			}
			return Announce{}, true, nil
		}
		if err != nil {
			return Announce{}, false, fmt.Errorf("%w: %v", ErrInvalidField, err)
		}
		if len(rec) != len(header) {
			return Announce{}, false, fmt.Errorf("%w: %d fields, the header has %d", ErrInvalidField, len(rec), len(header))
		}
		if isCSVHeader(rec, header) {
			return Announce{}, true, nil
		}
		a, err := parseCSVRecord(rec, col, opts)
		if err != nil {
			return Announce{}, false, err
		}
		if opts.Time != nil {
			a.At = opts.Time(n)
		} else {
			a.At = time.Unix(0, int64(n)).UTC()
		}
		a.Source = source
		return a, false, nil
	}, fn)
}

// splitCSVLine parses one line as exactly one CSV record.
func splitCSVLine(line []byte) ([]string, error) {
	cr := csv.NewReader(bytes.NewReader(line))
	cr.FieldsPerRecord = -1
	rec, err := cr.Read()
	if err != nil {
		return nil, err
	}
	if _, err := cr.Read(); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one record on the line")
	}
	for i := range rec {
		rec[i] = strings.TrimSpace(rec[i])
	}
	return rec, nil
}

func parseCSVHeader(rec []string) ([]string, map[string]int, error) {
	col := make(map[string]int, len(rec))
	header := make([]string, len(rec))
	for i, f := range rec {
		header[i] = strings.ToLower(f)
		if _, dup := col[header[i]]; !dup {
			col[header[i]] = i
		}
	}
	var missing []string
	for _, c := range CSVColumns {
		if _, ok := col[strings.ToLower(c)]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("no column %s (want %s)", strings.Join(missing, ", "), strings.Join(CSVColumns, ","))
	}
	return header, col, nil
}

func isCSVHeader(rec, header []string) bool {
	for i := range rec {
		if !strings.EqualFold(rec[i], header[i]) {
			return false
		}
	}
	return true
}

func parseCSVRecord(rec []string, col map[string]int, opts CSVOptions) (Announce, error) {
	field := func(name string) string { return rec[col[strings.ToLower(name)]] }
	var a Announce
	id := field("TorrentID")
	if ih, ok := opts.TorrentIDs[id]; ok {
		a.InfoHash = ih
	} else if err := a.InfoHash.FromHexString(id); err != nil {
		if len(id) > 64 {
			id = id[:64] + "..."
		}
		return a, &FieldError{Field: "TorrentID", Err: fmt.Errorf("%w %q: not in the id map nor a hex info hash", ErrUnknownTorrentID, id)}
	}
	a.UserID = field("UserID")
	ap, err := parseAddrPort(field("Addr"))
	if err != nil {
		return a, invalidField("Addr", err)
	}
	a.IP, a.Port = ap.Addr(), ap.Port()
	if a.Event, err = ParseEvent(field("Event")); err != nil {
		return a, invalidField("Event", err)
	}
	if a.Uploaded, err = parseCount("Uploaded", field("Uploaded")); err != nil {
		return a, err
	}
	if a.Downloaded, err = parseCount("Downloaded", field("Downloaded")); err != nil {
		return a, err
	}
	if a.Left, err = parseCount("Left", field("Left")); err != nil {
		return a, err
	}
	return a, nil
}
