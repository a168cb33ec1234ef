package reported

import (
	"fmt"
	"io"
	"slices"
	"sync"
)

// JSONLinesRecorder writes every announce it receives as one JSON object per
// line, in the format ImportJSONLines reads (see MarshalJSONLine). It is safe
// for concurrent use; each announce is one Write call on the underlying writer,
// so lines never interleave. Buffering and flushing are the caller's business.
type JSONLinesRecorder struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewJSONLinesRecorder returns a Recorder that appends JSON lines to w.
func NewJSONLinesRecorder(w io.Writer) *JSONLinesRecorder {
	return &JSONLinesRecorder{w: w}
}

// RecordAnnounce writes a as one line.
func (r *JSONLinesRecorder) RecordAnnounce(a Announce) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	r.buf, err = AppendJSONLine(r.buf[:0], a)
	if err != nil {
		return err
	}
	if _, err := r.w.Write(r.buf); err != nil {
		return fmt.Errorf("write announce line: %w", err)
	}
	return nil
}

// MemoryRecorder keeps every announce in memory, in arrival order. It is meant
// for tests and short runs: it grows without bound.
type MemoryRecorder struct {
	mu        sync.Mutex
	announces []Announce
}

// RecordAnnounce appends a copy of a.
func (m *MemoryRecorder) RecordAnnounce(a Announce) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.announces = append(m.announces, a)
	return nil
}

// Announces returns a copy of everything recorded so far.
func (m *MemoryRecorder) Announces() []Announce {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.announces)
}

// Len is the number of announces recorded so far.
func (m *MemoryRecorder) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.announces)
}
