package reports

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/bytesize"
)

// The chart libraries, embedded verbatim from npm (assets/README.md says
// how to refresh them).
const (
	ChartJSVersion = "4.6.1"
	MatrixVersion  = "3.1.0"
)

var (
	//go:embed assets/chart.umd.min.js
	chartJS string
	//go:embed assets/chartjs-chart-matrix.min.js
	matrixJS string
	//go:embed web/report.js
	appJS string
	//go:embed web/report.css
	appCSS string
	//go:embed web/report.html.tmpl
	pageTemplate string
)

// Chart limits: the HTML charts show at most this many peers (flagged
// first); the table and the JSON keep every peer.
const (
	MaxBarPeers  = 60
	MaxHeatPeers = 150
)

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"bytes": func(b int64) string { return bytesize.Format(float64(b)) },
	"rate":  func(r float64) string { return bytesize.Format(r) + "/s" },
	"pct":   func(f float64) string { return strconv.Itoa(int(math.Round(fin(f)*100))) + "%" },
	"dur":   fmtDuration,
	"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"when": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"unix": func(t *time.Time) int64 {
		if t == nil {
			return -1
		}
		return t.UnixMilli()
	},
	"rank": rank,
	"fptr": func(f *float64) string {
		if f == nil {
			return "n/a"
		}
		return strconv.FormatFloat(fin(*f), 'f', 2, 64)
	},
}).Parse(pageTemplate))

// chartData is what the page's script draws (the CHARTS object).
type chartData struct {
	Times           []int64     `json:"times"` // bucket ends, Unix ms
	Span            float64     `json:"span"`  // seconds
	NumPieces       int         `json:"num_pieces"`
	Peers           []int       `json:"peers"`
	Seeders         []int       `json:"seeders"`
	Announcing      []int       `json:"announcing"`
	PiecesAvailable []int       `json:"pieces_available"`
	Copies          []float64   `json:"copies"`
	Bars            []chartBar  `json:"bars"`
	Heat            []chartHeat `json:"heat"`
	// Flows is the transfer matrix summed over the windows: peer labels
	// (senders and receivers alike) and one cell per pair.
	FlowLabels   []string    `json:"flow_labels"`
	Flows        []chartFlow `json:"flows"`
	FlowsOmitted int         `json:"-"`
	FlowsHeight  int         `json:"-"`
	BarsOmitted  int         `json:"-"`
	HeatOmitted  int         `json:"-"`
	BarsHeight   int         `json:"-"`
	HeatHeight   int         `json:"-"`
}

type chartBar struct {
	Label    string  `json:"label"`
	Verdict  string  `json:"verdict"`
	Flagged  bool    `json:"flagged"`
	Capacity float64 `json:"capacity"`
	Central  float64 `json:"central"`
	Rate     float64 `json:"rate"`
}

type chartFlow struct {
	From      int   `json:"from"` // index into FlowLabels
	To        int   `json:"to"`
	Lower     int64 `json:"lower"`
	Upper     int64 `json:"upper"`
	Plausible int64 `json:"plausible"`
}

// MaxFlowPeers caps the transfer chart's peers (those with the largest
// bounds are kept).
const MaxFlowPeers = 40

// flows sums the windows' transfer matrices per ordered pair and keeps the
// MaxFlowPeers peers with the largest upper bounds in or out.
func (c *chartData) flows(r *Report) {
	type pair struct{ from, to string }
	sum := map[pair]*chartFlow{}
	weight := map[string]int64{}
	for _, w := range r.Windows {
		for _, t := range w.Transfers {
			k := pair{t.From, t.To}
			f := sum[k]
			if f == nil {
				f = &chartFlow{}
				sum[k] = f
			}
			f.Lower, f.Upper = bytesize.Add(f.Lower, t.Lower), bytesize.Add(f.Upper, t.Upper)
			f.Plausible = bytesize.Add(f.Plausible, t.PlausibleUpper)
			weight[t.From] = bytesize.Add(weight[t.From], t.Upper)
			weight[t.To] = bytesize.Add(weight[t.To], t.Upper)
		}
	}
	addrs := make([]string, 0, len(weight))
	for a := range weight {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool {
		if weight[addrs[i]] != weight[addrs[j]] {
			return weight[addrs[i]] > weight[addrs[j]]
		}
		return addrs[i] < addrs[j]
	})
	if len(addrs) > MaxFlowPeers {
		c.FlowsOmitted = len(addrs) - MaxFlowPeers
		addrs = addrs[:MaxFlowPeers]
	}
	sort.Strings(addrs)
	index := map[string]int{}
	for i, a := range addrs {
		index[a] = i
		c.FlowLabels = append(c.FlowLabels, a)
	}
	for k, f := range sum {
		i, ok1 := index[k.from]
		j, ok2 := index[k.to]
		if ok1 && ok2 {
			c.Flows = append(c.Flows, chartFlow{From: i, To: j, Lower: f.Lower, Upper: f.Upper, Plausible: f.Plausible})
		}
	}
	sort.Slice(c.Flows, func(a, b int) bool {
		if c.Flows[a].From != c.Flows[b].From {
			return c.Flows[a].From < c.Flows[b].From
		}
		return c.Flows[a].To < c.Flows[b].To
	})
	c.FlowsHeight = 120 + 18*max(len(c.FlowLabels), 1)
}

