package conf

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxPeerID is the largest peer id: a 3.2 cancel key carries the id in 14
// bits (see proxy/cancel.go).
const MaxPeerID = 1<<14 - 1

// Peers maps the peer ids of the pgverbs instances that share one address
// (behind a load balancer) to the host:port each listens on for clients,
// where it also takes the cancel requests the others forward. In the YAML
// file it is a mapping ({1: "10.0.0.1:6432"}); on the command line and in
// the environment the text String gives, "1=10.0.0.1:6432,2=...".
type Peers map[int]string

// String is the flag and environment form, ids ascending: "" for none.
func (p Peers) String() string {
	var b strings.Builder
	for i, id := range slices.Sorted(maps.Keys(p)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d=%s", id, p[id])
	}
	return b.String()
}

// ParsePeers reads the flag and environment form, "ID=HOST:PORT" entries
// separated by commas (spaces around them ignored). "" is no peers. Ids
// and addresses are checked by Validate, not here.
func ParsePeers(s string) (Peers, error) {
	p := Peers{}
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		idText, addr, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("entry %q is not ID=HOST:PORT", entry)
		}
		id, err := strconv.Atoi(strings.TrimSpace(idText))
		if err != nil {
			return nil, fmt.Errorf("peer id %q is not an integer", idText)
		}
		if _, dup := p[id]; dup {
			return nil, fmt.Errorf("peer id %d given twice", id)
		}
		p[id] = strings.TrimSpace(addr)
	}
	if len(p) == 0 {
		return nil, nil
	}
	return p, nil
}

// UnmarshalYAML implements yaml.Unmarshaler: a mapping of ids to
// addresses, or the flag form as one string. Errors are *yaml.TypeError so
// that the decoder reports the file's other problems too.
func (p *Peers) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		v, err := ParsePeers(n.Value)
		if err != nil {
			return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: peers: %v", n.Line, err)}}
		}
		*p = v
		return nil
	case yaml.MappingNode:
	default:
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf(`line %d: peers must be a mapping of peer ids to host:port, such as {1: "10.0.0.1:6432"}`, n.Line)}}
	}
	out := Peers{}
	var problems []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		id, err := strconv.Atoi(k.Value)
		if k.Kind != yaml.ScalarNode || err != nil {
			problems = append(problems, fmt.Sprintf("line %d: peer id %q is not an integer", k.Line, k.Value))
			continue
		}
		if _, dup := out[id]; dup {
			problems = append(problems, fmt.Sprintf("line %d: peer id %d given twice", k.Line, id))
			continue
		}
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
			problems = append(problems, fmt.Sprintf("line %d: the address of peer %d must be a host:port string", v.Line, id))
			continue
		}
		out[id] = v.Value
	}
	if len(problems) > 0 {
		return &yaml.TypeError{Errors: problems}
	}
	if len(out) == 0 {
		out = nil
	}
	*p = out
	return nil
}

// validatePeerID checks peer_id; peers needs it, since a key names the
// instance that made it.
func validatePeerID(c *Config) error {
	if c.PeerID < 0 || c.PeerID > MaxPeerID {
		return fmt.Errorf("%d is not from 0 (peering off) to %d", c.PeerID, MaxPeerID)
	}
	if c.PeerID == 0 && len(c.Peers) > 0 {
		return errors.New("must be set (1 to 16383) when peers is set")
	}
	return nil
}

// validatePeers checks every entry: ids in range, addresses host:port with
// a host (a peer is dialled, so an empty host meaning "every interface"
// makes no sense). This instance's own id may be listed, so that every
// instance can share one peers map; it is never dialled.
func validatePeers(c *Config) error {
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(c.Peers)) {
		addr := c.Peers[id]
		if id < 1 || id > MaxPeerID {
			errs = append(errs, fmt.Errorf("peer id %d is not from 1 to %d", id, MaxPeerID))
			continue
		}
		if err := validateListen(addr); err != nil {
			errs = append(errs, fmt.Errorf("peer %d: %v", id, err))
			continue
		}
		if host, _, _ := net.SplitHostPort(addr); host == "" {
			errs = append(errs, fmt.Errorf("peer %d: %q names no host", id, addr))
		}
	}
	return errors.Join(errs...)
}
