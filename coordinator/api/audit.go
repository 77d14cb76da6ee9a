package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// audited returns r's context carrying an audit entry by the calling API
// token: the store call made with it records the entry in the same
// transaction as its change. summary must never hold a secret.
func (s *Server) audited(r *http.Request, action, target string, summary map[string]any) context.Context {
	t := caller(r)
	return s.auditedBy(r.Context(), audit.TokenActor(t.ID, t.User), action, target, summary)
}

// auditedBy is audited with an explicit actor (an enrollment key, a node).
func (s *Server) auditedBy(ctx context.Context, actor, action, target string, summary map[string]any) context.Context {
	return audit.With(ctx, audit.Entry{Time: s.cfg.Now(), Actor: actor, Action: action, Target: target, Summary: summary})
}

// auditDenied records a call refused for lacking scope, in a transaction
// of its own. A failure to record is logged; the call is refused anyway.
func (s *Server) auditDenied(r *http.Request, t store.APIToken, scope string) {
	e := audit.Entry{
		Time:    s.cfg.Now(),
		Actor:   audit.TokenActor(t.ID, t.User),
		Action:  audit.TokenDenied,
		Target:  r.Method + " " + truncate(r.URL.Path, 200),
		Summary: map[string]any{"scope": scope},
	}
	if err := s.cfg.Store.AppendAudit(r.Context(), e); err != nil {
		s.log.Error("recording refused API call in the audit log", logToken, t.ID, logErr, err)
	}
}

func auditRecord(r audit.Record) wire.AuditRecord {
	summary := json.RawMessage(r.Summary)
	if !json.Valid(summary) {
		// Only a record edited outside Latch gets here; show it as text
		// (verify names it).
		b, _ := json.Marshal(r.Summary)
		summary = b
	}
	return wire.AuditRecord{Seq: r.Seq, Time: r.Time, Actor: r.Actor, Action: r.Action, Target: r.Target,
		Summary: summary, PrevHash: r.PrevHash, Hash: r.Hash}
}

// parseSince reads an RFC 3339 time or a duration meaning that long
// before now.
func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("since %q: duration must not be negative", truncate(v, 40))
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("since %q: want an RFC 3339 time or a duration such as 24h", truncate(v, 40))
	}
	return t, nil
}

func (s *Server) handleListAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.AuditFilter{Action: q.Get("action"), Actor: q.Get("actor"), Target: q.Get("target")}
	for _, v := range []string{f.Action, f.Actor, f.Target} {
		if len(v) > 200 {
			writeError(w, http.StatusBadRequest, "filter values are at most 200 bytes")
			return
		}
	}
	if v := q.Get("since"); v != "" {
		t, err := parseSince(v, s.cfg.Now())
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > store.MaxAuditLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want 1 to %d", truncate(v, 20), store.MaxAuditLimit))
			return
		}
		f.Limit = n
	}
	if q.Has("after_seq") {
		n, err := strconv.ParseInt(q.Get("after_seq"), 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("after_seq %q: want a record number", truncate(q.Get("after_seq"), 20)))
			return
		}
		f.AfterSeq, f.HasAfter = n, true
	}
	recs, err := s.cfg.Store.AuditRecords(r.Context(), f)
	if err != nil {
		s.internalError(w, r, "listing audit records", err)
		return
	}
	out := make([]wire.AuditRecord, 0, len(recs))
	for _, rec := range recs {
		out = append(out, auditRecord(rec))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleVerifyAudit(w http.ResponseWriter, r *http.Request) {
	var anchor *audit.Anchor
	if a := r.URL.Query().Get("anchor"); a != "" {
		parsed, err := audit.ParseAnchor(a)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		anchor = &parsed
	}
	v, err := store.VerifyAudit(r.Context(), s.cfg.Store, anchor)
	resp := wire.AuditVerifyResponse{OK: err == nil, Count: v.Count(), Head: v.Head()}
	if h := v.HeadAnchor(); h.Seq > 0 {
		resp.Anchor = h.String()
	}
	var broken *audit.BrokenError
	switch {
	case err == nil:
	case errors.As(err, &broken):
		resp.BrokenSeq, resp.Problem = broken.Seq, strings.TrimSpace(broken.Reason)
		s.log.Warn("audit chain broken", "seq", broken.Seq, "reason", broken.Reason, logToken, tokenID(r))
	default:
		s.internalError(w, r, "verifying the audit log", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}
