package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmaudit/swarmaudit/internal/serve"
)

// statusOptions are the status command's options.
type statusOptions struct {
	api     string
	timeout time.Duration
}

func newStatusCmd(g *globalOptions) *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status [--api URL]",
		Short: "Ask a running swarmaudit serve how its swarms and users stand",
		Long: `Ask a running 'swarmaudit serve' (its --api-listen) for its swarms and the
users it flagged, and print them; with --json, one object {"swarms": [...],
"users": [...]} as the API gives them. The bearer token, when the daemon
needs one, is read from $` + apiTokenEnv + `.

Exit codes: 0 nobody flagged, 1 the daemon could not be asked, 2 usage,
3 at least one user flagged.`,
		Example: `  swarmaudit status --api http://127.0.0.1:8080/`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.api, "api", "http://127.0.0.1:8080/", "the daemon's API: the URL of its --api-listen")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "give up on the daemon after this long")
	return cmd
}

// daemonStatus is what status reads from the daemon.
type daemonStatus struct {
	Swarms []serve.SwarmStatus `json:"swarms"`
	Users  []serve.User        `json:"users"`
}

func runStatus(ctx context.Context, g *globalOptions, o statusOptions, _ []string) error {
	base, err := url.Parse(o.api)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return usagef("--api %q: want the daemon's URL, such as http://127.0.0.1:8080/", o.api)
	}
	if err := positive("timeout", o.timeout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var st daemonStatus
	for path, into := range map[string]any{"api/v1/swarms": &st.Swarms, "api/v1/users": &st.Users} {
		if err := getAPI(ctx, base.JoinPath(path), into); err != nil {
			return err
		}
	}
	if g.JSON {
		if err := writeJSON(g.stdout, st); err != nil {
			return err
		}
	} else {
		printStatus(g.stdout, st)
	}
	flagged := 0
	for _, u := range st.Users {
		if u.FlaggedSwarms > 0 {
			flagged++
		}
	}
	if flagged > 0 {
		return flaggedError{users: flagged}
	}
	return nil
}

// getAPI reads one JSON answer of the daemon, with its bearer token.
func getAPI(ctx context.Context, u *url.URL, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if tok := os.Getenv(apiTokenEnv); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking the daemon: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("asking the daemon: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(into); err != nil {
		return fmt.Errorf("the daemon's answer to %s: %w", u.Path, err)
	}
	return nil
}

func printStatus(w io.Writer, st daemonStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "SWARM\tNODE\tPEERS\tREACHED\tPROBED\tMISREPORTING\tSUSPECT\tOK\tUNVERIFIABLE\tJUDGED\n")
	for _, s := range st.Swarms {
		judged := "not yet"
		if !s.JudgedAt.IsZero() {
			judged = s.JudgedAt.Local().Format("2006-01-02 15:04:05")
		}
		name := s.Name
		if name == "" {
			name = s.InfoHash
		}
		node := s.Node
		if node == "" {
			node = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", name, node, s.Peers, s.Progress.Reached, s.Progress.Probed,
			s.Verdicts["misreporting"], s.Verdicts["suspect"], s.Verdicts["ok"], s.Verdicts["unverifiable"], judged)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d swarms.", len(st.Swarms))
	var flagged []serve.User
	for _, u := range st.Users {
		if u.FlaggedSwarms > 0 {
			flagged = append(flagged, u)
		}
	}
	if len(flagged) == 0 {
		fmt.Fprintf(w, " Nobody flagged among %d users.\n", len(st.Users))
		return
	}
	fmt.Fprintf(w, " %d of %d users flagged:\n\n", len(flagged), len(st.Users))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "USER\tSWARMS\tFLAGGED IN\tWORST\tCONFIDENCE\n")
	for _, u := range flagged {
		name := u.User
		if u.UserID != "" {
			name = "user id " + u.UserID
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.2f\n", name, u.Swarms, u.FlaggedSwarms, u.Worst, u.Confidence)
	}
	tw.Flush()
}
