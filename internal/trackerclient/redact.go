package trackerclient

import (
	"net/url"
	"strings"
)

// Redacted stands for a secret removed from a tracker URL.
const Redacted = "REDACTED"

// secretParams are query parameters private trackers carry credentials in
// (Gazelle/Ocelot and UNIT3D passkeys, authkeys, torrent_pass, API tokens).
var secretParams = map[string]bool{
	"passkey": true, "authkey": true, "torrent_pass": true, "pk": true, "key": true,
	"token": true, "apikey": true, "api_key": true, "secret": true, "auth": true, "uid": true,
}

// Redact returns a tracker URL fit for a log line, an error message or a
// report: user info, query values of credential parameters, and every path
// segment that looks like a passkey (16 or more letters, digits, '-' or '_',
// as in /PASSKEY/announce and /announce/PASSKEY) are replaced by REDACTED.
// A URL that does not parse is not echoed at all.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable tracker URL)"
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	segs := strings.Split(u.Path, "/")
	for i, s := range segs {
		if looksSecret(s) {
			segs[i] = Redacted
		}
	}
	u.Path, u.RawPath = strings.Join(segs, "/"), ""
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = Redacted
		} else {
			for k := range q {
				if secretParams[strings.ToLower(k)] {
					q[k] = []string{Redacted}
				}
			}
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

func looksSecret(seg string) bool {
	if len(seg) < 16 {
		return false
	}
	for _, r := range seg {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Secrets returns the credentials a tracker URL carries (what Redact
// removes), so that text a tracker sends back — an error page or failure
// reason that quotes the request — can be scrubbed of them.
func Secrets(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	if p, ok := u.User.Password(); ok && p != "" {
		out = append(out, p)
	}
	if n := u.User.Username(); n != "" {
		out = append(out, n)
	}
	for _, s := range strings.Split(u.Path, "/") {
		if looksSecret(s) {
			out = append(out, s)
		}
	}
	if q, err := url.ParseQuery(u.RawQuery); err == nil {
		for k, vs := range q {
			if secretParams[strings.ToLower(k)] {
				for _, v := range vs {
					if v != "" {
						out = append(out, v, url.QueryEscape(v))
					}
				}
			}
		}
	}
	return out
}

// Scrub replaces every secret in s by REDACTED.
func Scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, Redacted)
		}
	}
	return s
}

// ScrubError returns err with the secrets of the tracker URL raw removed
// from its message; errors.Is and errors.As still see the original chain.
func ScrubError(err error, raw string) error {
	if err == nil {
		return nil
	}
	return scrubbed{msg: Scrub(err.Error(), Secrets(raw)), err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (s scrubbed) Error() string { return s.msg }
func (s scrubbed) Unwrap() error { return s.err }
