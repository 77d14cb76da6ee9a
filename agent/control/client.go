// Package control is the agent's client of the coordinator's agent API:
// enrollment pinned to the CA fingerprint in the enrollment key, then
// mutual TLS with the node certificate for the netmap stream, endpoint
// updates and certificate renewal.
//
// It knows the wire protocol and nothing of the data plane: Stream hands
// complete netmaps (deltas already applied), each verified against the
// pinned netmap key, to a callback.
package control

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
)

// Errors Stream returns that callers branch on.
var (
	// ErrRefused means the coordinator no longer accepts this node (it
	// answered 401 or 403): it was deleted, or its certificate is no
	// longer the recorded one. Retrying will not help.
	ErrRefused = errors.New("coordinator refused this node")
	// ErrVersionGap means a delta did not apply to the map held; the
	// caller reconnects to get a full map.
	ErrVersionGap = errors.New("netmap version gap")
	// ErrSilent means the stream carried nothing for three keepalive
	// intervals.
	ErrSilent = errors.New("stream silent for three keepalive intervals")
)

// DefaultKeepAlive is the keepalive interval assumed until the coordinator
// names one.
const DefaultKeepAlive = 15 * time.Second

// callTimeout bounds the non-stream calls.
const callTimeout = 30 * time.Second

// maxLine bounds one stream message; a netmap of many thousand peers fits.
const maxLine = 64 << 20

// APIError is a non-2xx answer from the coordinator.
type APIError struct {
	Status int
	// Message is the coordinator's one-line reason (wire.Error), or the
	// HTTP status text when it sent none.
	Message string
}

func (e *APIError) Error() string { return e.Message }

// ClientConfig configures a Client.
type ClientConfig struct {
	// BaseURL is the coordinator, "https://host:port".
	BaseURL string
	// CA is the pinned coordinator CA.
	CA *x509.Certificate
	// Certificate returns the current node certificate and key; it is
	// called at every TLS handshake.
	Certificate func() (*tls.Certificate, error)
	// NodeID is this node; netmaps for anyone else are refused.
	NodeID wire.NodeID
	// NetmapKey is the pinned key that must have signed every netmap and
	// delta; others are refused. Required.
	NetmapKey ed25519.PublicKey
	Logger    *slog.Logger
	// KeepAlive is assumed until the coordinator names an interval;
	// zero means DefaultKeepAlive.
	KeepAlive time.Duration
}

// Client talks to the coordinator over mutual TLS. It is safe for
// concurrent use.
type Client struct {
	base      string
	nodeID    wire.NodeID
	nmKey     ed25519.PublicKey
	log       *slog.Logger
	keepAlive time.Duration
	tr        *http.Transport
	hc        *http.Client
}

// NewClient returns a client for cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	base, err := BaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.CA == nil || cfg.Certificate == nil {
		return nil, errors.New("control client: CA and certificate are required")
	}
	if cfg.NodeID == "" || len(cfg.NetmapKey) != ed25519.PublicKeySize {
		return nil, errors.New("control client: node ID and netmap key are required (enroll again to pin a netmap key)")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ka := cfg.KeepAlive
	if ka <= 0 {
		ka = DefaultKeepAlive
	}
	tr := &http.Transport{
		TLSClientConfig:       pinnedTLSConfig(cfg.CA, cfg.Certificate),
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: callTimeout,
		IdleConnTimeout:       90 * time.Second,
		Proxy:                 nil,
		DialContext:           contextDial, // dial.go
	}
	return &Client{
		base:      base,
		nodeID:    cfg.NodeID,
		nmKey:     cfg.NetmapKey,
		log:       log,
		keepAlive: ka,
		tr:        tr,
		hc:        &http.Client{Transport: tr, CheckRedirect: noRedirects},
	}, nil
}

// Close drops idle connections. Calls in flight are ended by their
// contexts.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// CloseIdleConnections makes the next call handshake again, presenting
// the current certificate.
func (c *Client) CloseIdleConnections() { c.tr.CloseIdleConnections() }

// Update reports changed node facts (endpoints, posture); nil fields are
// left as the coordinator has them.
func (c *Client) Update(ctx context.Context, req wire.UpdateRequest) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	what := "endpoints"
	switch {
	case req.Posture != nil && req.Endpoints != nil:
		what = "endpoints and posture"
	case req.Posture != nil:
		what = "posture"
	}
	if err := doJSON(ctx, c.hc, http.MethodPost, c.base+wire.PathUpdate, req, nil); err != nil {
		return fmt.Errorf("reporting %s: %s", what, oneLine(err))
	}
	return nil
}

// Renew asks for a new node certificate for the key that signed csr.
// The caller checks the certificate before using it.
func (c *Client) Renew(ctx context.Context, csr []byte) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var resp wire.RenewResponse
	if err := doJSON(ctx, c.hc, http.MethodPost, c.base+wire.PathRenew, wire.RenewRequest{CSR: csr}, &resp); err != nil {
		return nil, fmt.Errorf("renewing certificate: %s", oneLine(err))
	}
	cert, err := x509.ParseCertificate(resp.Certificate)
	if err != nil {
		return nil, fmt.Errorf("renewing certificate: coordinator sent a bad certificate: %v", err)
	}
	return cert, nil
}

// RequestAccess asks the coordinator for just-in-time access from this
// node (POST wire.PathNodeAccess) and returns the request as recorded:
// pending, or approved at once when the policy auto-approves it. A refusal
// by the coordinator is returned as an error wrapping *APIError.
func (c *Client) RequestAccess(ctx context.Context, req wire.NodeAccessRequest) (wire.AccessRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var resp wire.AccessRequest
	if err := doJSON(ctx, c.hc, http.MethodPost, c.base+wire.PathNodeAccess, req, &resp); err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			return wire.AccessRequest{}, fmt.Errorf("requesting access: %w", ae)
		}
		return wire.AccessRequest{}, fmt.Errorf("requesting access: %s", oneLine(err))
	}
	return resp, nil
}

