package reports

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxJSONSize bounds what ReadJSON reads.
const MaxJSONSize = 256 << 20

// ErrTooLarge is returned by ReadJSON for a document over MaxJSONSize.
var ErrTooLarge = errors.New("report too large")

// WriteJSON writes the report as indented JSON, valid against
// docs/report.schema.json.
func WriteJSON(w io.Writer, r *Report) error {
	if r == nil {
		return fmt.Errorf("write json report: %w: nil report", ErrInput)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write json report: %w", err)
	}
	return nil
}

// ReadJSON reads a report written by WriteJSON (for instance to render it
// as HTML later). It reads at most MaxJSONSize bytes and refuses other
// schema versions with ErrSchemaVersion. Fields it does not know are
// ignored: later versions only add optional fields.
func ReadJSON(rd io.Reader) (*Report, error) {
	lr := &io.LimitedReader{R: rd, N: MaxJSONSize + 1}
	dec := json.NewDecoder(lr)
	var head struct {
		SchemaVersion *int `json:"schema_version"`
	}
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if lr.N <= 0 {
			return nil, fmt.Errorf("read json report: %w (over %d bytes)", ErrTooLarge, MaxJSONSize)
		}
		return nil, fmt.Errorf("read json report: %w", err)
	}
	if lr.N <= 0 {
		return nil, fmt.Errorf("read json report: %w (over %d bytes)", ErrTooLarge, MaxJSONSize)
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("read json report: %w", err)
	}
	if head.SchemaVersion == nil {
		return nil, fmt.Errorf("read json report: %w: no schema_version", ErrSchemaVersion)
	}
	if *head.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("read json report: %w: %d (this program reads %d)", ErrSchemaVersion, *head.SchemaVersion, SchemaVersion)
	}
	var r Report
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("read json report: %w", err)
	}
	return &r, nil
}
