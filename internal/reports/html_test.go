package reports

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestEmbeddedScripts: the embedded libraries and our script cannot end
// their <script> element early, and the page loads nothing from anywhere.
func TestEmbeddedScripts(t *testing.T) {
	for name, src := range map[string]string{"chart.js": chartJS, "matrix": matrixJS, "app": appJS} {
		low := strings.ToLower(src)
		if len(src) < 100 || strings.Contains(low, "</script") || strings.Contains(low, "<!--") || strings.Contains(low, "<script") {
			t.Errorf("%s (%d bytes) cannot be inlined in a <script> element", name, len(src))
		}
		if strings.Contains(src, "sourceMappingURL") {
			t.Errorf("%s still points to a source map", name)
		}
	}
	s := newSynth(t)
	r, err := Build(s.res, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if m := regexp.MustCompile(`(?i)<(script|link|img|iframe|object|embed|source)\b[^>]*\b(src|href|data)\s*=`).FindString(page); m != "" {
		t.Errorf("the page loads a resource: %s", m)
	}
	if !strings.Contains(page, `default-src 'none'`) {
		t.Error("no content security policy forbidding fetches")
	}
	for _, want := range []string{"window.Chart=", "MatrixController", "const CHARTS = {", `id="chart-swarm"`, `id="chart-capacity"`, `id="chart-heatmap"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// TestHTMLEscapesHostileText: peer ids, client names and reasons come
// from the network; none can inject markup or script.
func TestHTMLEscapesHostileText(t *testing.T) {
	evil := `</script><script>alert(1)</script><img src=x onerror=alert(2)>`
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	one := 1
	r := &Report{
		SchemaVersion: 1, Generator: evil, GeneratedAt: now,
		Swarm:    Swarm{InfoHash: evil, Name: evil, Size: 1, Pieces: 1, PieceLength: 1, Started: now, Ended: now.Add(time.Second), Duration: 1},
		Summary:  Summary{Sources: map[string]int{evil: 1}, Reasons: []Reason{{Code: evil, Status: evil, Message: evil}}},
		Timeline: Timeline{Bucket: 1, Times: []time.Time{now.Add(time.Second)}, Peers: []int{1}},
		Windows:  []Window{{From: now, To: now, Status: evil, Contributors: []string{evil}}},
		Peers: []Peer{{
			Address: evil, PeerID: evil, PeerIDText: evil, Client: evil, Encryption: evil, Sources: []string{evil},
			Verdict: evil, Flagged: true, Reasons: []Reason{{Code: evil, Status: evil, Message: evil}},
			Pieces:       PieceInfo{Known: true, Held: 1, Series: []*int{&one, &one, nil}},
			Capacity:     Capacity{Known: true, Upper: 5, Central: 2},
			Reported:     &Reported{Identities: []Identity{{Key: evil}}, UploadRate: 9},
			UploadBounds: &UploadBounds{Limit: evil},
		}},
		Truth: &TruthReport{Cheaters: []string{evil}, UnreportedCheaters: []string{evil}},
	}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if strings.Contains(page, "alert(1)</script>") || strings.Contains(page, "<img src=x") {
		t.Fatal("hostile text reached the page unescaped")
	}
	if n, m := strings.Count(page, "<script>"), strings.Count(page, "</script>"); n != 4 || m != 4 {
		t.Fatalf("%d <script> and %d </script> tags, want our 4", n, m)
	}
}

func TestFormatters(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{4.25, "4.2s"}, {59.9, "59.9s"}, {60, "1m00s"}, {3725, "1h02m"}, {-1, "-1.0s"},
	} {
		if got := fmtDuration(c.in); got != c.want {
			t.Errorf("fmtDuration(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
