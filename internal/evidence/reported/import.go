package reported

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Limits that keep an import of a hostile file bounded.
const (
	// MaxLineBytes is the longest line an importer accepts, without its line
	// terminator. A longer line is reported as bad (ErrLineTooLong) and skipped.
	MaxLineBytes = 64 << 10
	// MaxBadLines is how many bad lines ImportStats.Bad keeps; later ones are
	// only counted in ImportStats.BadLines.
	MaxBadLines = 1000
)

// Errors a LineError wraps; check them with errors.Is.
var (
	ErrLineTooLong      = errors.New("line too long")
	ErrMissingField     = errors.New("missing field")
	ErrInvalidField     = errors.New("invalid field")
	ErrUnknownTorrentID = errors.New("unknown torrent id")
	// ErrBadHeader is returned (not a LineError) when a CSV file does not
	// start with the expected header: the whole file is the wrong format.
	ErrBadHeader = errors.New("unexpected CSV header")
)

// LineError is one rejected line of an import.
type LineError struct {
	Line int // 1-based line number in the input
	Err  error
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e LineError) Unwrap() error { return e.Err }

// FieldError says which field of a line is missing or invalid. Its Err wraps
// ErrMissingField, ErrInvalidField or ErrUnknownTorrentID.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func missingField(field string) error {
	return &FieldError{Field: field, Err: ErrMissingField}
}

func invalidField(field string, cause error) error {
	return &FieldError{Field: field, Err: fmt.Errorf("%w: %v", ErrInvalidField, cause)}
}

// ImportStats counts what an import did with every line of its input.
// Lines == Imported + Skipped + BadLines once the input was read to the end.
type ImportStats struct {
	Lines    int         // lines read
	Imported int         // announces handed to fn
	Skipped  int         // blank lines and CSV header lines
	BadLines int         // rejected lines; the first MaxBadLines are in Bad
	Bad      []LineError // why each of the first MaxBadLines bad lines was rejected
}

// String is a one-line summary, e.g. "12 lines: 10 imported, 1 skipped, 1 bad".
func (s ImportStats) String() string {
	return fmt.Sprintf("%d lines: %d imported, %d skipped, %d bad", s.Lines, s.Imported, s.Skipped, s.BadLines)
}

func (s *ImportStats) bad(line int, err error) {
	s.BadLines++
	if len(s.Bad) < MaxBadLines {
		s.Bad = append(s.Bad, LineError{Line: line, Err: err})
	}
}

// lineReader splits input into lines of at most max bytes. bufio.Scanner
// stops at the first over-long line; an importer must report it and go on.
type lineReader struct {
	r    *bufio.Reader
	line int
}

func newLineReader(r io.Reader) *lineReader {
	// Room for the longest accepted line and its "\r\n".
	return &lineReader{r: bufio.NewReaderSize(r, MaxLineBytes+2)}
}

// next returns the next line without its terminator (the slice is only valid
// until the following call), or tooLong when the line did not fit and was
// discarded. err is io.EOF after the last line.
func (lr *lineReader) next() (line []byte, tooLong bool, err error) {
	b, err := lr.r.ReadSlice('\n')
	for errors.Is(err, bufio.ErrBufferFull) {
		tooLong = true
		_, err = lr.r.ReadSlice('\n')
	}
	if errors.Is(err, io.EOF) {
		if len(b) == 0 && !tooLong {
			return nil, false, io.EOF
		}
		err = nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read line %d: %w", lr.line+1, err)
	}
	lr.line++
	if tooLong {
		return nil, true, nil
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) > MaxLineBytes {
		return nil, true, nil
	}
	if lr.line == 1 {
		b = bytes.TrimPrefix(b, []byte("\ufeff")) // a UTF-8 byte order mark
	}
	return b, false, nil
}

// importLines drives an importer: parse turns one non-blank line into an
// announce, or reports skip (a repeated header) or an error (a bad line).
func importLines(r io.Reader, parse func(line []byte, n int) (a Announce, skip bool, err error), fn func(Announce) error) (ImportStats, error) {
	var st ImportStats
	lr := newLineReader(r)
	for {
		line, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		st.Lines++
		if tooLong {
			st.bad(lr.line, fmt.Errorf("%w (over %d bytes)", ErrLineTooLong, MaxLineBytes))
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			st.Skipped++
			continue
		}
		a, skip, err := parse(line, lr.line)
		var fatal fatalError
		switch {
		case errors.As(err, &fatal):
			return st, fatal.error
		case err != nil:
			st.bad(lr.line, err)
			continue
		case skip:
			st.Skipped++
			continue
		}
		if err := fn(a); err != nil {
			return st, fmt.Errorf("import line %d: %w", lr.line, err)
		}
		st.Imported++
	}
}

// fatalError, returned by an importLines parse function, ends the import
// with its wrapped error instead of counting a bad line.
type fatalError struct{ error }

// parseCount reads a non-negative byte count.
// Announce times outside [MinTime, MaxTime) are refused: no tracker log
// holds them, and times before year 1 cannot be written back in RFC 3339.
var (
	MinTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// parseTime reads an RFC 3339 time (fractional seconds allowed) within
// [MinTime, MaxTime) and returns it in UTC; the offset it was written with
// is not kept.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, err
	}
	if t.Before(MinTime) || !t.Before(MaxTime) {
		return time.Time{}, fmt.Errorf("%s is outside %d..%d", s, MinTime.Year(), MaxTime.Year()-1)
	}
	return t.UTC(), nil
}

func parseCount(field, s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, invalidField(field, err)
	}
	if v < 0 {
		return 0, invalidField(field, fmt.Errorf("negative value %d", v))
	}
	return v, nil
}
