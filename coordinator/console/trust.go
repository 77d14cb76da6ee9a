package console

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/latchnet/latch/wire"
)

type trustData struct {
	Rules []wire.TrustRule
	// Form holds a refused form's values, to fill it again.
	Form trustForm
}

type trustForm struct {
	Name, Issuer, Audience, Claims, Tags, MaxLifetime string
	Ephemeral                                         bool
}

// trustPage renders the CI trust rules page (wire.PathTrustRules,
// keys:write).
func (c *Console) trustPage(w http.ResponseWriter, r *http.Request, s *session, d trustData, status int, errMsg string) {
	v := newView(r, s, "CI trust rules", "trust")
	if err := c.call(r.Context(), r, s, http.MethodGet, wire.PathTrustRules, nil, &d.Rules); err != nil {
		v.D = d
		c.fail(w, r, "trust", v, err)
		return
	}
	v.D = d
	v.Error = errMsg
	c.render(w, status, "trust", v)
}

func (c *Console) handleTrustRules(w http.ResponseWriter, r *http.Request, s *session) {
	c.trustPage(w, r, s, trustData{}, http.StatusOK, "")
}

// parseClaims reads "claim=pattern" lines.
func parseClaims(s string) (map[string]string, string) {
	claims := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, "claims: want one claim=pattern per line, got " + truncate(line, 60)
		}
		claims[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return claims, ""
}

func (c *Console) handleCreateTrustRule(w http.ResponseWriter, r *http.Request, s *session) {
	f := trustForm{
		Name: strings.TrimSpace(r.PostFormValue("name")), Issuer: strings.TrimSpace(r.PostFormValue("issuer")),
		Audience: strings.TrimSpace(r.PostFormValue("audience")), Claims: r.PostFormValue("claims"),
		Tags: r.PostFormValue("tags"), MaxLifetime: r.PostFormValue("max_lifetime"), Ephemeral: r.PostFormValue("ephemeral") == "on",
	}
	claims, msg := parseClaims(f.Claims)
	if msg != "" {
		c.trustPage(w, r, s, trustData{Form: f}, http.StatusBadRequest, msg)
		return
	}
	life, err := parseDuration(f.MaxLifetime)
	if err != nil {
		c.trustPage(w, r, s, trustData{Form: f}, http.StatusBadRequest, "maximum lifetime: "+err.Error())
		return
	}
	req := wire.TrustRuleRequest{Name: f.Name, Issuer: f.Issuer, Audience: f.Audience, Claims: claims, Tags: splitTags(f.Tags),
		Ephemeral: f.Ephemeral, MaxLifetime: life}
	if err := c.call(r.Context(), r, s, http.MethodPost, wire.PathTrustRules, req, nil); err != nil {
		c.trustPage(w, r, s, trustData{Form: f}, statusOf(err), err.Error())
		return
	}
	redirect(w, r, Prefix+"/trust-rules", "trust-created")
}

func (c *Console) handleDeleteTrustRule(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.call(r.Context(), r, s, http.MethodDelete, wire.PathTrustRules+"/"+url.PathEscape(r.PathValue("id")), nil, nil); err != nil {
		c.trustPage(w, r, s, trustData{}, statusOf(err), err.Error())
		return
	}
	redirect(w, r, Prefix+"/trust-rules", "deleted")
}
