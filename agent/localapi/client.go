package localapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/latchnet/latch/wire"
)

// Client calls the local API of the agent listening on a unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the agent at socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Up calls POST /v1/up.
func (c *Client) Up(ctx context.Context, req UpRequest) (UpResponse, error) {
	var resp UpResponse
	err := c.do(ctx, http.MethodPost, PathUp, req, &resp)
	return resp, err
}

// Down calls POST /v1/down.
func (c *Client) Down(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, PathDown, nil, nil)
}

// Status calls GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, PathStatus, nil, &st)
	return st, err
}

// RequestAccess calls POST /v1/access.
func (c *Client) RequestAccess(ctx context.Context, req wire.NodeAccessRequest) (wire.AccessRequest, error) {
	var resp wire.AccessRequest
	err := c.do(ctx, http.MethodPost, PathAccess, req, &resp)
	return resp, err
}

// AccessRequest calls GET /v1/access/{id}.
func (c *Client) AccessRequest(ctx context.Context, id string) (wire.AccessRequest, error) {
	var resp wire.AccessRequest
	err := c.do(ctx, http.MethodGet, PathAccess+"/"+url.PathEscape(id), nil, &resp)
	return resp, err
}

// Ping calls POST /v1/ping and hands every event to fn as it arrives. An
// Error event ends the answer and is returned as an error.
func (c *Client) Ping(ctx context.Context, req PingRequest, fn func(PingEvent)) error {
	resp, err := c.send(ctx, http.MethodPost, PathPing, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev PingEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("decoding ping answer: %v", err)
		}
		if ev.Error != "" {
			return errors.New(ev.Error)
		}
		fn(ev)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading ping answer: %v", err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding agent answer: %v", err)
	}
	return nil
}

// send makes one call; a non-2xx answer becomes an error with the agent's
// one-line message.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://latchd"+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach latchd at %s (is it running?): %s", c.socket, dialReason(err))
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		var eb errorBody
		if json.Unmarshal(b, &eb) == nil && eb.Message != "" {
			return nil, errors.New(eb.Message)
		}
		return nil, fmt.Errorf("latchd answered %s", resp.Status)
	}
	return resp, nil
}

func dialReason(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		s := oe.Err.Error()
		// "connect: no such file or directory" reads better without the verb.
		if i := strings.LastIndex(s, ": "); i >= 0 {
			s = s[i+2:]
		}
		return s
	}
	return oneLine(err.Error())
}
