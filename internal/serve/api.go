package serve

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"html/template"
	"net/http"
	"net/netip"
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
	// File is the watch folder's file of the swarm; Source says where the
	// swarm came from: "watch folder" or "tracker database".
	File    string `json:"file,omitempty"`
	Source  string `json:"source"`
	Private bool   `json:"private"`
	// Node audits the swarm ("" for a single node). Swarms of other nodes
	// are listed too, without progress: their verdicts are in the shared
	// database.
	Node string `json:"node"`
	// Peers is the count of peers known in the swarm (every source).
	Peers    int              `json:"peers"`
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
	User string `json:"user"`
	// UserID is the tracker's own user id, when the reports came from its
	// database or logs ("uid:N" users): the operator acts on it.
	UserID        string   `json:"user_id,omitempty"`
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
//	GET /api/v1/users/{user}     one user's verdicts in every swarm
//	GET /swarms/{hash}           one swarm's HTML report, with its charts
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
	mux.HandleFunc("GET /api/v1/users/{user}", s.serveUser)
	mux.HandleFunc("GET /swarms/{hash}", s.serveSwarmHTML)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", s.serveDashboard)
	return mux
}

func (s *Service) statuses() []SwarmStatus {
	out := []SwarmStatus{}
	for _, sw := range s.list() {
		st := SwarmStatus{InfoHash: sw.torrent.InfoHash.HexString(), Name: sw.torrent.Name, File: sw.path, Private: sw.torrent.Private,
			Node: s.cfg.NodeID, Since: sw.added.UTC(), Progress: *sw.progress.Load(), Verdicts: map[string]int{}}
		st.Peers, st.Source = st.Progress.Discovered, "watch folder"
		if isTrackerSwarm(sw.path) {
			st.File, st.Source = "", "tracker database"
		}
		if res, at := sw.latest(); res != nil {
			st.JudgedAt = at.UTC()
			for k, n := range res.counts {
				st.Verdicts[string(k)] = n
			}
		}
		out = append(out, st)
	}
	return out
}

func (s *Service) serveSwarm(w http.ResponseWriter, r *http.Request) {
	if rep := s.swarmReport(w, r); rep != nil {
		w.Header().Set("Content-Type", "application/json")
		reports.WriteJSON(w, rep)
	}
}

// serveSwarmHTML is the swarm's report as the audit command writes it
// (reports.WriteHTML): every finding with its evidence and charts.
func (s *Service) serveSwarmHTML(w http.ResponseWriter, r *http.Request) {
	if rep := s.swarmReport(w, r); rep != nil {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		reports.WriteHTML(w, rep)
	}
}

// swarmReport builds the report of the swarm {hash} over ?window, with the
// passkeys hidden, or answers the error and returns nil.
func (s *Service) swarmReport(w http.ResponseWriter, r *http.Request) *reports.Report {
	var ih infohash.T
	if err := ih.FromHexString(r.PathValue("hash")); err != nil {
		http.Error(w, "not an info hash (40 hex digits)", http.StatusBadRequest)
		return nil
	}
	s.mu.Lock()
	sw := s.swarms[ih]
	s.mu.Unlock()
	if sw == nil {
		http.Error(w, "no such swarm", http.StatusNotFound)
		return nil
	}
	window, ok := windowOf(r)
	if !ok {
		http.Error(w, "window: want hour, day or nothing (the whole audit)", http.StatusBadRequest)
		return nil
	}
	j := sw.judgement(window)
	if j == nil {
		http.Error(w, "not judged yet", http.StatusServiceUnavailable)
		return nil
	}
	if j.report == nil {
		http.Error(w, "report: "+j.reportErr.Error(), http.StatusInternalServerError)
		return nil
	}
	return j.report
}

// UserVerdict is one of a user's verdicts in GET /api/v1/users/{user}.
type UserVerdict struct {
	InfoHash   string           `json:"info_hash"`
	Name       string           `json:"name"`
	Identity   string           `json:"identity"` // its key, passkey hidden
	Addrs      []netip.AddrPort `json:"addrs"`
	Status     string           `json:"status"`
	Confidence float64          `json:"confidence"`
	Reasons    []verdict.Reason `json:"reasons,omitempty"`
	Uploaded   int64            `json:"uploaded"`
	Downloaded int64            `json:"downloaded"`
}

// serveUser lists one user's verdicts in every swarm, worst first.
func (s *Service) serveUser(w http.ResponseWriter, r *http.Request) {
	window, ok := windowOf(r)
	if !ok {
		http.Error(w, "window: want hour, day or nothing (the whole audit)", http.StatusBadRequest)
		return
	}
	user := r.PathValue("user")
	out := []UserVerdict{}
	for _, sw := range s.list() {
		res := sw.judgement(window)
		if res == nil {
			continue
		}
		for _, v := range res.verdicts {
			if v.Identity.Passkey == "" || hiddenUser(v.Identity.Passkey, res.key) != user {
				continue
			}
			out = append(out, userVerdict(sw, res, v))
		}
	}
	if len(out) == 0 {
		http.Error(w, "no verdict of that user", http.StatusNotFound)
		return
	}
	sortVerdicts(out)
	writeJSON(w, out)
}

