package reports

import (
	"bytes"
	"io"
	"testing"
)

// FuzzReadJSON: any input either fails to read or yields a report that
// renders as JSON, CSV and HTML. Seeds live in testdata/fuzz/FuzzReadJSON.
func FuzzReadJSON(f *testing.F) {
	f.Add([]byte(`{"schema_version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ReadJSON(bytes.NewReader(b))
		if err != nil {
			return
		}
		if err := WriteJSON(io.Discard, r); err != nil {
			t.Fatalf("json: %v", err)
		}
		if err := WriteCSV(io.Discard, r); err != nil {
			t.Fatalf("csv: %v", err)
		}
		if err := WriteHTML(io.Discard, r); err != nil {
			t.Fatalf("html: %v", err)
		}
	})
}
