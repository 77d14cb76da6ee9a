package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// posOf returns the 1-based line and column (in bytes) of the first
// occurrence of needle in src.
func posOf(t *testing.T, src, needle string) (line, col int) {
	t.Helper()
	i := strings.Index(src, needle)
	if i < 0 {
		t.Fatalf("internal: %q is not in the policy", needle)
	}
	before := src[:i]
	line = strings.Count(before, "\n") + 1
	col = i - strings.LastIndex(before, "\n")
	return line, col
}

// testInvalidPolicies has `latch policy check` and `latch policy set`
// refuse broken variants of basePolicy, each with the exact line and
// column of the offending text, and checks that the stored version and
// the traffic it allows do not change.
func testInvalidPolicies(t *testing.T, pn *policyNet) {
	const webRule = `{"src": ["tag:web"], "dst": ["svc:api"]}`
	tests := []struct {
		name     string
		old, new string
		// at starts at the very character the error must point at (its
		// first occurrence in the policy); empty for an error that need
		// not have a place (a failing policy test).
		at string
		// reason is a word the one-line reason must contain.
		reason string
	}{
		{"unknown-tag", webRule, `{"src": ["tag:wbe"], "dst": ["svc:api"]}`, `tag:wbe`, "tag:wbe"},
		{"wildcard-destination", webRule, `{"src": ["tag:web"], "dst": ["*"]}`, `*"]}`, "*"},
		{"wildcard-source", webRule, `{"src": ["*"], "dst": ["svc:api"]}`, `*"]`, "*"},
		{"port-out-of-range", `"ports": ["8080/tcp"]`, `"ports": ["80800/tcp"]`, `80800/tcp`, "80800"},
		{"reversed-range", webRule, `{"src": ["tag:web"], "dst": ["tag:api:9000-8000/tcp"]}`, `9000-8000/tcp`, "9000"},
		{"unknown-protocol", webRule, `{"src": ["tag:web"], "dst": ["tag:api:8080/sctp"]}`, `sctp`, "sctp"},
		{"unknown-service", webRule, `{"src": ["tag:web"], "dst": ["svc:ap1"]}`, `svc:ap1`, "svc:ap1"},
		{"duplicate-service", `    "svc:db":  {"tags": ["tag:db"],  "ports": ["5432/tcp"]},`,
			`    "svc:db":  {"tags": ["tag:db"],  "ports": ["5432/tcp"]},` + "\n" + `    "svc:db":  {"tags": ["tag:db"],  "ports": ["5433/tcp"]},`,
			`svc:db":  {"tags": ["tag:db"],  "ports": ["5433/tcp"]}`, "svc:db"},
		{"failing-test", `"accept": ["svc:api"], "deny": ["svc:db", `, `"accept": ["svc:api", "svc:db"], "deny": [`, "", "svc:db"},
	}
	before := policyVersion(t, pn)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if !strings.Contains(basePolicy, tt.old) {
				t.Fatalf("internal: %q is not in basePolicy", tt.old)
			}
			src := strings.Replace(basePolicy, tt.old, tt.new, 1)
			path := pn.coord.WritePolicy(t, src)
			// Compiler style: "FILE:LINE:COLUMN: reason".
			where := path + ":"
			if tt.at != "" {
				line, col := posOf(t, src, tt.at)
				where = fmt.Sprintf("%s:%d:%d: ", path, line, col)
			}
			for _, args := range [][]string{{"policy", "check", path}, {"policy", "set", path, "--yes"}} {
				res, err := pn.coord.Admin(ctx, args...)
				cmd := "latch " + strings.Join(args[:2], " ")
				if err == nil {
					t.Errorf("%s accepted the %s policy: %s", cmd, tt.name, res.Stdout)
					continue
				}
				msg := strings.TrimSpace(res.Stderr)
				if !oneLine(res.Stderr) {
					t.Errorf("%s: the error is not one line: %q", cmd, res.Stderr)
				}
				if !strings.Contains(msg, where) || !strings.Contains(msg, tt.reason) {
					t.Errorf("%s: %q, want it to say %q and %q", cmd, msg, where, tt.reason)
				}
				t.Logf("%s: exit %d: %s", cmd, res.Code, msg)
			}
			if v := policyVersion(t, pn); v != before {
				t.Errorf("policy version %d after a refused save, want %d", v, before)
			}
		})
	}

	// The old policy still holds on the data plane.
	expectOutcomes(t, pn, "after the refused policies", map[flow]outcome{
		{hostWeb, hostAPI, tcpProbe(portAPI)}: reached,
		{hostAPI, hostDB, tcpProbe(portDB)}:   reached,
		{hostWeb, hostDB, tcpProbe(portDB)}:   dropped,
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := pn.coord.Policy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Source != basePolicy {
		t.Errorf("the stored policy changed after refused saves:\n%s", info.Source)
	}
}

// watchPeer polls a's status as fast as the CLI answers until peer is
// (present) or is no longer (!present) among its peers, and sends the
// time it saw that, or a zero time at the deadline.
func watchPeer(a *cluster.Agent, peer string, present bool, deadline time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		for ctx.Err() == nil {
			st, err := a.Status(ctx)
			if err == nil && st.State == "connected" && slices.Contains(st.PeerNames(), peer) == present {
				ch <- time.Now()
				return
			}
		}
		ch <- time.Time{}
	}()
	return ch
}

