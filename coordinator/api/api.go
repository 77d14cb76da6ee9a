// Package api is the coordinator's HTTPS API: one http.Handler serving the
// agent API (enrollment, the netmap stream, updates, certificate renewal,
// access requests; see package wire) and the admin API (enrollment keys,
// nodes, API tokens, the access policy and access grants).
//
// Authentication is per route. Enrollment is authenticated by the
// enrollment key in the body; every other agent route requires a node
// certificate (mutual TLS) that chains to the network's CA, names an
// existing node and carries that node's current certificate key. Admin
// routes require "Authorization: Bearer <API token>" with the route's
// scope (wire.Scope*) or the admin scope; outside it they answer 403,
// and the refusal is audited.
//
// Every state change appends an audit record (package audit) in the same
// store transaction as the change; GET wire.PathAudit lists the log and
// wire.PathAuditVerify re-walks its hash chain.
//
// Every request body is bounded by wire.MaxRequestBytes (413 beyond) and
// decoded strictly (400 for malformed JSON or unknown fields). Every error
// is a one-line wire.Error. Nothing is stored when a request fails.
package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/federation"
	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// Log keys.
const (
	logNode   = "node"
	logName   = "name"
	logKeyID  = "key_id"
	logToken  = "token_id"
	logRemote = "remote"
	logErr    = "err"
)

// ioTimeout bounds reading a request body and writing a response (other
// than a stream's).
const ioTimeout = 30 * time.Second

// Config wires the API to the rest of the coordinator.
type Config struct {
	Store store.Store
	CA    *ca.CA
	Hub   *netmap.Hub
	// Grants is told when a grant was approved, so it can expire it in
	// time. Optional.
	Grants interface{ Kick() }
	// NodeCertLifetime is the validity of issued node certificates.
	NodeCertLifetime time.Duration
	// Keepalive is the longest a netmap stream stays silent.
	Keepalive time.Duration
	// RateLimits bound enrollment and API token attempts; zero fields
	// take DefaultRateLimits.
	RateLimits RateLimits
	// Now defaults to time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// NodeKeyExpiry is the key lifetime of enrolled nodes whose enrollment
	// key sets none (identity, issue 4); zero means
	// store.DefaultNodeKeyExpiry.
	NodeKeyExpiry time.Duration
	// NodeExpiry is told when node key expiries changed (an enrollment,
	// an admin's expiry), so it can expire them in time (identity, issue
	// 4). Optional.
	NodeExpiry interface{ Kick() }
	// FlowReports bounds how often one node may POST flow reports (flow
	// logs, issue 4); a zero Limit takes DefaultFlowReportLimit, a
	// negative Rate turns the limit off.
	FlowReports ratelimit.Limit
	// Federation verifies workload identity (OIDC) tokens for federated
	// enrollment (issue 5). Nil: a verifier trusting the system roots.
	Federation *federation.Verifier
}

// Server is the API handler.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	policies policyCache
	limits   limiters
}

