package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/latchnet/latch/wire"
)

// liveNode is a node as live updates describe it (static/console.js).
type liveNode struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Online      bool     `json:"online"`
	Tags        []string `json:"tags"`
	Addresses   []string `json:"addresses"`
	LastSeen    string   `json:"last_seen"`
	Quarantined bool     `json:"quarantined"`
	Expired     bool     `json:"expired"`
	// Posture is the reported posture's attributes (empty if none).
	Posture map[string]string `json:"posture"`
}

type liveRequest struct {
	ID      string `json:"id"`
	SrcName string `json:"src_name"`
	To      string `json:"to"`
	Port    uint16 `json:"port"`
	Reason  string `json:"reason"`
}

// liveFlow is a denied flow as live updates describe it.
type liveFlow struct {
	Last    string `json:"last"`
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	Port    string `json:"port"`
	Reason  string `json:"reason"`
	Packets uint64 `json:"packets"`
}

// keepaliveEvery bounds a live stream's silence (proxies drop idle ones).
const keepaliveEvery = 15 * time.Second

// handleEvents streams live updates as server-sent events: "nodes" (every
// node, when any node's presence or state changed) and "access" (the
// pending requests, when they changed). It polls the API as the session's
// principal every EventInterval, so it shows exactly what the session may
// read; it ends when the session does, when the console closes, or when
// the browser goes.
func (c *Console) handleEvents(w http.ResponseWriter, r *http.Request, s *session) {
	select {
	case c.streams <- struct{}{}:
		defer func() { <-c.streams }()
	default:
		plainError(w, http.StatusServiceUnavailable, "too many live update streams")
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ctx, cancel := c.background(r.Context())
	defer cancel()
	var lastNodes, lastAccess, lastFlows []byte
	lastWrite := time.Now()
	tick := time.NewTicker(c.cfg.EventInterval)
	defer tick.Stop()
	for {
		if !c.stillValid(ctx, s) {
			fmt.Fprint(w, "event: bye\ndata: {}\n\n")
			rc.Flush()
			return
		}
		var buf bytes.Buffer
		if nodes, err := c.liveNodes(ctx, r, s); err == nil && !bytes.Equal(nodes, lastNodes) {
			fmt.Fprintf(&buf, "event: nodes\ndata: %s\n\n", nodes)
			lastNodes = nodes
		}
		if s.can(wire.ScopeAccessApprove) {
			if acc, err := c.liveAccess(ctx, r, s); err == nil && !bytes.Equal(acc, lastAccess) {
				fmt.Fprintf(&buf, "event: access\ndata: %s\n\n", acc)
				lastAccess = acc
			}
		}
		if s.can(wire.ScopeAuditRead) {
			if fl, err := c.liveFlows(ctx, r, s); err == nil && !bytes.Equal(fl, lastFlows) {
				fmt.Fprintf(&buf, "event: flows\ndata: %s\n\n", fl)
				lastFlows = fl
			}
		}
		if buf.Len() == 0 && time.Since(lastWrite) >= keepaliveEvery {
			buf.WriteString(": keepalive\n\n")
		}
		if buf.Len() > 0 {
			rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			lastWrite = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (c *Console) liveNodes(ctx context.Context, r *http.Request, s *session) ([]byte, error) {
	var nodes []wire.NodeInfo
	if err := c.call(ctx, r, s, http.MethodGet, wire.PathNodes, nil, &nodes); err != nil {
		return nil, err
	}
	out := make([]liveNode, 0, len(nodes))
	for _, n := range nodes {
		ln := liveNode{ID: string(n.ID), Name: n.Name, Online: n.Online, Quarantined: n.Quarantined, Expired: n.Expired,
			Tags: []string{}, Addresses: []string{}, LastSeen: "never", Posture: n.Posture.Attrs()}
		if ln.Posture == nil {
			ln.Posture = map[string]string{}
		}
		for _, t := range n.Tags {
			ln.Tags = append(ln.Tags, string(t))
		}
		for _, a := range n.Addresses {
			ln.Addresses = append(ln.Addresses, a.Addr().String())
		}
		if !n.LastSeen.IsZero() {
			// Coarse, so a node seen every second does not resend the list.
			ln.LastSeen = n.LastSeen.UTC().Truncate(time.Minute).Format("2006-01-02 15:04 UTC")
		}
		out = append(out, ln)
	}
	return json.Marshal(out)
}

func (c *Console) liveAccess(ctx context.Context, r *http.Request, s *session) ([]byte, error) {
	var reqs []wire.AccessRequest
	if err := c.call(ctx, r, s, http.MethodGet, wire.PathAccess+"?state=pending", nil, &reqs); err != nil {
		return nil, err
	}
	out := make([]liveRequest, 0, len(reqs))
	for _, q := range reqs {
		out = append(out, liveRequest{ID: q.ID, SrcName: q.SrcName, To: q.To, Port: q.Port, Reason: q.Reason})
	}
	return json.Marshal(out)
}

// liveFlows lists the latest denied flows, as the overview shows them.
func (c *Console) liveFlows(ctx context.Context, r *http.Request, s *session) ([]byte, error) {
	var recs []wire.FlowRecord
	if err := c.call(ctx, r, s, http.MethodGet, wire.PathFlows+"?verdict=drop&limit=10&since="+recentFlows, nil, &recs); err != nil {
		return nil, err
	}
	out := make([]liveFlow, 0, len(recs))
	proto := funcs["proto"].(func(wire.Proto) string)
	for _, f := range recs {
		lf := liveFlow{Last: f.Last.UTC().Format("2006-01-02 15:04:05 UTC"), Src: f.SrcName, Dst: f.DstName,
			Port: proto(f.Proto), Reason: f.Reason, Packets: f.Packets}
		if lf.Src == "" {
			lf.Src = f.Src.String()
		}
		if lf.Dst == "" {
			lf.Dst = f.Dst.String()
		}
		if f.DstPort != 0 {
			lf.Port += "/" + strconv.Itoa(int(f.DstPort))
		}
		out = append(out, lf)
	}
	return json.Marshal(out)
}

// stillValid reports whether s is still a valid session, without
// counting the stream as activity (an open tab does not defeat the idle
// timeout).
func (c *Console) stillValid(ctx context.Context, s *session) bool {
	st, err := c.cfg.Store.ConsoleSession(ctx, s.idHash)
	if err != nil {
		return false
	}
	now := c.cfg.Now()
	if !now.Before(st.Expires) || now.Sub(st.LastSeen) >= c.cfg.IdleTimeout+touchEvery {
		return false
	}
	acct, err := c.cfg.Store.ConsoleAccount(ctx, s.user)
	return err == nil && !acct.Disabled && acct.Role == s.role
}
