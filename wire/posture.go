package wire

import "strconv"

// Posture is what an agent reports about the host it runs on, at
// enrollment and whenever it changes. Policy rules may require posture
// (see the policy's "postures"); the coordinator re-evaluates a node's
// access as soon as its posture changes.
//
// Firewall and DiskEncryption are nil when the agent cannot tell.
type Posture struct {
	OS             string `json:"os"`                   // runtime.GOOS, "linux"
	OSVersion      string `json:"os_version,omitempty"` // /etc/os-release VERSION_ID, "12"
	Kernel         string `json:"kernel,omitempty"`     // uname release, "6.1.0-18-amd64"
	AgentVersion   string `json:"agent_version"`        // "0.4.0"
	Hostname       string `json:"hostname,omitempty"`
	Firewall       *bool  `json:"firewall,omitempty"`        // a host firewall ruleset is loaded
	DiskEncryption *bool  `json:"disk_encryption,omitempty"` // the root file system is on an encrypted device
}

// Posture attribute names, as policy posture conditions write them.
const (
	PostureOS             = "os"
	PostureOSVersion      = "os_version"
	PostureKernel         = "kernel"
	PostureAgentVersion   = "agent_version"
	PostureHostname       = "hostname"
	PostureFirewall       = "firewall"
	PostureDiskEncryption = "disk_encryption"
)

// PostureAttributes lists every attribute name a posture condition may use.
var PostureAttributes = []string{
	PostureOS, PostureOSVersion, PostureKernel, PostureAgentVersion,
	PostureHostname, PostureFirewall, PostureDiskEncryption,
}

// Attrs returns the posture as attribute name -> value, the form policy
// conditions are evaluated against. Unknown values (empty strings, nil
// booleans) are absent, so a condition on them never holds. A nil
// Posture has no attributes.
func (p *Posture) Attrs() map[string]string {
	if p == nil {
		return nil
	}
	m := make(map[string]string, len(PostureAttributes))
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set(PostureOS, p.OS)
	set(PostureOSVersion, p.OSVersion)
	set(PostureKernel, p.Kernel)
	set(PostureAgentVersion, p.AgentVersion)
	set(PostureHostname, p.Hostname)
	if p.Firewall != nil {
		m[PostureFirewall] = strconv.FormatBool(*p.Firewall)
	}
	if p.DiskEncryption != nil {
		m[PostureDiskEncryption] = strconv.FormatBool(*p.DiskEncryption)
	}
	return m
}