// New returns the API handler.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeCertLifetime <= 0 {
		cfg.NodeCertLifetime = time.Hour
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = 10 * time.Second
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), limits: newLimiters(cfg.RateLimits, cfg.Now)}
	s.route("/healthz", map[string]http.HandlerFunc{http.MethodGet: s.handleHealth})
	s.route(wire.PathEnroll, map[string]http.HandlerFunc{http.MethodPost: s.agent(s.limitEnrollIP(s.handleEnroll))})
	s.route(wire.PathStream, map[string]http.HandlerFunc{http.MethodGet: s.agent(s.node(s.handleStream))})
	s.route(wire.PathUpdate, map[string]http.HandlerFunc{http.MethodPost: s.agent(s.node(s.handleUpdate))})
	s.route(wire.PathRenew, map[string]http.HandlerFunc{http.MethodPost: s.agent(s.node(s.handleRenew))})
	s.route(wire.PathRotate, map[string]http.HandlerFunc{http.MethodPost: s.agent(s.node(s.handleRotate))})
	s.routeLeave() // leave.go: ephemeral nodes remove themselves (issue 5)
	s.route(wire.PathNodeAccess, map[string]http.HandlerFunc{http.MethodPost: s.agent(s.node(s.handleNodeAccess))})
	s.route(wire.PathNodeAccess+"/{id}", map[string]http.HandlerFunc{http.MethodGet: s.agent(s.node(s.handleGetNodeAccess))})

	s.route(wire.PathKeys, map[string]http.HandlerFunc{
		http.MethodGet:  s.admin(wire.ScopeKeysWrite, s.handleListKeys),
		http.MethodPost: s.admin(wire.ScopeKeysWrite, s.handleCreateKey),
	})
	s.route(wire.PathKeys+"/{id}", map[string]http.HandlerFunc{http.MethodDelete: s.admin(wire.ScopeKeysWrite, s.handleRevokeKey)})
	s.route(wire.PathNodes, map[string]http.HandlerFunc{http.MethodGet: s.admin(wire.ScopeNodesRead, s.handleListNodes)})
	s.route(wire.PathNodes+"/{ref}", map[string]http.HandlerFunc{
		http.MethodGet:    s.admin(wire.ScopeNodesRead, s.handleGetNode),
		http.MethodDelete: s.admin(wire.ScopeNodesWrite, s.handleDeleteNode),
	})
	s.route(wire.PathNodes+"/{ref}/revoke", map[string]http.HandlerFunc{http.MethodPost: s.admin(wire.ScopeNodesWrite, s.handleRevokeNode)})
	s.route(wire.PathTokens, map[string]http.HandlerFunc{
		http.MethodGet:  s.admin(wire.ScopeAdmin, s.handleListTokens),
		http.MethodPost: s.admin(wire.ScopeAdmin, s.handleCreateToken),
	})
	s.route(wire.PathTokens+"/{id}", map[string]http.HandlerFunc{http.MethodDelete: s.admin(wire.ScopeAdmin, s.handleRevokeToken)})
	s.route(wire.PathPolicy, map[string]http.HandlerFunc{
		http.MethodGet:  s.admin(wire.ScopeNodesRead, s.handleGetPolicy),
		http.MethodPost: s.admin(wire.ScopePolicyWrite, s.handleSetPolicy),
	})
	s.route(wire.PathPolicyVersions, map[string]http.HandlerFunc{http.MethodGet: s.admin(wire.ScopeNodesRead, s.handleListPolicies)})
	s.route(wire.PathPolicyVersions+"/{v}", map[string]http.HandlerFunc{http.MethodGet: s.admin(wire.ScopeNodesRead, s.handleGetPolicyVersion)})
	s.route(wire.PathPolicyVersions+"/{v}/restore", map[string]http.HandlerFunc{http.MethodPost: s.admin(wire.ScopePolicyWrite, s.handleRestorePolicy)})
	s.route(wire.PathPolicyPairs, map[string]http.HandlerFunc{http.MethodGet: s.admin(wire.ScopeNodesRead, s.handlePolicyPairs)}) // pairs.go (console)
	s.route(wire.PathAccess, map[string]http.HandlerFunc{http.MethodGet: s.admin(wire.ScopeAccessApprove, s.handleListAccess)})
	s.route(wire.PathAccess+"/{id}/approve", map[string]http.HandlerFunc{http.MethodPost: s.admin(wire.ScopeAccessApprove, s.handleApproveAccess)})
	s.route(wire.PathAccess+"/{id}/deny", map[string]http.HandlerFunc{http.MethodPost: s.admin(wire.ScopeAccessApprove, s.handleDenyAccess)})
	s.route(wire.PathAccess+"/{id}/revoke", map[string]http.HandlerFunc{http.MethodPost: s.admin(wire.ScopeAccessApprove, s.handleRevokeAccess)})
	s.route(wire.PathAudit, map[string]http.HandlerFunc{http.MethodGet: s.admin(wire.ScopeAuditRead, s.handleListAudit)})
	s.route(wire.PathAuditVerify, map[string]http.HandlerFunc{http.MethodGet: s.admin(wire.ScopeAuditRead, s.handleVerifyAudit)})
	s.routeIdentity()
	s.routeFlows()
	s.routeFederation()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint: "+r.URL.Path)
	})
	return s
}

// TLSConfig returns the coordinator's TLS settings: TLS 1.3 only, the
// server certificate from getCert, and client certificates verified
// against the network CA when presented (routes that need one check).
func TLSConfig(c *ca.CA, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: getCert,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      c.Pool(),
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != wire.PathStream {
		// Streams bound each write themselves; everything else is small
		// and answers at once. Errors mean the writer cannot (tests).
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(ioTimeout))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

// route registers a path whose methods are dispatched here, so a wrong
// method gets a JSON 405 like every other error.
func (s *Server) route(pattern string, methods map[string]http.HandlerFunc) {
	allow := make([]string, 0, len(methods))
	for m := range methods {
		allow = append(allow, m)
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		h, ok := methods[r.Method]
		if !ok {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
			return
		}
		h(w, r)
	})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok")
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError writes a wire.Error. msg is flattened to one line.
func writeError(w http.ResponseWriter, status int, msg string) {
	msg = strings.Join(strings.Fields(msg), " ")
	writeJSON(w, status, wire.Error{Message: msg})
}

// decode reads r's JSON body into v strictly: at most
// wire.MaxRequestBytes, no unknown fields, nothing after the value. On
// failure it writes the error and returns false.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeLimit(w, r, v, wire.MaxRequestBytes)
}

// decodeLimit is decode with a body limit of its own.
func decodeLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	// Bound the time to send the body too (the server has no ReadTimeout:
	// on HTTP/1.1 it would also cut long-lived streams).
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(ioTimeout))
	defer rc.SetReadDeadline(time.Time{})
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var tooBig *http.MaxBytesError
	if err == nil {
		// Exactly one JSON value, then only white space.
		if _, err = dec.Token(); err == io.EOF {
			return true
		} else if !errors.As(err, &tooBig) {
			err = errors.New("trailing data after the JSON value")
		}
	}
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", limit))
	case err == io.EOF:
		writeError(w, http.StatusBadRequest, "malformed request body: empty")
	default:
		writeError(w, http.StatusBadRequest, "malformed request body: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	return false
}

// serveList answers a list request: it loads the items, converts each with
// conv and writes them as a JSON array (never null). op names the listing
// for the error a failed load gives.
func serveList[S, W any](s *Server, w http.ResponseWriter, r *http.Request, op string,
	load func(context.Context) ([]S, error), conv func(S) W) {
	items, err := load(r.Context())
	if err != nil {
		s.internalError(w, r, op, err)
		return
	}
	out := make([]W, 0, len(items))
	for _, it := range items {
		out = append(out, conv(it))
	}
	writeJSON(w, http.StatusOK, out)
}

// internalError logs err and answers 500 without details.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, op string, err error) {
	s.log.Error(op, logErr, err, logRemote, r.RemoteAddr)
	writeError(w, http.StatusInternalServerError, "internal error while "+op)
}
