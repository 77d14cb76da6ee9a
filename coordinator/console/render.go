package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
)

// view is what every page template gets.
type view struct {
	Title string
	// Nav names the active navigation entry.
	Nav string
	// User, Role and CSRF are empty when signed out.
	User, Role, CSRF string
	// Can holds the scopes the user's role grants, to hide what the API
	// would refuse anyway.
	Can map[string]bool
	// Owner reports the owner role (console user management).
	Owner bool
	// Flash is a success message; Error a failure, both one line.
	Flash, Error string
	// D is the page's own data.
	D any
}

// newView returns a page view for s (nil when signed out).
func newView(r *http.Request, s *session, title, nav string) *view {
	v := &view{Title: title, Nav: nav, Can: map[string]bool{}}
	if s != nil {
		v.User, v.Role, v.CSRF, v.Owner = s.user, s.role, s.csrf, s.role == "owner"
		for _, sc := range []string{wire.ScopeNodesRead, wire.ScopeNodesWrite, wire.ScopeKeysWrite, wire.ScopePolicyWrite,
			wire.ScopeAccessApprove, wire.ScopeAuditRead, wire.ScopeAdmin} {
			v.Can[sc] = s.can(sc)
		}
	}
	if m, ok := flashes[r.URL.Query().Get("done")]; ok {
		v.Flash = m
	}
	return v
}

// flashes are the success messages a redirect may name (?done=CODE); a
// fixed set, so a link cannot make the console say anything else.
var flashes = map[string]string{
	"revoked":       "Revoked.",
	"deleted":       "Deleted.",
	"quarantined":   "Node quarantined.",
	"released":      "Node released from quarantine.",
	"expiry":        "Node expiry changed.",
	"tags":          "Tags changed.",
	"approved":      "Access request approved.",
	"denied":        "Access request denied.",
	"grant-ended":   "Access grant revoked.",
	"restored":      "Policy version restored as the new current version.",
	"user-created":  "Account created.",
	"user-changed":  "Account changed.",
	"signed-out":    "Signed out.",
	"trust-created": "Trust rule created.",
}

// redirect answers a POST with 303 to a console page, optionally with a
// flash code.
func redirect(w http.ResponseWriter, r *http.Request, to, done string) {
	if done != "" {
		to += "?done=" + url.QueryEscape(done)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"f2":      f2,
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return roundDur(time.Since(t)) + " ago"
	},
	"dur": roundDur,
	"tags": func(ts []wire.Tag) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = string(t)
		}
		return strings.Join(s, ", ")
	},
	"join": strings.Join,
	"proto": func(p wire.Proto) string {
		switch p {
		case wire.ProtoTCP:
			return "tcp"
		case wire.ProtoUDP:
			return "udp"
		case wire.ProtoICMP:
			return "icmp"
		case wire.ProtoICMPv6:
			return "icmpv6"
		}
		return fmt.Sprint(uint8(p))
	},
	"prefixes": func(ps any) string { return fmt.Sprint(ps) },
}

// roundDur renders d coarsely: "3h 4m", "5m 6s", "7s".
func roundDur(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// parsePages parses every page template with the shared layout.
func parsePages() (map[string]*template.Template, error) {
	files, err := fs.Glob(assets, "assets/templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := make(map[string]*template.Template)
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "assets/templates/layout.html", f)
		if err != nil {
			return nil, fmt.Errorf("console: parsing %s: %w", f, err)
		}
		pages[name] = t
	}
	if len(pages) == 0 {
		return nil, errors.New("console: no page templates")
	}
	return pages, nil
}

// render writes page name with v. Rendering into a buffer first means a
// template error never sends half a page.
func (c *Console) render(w http.ResponseWriter, status int, name string, v *view) {
	t, ok := c.pages[name]
	if !ok {
		c.log.Error("console: no such page template", logPage, name)
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		c.log.Error("console: rendering page", logPage, name, logErr, err)
		plainError(w, http.StatusInternalServerError, "internal error while rendering the page")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// fail renders page name with err as the page's error: an API refusal
// keeps its status (403 for a role that may not), others are 500.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, name string, v *view, err error) {
	status := http.StatusInternalServerError
	var ae *apiError
	if errors.As(err, &ae) {
		status = ae.Status
		v.Error = ae.withPlace()
	} else {
		c.log.Error("console: "+name, logErr, err, logPath, r.URL.Path)
		v.Error = "internal error; see the coordinator's log"
	}
	c.render(w, status, name, v)
}