// hiddenUser is how the API names a user: its passkey as a keyed hash
// (reports.HidePasskey), a tracker user id ("uid:N") as it is.
func hiddenUser(user string, key []byte) string {
	return strings.TrimPrefix(reports.HidePasskey("|"+user, key), "|")
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
		for _, v := range res.verdicts {
			if v.Identity.Passkey == "" {
				continue
			}
			key := hiddenUser(v.Identity.Passkey, res.key)
			u := byUser[key]
			if u == nil {
				u = &User{User: key, Worst: string(v.Status)}
				if reports.IsUserID(key) {
					u.UserID = strings.TrimPrefix(key, "uid:")
				}
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
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>swarmaudit serve</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
.misreporting{color:#b00;font-weight:bold}.suspect{color:#c60}ul{margin:0;padding-left:1.2em}</style></head><body>
<h1>swarmaudit serve</h1>
<p>{{len .Swarms}} swarms audited; the page refreshes every 30 s. API: <a href="/api/v1/swarms">/api/v1/swarms</a>,
<a href="/api/v1/users">/api/v1/users</a>; metrics: <a href="/metrics">/metrics</a>.</p>
<h2>Swarms</h2>
<table id="swarms"><tr><th>swarm</th><th>node</th><th>peers known / reached / probed</th><th>misreporting</th><th>suspect</th><th>ok</th><th>unverifiable</th><th>judged</th></tr>
{{range .Swarms}}<tr><td>{{if .Local}}<a href="/swarms/{{.InfoHash}}">{{.Name}}</a>{{else}}{{.Name}}{{end}}</td><td>{{.Node}}</td><td>{{.Peers}} / {{.Progress.Reached}} / {{.Progress.Probed}}</td>
<td class="misreporting">{{index .Verdicts "misreporting"}}</td><td class="suspect">{{index .Verdicts "suspect"}}</td><td>{{index .Verdicts "ok"}}</td><td>{{index .Verdicts "unverifiable"}}</td>
<td>{{if .JudgedAt.IsZero}}not yet{{else}}{{.JudgedAt.Format "2006-01-02 15:04:05"}}{{end}}</td></tr>
{{end}}</table>
<h2>Flagged users</h2>
{{if .Flagged}}<table id="users"><tr><th>user</th><th>swarms</th><th>flagged in</th><th>worst</th><th>confidence</th></tr>
{{range .Flagged}}<tr><td><a href="/api/v1/users/{{.User}}">{{if .UserID}}user id {{.UserID}}{{else}}{{.User}}{{end}}</a></td><td>{{.Swarms}}</td><td>{{.FlaggedSwarms}}</td><td class="{{.Worst}}">{{.Worst}}</td><td>{{printf "%.2f" .Confidence}}</td></tr>
{{end}}</table>{{else}}<p>Nobody is flagged.</p>{{end}}
<h2>Findings</h2>
{{if .Findings}}<table id="findings"><tr><th>swarm</th><th>identity</th><th>verdict</th><th>evidence</th></tr>
{{range .Findings}}<tr><td><a href="/swarms/{{.InfoHash}}">{{.Name}}</a></td><td>{{.Identity}}<br>{{range .Addrs}}{{.}} {{end}}</td>
<td class="{{.Status}}">{{.Status}} {{printf "%.2f" .Confidence}}</td><td><ul>{{range .Reasons}}<li><b>{{.Code}}</b>: {{.Message}}</li>{{end}}</ul></td></tr>
{{end}}</table><p>Each swarm's report, with the charts of the evidence, is behind its name.</p>{{else}}<p>No finding.</p>{{end}}
</body></html>
`))

// dashboardSwarm is a swarm row of the dashboard: Local when this node
// audits it (its report is served here).
type dashboardSwarm struct {
	SwarmStatus
	Local bool
}

func (s *Service) serveDashboard(w http.ResponseWriter, r *http.Request) {
	var data struct {
		Swarms   []dashboardSwarm
		Flagged  []User
		Findings []UserVerdict
	}
	for _, st := range s.statuses() {
		data.Swarms = append(data.Swarms, dashboardSwarm{st, true})
	}
	if s.cfg.NodeID != "" {
		for _, st := range s.remoteStatuses(r.Context()) {
			data.Swarms = append(data.Swarms, dashboardSwarm{st, false})
		}
	}
	for _, u := range s.users() {
		if u.FlaggedSwarms > 0 {
			data.Flagged = append(data.Flagged, u)
		}
	}
	data.Findings = s.findings()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := dashboard.Execute(w, data); err != nil {
		s.log.Warn("dashboard", "err", err)
	}
}

// findings are the flagged verdicts of every swarm audited here, worst
// first, with their reasons (passkeys hidden).
func (s *Service) findings() []UserVerdict {
	var out []UserVerdict
	for _, sw := range s.list() {
		res, _ := sw.latest()
		if res == nil {
			continue
		}
		for _, v := range res.verdicts {
			if v.Status != verdict.StatusMisreporting && v.Status != verdict.StatusSuspect {
				continue
			}
			out = append(out, userVerdict(sw, res, v))
		}
	}
	sortVerdicts(out)
	return out
}

// userVerdict is v of swarm sw as the API shows it.
func userVerdict(sw *swarm, res *judgement, v verdict.Verdict) UserVerdict {
	return UserVerdict{
		InfoHash: sw.torrent.InfoHash.HexString(), Name: sw.torrent.Name,
		Identity: reports.HidePasskey(v.Identity.Key, res.key), Addrs: v.Identity.Addrs,
		Status: string(v.Status), Confidence: v.Confidence, Reasons: v.Reasons, Uploaded: v.Uploaded, Downloaded: v.Downloaded,
	}
}

// sortVerdicts orders verdicts worst first, then by confidence.
func sortVerdicts(vs []UserVerdict) {
	sort.SliceStable(vs, func(i, j int) bool {
		ri, rj := verdict.Status(vs[i].Status).Rank(), verdict.Status(vs[j].Status).Rank()
		if ri != rj {
			return ri < rj
		}
		return vs[i].Confidence > vs[j].Confidence
	})
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

// RequireToken answers 401 to any request without "Authorization: Bearer
// token" (compared in constant time). The token is a credential: it is
// never logged.
func RequireToken(h http.Handler, token string) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="swarmaudit"`)
			http.Error(w, "a bearer token is required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
