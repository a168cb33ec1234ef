package reports

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// pageState is what the test reads from the page after it loaded.
type pageState struct {
	Charts   string        `json:"charts"`
	Canvases []canvasState `json:"canvases"`
	Rows     int           `json:"rows"`
	Flagged  int           `json:"flagged"`
	Tiles    []string      `json:"tiles"`
	// Bars: labels of the capacity chart, with the colour of the
	// reported-rate bar and its length in pixels.
	Bars []barState `json:"bars"`
	// Cells of the heat map with a non-zero size; Points of the swarm
	// chart's first line at finite positions.
	Cells  int `json:"cells"`
	Points int `json:"points"`
	Flows  int `json:"flows"` // cells of the transfer matrix with a size
}

type canvasState struct {
	ID     string `json:"id"`
	Drawn  bool   `json:"drawn"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Ink    int    `json:"ink"` // pixels with any opacity
}

type barState struct {
	Label  string  `json:"label"`
	Color  string  `json:"color"`
	Length float64 `json:"length"`
}

const readPage = `(() => {
  const canvases = Array.from(document.querySelectorAll('canvas')).map(c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let ink = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
    return {id: c.id, drawn: c.dataset.drawn === 'true', width: c.width, height: c.height, ink};
  });
  const cap = Chart.getChart('chart-capacity');
  const rate = cap.getDatasetMeta(1).data;
  const bars = cap.data.labels.map((l, i) => ({label: l, color: String(cap.data.datasets[1].backgroundColor[i]),
    length: rate[i] ? Math.abs(rate[i].x - rate[i].base) : 0}));
  const heat = Chart.getChart('chart-heatmap').getDatasetMeta(0).data.filter(e => e.width > 0 && e.height > 0).length;
  const flows = Chart.getChart('chart-flows').getDatasetMeta(0).data.filter(e => e.width > 0 && e.height > 0).length;
  const points = Chart.getChart('chart-swarm').getDatasetMeta(0).data.filter(p => Number.isFinite(p.x) && Number.isFinite(p.y)).length;
  return {
    charts: document.body.dataset.charts || '',
    canvases, bars, cells: heat, points, flows,
    rows: document.querySelectorAll('#peers tbody tr').length,
    flagged: document.querySelectorAll('#peers tbody tr.flagged').length,
    tiles: Array.from(document.querySelectorAll('#verdict-counts .tile')).map(e => e.querySelector('b').textContent + ' ' + e.querySelector('span').textContent),
  };
})()`

// TestHTMLInChromium opens the report of a real audit in headless
// Chromium: the page must load offline with no console error, draw its
// three charts (flagged peers in red), and sort its table. The screenshot
// is kept in the test's directory and, when SWARMAUDIT_ARTIFACTS is set,
// copied there.
func TestHTMLInChromium(t *testing.T) {
	res, cheaters := auditFixture(t)
	r, err := Build(res, Options{Truth: &Truth{Cheaters: cheaters}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	htmlPath := filepath.Join(dir, "report.html")
	f, err := os.Create(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(f, r); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	ctx := testclients.Browser(t, dir)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	var mu sync.Mutex
	var problems, warnings []string
	pageURL := "file://" + htmlPath
	err = chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			problems = append(problems, fmt.Sprintf("exception at %d:%d: %s", d.LineNumber+1, d.ColumnNumber+1, msg))
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, strings.TrimSpace(string(a.Value)+" "+a.Description))
			}
			line := fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " "))
			switch ev.Type {
			case runtime.ConsoleAPICalledTypeError, runtime.ConsoleAPICalledTypeAssert:
				problems = append(problems, line)
			case runtime.ConsoleAPICalledTypeWarning:
				warnings = append(warnings, line)
			}
		case *log.EventEntryAdded:
			line := fmt.Sprintf("log %s (%s): %s %s", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			if ev.Entry.Level == log.EntryLevelError {
				problems = append(problems, line)
			} else {
				warnings = append(warnings, line)
			}
		case *network.EventRequestWillBeSent:
			if u := ev.Request.URL; u != pageURL {
				problems = append(problems, "the page fetched "+u)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL)); err != nil {
		t.Fatal(err)
	}
	// The script sets body[data-charts] when it has drawn every chart (or
	// fails, which the console records).
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.body.dataset.charts !== undefined`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("the charts were never drawn: %v", err)
	}
	st, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](readPage))
	if err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "report.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if art := os.Getenv("SWARMAUDIT_ARTIFACTS"); art != "" {
		if err := os.MkdirAll(art, 0o755); err != nil {
			t.Fatal(err)
		}
		for src, name := range map[string]string{shot: "reports-chromium.png", htmlPath: "reports-chromium.html"} {
			b, err := os.ReadFile(src)
			if err == nil {
				err = os.WriteFile(filepath.Join(art, name), b, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("screenshot: %s", filepath.Join(art, "reports-chromium.png"))
	}

	// Sorting: the first click on "reported up" sorts ascending, the
	// second descending.
	const readColumn = `Array.from(document.querySelectorAll('#peers tbody tr')).map(r => Number(r.cells[4].dataset.v))`
	var sorted [2][]float64
	for i := range sorted {
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.querySelectorAll('#peers thead th')[4].click()`)); err != nil {
			t.Fatal(err)
		}
		if sorted[i], err = chromedp.Run(ctx, chromedp.Evaluate[[]float64](readColumn)); err != nil {
			t.Fatal(err)
		}
	}
	// "Flagged only" hides the other rows.
	visible, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(() => { const cb = document.getElementById('flagged-only'); cb.click();
		return Array.from(document.querySelectorAll('#peers tbody tr')).filter(r => r.offsetParent !== null).length; })()`))
	if err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, w := range warnings {
		t.Logf("browser: %s", w)
	}
	for _, p := range problems {
		t.Errorf("browser: %s", p)
	}
	if st.Charts != "drawn" {
		t.Errorf("body[data-charts] = %q, want drawn", st.Charts)
	}
	if len(st.Canvases) != 4 {
		t.Fatalf("%d canvases, want 4: %+v", len(st.Canvases), st.Canvases)
	}
	for _, c := range st.Canvases {
		if !c.Drawn || c.Width < 200 || c.Height < 100 || c.Ink < 1000 {
			t.Errorf("chart %s not drawn: %+v", c.ID, c)
		}
	}
	if st.Points != len(r.Timeline.Times) {
		t.Errorf("swarm chart: %d points, want %d", st.Points, len(r.Timeline.Times))
	}
	wantCells := 0
	for _, p := range r.Peers {
		for _, v := range p.Pieces.Series {
			if p.Pieces.Known && v != nil {
				wantCells++
			}
		}
	}
	if st.Cells != wantCells || wantCells == 0 {
		t.Errorf("heat map: %d cells drawn, want %d", st.Cells, wantCells)
	}
	if c := charts(r); st.Flows != len(c.Flows) || len(c.Flows) == 0 {
		t.Errorf("transfer matrix: %d cells drawn, want %d", st.Flows, len(c.Flows))
	}
	flaggedBars := 0
	for _, b := range st.Bars {
		cheater := strings.HasPrefix(b.Label, "⚠ ")
		if cheater {
			flaggedBars++
			if b.Color != "#c62828" && b.Color != "#ef6c00" {
				t.Errorf("flagged bar %s is %s, not red or orange", b.Label, b.Color)
			}
		}
		if b.Length <= 0 {
			t.Errorf("bar %s has no length", b.Label)
		}
	}
	if flaggedBars != len(cheaters) {
		t.Errorf("%d flagged bars, want %d: %+v", flaggedBars, len(cheaters), st.Bars)
	}
	if st.Rows != len(r.Peers) || st.Flagged != r.Summary.FlaggedPeers || st.Flagged != len(cheaters) {
		t.Errorf("table: %d rows (%d flagged), report has %d peers (%d flagged)", st.Rows, st.Flagged, len(r.Peers), r.Summary.FlaggedPeers)
	}
	wantTiles := []string{
		fmt.Sprintf("%d misreporting", r.Summary.Verdicts.Misreporting), fmt.Sprintf("%d suspect", r.Summary.Verdicts.Suspect),
		fmt.Sprintf("%d ok", r.Summary.Verdicts.OK), fmt.Sprintf("%d unverifiable", r.Summary.Verdicts.Unverifiable),
	}
	if strings.Join(st.Tiles, "|") != strings.Join(wantTiles, "|") {
		t.Errorf("verdict tiles %q, want %q", st.Tiles, wantTiles)
	}
	for i, want := range []int{1, -1} {
		col := sorted[i]
		for k := 1; k < len(col); k++ {
			if (col[k]-col[k-1])*float64(want) < 0 {
				t.Errorf("click %d: column not sorted: %v", i+1, col)
				break
			}
		}
	}
	if visible != r.Summary.FlaggedPeers {
		t.Errorf("flagged only: %d rows visible, want %d", visible, r.Summary.FlaggedPeers)
	}
}
