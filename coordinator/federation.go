package coordinator

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/latchnet/latch/coordinator/federation"
)

// newFederation returns the verifier of workload identity tokens: system
// roots plus the PEM certificates of cfg.OIDCCAFile.
func newFederation(cfg Config, log *slog.Logger) (*federation.Verifier, error) {
	var pem []byte
	if cfg.OIDCCAFile != "" {
		var err error
		if pem, err = os.ReadFile(cfg.OIDCCAFile); err != nil {
			return nil, fmt.Errorf("reading OIDC CA file: %w", err)
		}
	}
	v, err := federation.NewVerifier(federation.Config{ExtraRootsPEM: pem, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("OIDC CA file %s: %w", cfg.OIDCCAFile, err)
	}
	return v, nil
}
