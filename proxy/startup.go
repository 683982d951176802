package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Startup packet codes, from PostgreSQL's pqcomm.h.
const (
	cancelRequestCode = 80877102
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	// forwardedCancelCode is pgverbs's own: a cancel request another
	// pgverbs instance forwarded (cancel.go), which is never forwarded
	// again. PostgreSQL does not use 1234.5677; it takes it for a
	// startup packet of an unsupported protocol.
	forwardedCancelCode = 1234<<16 | 5677

	// maxStartupPacketLen is PostgreSQL's MAX_STARTUP_PACKET_LENGTH, 10000,
	// plus the length word, which the server's limit does not count. The
	// cap applies before authentication, so a client cannot make us buffer
	// more.
	maxStartupPacketLen = 10000 + 4
	// minStartupPacketLen covers the length word and the code.
	minStartupPacketLen = 8
)

// packetKind says what a startup-phase packet asks for.
type packetKind int

const (
	kindStartup packetKind = iota
	kindSSLRequest
	kindGSSEncRequest
	kindCancel
	// kindForwardedCancel is a cancel request a peer forwarded; pid and
	// secret are set as for kindCancel.
	kindForwardedCancel
)

// startupPacket is a decoded startup-phase packet. raw keeps the packet as
// received (length word included) so it can be forwarded byte for byte.
type startupPacket struct {
	kind packetKind
	raw  []byte

	// For kindStartup.
	major, minor uint16
	params       []param
	// verbatim is set for a StartupMessage the proxy cannot read: a
	// protocol other than 3, or a parameter list that does not end as
	// PostgreSQL wants. The server refuses it in its own words (the old
	// protocol's error format for 1.0 and 2.0, its supported range for
	// others), which pgverbs relays as they come.
	verbatim bool

	// For kindCancel and kindForwardedCancel.
	pid    uint32
	secret []byte
}

type param struct{ name, value string }

// errBadStartup marks malformed startup packets; the message is safe to show
// the client.
var errBadStartup = errors.New("invalid startup packet")

// parseStartupPacket decodes a complete startup-phase packet, length word
// included. It never panics, whatever the bytes.
func parseStartupPacket(raw []byte) (*startupPacket, error) {
	if len(raw) < minStartupPacketLen {
		return nil, fmt.Errorf("%w: too short", errBadStartup)
	}
	n := binary.BigEndian.Uint32(raw)
	if int64(n) != int64(len(raw)) {
		return nil, fmt.Errorf("%w: length word %d does not match %d bytes", errBadStartup, n, len(raw))
	}
	code := binary.BigEndian.Uint32(raw[4:])
	p := &startupPacket{raw: raw}
	body := raw[8:]
	switch code {
	case sslRequestCode:
		p.kind = kindSSLRequest
		return p, nil
	case gssEncRequestCode:
		p.kind = kindGSSEncRequest
		return p, nil
	case cancelRequestCode, forwardedCancelCode:
		// Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256.
		if len(body) < 8 || len(body) > 4+256 {
			return nil, fmt.Errorf("%w: cancel request of %d bytes", errBadStartup, len(raw))
		}
		p.kind = kindCancel
		if code == forwardedCancelCode {
			p.kind = kindForwardedCancel
		}
		p.pid = binary.BigEndian.Uint32(body)
		p.secret = append([]byte(nil), body[4:]...)
		return p, nil
	}
	p.kind = kindStartup
	p.major, p.minor = uint16(code>>16), uint16(code)
	if p.major != 3 {
		p.verbatim = true
		return p, nil
	}
	// Parameters are name\0value\0 pairs ended by an empty name.
	for len(body) > 0 && body[0] != 0 {
		name, rest, ok := cutNul(body)
		if !ok {
			break
		}
		value, rest, ok := cutNul(rest)
		if !ok {
			break
		}
		p.params = append(p.params, param{name, value})
		body = rest
	}
	if len(body) != 1 || body[0] != 0 {
		// PostgreSQL: "invalid startup packet layout: expected terminator
		// as last byte".
		p.verbatim, p.params = true, nil
	}
	return p, nil
}

func cutNul(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// param returns the value of the named startup parameter.
func (p *startupPacket) param(name string) string {
	for _, kv := range p.params {
		if kv.name == name {
			return kv.value
		}
	}
	return ""
}
