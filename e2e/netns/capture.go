package netns

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// Capture is a running tcpdump writing every packet of one interface of a
// host to a pcap file.
type Capture struct {
	proc *Proc
	path string
}

// StartCapture starts tcpdump on iface inside the host (optionally with a
// pcap filter expression, one word per argument) and waits until it
// listens. It is stopped at cleanup if the test does not call Stop.
func (h *Host) StartCapture(t TB, iface string, filter ...string) *Capture {
	t.Helper()
	f, err := os.CreateTemp(h.Dir, "capture-"+iface+"-*.pcap")
	if err != nil {
		t.Fatalf("creating capture file: %v", err)
	}
	f.Close()
	// -Z root: keep writing as root into our 0700 work directory.
	// -U --immediate-mode: every packet reaches the file at once.
	args := append([]string{"tcpdump", "-i", iface, "-n", "-s", "0", "-U", "--immediate-mode", "-Z", "root", "-w", f.Name()}, filter...)
	p := h.Start(t, args...)
	if err := p.WaitLog("listening on", 15*time.Second); err != nil {
		t.Fatalf("starting capture on %s/%s: %v", h.Name, iface, err)
	}
	return &Capture{proc: p, path: f.Name()}
}

// Stop ends the capture and returns the pcap file's bytes.
func (c *Capture) Stop() ([]byte, error) {
	if err := c.proc.Stop(); err != nil {
		return nil, fmt.Errorf("stopping capture: %w", err)
	}
	b, err := os.ReadFile(c.path)
	if err != nil {
		return nil, fmt.Errorf("reading capture: %w", err)
	}
	return b, nil
}

// Path is the pcap file.
func (c *Capture) Path() string { return c.path }

// Name is the capture file's base name, for messages.
func (c *Capture) Name() string { return filepath.Base(c.path) }

// Packet is the summary of one captured Ethernet frame.
type Packet struct {
	// EtherType is the frame's type: 0x0800 IPv4, 0x86dd IPv6, 0x0806 ARP.
	EtherType uint16
	// Proto is the IP protocol number (IPv4 and IPv6 without extension
	// headers); zero for other frames.
	Proto            uint8
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16 // TCP and UDP only
	// Payload is everything after the IP header.
	Payload []byte
	Len     int // captured length of the frame
}

// String renders the packet like a one-line tcpdump summary.
func (p Packet) String() string {
	switch {
	case p.Proto == 6 || p.Proto == 17:
		name := map[uint8]string{6: "TCP", 17: "UDP"}[p.Proto]
		return fmt.Sprintf("%s %s:%d > %s:%d len %d", name, p.Src, p.SrcPort, p.Dst, p.DstPort, p.Len)
	case p.Src.IsValid():
		return fmt.Sprintf("proto %d %s > %s len %d", p.Proto, p.Src, p.Dst, p.Len)
	default:
		return fmt.Sprintf("ethertype %#04x len %d", p.EtherType, p.Len)
	}
}

// ContainsMarker reports whether marker occurs anywhere in pcap, headers
// and payloads alike.
func ContainsMarker(pcap, marker []byte) bool { return bytes.Contains(pcap, marker) }

// Link types ParsePcap knows: Ethernet (a veth) and raw IP (a TUN device,
// such as a Latch interface; tcpdump writes LINKTYPE_RAW, 101, or the
// platform's DLT_RAW, 12, for it).
const (
	linkEthernet = 1
	linkRaw      = 101
	linkRawDLT   = 12
)

// ParsePcap decodes a classic pcap file of Ethernet frames (what tcpdump -w
// writes for a veth) or of raw IP packets (a TUN device); a raw packet is
// given the EtherType of its IP version.
func ParsePcap(b []byte) ([]Packet, error) {
	if len(b) < 24 {
		return nil, errors.New("parsing pcap: short file header")
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, errors.New("parsing pcap: not a pcap file")
	}
	parse := parseEthernet
	switch lt := bo.Uint32(b[20:]); lt {
	case linkEthernet:
	case linkRaw, linkRawDLT:
		parse = parseRawIP
	default:
		return nil, fmt.Errorf("parsing pcap: link type %d, want Ethernet (1) or raw IP (101)", lt)
	}
	var pkts []Packet
	for off := 24; off < len(b); {
		if len(b)-off < 16 {
			return pkts, errors.New("parsing pcap: truncated record header")
		}
		n := int(bo.Uint32(b[off+8:]))
		off += 16
		if n > len(b)-off {
			// tcpdump killed mid-write: keep what is complete.
			return pkts, nil
		}
		pkts = append(pkts, parse(b[off:off+n]))
		off += n
	}
	return pkts, nil
}

func parseEthernet(f []byte) Packet {
	if len(f) < 14 {
		return Packet{Len: len(f)}
	}
	return parseIP(binary.BigEndian.Uint16(f[12:]), f[14:], len(f))
}

// parseRawIP decodes a packet that starts with its IP header.
func parseRawIP(f []byte) Packet {
	if len(f) == 0 {
		return Packet{}
	}
	switch f[0] >> 4 {
	case 4:
		return parseIP(0x0800, f, len(f))
	case 6:
		return parseIP(0x86dd, f, len(f))
	}
	return Packet{Len: len(f)}
}

// parseIP decodes the IP packet ip of a frame of length n and EtherType et.
func parseIP(et uint16, ip []byte, n int) Packet {
	p := Packet{EtherType: et, Len: n}
	var l4 []byte
	switch p.EtherType {
	case 0x0800:
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return p
		}
		ihl := int(ip[0]&0x0f) * 4
		if ihl < 20 || len(ip) < ihl {
			return p
		}
		p.Proto = ip[9]
		p.Src = netip.AddrFrom4([4]byte(ip[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[ihl:]
	case 0x86dd:
		if len(ip) < 40 {
			return p
		}
		p.Proto = ip[6]
		p.Src = netip.AddrFrom16([16]byte(ip[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[40:]
	default:
		return p
	}
	p.Payload = l4
	if (p.Proto == 6 || p.Proto == 17) && len(l4) >= 4 {
		p.SrcPort = binary.BigEndian.Uint16(l4)
		p.DstPort = binary.BigEndian.Uint16(l4[2:])
	}
	return p
}
