package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// MeshTag is the tag StartMesh's key gives every node.
const MeshTag = "tag:mesh"

// MeshPolicy lets every node tagged MeshTag reach every other on every
// TCP and UDP port and by ICMP: the whole mesh, for tests about the data
// plane rather than about policy.
const MeshPolicy = `// Every node of the test mesh may reach every other.
{
  "tagOwners": {"tag:mesh": []},
  "rules": [
    {"src": ["tag:mesh"], "dst": ["tag:mesh:1-65535", "tag:mesh:icmp"]},
  ],
  "tests": [
    {"src": "tag:mesh", "accept": ["tag:mesh:22", "tag:mesh:65535", "tag:mesh:icmp"]},
  ],
}
`

// WritePolicy writes src to a new file in the coordinator host's work
// directory and returns its path.
func (c *Coordinator) WritePolicy(t netns.TB, src string) string {
	t.Helper()
	f, err := os.CreateTemp(c.Host.Dir, "policy-*.hujson")
	if err != nil {
		t.Fatalf("writing policy file: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(src); err != nil {
		t.Fatalf("writing policy file: %v", err)
	}
	return f.Name()
}

// TrySetPolicy runs `latch policy set FILE --yes extra...` with src in
// FILE and returns how it went.
func (c *Coordinator) TrySetPolicy(ctx context.Context, t netns.TB, src string, extra ...string) (netns.Result, error) {
	t.Helper()
	path := c.WritePolicy(t, src)
	return c.Admin(ctx, append([]string{"policy", "set", path, "--yes"}, extra...)...)
}

// SetPolicy saves src as the policy with `latch policy set FILE --yes`,
// failing t unless it succeeds, and returns what the command printed.
func (c *Coordinator) SetPolicy(t netns.TB, src string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	res, err := c.TrySetPolicy(ctx, t, src)
	if err != nil {
		t.Fatalf("latch policy set: exit %d: %s", res.Code, strings.TrimSpace(res.Stderr))
	}
	return res.Stdout
}

// Policy returns the current policy (GET wire.PathPolicy with the
// bootstrap token). With no policy saved the coordinator answers an error
// or version 0.
func (c *Coordinator) Policy(ctx context.Context) (wire.PolicyInfo, error) {
	var info wire.PolicyInfo
	err := c.API(ctx, http.MethodGet, wire.PathPolicy, nil, &info)
	return info, err
}

// AccessRequests lists access requests in state ("pending", "active" or
// "all") from the admin API.
func (c *Coordinator) AccessRequests(ctx context.Context, state string) ([]wire.AccessRequest, error) {
	var list []wire.AccessRequest
	err := c.API(ctx, http.MethodGet, wire.PathAccess+"?state="+url.QueryEscape(state), nil, &list)
	return list, err
}

// CreateToken runs `latch tokens create --user USER --scopes S,.. --json`
// with the bootstrap token and returns the new token.
func (c *Coordinator) CreateToken(t netns.TB, user string, scopes ...string) wire.CreateTokenResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	res, err := c.Admin(ctx, "tokens", "create", "--user", user, "--scopes", strings.Join(scopes, ","),
		"--description", "e2e "+user, "--json")
	if err != nil {
		t.Fatalf("creating token: %v", err)
	}
	var tok wire.CreateTokenResponse
	if err := json.Unmarshal([]byte(res.Stdout), &tok); err != nil || tok.Token == "" {
		t.Fatalf("latch tokens create --json: cannot read the token (%v) from %d bytes of output", err, len(res.Stdout))
	}
	return tok
}

// EnvAs is Env with token instead of the bootstrap token.
func (c *Coordinator) EnvAs(token string) []string {
	return []string{
		"LATCH_COORDINATOR=" + c.URL,
		"LATCH_TOKEN=" + token,
		"LATCH_CA_FILE=" + c.CAFile(),
	}
}

// AdminAs runs `latch args...` on the coordinator's host with token as the
// admin token.
func (c *Coordinator) AdminAs(ctx context.Context, token string, args ...string) (netns.Result, error) {
	return c.Host.RunEnv(ctx, c.EnvAs(token), append([]string{c.Bins.Path(CLIBin)}, args...)...)
}

// API calls the coordinator's admin API from its own host with the
// bootstrap token: body (if not nil) is sent as JSON and a 2xx answer is
// decoded into out (if not nil). A refusal returns the coordinator's
// one-line reason.
func (c *Coordinator) API(ctx context.Context, method, path string, body, out any) error {
	token, err := os.ReadFile(c.TokenFile())
	if err != nil {
		return fmt.Errorf("reading bootstrap token: %w", err)
	}
	hc, err := c.HTTPClient(c.Host)
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e wire.Error
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
	}
	return nil
}
