package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/wire"
)

// apiError is an API call's refusal, as the API worded it.
type apiError struct {
	Status  int
	Message string
	// Line and Column place a refused policy's error (wire.PolicyError).
	Line, Column int
}

func (e *apiError) Error() string { return e.Message }

// withPlace is the message with its line and column in front, unless the
// API's message already starts with them.
func (e *apiError) withPlace() string {
	if e.Line == 0 || strings.HasPrefix(e.Message, "line ") {
		return e.Message
	}
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Message)
}

// maxAPIResponse bounds an in-process answer the console reads.
const maxAPIResponse = 32 << 20

// recorder is a minimal in-memory http.ResponseWriter for in-process API
// calls.
type recorder struct {
	status int
	header http.Header
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.body.Len()+len(b) > maxAPIResponse {
		return 0, fmt.Errorf("API answer larger than %d bytes", maxAPIResponse)
	}
	return r.body.Write(b)
}

// call makes one API request as the session's principal: in is sent as
// the JSON body (nil for none), a 2xx answer is decoded into out (if not
// nil), anything else returns an *apiError. orig is the browser's request
// (its remote address is kept for the API's logs).
func (c *Console) call(ctx context.Context, orig *http.Request, s *session, method, path string, in, out any) error {
	var body io.Reader = http.NoBody
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding API request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(api.WithPrincipal(ctx, s.principal()), method, path, body)
	if err != nil {
		return fmt.Errorf("building API request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if orig != nil {
		req.RemoteAddr = orig.RemoteAddr
	}
	rec := &recorder{header: make(http.Header)}
	c.cfg.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status < 200 || rec.status > 299 {
		var pe wire.PolicyError
		json.Unmarshal(rec.body.Bytes(), &pe)
		msg := strings.TrimSpace(pe.Message)
		if msg == "" {
			msg = http.StatusText(rec.status)
		}
		return &apiError{Status: rec.status, Message: msg, Line: pe.Line, Column: pe.Column}
	}
	if out != nil {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("decoding API answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}
