package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
)

// adminFlags are the flags every admin verb takes.
type adminFlags struct {
	e                                 *env
	coordinator, token, tokenFile, ca *string
}

func addAdminFlags(fs *flag.FlagSet, e *env) *adminFlags {
	return &adminFlags{
		e:           e,
		coordinator: fs.String("coordinator", "", "coordinator `URL` (env LATCH_COORDINATOR)"),
		token:       fs.String("token", "", "admin API `token` (env LATCH_TOKEN)"),
		tokenFile:   fs.String("token-file", "", "read the admin API token from `file` (env LATCH_TOKEN_FILE)"),
		ca:          fs.String("ca-file", "", "PEM `file` of the coordinator CA (env LATCH_CA_FILE; default: system roots)"),
	}
}

// first returns the first non-empty value.
func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// client builds the admin API client: flags first, then the environment.
func (f *adminFlags) client() (*adminClient, error) {
	coord := first(*f.coordinator, f.e.getenv("LATCH_COORDINATOR"))
	if coord == "" {
		return nil, usagef("no coordinator: pass --coordinator or set LATCH_COORDINATOR")
	}
	if !strings.Contains(coord, "://") {
		coord = "https://" + coord
	}
	u, err := url.Parse(coord)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, usagef("invalid coordinator URL %q: want https://host[:port]", coord)
	}
	token := *f.token
	if token == "" && *f.tokenFile != "" {
		if token, err = readToken(*f.tokenFile); err != nil {
			return nil, err
		}
	}
	if token == "" {
		token = f.e.getenv("LATCH_TOKEN")
	}
	if token == "" {
		if path := f.e.getenv("LATCH_TOKEN_FILE"); path != "" {
			if token, err = readToken(path); err != nil {
				return nil, err
			}
		}
	}
	if token == "" {
		return nil, usagef("no admin token: pass --token or --token-file, or set LATCH_TOKEN or LATCH_TOKEN_FILE")
	}
	tcfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if ca := first(*f.ca, f.e.getenv("LATCH_CA_FILE")); ca != "" {
		b, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("reading CA file %s: no PEM certificate", ca)
		}
		tcfg.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tcfg, Proxy: http.ProxyFromEnvironment, TLSHandshakeTimeout: 10 * time.Second}
	return &adminClient{
		base:  strings.TrimRight(u.String(), "/"),
		token: token,
		hc:    &http.Client{Transport: tr, Timeout: 30 * time.Second},
	}, nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("reading token file %s: empty", path)
	}
	return t, nil
}

// adminClient calls the coordinator's admin API with a bearer token.
type adminClient struct {
	base  string
	token string
	hc    *http.Client
}

// do sends in (if not nil) and decodes a 2xx answer into out (if not
// nil). Failures are one line: the coordinator's reason, or why it could
// not be reached.
func (c *adminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the coordinator at %s: %v", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		ae := &apiError{Status: resp.StatusCode}
		// wire.PolicyError is wire.Error with a place in the policy.
		var pe wire.PolicyError
		if json.Unmarshal(b, &pe) == nil && pe.Message != "" {
			ae.Message, ae.Line, ae.Column = pe.Message, pe.Line, pe.Column
		} else {
			ae.Message = "coordinator answered " + resp.Status
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding the coordinator's answer: %v", err)
	}
	return nil
}

// apiError is a non-2xx answer of the admin API. Error() is the
// coordinator's one-line reason.
type apiError struct {
	Status  int
	Message string
	// Line and Column place a refused policy's error (wire.PolicyError);
	// zero when the error has no place.
	Line, Column int
}

func (e *apiError) Error() string { return e.Message }

// statusOf returns the HTTP status of an admin API error, or 0.
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}
