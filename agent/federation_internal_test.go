package agent

import (
	"context"
	"strings"
	"testing"

	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/wire"
)

// An ID token never enrolls without a CA pin, and never together with a key.
func TestIDTokenEnrollmentNeedsAPinAndNoKey(t *testing.T) {
	tests := []struct {
		up   localapi.UpRequest
		want string
	}{
		{localapi.UpRequest{IDToken: "a.b.c"}, "--ca-fingerprint"},
		{localapi.UpRequest{IDToken: "a.b.c", CAFingerprint: "sha256:12"}, "64 hex digits"},
		{localapi.UpRequest{IDToken: "a.b.c", AuthKey: "latchkey_x", CAFingerprint: "sha256:" + strings.Repeat("0", 64)}, "not both"},
	}
	for _, tt := range tests {
		_, err := enroll(context.Background(), "https://127.0.0.1:1", tt.up, wire.EnrollRequest{IDToken: tt.up.IDToken})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err = %v, want %q", tt.up, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "a.b.c") {
			t.Errorf("error echoes the token: %v", err)
		}
	}
}
