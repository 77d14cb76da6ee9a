package oidctest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// codeFlow is the authorization code flow's state: one registered client,
// the user /authorize signs in as, and the codes issued and not yet used.
// Guarded by Issuer.mu.
type codeFlow struct {
	clientID, secret string
	subject          string
	extra            map[string]any
	codes            map[string]*pendingCode
	// Refused counts /token requests refused (bad code, client or
	// PKCE verifier).
	refused int
	// wrongNonce makes ID tokens carry a nonce other than the one asked.
	wrongNonce bool
}

// pendingCode is an issued, unused authorization code.
type pendingCode struct {
	clientID, redirectURI, nonce, challenge, subject string
	extra                                            map[string]any
	expires                                          time.Time
}

// SetClient registers the one client the code flow accepts. Its secret
// may come as HTTP basic auth or as client_secret in the form.
func (i *Issuer) SetClient(id, secret string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.code.clientID, i.code.secret = id, secret
}

// SetUser sets who /authorize signs in (it approves at once, with no
// page): sub and extra claims (say "email") for the ID tokens of the
// codes it issues from now on.
func (i *Issuer) SetUser(sub string, extra map[string]any) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.code.subject, i.code.extra = sub, extra
}

// SetWrongNonce makes the ID tokens /token issues carry another nonce
// than the authorization request's (a client must refuse them).
func (i *Issuer) SetWrongNonce(on bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.code.wrongNonce = on
}

// TokenRefusals reports how many /token requests were refused.
func (i *Issuer) TokenRefusals() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.code.refused
}

// serveAuthorize is the authorization endpoint: it requires response_type
// code, the registered client, a redirect_uri, state and an S256 PKCE
// challenge, and redirects back at once with a single-use code (valid a
// minute) and the state.
func (i *Issuer) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	i.mu.Lock()
	defer i.mu.Unlock()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case i.code.clientID == "" || q.Get("client_id") != i.code.clientID:
		http.Error(w, "unknown client", http.StatusBadRequest)
		return
	case err != nil || redirect.Scheme != "https" || redirect.Host == "":
		http.Error(w, "redirect_uri must be an https URL", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		http.Error(w, "an S256 code_challenge is required", http.StatusBadRequest)
		return
	case q.Get("state") == "" || i.code.subject == "":
		http.Error(w, "state is required and a user must be set", http.StatusBadRequest)
		return
	}
	var b [24]byte
	rand.Read(b[:])
	code := base64.RawURLEncoding.EncodeToString(b[:])
	if i.code.codes == nil {
		i.code.codes = map[string]*pendingCode{}
	}
	i.code.codes[code] = &pendingCode{clientID: i.code.clientID, redirectURI: q.Get("redirect_uri"), nonce: q.Get("nonce"),
		challenge: q.Get("code_challenge"), subject: i.code.subject, extra: i.code.extra, expires: time.Now().Add(time.Minute)}
	back := redirect.Query()
	back.Set("code", code)
	back.Set("state", q.Get("state"))
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// serveToken is the token endpoint for authorization_code grants: the
// client must authenticate, the code must be unused and unexpired, the
// redirect_uri must match and the code_verifier must hash (S256) to the
// challenge. A code is spent by any attempt to redeem it.
func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	} else {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	refuse := func(what string) {
		i.code.refused++
		tokenError(w, what)
	}
	if i.code.clientID == "" || id != i.code.clientID || subtle.ConstantTimeCompare([]byte(secret), []byte(i.code.secret)) != 1 {
		refuse("invalid_client")
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		refuse("unsupported_grant_type")
		return
	}
	pc := i.code.codes[r.PostForm.Get("code")]
	delete(i.code.codes, r.PostForm.Get("code"))
	if pc == nil || time.Now().After(pc.expires) || pc.clientID != id || pc.redirectURI != r.PostForm.Get("redirect_uri") {
		refuse("invalid_grant")
		return
	}
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if r.PostForm.Get("code_verifier") == "" ||
		subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(pc.challenge)) != 1 {
		refuse("invalid_grant")
		return
	}
	claims := i.Claims(pc.subject, id)
	if pc.nonce != "" {
		claims["nonce"] = pc.nonce
	}
	if i.code.wrongNonce {
		claims["nonce"] = "not-the-nonce-asked-for"
	}
	for k, v := range pc.extra {
		claims[k] = v
	}
	i.mu.Unlock()
	idToken, err := i.Sign(claims)
	i.mu.Lock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var at [16]byte
	rand.Read(at[:])
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": base64.RawURLEncoding.EncodeToString(at[:]),
		"token_type":   "Bearer",
		"expires_in":   300,
		"id_token":     idToken,
	})
}

// tokenError answers an OAuth 2.0 error (400).
func tokenError(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code})
}