// lastOf waits for every watcher and returns the latest time, failing t
// for each that timed out.
func lastOf(t *testing.T, what string, watchers map[string]<-chan time.Time) time.Time {
	t.Helper()
	var last time.Time
	for name, ch := range watchers {
		at := <-ch
		if at.IsZero() {
			t.Errorf("%s: %s never did", what, name)
			continue
		}
		if at.After(last) {
			last = at
		}
	}
	return last
}

// testRuleRemovalCutsStream runs a TCP stream from api to db:5432 (an
// echo every 20 ms), saves the policy without the api -> db rule and
// checks that the stream stops at once and new connections are dropped.
// It measures the time from the start of `latch policy set` to the last
// echo, and to the moment both agents' netmaps no longer list each other.
func testRuleRemovalCutsStream(t *testing.T, pn *policyNet) {
	api, db := pn.agents[hostAPI], pn.agents[hostDB]
	const interval = 20 * time.Millisecond
	s := startCounterStreamTo(t, api.Host, netip.AddrPortFrom(pn.v4[hostDB], portDB), interval)
	s.waitFor(t, 25, 10*time.Second)
	before := policyVersion(t, pn)

	watchers := map[string]<-chan time.Time{
		hostAPI: watchPeer(api, hostDB, false, 60*time.Second),
		hostDB:  watchPeer(db, hostAPI, false, 60*time.Second),
	}
	start := time.Now()
	out := pn.coord.SetPolicy(t, policyWithoutAPIToDB)
	returned := time.Since(start)
	t.Logf("latch policy set (without api -> db) returned after %v:\n%s", returned.Round(time.Millisecond), out)
	if !strings.Contains(out, hostAPI) || !strings.Contains(out, hostDB) || !strings.Contains(out, fmt.Sprint(portDB)) {
		t.Errorf("latch policy set does not show the lost pair api -> db 5432/tcp:\n%s", out)
	}

	// An echo every 20 ms: a second without one is a stopped stream.
	last, echoes := s.waitStalled(t, time.Second, 15*time.Second)
	cut := last.Sub(start)
	metric(t, "policy_set_to_stream_cut_ms", cut.Milliseconds(), "how=last_echo_of_a_20ms_tcp_stream", "from=latch_policy_set_start")
	metric(t, "policy_set_cli_returned_ms", returned.Milliseconds())
	if lastAgent := lastOf(t, "dropping the former peer", watchers); !lastAgent.IsZero() {
		metric(t, "policy_set_to_enforced_ms", lastAgent.Sub(start).Milliseconds(),
			"how=last_of_api_and_db_netmaps_without_each_other_via_latch_status", "from=latch_policy_set_start")
	}
	if cut > 10*time.Second {
		t.Errorf("the stream went on for %v after latch policy set began", cut)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if res := send(ctx, api.Host, pn.v4[hostDB], tcpProbe(portDB), 3*time.Second); res.outcome != dropped {
		t.Errorf("new api -> db tcp/5432 after the rule was removed: %v, want dropped", res)
	}
	if res := send(ctx, pn.agents[hostWeb].Host, pn.v4[hostAPI], tcpProbe(portAPI), 5*time.Second); res.outcome != reached {
		t.Errorf("web -> api tcp/8080, untouched by the change: %v", res)
	}
	if got, _, _ := s.state(); got != echoes {
		t.Errorf("the stream resumed: %d echoes, %d when it stopped", got, echoes)
	}
	s.stop()
	if v := policyVersion(t, pn); v != before+1 {
		t.Errorf("policy version %d after the change, want %d", v, before+1)
	}
}

// testRestore lists the policy versions, restores the first one (which
// has the api -> db rule) and checks that api reaches db again.
func testRestore(t *testing.T, pn *policyNet) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := pn.coord.Admin(ctx, "policy", "versions", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var versions []wire.PolicyInfo
	if err := json.Unmarshal([]byte(res.Stdout), &versions); err != nil {
		t.Fatalf("latch policy versions --json: %v\n%s", err, res.Stdout)
	}
	var listed []int
	for _, v := range versions {
		listed = append(listed, v.Version)
	}
	current := policyVersion(t, pn)
	if len(listed) < 2 || listed[0] != current || !slices.Contains(listed, pn.baseVersion) || !slices.IsSortedFunc(listed, func(a, b int) int { return b - a }) {
		t.Fatalf("latch policy versions lists %v, want %d (current) first, newest first, and %d among them", listed, current, pn.baseVersion)
	}
	base := fmt.Sprint(pn.baseVersion)
	watchers := map[string]<-chan time.Time{
		hostAPI: watchPeer(pn.agents[hostAPI], hostDB, true, 60*time.Second),
		hostDB:  watchPeer(pn.agents[hostDB], hostAPI, true, 60*time.Second),
	}
	start := time.Now()
	if res, err := pn.coord.Admin(ctx, "policy", "restore", base, "--yes"); err != nil {
		t.Fatalf("latch policy restore %s: %v", base, err)
	} else {
		t.Logf("latch policy restore %s:\n%s", base, res.Stdout)
	}
	if v := policyVersion(t, pn); v != current+1 {
		t.Errorf("policy version %d after restoring version %s, want %d (a new version)", v, base, current+1)
	}
	res, err = pn.coord.Admin(ctx, "policy", "get")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Stdout, basePolicy) {
		t.Errorf("latch policy get after the restore does not print version %s's text (comments included):\n%s", base, res.Stdout)
	}
	err = netns.Poll(20*time.Second, func() error {
		r := send(ctx, pn.agents[hostAPI].Host, pn.v4[hostDB], tcpProbe(portDB), 2*time.Second)
		if r.outcome != reached {
			return fmt.Errorf("api -> db tcp/5432 after the restore: %v", r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	connected := time.Since(start)
	if last := lastOf(t, "seeing the peer again", watchers); !last.IsZero() {
		metric(t, "policy_restore_to_netmaps_ms", last.Sub(start).Milliseconds(), "how=last_of_api_and_db_listing_each_other_via_latch_status")
	}
	metric(t, "policy_restore_to_connect_ms", connected.Milliseconds(), "how=tcp_connect_polled_with_2s_attempts")
	for name, peers := range basePolicyPeers {
		pn.agents[name].WaitPeers(t, 30*time.Second, peers...)
	}
}
