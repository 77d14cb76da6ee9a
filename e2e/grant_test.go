package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// grantDuration is the life of the grant whose expiry the tests wait for
// with the coordinator killed: the 60 seconds.
const grantDuration = 60 * time.Second

// dbaUser is the approver basePolicy names (through group:dba).
const dbaUser = "dba@example.com"

// tryRequestAccess runs `latch access request args...` on host.
func tryRequestAccess(ctx context.Context, pn *policyNet, host string, args ...string) (netns.Result, error) {
	return pn.agents[host].CLI(ctx, append([]string{"access", "request"}, args...)...)
}

// requestAccess asks for access from host with a unique reason, fails t
// unless the request is made, and returns it as the coordinator lists it.
func requestAccess(t *testing.T, pn *policyNet, host string, args ...string) wire.AccessRequest {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reason := "e2e " + randHex(t, 4)
	res, err := tryRequestAccess(ctx, pn, host, append(args, "--reason", reason)...)
	if err != nil {
		t.Fatalf("latch access request on %s: %v", host, err)
	}
	t.Logf("latch access request %s on %s:\n%s", strings.Join(args, " "), host, res.Stdout)
	list, err := pn.coord.AccessRequests(ctx, "all")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		if r.Reason == reason {
			return r
		}
	}
	t.Fatalf("the coordinator lists no access request with reason %q: %+v", reason, list)
	return wire.AccessRequest{}
}

// accessRequest returns the request with id as the coordinator lists it.
func accessRequest(t *testing.T, pn *policyNet, id string) wire.AccessRequest {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := pn.coord.AccessRequests(ctx, "all")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("access request %s is not listed", id)
	return wire.AccessRequest{}
}

// decide runs `latch access VERB ID` as the holder of token.
func decide(ctx context.Context, pn *policyNet, token, verb, id string) (netns.Result, error) {
	return pn.coord.AdminAs(ctx, token, "access", verb, id, "--reason", "e2e "+verb)
}

// dbaToken creates (once per policy network) a token for the DBA with
// scope access:approve.
func (pn *policyNet) dbaToken(t *testing.T) string {
	t.Helper()
	if pn.dba == "" {
		pn.dba = pn.coord.CreateToken(t, dbaUser, wire.ScopeAccessApprove).Token
	}
	return pn.dba
}

// approve approves request id as the DBA and returns the grant.
func approve(t *testing.T, pn *policyNet, id string) wire.AccessRequest {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := decide(ctx, pn, pn.dbaToken(t), "approve", id)
	if err != nil {
		t.Fatalf("latch access approve %s as %s: %v", id, dbaUser, err)
	}
	t.Logf("latch access approve as %s:\n%s", dbaUser, res.Stdout)
	r := accessRequest(t, pn, id)
	if r.State != wire.AccessApproved || r.Approver != dbaUser || r.Expires.IsZero() {
		t.Fatalf("after approval: state %q, approver %q, expires %v; want approved by %s with an expiry", r.State, r.Approver, r.Expires, dbaUser)
	}
	return r
}

// expectOutcomes sends each probe once, all at the same time, and checks
// how each ends.
func expectOutcomes(t *testing.T, pn *policyNet, when string, want map[flow]outcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for f, o := range want {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := 1500 * time.Millisecond
			if o == reached {
				timeout = 5 * time.Second
			}
			if res := send(ctx, pn.agents[f.src].Host, pn.v4[f.dst], f.probe, timeout); res.outcome != o {
				t.Errorf("%s: %v: %v, want %v", when, f, res, o)
			}
		}()
	}
	wg.Wait()
}

// waitReached polls f until it gets through. If it never does, it shows
// both ends' WireGuard sessions and TCP sockets before failing t.
func waitReached(t *testing.T, pn *policyNet, f flow, deadline time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline+10*time.Second)
	defer cancel()
	err := netns.Poll(deadline, func() error {
		if res := send(ctx, pn.agents[f.src].Host, pn.v4[f.dst], f.probe, 2*time.Second); res.outcome != reached {
			return fmt.Errorf("%v: %v", f, res)
		}
		return nil
	})
	if err != nil {
		logDataPlane(t, pn, f.src, f.dst)
		t.Fatalf("%v", err)
	}
}

// logDataPlane logs, for each host, what its WireGuard device says of its
// peers (latest handshakes, bytes each way: a session that carries packets
// one way only shows as one side sending more than the other receives)
// and its TCP sockets (a connection stuck in SYN-RECV got its SYN, but its
// SYN-ACK or the last ACK was lost). It never shows private keys.
func logDataPlane(t *testing.T, pn *policyNet, hosts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range hosts {
		a := pn.agents[h]
		var b strings.Builder
		for _, args := range [][]string{
			{"wg", "show", a.Iface, "latest-handshakes"},
			{"wg", "show", a.Iface, "transfer"},
			{"wg", "show", a.Iface, "endpoints"},
			{"ss", "-tan"},
		} {
			res, err := a.Host.Run(ctx, args...)
			fmt.Fprintf(&b, "$ %s\n%s", strings.Join(args, " "), res.Stdout)
			if err != nil {
				fmt.Fprintf(&b, "(%v)\n", err)
			}
		}
		t.Logf("data plane of %s (%s) at %s:\n%s", h, pn.v4[h], time.Now().Format("15:04:05.000"), b.String())
	}
}

