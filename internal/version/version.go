// Package version holds the version of the Latch binaries, which agents
// report as posture. Release builds set it with
// -ldflags "-X github.com/latchnet/latch/internal/version.Version=...".
package version

// Version is the release this build is.
var Version = "0.4.0"
