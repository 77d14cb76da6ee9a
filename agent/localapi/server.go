package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/latchnet/latch/wire"
)

// Backend is what the local API serves. The agent implements it.
type Backend interface {
	// Up brings the node up (enrolling it if needed) and returns once it
	// has a netmap from the coordinator, or fails.
	Up(ctx context.Context, req UpRequest) (UpResponse, error)
	// Down disconnects from the coordinator and removes the interface;
	// the node stays enrolled.
	Down(ctx context.Context) error
	// Status reports the agent's state.
	Status(ctx context.Context) (Status, error)
	// Ping pings a peer, calling emit for the target and every reply,
	// in order, from the calling goroutine.
	Ping(ctx context.Context, req PingRequest, emit func(PingEvent)) error
	// RequestAccess asks the coordinator for just-in-time access from
	// this node and returns the request as recorded (pending, or
	// approved at once when the policy auto-approves it).
	RequestAccess(ctx context.Context, req wire.NodeAccessRequest) (wire.AccessRequest, error)
	// AccessRequest returns one of this node's own access requests as
	// the coordinator holds it now.
	AccessRequest(ctx context.Context, id string) (wire.AccessRequest, error)
}

// Error is a backend failure with the HTTP status to answer; other
// errors answer 500.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with status code and a formatted message.
func Errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

const maxBody = 64 << 10

// NewHandler returns the local API over b.
func NewHandler(b Backend, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{b: b, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathUp, s.up)
	mux.HandleFunc("POST "+PathDown, s.down)
	mux.HandleFunc("GET "+PathStatus, s.status)
	mux.HandleFunc("POST "+PathPing, s.ping)
	mux.HandleFunc("POST "+PathAccess, s.requestAccess)
	mux.HandleFunc("GET "+PathAccess+"/{id}", s.accessRequest)
	mux.HandleFunc("POST "+PathRotate, s.rotate)
	return mux
}

type server struct {
	b   Backend
	log *slog.Logger
}

func (s *server) up(w http.ResponseWriter, r *http.Request) {
	var req UpRequest
	if !decode(w, r, &req) {
		return
	}
	resp, err := s.b.Up(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *server) down(w http.ResponseWriter, r *http.Request) {
	if err := s.b.Down(r.Context()); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.b.Status(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *server) ping(w http.ResponseWriter, r *http.Request) {
	var req PingRequest
	if !decode(w, r, &req) {
		return
	}
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	started := false
	emit := func(ev PingEvent) {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if err := enc.Encode(ev); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
	}
	err := s.b.Ping(r.Context(), req, emit)
	switch {
	case err == nil:
	case !started:
		writeError(w, err)
	default:
		emit(PingEvent{Error: oneLine(err.Error())})
	}
}

func (s *server) requestAccess(w http.ResponseWriter, r *http.Request) {
	var req wire.NodeAccessRequest
	if !decode(w, r, &req) {
		return
	}
	resp, err := s.b.RequestAccess(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *server) accessRequest(w http.ResponseWriter, r *http.Request) {
	resp, err := s.b.AccessRequest(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, Errorf(http.StatusBadRequest, "bad request: %s", oneLine(err.Error())))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var e *Error
	if errors.As(err, &e) {
		code = e.Status
	}
	writeJSON(w, code, errorBody{Message: oneLine(err.Error())})
}

type errorBody struct {
	Message string `json:"error"`
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
