package serve

import (
	"context"
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/anacrolix/torrent/types/infohash"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/reports"
)

// SwarmStatus is one swarm in GET /api/v1/swarms.
type SwarmStatus struct {
	InfoHash string `json:"info_hash"`
	Name     string `json:"name"`
	File     string `json:"file"`
	Private  bool   `json:"private"`
	// Node audits the swarm ("" for a single node). Swarms of other nodes
	// are listed too, without progress: their verdicts are in the shared
	// database.
	Node     string           `json:"node,omitempty"`
	Since    time.Time        `json:"since"`
	Progress collect.Progress `json:"progress"`
	// JudgedAt is the latest judgement (zero before the first); Verdicts
	// its counts by status.
	JudgedAt time.Time      `json:"judged_at,omitzero"`
	Verdicts map[string]int `json:"verdicts"`
}

// User is one user (passkey) across swarms in GET /api/v1/users: the
// passkey as a keyed hash (reports.HidePasskey), the swarms it reported
// in, those where one of its identities was flagged, its worst status and
// the combined confidence that it misreports somewhere (1 − Π(1 − c) over
// its flagged identities: a user inflating in ten swarms is stronger
// evidence than one).
type User struct {
	User          string   `json:"user"`
	Swarms        int      `json:"swarms"`
	FlaggedSwarms int      `json:"flagged_swarms"`
	Worst         string   `json:"worst"`
	Confidence    float64  `json:"confidence"`
	Flagged       []string `json:"flagged,omitempty"` // info hashes
}

