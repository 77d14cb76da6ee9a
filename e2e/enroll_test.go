package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// TestEnrollmentRefusesBadKeysAndCreatesNothing runs `latch up` with keys
// that must not enroll: each fails with a one-line reason that does not
// echo the secret, and `latch nodes list` shows no new node. The same
// agent then enrolls with a good key, so a refusal leaves it usable.
func TestEnrollmentRefusesBadKeysAndCreatesNothing(t *testing.T) {
	bins := setup(t)
	n := netns.NewNetwork(t)
	coord := cluster.StartCoordinator(t, bins, n.AddHost("coord"))
	x := cluster.StartAgent(t, bins, n.AddHost("x"), coord)
	y := cluster.StartAgent(t, bins, n.AddHost("y"), coord)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	used := coord.CreateKey(t, "--description", "one-off, used by y")
	y.Up(t, used.Key)
	expired := coord.CreateKey(t, "--reusable", "--expiry", "1s", "--description", "expires at once")
	revoked := coord.CreateKey(t, "--reusable", "--description", "revoked")
	if _, err := coord.Admin(ctx, "keys", "revoke", revoked.Info.ID); err != nil {
		t.Fatal(err)
	}
	good := coord.CreateKey(t, "--description", "one-off, for x at the end")
	parsed, err := wire.ParseAuthKey(good.Key)
	if err != nil {
		t.Fatalf("latch keys create printed a key wire.ParseAuthKey refuses: %v", err)
	}
	wrongSecret := parsed
	wrongSecret.Secret = randomSecret(t)
	unknownID := parsed
	unknownID.ID = randHex(t, 6)
	// The good key's own secret, but pinned to another CA: the agent must
	// refuse the coordinator before it sends the key, so the good key
	// still works at the end.
	otherCA := parsed
	otherCA.CAFingerprint = sha256.Sum256([]byte("some other coordinator's CA"))

	netns.Eventually(t, 30*time.Second, func() error {
		if time.Now().Before(expired.Info.Expires.Add(100 * time.Millisecond)) {
			return errString("key not expired yet")
		}
		return nil
	})

	tests := []struct {
		name   string
		key    string
		secret string // must not appear in the error
	}{
		{"malformed", "latchkey_not-a-key", ""},
		{"wrong-secret", wrongSecret.String(), wrongSecret.Secret},
		{"unknown-id", unknownID.String(), unknownID.Secret},
		{"other-coordinators-ca", otherCA.String(), otherCA.Secret},
		{"expired", expired.Key, secretOf(expired.Key)},
		{"revoked", revoked.Key, secretOf(revoked.Key)},
		{"used-one-off", used.Key, secretOf(used.Key)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			start := time.Now()
			res, err := x.TryUp(ctx, tt.key)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("latch up with a %s key succeeded: %s", tt.name, res.Stdout)
			}
			if res.Code <= 0 {
				t.Errorf("latch up exit code %d, want a non-zero exit (%v)", res.Code, err)
			}
			if !oneLine(res.Stderr) {
				t.Errorf("latch up error is not one line: %q", res.Stderr)
			}
			if tt.secret != "" && strings.Contains(res.Stderr+res.Stdout, tt.secret) {
				t.Errorf("latch up echoed the key's secret")
			}
			t.Logf("latch up with a %s key: exit %d after %v: %s", tt.name, res.Code, took.Round(time.Millisecond), strings.TrimSpace(res.Stderr))
			nodes, err := coord.Nodes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(nodes) != 1 {
				t.Errorf("after a refused %s key: %d nodes, want only y", tt.name, len(nodes))
			}
		})
	}

	x.Up(t, good.Key)
	nodes, err := coord.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 {
		t.Errorf("after x enrolled: %d nodes, want 2", len(nodes))
	}
	keys, err := coord.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.ID == used.Info.ID && k.Uses != 1 {
			t.Errorf("the one-off key shows %d uses, want 1", k.Uses)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// randomSecret returns a well-formed enrollment key secret nobody issued.
func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// secretOf returns the secret part of an enrollment key.
func secretOf(key string) string {
	k, err := wire.ParseAuthKey(key)
	if err != nil {
		return ""
	}
	return k.Secret
}