var (
	ciToDB    = flow{hostCI, hostDB, tcpProbe(portDB)}
	ciToDBSSH = flow{hostCI, hostDB, tcpProbe(portSSH)}
	ciToDBUDP = flow{hostCI, hostDB, udpProbe(portDB)}
	ciToAPI   = flow{hostCI, hostAPI, tcpProbe(portAPI)}
	dbToCI    = flow{hostDB, hostCI, tcpProbe(portDB)}
)

// testAccessRequestRules checks that requests outside the policy's access
// rules are refused, that only a token whose user the rule names as an
// approver (and which has the access:approve scope) can approve, and that
// a pending or denied request opens nothing.
func testAccessRequestRules(t *testing.T, pn *policyNet) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	refused := []struct {
		name string
		host string
		args []string
	}{
		{"service-not-in-any-access-rule", hostCI, []string{"--to", "svc:api", "--for", "10m"}},
		{"longer-than-max-duration", hostCI, []string{"--to", "svc:db", "--for", "2h"}},
		{"source-not-in-the-access-rule", hostWeb, []string{"--to", "svc:db", "--for", "10m"}},
		{"port-outside-the-service", hostCI, []string{"--to", "svc:db", "--port", "22", "--for", "10m"}},
		{"unknown-service", hostCI, []string{"--to", "svc:nope", "--for", "10m"}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			reason := "e2e refused " + randHex(t, 4)
			res, err := tryRequestAccess(ctx, pn, tt.host, append(tt.args, "--reason", reason)...)
			if err == nil {
				t.Fatalf("latch access request %s on %s was accepted: %s", strings.Join(tt.args, " "), tt.host, res.Stdout)
			}
			if !oneLine(res.Stderr) {
				t.Errorf("the refusal is not one line: %q", res.Stderr)
			}
			t.Logf("refused: %s", strings.TrimSpace(res.Stderr))
			list, err := pn.coord.AccessRequests(ctx, "all")
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range list {
				if r.Reason == reason && (r.State == wire.AccessPending || r.State == wire.AccessApproved) {
					t.Errorf("a refused request is listed as %s: %+v", r.State, r)
				}
			}
		})
	}

	r := requestAccess(t, pn, hostCI, "--to", "svc:db", "--port", fmt.Sprint(portDB), "--for", "10m")
	if r.State != wire.AccessPending || r.SrcName != hostCI || r.To != "svc:db" {
		t.Fatalf("new request: %+v, want pending from ci to svc:db", r)
	}
	expectOutcomes(t, pn, "while the request is pending", map[flow]outcome{ciToDB: dropped})

	outsider := pn.coord.CreateToken(t, "eve@example.com", wire.ScopeAccessApprove).Token
	unscoped := pn.coord.CreateToken(t, dbaUser, wire.ScopeNodesRead).Token
	for _, c := range []struct{ who, token string }{
		{"a user the access rule does not name", outsider},
		{"the DBA with a token without access:approve", unscoped},
	} {
		res, err := decide(ctx, pn, c.token, "approve", r.ID)
		if err == nil {
			t.Errorf("%s approved the request: %s", c.who, res.Stdout)
		} else {
			t.Logf("approval by %s refused: %s", c.who, strings.TrimSpace(res.Stderr))
		}
	}
	if got := accessRequest(t, pn, r.ID); got.State != wire.AccessPending {
		t.Fatalf("after refused approvals the request is %s, want pending", got.State)
	}
	if _, err := decide(ctx, pn, pn.dbaToken(t), "deny", r.ID); err != nil {
		t.Fatalf("latch access deny as the DBA: %v", err)
	}
	if got := accessRequest(t, pn, r.ID); got.State != wire.AccessDenied || got.Approver != dbaUser {
		t.Errorf("after the DBA denied it: state %q by %q, want denied by %s", got.State, got.Approver, dbaUser)
	}
	expectOutcomes(t, pn, "after the request was denied", map[flow]outcome{ciToDB: dropped})
	pn.agents[hostCI].WaitPeers(t, 10*time.Second)
}

// grantCI requests and approves ci -> svc:db:5432 for d, waits until ci
// gets through, and returns the grant.
func grantCI(t *testing.T, pn *policyNet, d time.Duration) wire.AccessRequest {
	t.Helper()
	r := requestAccess(t, pn, hostCI, "--to", "svc:db", "--port", fmt.Sprint(portDB), "--for", d.String())
	g := approve(t, pn, r.ID)
	if got := g.Expires.Sub(g.Decided); got != d {
		t.Errorf("grant expires %v after its approval, want %v", got, d)
	}
	waitReached(t, pn, ciToDB, 20*time.Second)
	metric(t, "grant_approved_to_connect_ms", time.Since(g.Decided).Milliseconds(), "how=tcp_connect_polled_with_2s_attempts")
	pn.agents[hostCI].WaitPeers(t, 20*time.Second, hostDB)
	pn.agents[hostDB].WaitPeers(t, 20*time.Second, hostAPI, hostCI)
	// The grant opens exactly ci -> db 5432/tcp, nothing else.
	expectOutcomes(t, pn, "with the grant", map[flow]outcome{
		ciToDBSSH: dropped,
		ciToDBUDP: dropped,
		ciToAPI:   dropped,
		dbToCI:    dropped,
	})
	return g
}