// Handler serves the API, the metrics and the dashboard:
//
//	GET /api/v1/swarms           every swarm audited now
//	GET /api/v1/swarms/{hash}    one swarm's latest report (docs/report-schema.md)
//	GET /api/v1/users            users across swarms, worst first
//
// The report and the users take ?window=hour or ?window=day: the verdicts
// of the reports of the last hour or day (judged with every observation).
//
//	GET /metrics                 Prometheus
//	GET /                        the dashboard
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/swarms", func(w http.ResponseWriter, r *http.Request) {
		st := s.statuses()
		if s.cfg.NodeID != "" {
			st = append(st, s.remoteStatuses(r.Context())...)
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("GET /api/v1/swarms/{hash}", s.serveSwarm)
	mux.HandleFunc("GET /api/v1/users", func(w http.ResponseWriter, r *http.Request) {
		window, ok := windowOf(r)
		if !ok {
			http.Error(w, "window: want hour, day or nothing (the whole audit)", http.StatusBadRequest)
			return
		}
		writeJSON(w, s.usersOver(window))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", s.serveDashboard)
	return mux
}

func (s *Service) statuses() []SwarmStatus {
	out := []SwarmStatus{}
	for _, sw := range s.list() {
		st := SwarmStatus{InfoHash: sw.torrent.InfoHash.HexString(), Name: sw.torrent.Name, File: sw.path, Private: sw.torrent.Private,
			Node: s.cfg.NodeID, Since: sw.added.UTC(), Progress: *sw.progress.Load(), Verdicts: map[string]int{}}
		if res, at := sw.latest(); res != nil {
			st.JudgedAt = at.UTC()
			for k, n := range res.Report.Summary.Counts {
				st.Verdicts[string(k)] = n
			}
		}
		out = append(out, st)
	}
	return out
}

func (s *Service) serveSwarm(w http.ResponseWriter, r *http.Request) {
	var ih infohash.T
	if err := ih.FromHexString(r.PathValue("hash")); err != nil {
		http.Error(w, "not an info hash (40 hex digits)", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	sw := s.swarms[ih]
	s.mu.Unlock()
	if sw == nil {
		http.Error(w, "no such swarm", http.StatusNotFound)
		return
	}
	window, ok := windowOf(r)
	if !ok {
		http.Error(w, "window: want hour, day or nothing (the whole audit)", http.StatusBadRequest)
		return
	}
	res := sw.judgement(window)
	if res == nil {
		http.Error(w, "not judged yet", http.StatusServiceUnavailable)
		return
	}
	rep, err := reports.Build(res, reports.Options{Generator: "swarmaudit serve", Verdict: s.cfg.Verdict, HidePasskeys: true})
	if err != nil {
		http.Error(w, "report: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	reports.WriteJSON(w, rep)
}

// windowOf reads ?window=hour|day ("" for the whole audit).
func windowOf(r *http.Request) (string, bool) {
	w := r.URL.Query().Get("window")
	_, ok := Windows[w]
	return w, ok || w == ""
}

// users accumulates the latest verdicts per user across swarms.
func (s *Service) users() []User { return s.usersOver("") }

// usersOver is users over a window ("" for the whole audit).
func (s *Service) usersOver(window string) []User {
	byUser := map[string]*User{}
	miss := map[string]float64{} // Π(1 − c) over flagged identities
	for _, sw := range s.list() {
		res := sw.judgement(window)
		if res == nil {
			continue
		}
		seen := map[string]bool{}
		for _, v := range res.Report.Verdicts {
			if v.Identity.Passkey == "" {
				continue
			}
			key := strings.TrimPrefix(reports.HidePasskey("|"+v.Identity.Passkey, res.Evidence.PasskeyKey), "|")
			u := byUser[key]
			if u == nil {
				u = &User{User: key, Worst: string(v.Status)}
				byUser[key], miss[key] = u, 1
			}
			if !seen[key] {
				seen[key] = true
				u.Swarms++
			}
			if v.Status.Rank() < verdict.Status(u.Worst).Rank() {
				u.Worst = string(v.Status)
			}
			if v.Status == verdict.StatusMisreporting || v.Status == verdict.StatusSuspect {
				miss[key] *= 1 - v.Confidence
				ih := sw.torrent.InfoHash.HexString()
				if len(u.Flagged) == 0 || u.Flagged[len(u.Flagged)-1] != ih {
					u.Flagged = append(u.Flagged, ih)
					u.FlaggedSwarms++
				}
			}
		}
	}
	out := make([]User, 0, len(byUser))
	for k, u := range byUser {
		if u.FlaggedSwarms > 0 {
			u.Confidence = 1 - miss[k]
		}
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].FlaggedSwarms != out[j].FlaggedSwarms {
			return out[i].FlaggedSwarms > out[j].FlaggedSwarms
		}
		if out[i].Confidence != out[j].Confidence {
			return out[i].Confidence > out[j].Confidence
		}
		return out[i].User < out[j].User
	})
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

var dashboard = template.Must(template.New("dash").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>swarmaudit serve</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}
.misreporting{color:#b00;font-weight:bold}.suspect{color:#c60}</style></head><body>
<h1>swarmaudit serve</h1>
<p>{{len .Swarms}} swarms audited; the page refreshes every 10 s. API: <a href="/api/v1/swarms">/api/v1/swarms</a>,
<a href="/api/v1/users">/api/v1/users</a>; metrics: <a href="/metrics">/metrics</a>.</p>
<h2>Swarms</h2>
<table><tr><th>swarm</th><th>peers discovered / reached / probed</th><th>misreporting</th><th>suspect</th><th>ok</th><th>unverifiable</th><th>judged</th></tr>
{{range .Swarms}}<tr><td><a href="/api/v1/swarms/{{.InfoHash}}">{{.Name}}</a></td><td>{{.Progress.Discovered}} / {{.Progress.Reached}} / {{.Progress.Probed}}</td>
<td class="misreporting">{{index .Verdicts "misreporting"}}</td><td class="suspect">{{index .Verdicts "suspect"}}</td><td>{{index .Verdicts "ok"}}</td><td>{{index .Verdicts "unverifiable"}}</td>
<td>{{if .JudgedAt.IsZero}}not yet{{else}}{{.JudgedAt.Format "2006-01-02 15:04:05"}}{{end}}</td></tr>
{{end}}</table>
<h2>Users</h2>
<table><tr><th>user (keyed hash of the passkey)</th><th>swarms</th><th>flagged in</th><th>worst</th><th>confidence</th></tr>
{{range .Users}}<tr><td>{{.User}}</td><td>{{.Swarms}}</td><td>{{.FlaggedSwarms}}</td><td class="{{.Worst}}">{{.Worst}}</td><td>{{printf "%.2f" .Confidence}}</td></tr>
{{end}}</table></body></html>
`))

func (s *Service) serveDashboard(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	dashboard.Execute(w, struct {
		Swarms []SwarmStatus
		Users  []User
	}{s.statuses(), s.users()})
}

// remoteStatuses lists the swarms other nodes hold leases on.
func (s *Service) remoteStatuses(ctx context.Context) []SwarmStatus {
	ls, err := s.cfg.Store.Leases(ctx)
	if err != nil {
		s.log.Warn("leases", "err", err)
		return nil
	}
	var out []SwarmStatus
	for _, l := range ls {
		if l.Node == s.cfg.NodeID || len(l.Name) != 40 { // node heartbeats and probe turns are not swarms
			continue
		}
		st := SwarmStatus{InfoHash: l.Name, Node: l.Node, Verdicts: map[string]int{}}
		var ih infohash.T
		if ih.FromHexString(l.Name) == nil {
			if sw, err := s.cfg.Store.LookupSwarm(ctx, ih); err == nil {
				st.Name = sw.Name
			}
		}
		out = append(out, st)
	}
	return out
}
