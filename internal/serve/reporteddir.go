package serve

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

// A reported folder (Config.ReportedDir) holds announce logs in the JSON
// lines format of reported.ImportJSONLines — a tracker's events files, a
// recording proxy's log — dropped or appended to while the service runs.
// At every scan each file is read forward from where the last scan
// stopped (complete lines only, at most maxImportChunk), and its
// announces are recorded like the embedded tracker's. After a restart a
// file is read again from its start, and only its announces later than
// the newest one stored from it (store.LatestAnnounce) are recorded, so
// nothing is recorded twice.
const maxImportChunk = 64 << 20

// reportedFile is where the import of one log file stands; owned by Run's
// loop.
type reportedFile struct {
	offset int64     // bytes imported
	since  time.Time // announces at or before it were stored before this run
}

// importSource is the announces' source of a log file: its name.
func importSource(path string) string { return "import:" + filepath.Base(path) }

// importReported imports what was added to the reported folder's logs
// since the last scan. A file that cannot be read is retried at the next
// scan; a store that cannot record fails the service.
func (s *Service) importReported(ctx context.Context) error {
	if s.cfg.ReportedDir == "" || ctx.Err() != nil {
		return nil
	}
	entries, err := os.ReadDir(s.cfg.ReportedDir)
	if err != nil {
		s.log.Warn("reported folder unreadable", "dir", s.cfg.ReportedDir, "err", err)
		return nil
	}
	for i, e := range entries {
		if i >= maxWatchFiles {
			break
		}
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".jsonl" && ext != ".ndjson" && ext != ".json") {
			continue
		}
		if err := s.importFile(ctx, filepath.Join(s.cfg.ReportedDir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// importFile imports the complete lines added to one log since the last
// scan.
func (s *Service) importFile(ctx context.Context, path string) error {
	rf := s.reportedFiles[path]
	if rf == nil {
		rf = &reportedFile{}
		if err := s.readFromStart(ctx, path, rf); err != nil {
			return err
		}
		s.reportedFiles[path] = rf
	}
	f, err := os.Open(path)
	if err != nil {
		s.log.Warn("reported folder: unreadable log", "file", path, "err", err)
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	if st.Size() < rf.offset { // truncated or replaced: read it again
		if err := s.readFromStart(ctx, path, rf); err != nil {
			return err
		}
	}
	n := min(st.Size()-rf.offset, maxImportChunk)
	if n <= 0 {
		return nil
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, rf.offset); err != nil && err != io.EOF {
		s.log.Warn("reported folder: unreadable log", "file", path, "err", err)
		return nil
	}
	cut := bytes.LastIndexByte(buf, '\n')
	if cut < 0 {
		if n == maxImportChunk { // one line longer than any announce: skip it
			rf.offset += n
		}
		return nil // the line is still being written
	}
	var recordErr error
	stats, err := reported.ImportJSONLines(bytes.NewReader(buf[:cut+1]), importSource(path), func(a reported.Announce) error {
		if !a.At.After(rf.since) {
			return nil // stored before a restart
		}
		if err := s.RecordAnnounce(a); err != nil {
			recordErr = err
			return err
		}
		return nil
	})
	if recordErr != nil {
		return fmt.Errorf("recording %s: %w", filepath.Base(path), recordErr)
	}
	if err != nil {
		s.log.Warn("reported folder: unreadable log", "file", path, "err", err)
		return nil
	}
	rf.offset += int64(cut + 1)
	s.imported.Add(int64(stats.Imported))
	s.log.Info("reported folder: imported", "file", filepath.Base(path), "stats", stats.String())
	return nil
}

// readFromStart has a log read again from its start, recording only the
// announces later than the newest one stored from it.
func (s *Service) readFromStart(ctx context.Context, path string, rf *reportedFile) error {
	since, err := s.cfg.Store.LatestAnnounce(ctx, importSource(path))
	if err != nil {
		return fmt.Errorf("reported folder: %w", err)
	}
	rf.offset, rf.since = 0, since
	return nil
}
