package agent

import (
	"context"
	"net/http"

	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/wire"
)

// enroll presents ereq: with an enrollment key, which pins the
// coordinator's CA itself, or with a workload identity token, for which
// up.CAFingerprint must pin it (there is no trust on first use).
func enroll(ctx context.Context, coord string, up localapi.UpRequest, ereq wire.EnrollRequest) (*control.Enrollment, error) {
	if up.IDToken == "" {
		return control.Enroll(ctx, coord, ereq)
	}
	if up.AuthKey != "" {
		return nil, localapi.Errorf(http.StatusBadRequest, "pass either an enrollment key or an ID token, not both")
	}
	if up.CAFingerprint == "" {
		return nil, localapi.Errorf(http.StatusBadRequest, "an ID token needs --ca-fingerprint sha256:... to pin the coordinator (no trust on first use)")
	}
	fp, err := control.ParseFingerprint(up.CAFingerprint)
	if err != nil {
		return nil, localapi.Errorf(http.StatusBadRequest, "%v", err)
	}
	return control.EnrollPinned(ctx, coord, ereq, fp)
}