// StreamFunc receives every netmap the stream yields, full maps and the
// results of deltas alike, each verified against the pinned netmap key
// with signature sig; full is true for a full map. It must not keep nm
// past the call without copying (Stream never modifies it).
type StreamFunc func(nm *wire.Netmap, sig []byte, full bool)

// Stream holds one netmap stream until it fails or ctx ends, calling fn
// for every new netmap. It always returns an error: ctx.Err() after a
// cancellation, an error wrapping ErrRefused, ErrVersionGap, ErrSilent or
// wire.ErrBadSignature, or a transport or protocol error. A message whose
// signature does not verify ends the stream before fn sees anything of it.
func (c *Client) Stream(ctx context.Context, fn StreamFunc) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+wire.PathStream, nil)
	if err != nil {
		return err
	}
	req.Header.Set(wire.HeaderProtocol, strconv.Itoa(wire.ProtocolVersion))
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("connecting: %s", oneLine(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ae := readAPIError(resp)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return fmt.Errorf("%w: %s", ErrRefused, ae.Message)
		}
		return fmt.Errorf("opening stream: %s (HTTP %d)", ae.Message, ae.Status)
	}

	type line struct {
		msg wire.StreamMessage
		err error
	}
	lines := make(chan line)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), maxLine)
		for sc.Scan() {
			b := sc.Bytes()
			if len(bytes.TrimSpace(b)) == 0 {
				continue
			}
			var l line
			if err := json.Unmarshal(b, &l.msg); err != nil {
				l.err = fmt.Errorf("decoding stream message: %v", err)
			}
			select {
			case lines <- l:
			case <-ctx.Done():
				return
			}
			if l.err != nil {
				return
			}
		}
		err := sc.Err()
		if err == nil {
			err = errors.New("stream closed by coordinator")
		}
		select {
		case lines <- line{err: err}:
		case <-ctx.Done():
		}
	}()
	// The reader ends once the body is closed or ctx is done; both
	// happen before we return (deferred cancel and Body.Close), and we
	// wait for it so no goroutine outlives the call.
	defer func() { cancel(); resp.Body.Close(); <-readerDone }()

	interval := c.keepAlive
	silence := time.NewTimer(3 * interval)
	defer silence.Stop()
	var cur *wire.Netmap
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-silence.C:
			return fmt.Errorf("%w (%s)", ErrSilent, 3*interval)
		case l := <-lines:
			if l.err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return l.err
			}
			m := l.msg
			switch m.Type {
			case wire.MsgNetmap:
				if m.Netmap == nil {
					return errors.New("stream: netmap message without a netmap")
				}
				if m.Netmap.Self.ID != c.nodeID {
					return fmt.Errorf("stream: netmap is for node %q, not this node", m.Netmap.Self.ID)
				}
				if err := wire.VerifyNetmap(c.nmKey, c.nodeID, m.Netmap, m.Signature); err != nil {
					return fmt.Errorf("stream: refusing netmap version %d: %w", m.Netmap.Version, err)
				}
				cur = m.Netmap
				wire.SortPeers(cur.Peers)
				fn(cur, m.Signature, true)
			case wire.MsgDelta:
				if m.Delta == nil {
					return errors.New("stream: delta message without a delta")
				}
				if cur == nil {
					return fmt.Errorf("%w: delta before the first netmap", ErrVersionGap)
				}
				next, err := cur.Apply(m.Delta)
				if err != nil {
					return fmt.Errorf("%w: %v", ErrVersionGap, err)
				}
				if err := wire.VerifyNetmap(c.nmKey, c.nodeID, next, m.Signature); err != nil {
					return fmt.Errorf("stream: refusing delta to version %d: %w", m.Delta.Version, err)
				}
				cur = next
				fn(cur, m.Signature, false)
			case wire.MsgKeepAlive:
				if m.KeepAlive > 0 {
					interval = m.KeepAlive
				}
			default:
				c.log.Debug("ignoring unknown stream message", "type", m.Type)
			}
			if !silence.Stop() {
				select {
				case <-silence.C:
				default:
				}
			}
			silence.Reset(3 * interval)
		}
	}
}

// doJSON sends in (if not nil) as JSON and decodes a 2xx answer into out
// (if not nil). A non-2xx answer is returned as *APIError.
func doJSON(ctx context.Context, hc *http.Client, method, u string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set(wire.HeaderProtocol, strconv.Itoa(wire.ProtocolVersion))
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readAPIError(resp)
	}
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, wire.MaxRequestBytes))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxLine)).Decode(out); err != nil {
		return fmt.Errorf("decoding coordinator answer: %v", err)
	}
	return nil
}

func readAPIError(resp *http.Response) *APIError {
	ae := &APIError{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	var we wire.Error
	if json.Unmarshal(b, &we) == nil && we.Message != "" {
		ae.Message = firstLine(we.Message)
	} else {
		ae.Message = strings.ToLower(http.StatusText(resp.StatusCode))
		if ae.Message == "" {
			ae.Message = "HTTP " + strconv.Itoa(resp.StatusCode)
		}
	}
	return ae
}

// oneLine renders a transport error without the "Post URL:" prefix that
// net/http adds, on one line.
func oneLine(err error) string {
	return firstLine(unwrapURL(err).Error())
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
