// Package cluster runs the real Latch binaries on netns hosts: a
// coordinator, agents, and the latch CLI against them, for the end-to-end
// tests, the benchmark and anything else that needs a live network.
//
// It knows the binaries only through their command lines, environment
// variables and --json output, the same contract users and scripts rely on.
package cluster