type chartHeat struct {
	Label   string `json:"label"`
	Flagged bool   `json:"flagged"`
	Series  []*int `json:"series"`
}

// WriteHTML writes the report as one HTML page that opens offline: the
// chart library, the styles, the script and the data are all inline, and
// its content security policy forbids any fetch.
func WriteHTML(w io.Writer, r *Report) error {
	if r == nil {
		return fmt.Errorf("write html report: %w: nil report", ErrInput)
	}
	view := struct {
		R                             *Report
		Charts                        chartData
		ChartJS, MatrixJS, AppJS      template.JS
		CSS                           template.CSS
		ChartJSVersion, MatrixVersion string
		// Who names an identity key by the row that holds it.
		Who func(string) string
	}{
		R: r, Charts: charts(r), Who: whoFunc(r),
		// Trusted: our own files and the npm libraries, checked by a test
		// to hold no "</script".
		ChartJS: template.JS(chartJS), MatrixJS: template.JS(matrixJS), AppJS: template.JS(appJS), CSS: template.CSS(appCSS),
		ChartJSVersion: ChartJSVersion, MatrixVersion: MatrixVersion,
	}
	// Render into a buffer so a template error writes nothing partial.
	var buf bytes.Buffer
	if err := page.Execute(&buf, view); err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	return nil
}

// charts prepares the chart series, fitted to the bucket count (a report
// read back from JSON may be inconsistent).
func charts(r *Report) chartData {
	tl := r.Timeline
	nb := len(tl.Times)
	c := chartData{Span: fin(r.Swarm.Duration), NumPieces: r.Swarm.Pieces, Times: make([]int64, nb),
		Peers: fitInts(tl.Peers, nb), Seeders: fitInts(tl.Seeders, nb), Announcing: fitInts(tl.Announcing, nb),
		PiecesAvailable: fitInts(tl.PiecesAvailable, nb), Copies: make([]float64, nb), Bars: []chartBar{}, Heat: []chartHeat{},
		FlowLabels: []string{}, Flows: []chartFlow{}}
	for k, t := range tl.Times {
		c.Times[k] = t.UnixMilli()
		if k < len(tl.Copies) {
			c.Copies[k] = fin(tl.Copies[k])
		}
	}
	// Peers are in the report's order: worst verdicts first.
	labels := map[string]int{}
	label := func(p *Peer) string {
		l := p.Address
		if l == "" {
			l = "(no address)"
		}
		labels[l]++
		if n := labels[l]; n > 1 {
			l += " #" + strconv.Itoa(n)
		}
		return l
	}
	var bars []chartBar
	for i := range r.Peers {
		p := &r.Peers[i]
		rate := 0.0
		if p.Reported != nil {
			rate = fin(p.Reported.UploadRate)
		}
		capUp := 0.0
		if p.Capacity.Known {
			capUp = fin(p.Capacity.Upper)
		}
		if rate <= 0 && capUp <= 0 {
			continue
		}
		bars = append(bars, chartBar{Label: label(p), Verdict: p.Verdict, Flagged: p.Flagged, Capacity: capUp, Central: fin(p.Capacity.Central), Rate: rate})
	}
	if len(bars) > MaxBarPeers {
		c.BarsOmitted = len(bars) - MaxBarPeers
		bars = bars[:MaxBarPeers]
	}
	c.Bars = append(c.Bars, bars...)
	c.BarsHeight = 90 + 34*max(len(c.Bars), 1)

	clear(labels)
	for i := range r.Peers {
		p := &r.Peers[i]
		if !p.Pieces.Known {
			continue
		}
		if len(c.Heat) == MaxHeatPeers {
			c.HeatOmitted++
			continue
		}
		c.Heat = append(c.Heat, chartHeat{Label: label(p), Flagged: p.Flagged, Series: fitPtrs(p.Pieces.Series, nb)})
	}
	c.HeatHeight = 90 + 18*max(len(c.Heat), 1)
	c.flows(r)
	return c
}

// whoFunc names identity keys by their row's address and peer id.
func whoFunc(r *Report) func(string) string {
	names := map[string]string{}
	for _, p := range r.Peers {
		if p.Reported == nil {
			continue
		}
		for _, id := range p.Reported.Identities {
			name := p.Address
			if p.PeerIDText != "" {
				name += " " + p.PeerIDText
			}
			names[id.Key] = name
		}
	}
	return func(key string) string {
		if n, ok := names[key]; ok && n != "" {
			return n
		}
		return key
	}
}

func fitInts(v []int, n int) []int {
	out := make([]int, n)
	copy(out, v)
	return out
}

func fitPtrs(v []*int, n int) []*int {
	out := make([]*int, n)
	copy(out, v)
	return out
}

// fmtDuration prints seconds as "1h02m", "3m05s" or "4.5s".
func fmtDuration(s float64) string {
	s = fin(s)
	if s < 60 {
		return strconv.FormatFloat(s, 'f', 1, 64) + "s"
	}
	d := time.Duration(s * float64(time.Second)).Round(time.Second)
	h, m, sec := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	var sb strings.Builder
	if h > 0 {
		fmt.Fprintf(&sb, "%dh%02dm", h, m)
	} else {
		fmt.Fprintf(&sb, "%dm%02ds", m, sec)
	}
	return sb.String()
}
