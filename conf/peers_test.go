package conf

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestPeers checks peer_id and peers in every layer: the YAML mapping (and
// the flag form as a YAML string), the environment and flags, the form
// String and SHOW PGVERBS CONFIG show, and that a reload may change them.
func TestPeers(t *testing.T) {
	want := Peers{1: "10.0.0.1:6432", 2: "pgverbs-2.internal:6432", 3: "[fd00::3]:6432"}
	tests := []struct {
		name string
		yaml string
		args []string
		env  env
	}{
		{name: "yaml mapping", yaml: "peer_id: 2\npeers:\n  1: 10.0.0.1:6432\n  2: \"pgverbs-2.internal:6432\"\n  3: \"[fd00::3]:6432\"\n"},
		{name: "yaml string", yaml: "peer_id: 2\npeers: \"1=10.0.0.1:6432, 2=pgverbs-2.internal:6432,3=[fd00::3]:6432\"\n"},
		{name: "flags", args: []string{"--peer-id", "2", "--peers", "3=[fd00::3]:6432,1=10.0.0.1:6432,2=pgverbs-2.internal:6432"}},
		{name: "env", env: env{"PGVERBS_PEER_ID": "2", "PGVERBS_PEERS": "1=10.0.0.1:6432,2=pgverbs-2.internal:6432,3=[fd00::3]:6432,"}},
		{name: "flag over file", yaml: "peer_id: 2\npeers: {1: \"10.9.9.9:1\"}\n",
			args: []string{"--peers", "1=10.0.0.1:6432,2=pgverbs-2.internal:6432,3=[fd00::3]:6432"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.yaml != "" {
				args = append([]string{"--config", writeFile(t, "c.yaml", tt.yaml)}, args...)
			}
			c, err := Load(args, tt.env.get, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.PeerID != 2 || !maps.Equal(c.Peers, want) {
				t.Fatalf("peer_id %d peers %v, want 2 %v", c.PeerID, c.Peers, want)
			}
			const text = "1=10.0.0.1:6432,2=pgverbs-2.internal:6432,3=[fd00::3]:6432"
			if got := c.Peers.String(); got != text {
				t.Errorf("String() = %q, want %q", got, text)
			}
			if !strings.Contains(c.String(), `peers="`+text+`"`) {
				t.Errorf("Config.String() lacks the peers: %s", c)
			}
			i := slices.IndexFunc(c.Settings(), func(s Setting) bool { return s.Name == "peers" })
			if i < 0 || c.Settings()[i].Value != text {
				t.Errorf("Settings() peers row: %+v", c.Settings())
			}
		})
	}

	t.Run("off by default", func(t *testing.T) {
		c, err := Load(nil, env{}.get, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.PeerID != 0 || c.Peers != nil {
			t.Fatalf("peer_id %d peers %v, want peering off", c.PeerID, c.Peers)
		}
	})

	t.Run("reloadable", func(t *testing.T) {
		old := Default()
		cur := Default()
		cur.PeerID, cur.Peers = 1, Peers{2: "h:1"}
		if keys := RestartNeeded(&old, &cur); len(keys) != 0 {
			t.Errorf("RestartNeeded = %q, want none: peering changes apply on SIGHUP", keys)
		}
	})
}

func TestPeersInvalid(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		args []string
		want []string
	}{
		{name: "id too big", args: []string{"--peer-id", "16384", "--peers", "1=h:1"}, want: []string{"peer_id: 16384"}},
		{name: "negative id", args: []string{"--peer-id", "-1"}, want: []string{"peer_id: -1"}},
		{name: "peers without peer_id", args: []string{"--peers", "2=h:1"}, want: []string{"peer_id: must be set"}},
		{name: "peer id zero", args: []string{"--peer-id", "1", "--peers", "0=h:1"}, want: []string{"peers: peer id 0"}},
		{name: "peer id too big", args: []string{"--peer-id", "1", "--peers", "16384=h:1"}, want: []string{"peers: peer id 16384"}},
		{name: "no port", args: []string{"--peer-id", "1", "--peers", "2=h"}, want: []string{"peers: peer 2", `"h"`}},
		{name: "named port", args: []string{"--peer-id", "1", "--peers", "2=h:postgresql"}, want: []string{"peers: peer 2", "port"}},
		{name: "no host", args: []string{"--peer-id", "1", "--peers", "2=:6432"}, want: []string{"peers: peer 2", "names no host"}},
		{name: "not ID=ADDR", args: []string{"--peer-id", "1", "--peers", "h:1"}, want: []string{"flag -peers", "ID=HOST:PORT"}},
		{name: "id not a number", args: []string{"--peer-id", "1", "--peers", "one=h:1"}, want: []string{"flag -peers", `"one"`}},
		{name: "id twice", args: []string{"--peer-id", "1", "--peers", "2=h:1,2=h:2"}, want: []string{"flag -peers", "peer id 2 given twice"}},
		{name: "every problem", args: []string{"--peer-id", "1", "--peers", "0=h:1,2=h,3=:1"},
			want: []string{"peer id 0", "peer 2", "peer 3"}},
		{name: "yaml id not a number", yaml: "peer_id: 1\npeers:\n  one: h:1\n", want: []string{"line 3", `peer id "one"`}},
		{name: "yaml address not a string", yaml: "peer_id: 1\npeers:\n  2: [h, 1]\n", want: []string{"line 3", "peer 2", "host:port string"}},
		{name: "yaml sequence", yaml: "peer_id: 1\npeers: [h:1]\n", want: []string{"line 2", "mapping of peer ids"}},
		{name: "yaml duplicate id", yaml: "peer_id: 1\npeers:\n  2: h:1\n  2: h:2\n", want: []string{"2"}},
		{name: "yaml bad string", yaml: "peer_id: 1\npeers: \"2\"\n", want: []string{"line 2", "ID=HOST:PORT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.yaml != "" {
				args = append([]string{"--config", writeFile(t, "c.yaml", tt.yaml)}, args...)
			}
			_, err := Load(args, env{}.get, nil)
			mustContainAll(t, err, tt.want...)
		})
	}

	t.Run("env", func(t *testing.T) {
		_, err := Load(nil, env{"PGVERBS_PEER_ID": "1", "PGVERBS_PEERS": "2"}.get, nil)
		mustContainAll(t, err, "PGVERBS_PEERS", "ID=HOST:PORT")
	})

	t.Run("own id listed", func(t *testing.T) {
		c, err := Load([]string{"--peer-id", "1", "--peers", "1=h:1,2=h:2"}, env{}.get, nil)
		if err != nil {
			t.Fatalf("own id in peers: %v, want it allowed (and ignored)", err)
		}
		if len(c.Peers) != 2 {
			t.Fatalf("peers %v", c.Peers)
		}
	})
}
