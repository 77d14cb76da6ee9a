package api

import (
	"context"
	"net/http"
)

// Principal is a caller authenticated by other means than a bearer token,
// in-process: the web console's signed-in user. The console serves its
// pages by calling this same API handler with the principal in the
// request's context, so every read and change goes through the same
// routes, scope checks and audit records as the CLI's. A context value
// cannot be set from the network: only code linked into the coordinator
// can make one.
type Principal struct {
	// ID names the credential in audit records and logs, like a token ID
	// ("console-<session>").
	ID string
	// User is the person acting.
	User string
	// Scopes are what the user's role allows (wire.Scope*).
	Scopes []string
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p: admin routes served with it
// authorize p instead of reading an Authorization header.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalFrom(r *http.Request) (Principal, bool) {
	p, ok := r.Context().Value(principalKey{}).(Principal)
	return p, ok && p.ID != ""
}