// testGrantRevoke grants ci access to svc:db, runs a stream over it,
// revokes the grant and checks the stream stops and ci loses db again.
func testGrantRevoke(t *testing.T, pn *policyNet) {
	g := grantCI(t, pn, 10*time.Minute)
	const interval = 20 * time.Millisecond
	s := startCounterStreamTo(t, pn.agents[hostCI].Host, netip.AddrPortFrom(pn.v4[hostDB], portDB), interval)
	s.waitFor(t, 25, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if res, err := pn.coord.Admin(ctx, "access", "revoke", g.ID, "--reason", "e2e: done"); err != nil {
		t.Fatalf("latch access revoke: %v", err)
	} else {
		t.Logf("latch access revoke:\n%s", res.Stdout)
	}
	last, _ := s.waitStalled(t, time.Second, 15*time.Second)
	metric(t, "revoke_to_stream_cut_ms", last.Sub(start).Milliseconds(), "how=last_echo_of_a_20ms_tcp_stream")
	s.stop()
	if got := accessRequest(t, pn, g.ID); got.State != wire.AccessRevoked {
		t.Errorf("after revoke the grant is %s, want revoked", got.State)
	}
	expectOutcomes(t, pn, "after the revoke", map[flow]outcome{ciToDB: dropped})
	pn.agents[hostCI].WaitPeers(t, 20*time.Second)
	pn.agents[hostDB].WaitPeers(t, 20*time.Second, hostAPI)
}

// testGrantExpiry grants ci access to svc:db for grantDuration, runs a
// stream over it, kills the coordinator and checks that the stream lives
// on until the expiry and stops then: the agents enforce the expiry on
// their own clocks. It restarts the coordinator at the end and checks
// that it too considers the grant over.
func testGrantExpiry(t *testing.T, pn *policyNet) {
	g := grantCI(t, pn, grantDuration)
	const interval = 20 * time.Millisecond
	s := startCounterStreamTo(t, pn.agents[hostCI].Host, netip.AddrPortFrom(pn.v4[hostDB], portDB), interval)
	s.waitFor(t, 25, 10*time.Second)

	pn.coord.Kill(t)
	killed := time.Now()
	if left := time.Until(g.Expires); left < 5*time.Second {
		t.Fatalf("only %v of the grant left when the coordinator died; the test proves nothing", left)
	}
	// The grant keeps working without the coordinator...
	s.waitFor(t, 25, 10*time.Second)
	netns.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := pn.agents[hostDB].Status(ctx)
		if err != nil {
			return err
		}
		if st.State == "connected" {
			return fmt.Errorf("db still says connected")
		}
		return nil
	})
	t.Logf("coordinator killed %v before the grant's expiry", g.Expires.Sub(killed).Round(time.Millisecond))

	// ...and stops at its expiry.
	netns.Eventually(t, time.Until(g.Expires)+30*time.Second, func() error {
		if time.Now().Before(g.Expires) {
			return fmt.Errorf("the grant has %v left", time.Until(g.Expires).Round(time.Second))
		}
		if since := time.Since(s.lastEcho()); since < time.Second {
			return fmt.Errorf("%v after the expiry the stream still makes progress (last echo %v ago)",
				time.Since(g.Expires).Round(time.Millisecond), since.Round(time.Millisecond))
		}
		return nil
	})
	late := s.lastEcho().Sub(g.Expires)
	metric(t, "grant_expiry_enforced_late_ms", late.Milliseconds(), "how=last_echo_of_a_20ms_tcp_stream_minus_expiry", "coordinator=killed",
		fmt.Sprintf("grant=%v", grantDuration))
	if late < -time.Second {
		t.Errorf("the stream stopped %v before the grant expired", -late)
	}
	if late > 5*time.Second {
		t.Errorf("the stream went on %v after the grant expired", late)
	}
	expectOutcomes(t, pn, "after the expiry, coordinator down", map[flow]outcome{ciToDB: dropped})
	s.stop()

	// The coordinator, back, agrees that the grant is over. (The agents
	// reconnect on their own backoff, which after a minute's outage can
	// take half a minute; the netmaps they then get are tested elsewhere.)
	pn.coord.Start(t)
	if got := accessRequest(t, pn, g.ID); got.State != wire.AccessExpired {
		t.Errorf("after the restart the grant is %q, want %q", got.State, wire.AccessExpired)
	}
	expectOutcomes(t, pn, "after the expiry and the restart", map[flow]outcome{
		ciToDB:                              dropped,
		{hostAPI, hostDB, tcpProbe(portDB)}: reached,
	})
}
