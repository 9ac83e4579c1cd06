package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func noEnv(string) string { return "" }

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "starling.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefault(t *testing.T) {
	c := Default()
	if c.HTTP.Address != "127.0.0.1:7900" || c.RTC.UDPPort != 7901 || c.RTC.TCPPort != 7902 {
		t.Errorf("ports/address: %+v %+v", c.HTTP, c.RTC)
	}
	if len(c.RTC.NodeIP) != 0 || c.RTC.BindIP != "" || len(c.RTC.ICEServers) != 0 || !c.RTC.LoopbackCandidates {
		t.Errorf("rtc: %+v", c.RTC)
	}
	if c.Room.EmptyTimeout.Std() != 10*time.Second || c.Room.NegotiationTimeout.Std() != 15*time.Second {
		t.Errorf("room: %+v", c.Room)
	}
	if c.Log.Level != "info" || c.Log.Format != "text" {
		t.Errorf("log: %+v", c.Log)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	got, err := load(nil, nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("Load(no args) = %+v, want %+v", got, c)
	}
}

const sampleYAML = `
http:
  address: "0.0.0.0:8000"
rtc:
  udp_port: 9001
  tcp_port: -1
  node_ip: ["203.0.113.7"]
  bind_ip: "192.0.2.1"
  ice_servers:
    - urls: ["stun:stun.example.org:3478"]
    - urls: ["turn:turn.example.org:3478?transport=udp"]
      username: u
      credential: c
  loopback_candidates: false
room:
  empty_timeout: 1m30s
  negotiation_timeout: 5s
log:
  level: debug
  format: json
`

func TestLoadYAML(t *testing.T) {
	p := writeFile(t, sampleYAML)
	c, err := load([]string{"--config", p}, nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.HTTP.Address = "0.0.0.0:8000"
	want.RTC.UDPPort = 9001
	want.RTC.TCPPort = -1
	want.RTC.NodeIP = []string{"203.0.113.7"}
	want.RTC.BindIP = "192.0.2.1"
	want.RTC.ICEServers = []ICEServer{
		{URLs: []string{"stun:stun.example.org:3478"}},
		{URLs: []string{"turn:turn.example.org:3478?transport=udp"}, Username: "u", Credential: "c"},
	}
	want.RTC.LoopbackCandidates = false
	want.Room.EmptyTimeout = Duration(90 * time.Second)
	want.Room.NegotiationTimeout = Duration(5 * time.Second)
	want.Log.Level = "debug"
	want.Log.Format = "json"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestPartialYAMLKeepsDefaults(t *testing.T) {
	p := writeFile(t, "rtc:\n  udp_port: 0\n")
	c, err := load([]string{"--config=" + p}, nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.RTC.UDPPort = 0
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}

	empty := writeFile(t, "# nothing here\n")
	c, err = load([]string{"--config", empty}, nil, noEnv)
	if err != nil || !reflect.DeepEqual(c, Default()) {
		t.Errorf("empty file: %+v, %v", c, err)
	}
}

func TestFlagsOverrideYAML(t *testing.T) {
	p := writeFile(t, sampleYAML)
	c, err := load([]string{
		"--config", p,
		"--bind", "127.0.0.1:0",
		"--udp-port", "0",
		"--tcp-port", "0",
		"--node-ip", "198.51.100.1,198.51.100.2", "--node-ip", "2001:db8::1",
		"--media-bind-ip", "",
		"--ice-server", "stun:a.example:3478",
		"--ice-server", "turn:b.example:3478?transport=tcp,turns:b.example:5349,username=alice,credential=pw",
		"--empty-timeout", "2s",
		"--negotiation-timeout", "3s",
		"--sender-report-interval", "500ms",
		"--loopback-candidates=true",
		"--log-level", "WARN",
		"--log-format", "text",
	}, nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.HTTP.Address = "127.0.0.1:0"
	want.RTC.UDPPort = 0
	want.RTC.TCPPort = 0
	want.RTC.NodeIP = []string{"198.51.100.1", "198.51.100.2", "2001:db8::1"}
	want.RTC.ICEServers = []ICEServer{
		{URLs: []string{"stun:a.example:3478"}},
		{URLs: []string{"turn:b.example:3478?transport=tcp", "turns:b.example:5349"}, Username: "alice", Credential: "pw"},
	}
	want.Room.EmptyTimeout = Duration(2 * time.Second)
	want.Room.NegotiationTimeout = Duration(3 * time.Second)
	want.RTC.SenderReportInterval = Duration(500 * time.Millisecond)
	want.Log.Level = "warn"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}

	// Flags not given keep the file's values.
	c, err = load([]string{"--config", p, "--udp-port", "7000"}, nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.RTC.UDPPort != 7000 || c.RTC.TCPPort != -1 || c.Log.Format != "json" || len(c.RTC.ICEServers) != 2 {
		t.Errorf("file values lost: %+v", c)
	}
}

func TestEnvConfig(t *testing.T) {
	p := writeFile(t, "rtc:\n  udp_port: 7111\n")
	other := writeFile(t, "rtc:\n  udp_port: 7222\n")
	t.Setenv(EnvConfig, p)
	c, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.RTC.UDPPort != 7111 {
		t.Errorf("$%s not used: udp_port = %d", EnvConfig, c.RTC.UDPPort)
	}
	c, err = Load([]string{"--config", other}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.RTC.UDPPort != 7222 {
		t.Errorf("--config did not override $%s: udp_port = %d", EnvConfig, c.RTC.UDPPort)
	}
}

func TestExampleYAML(t *testing.T) {
	c, err := load([]string{"--config", "example.yaml"}, nil, noEnv)
	if err != nil {
		t.Fatalf("example.yaml does not load: %v", err)
	}
	// Apart from the sample ICE servers, the example documents the defaults.
	if len(c.RTC.ICEServers) == 0 {
		t.Error("example.yaml should show an ice_servers entry")
	}
	c.RTC.ICEServers = nil
	c.RTC.NodeIP = nil
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("example.yaml values differ from Default():\n got  %+v\n want %+v", c, Default())
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := load([]string{"--help"}, &out, noEnv)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	usage := out.String()
	for _, want := range []string{
		"--config file", "--bind address", "(default: 127.0.0.1:7900)",
		"--udp-port port", "(default: 7901)", "--tcp-port port", "(default: 7902)",
		"--node-ip IP", "--media-bind-ip IP", "--ice-server URL[,URL...]",
		"--empty-timeout", "(default: 10s)", "--negotiation-timeout", "(default: 15s)",
		"--loopback-candidates", "(default: true)",
		"--log-level level", "(default: info)", "--log-format format", "(default: text)",
		"(default: none)",
	} {
		if !strings.Contains(usage, want) {
			t.Errorf("usage lacks %q:\n%s", want, usage)
		}
	}
}

func TestUnknownYAMLKey(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"rtc:\n  udp_prot: 1\n", `line 2: unknown key "rtc.udp_prot"`},
		{"htp:\n  address: x\n", `line 1: unknown key "htp"`},
		{"rtc:\n  ice_servers:\n    - urls: [stun:a]\n      pasword: x\n", `line 4: unknown key "rtc.ice_servers[0].pasword"`},
	}
	for _, tt := range tests {
		p := writeFile(t, tt.yaml)
		_, err := load([]string{"--config", p}, nil, noEnv)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tt.yaml, err, tt.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		yaml string // written to a file passed with --config when set
		want string // substring of the error
	}{
		{"udp port too big", []string{"--udp-port", "70000"}, "", "rtc.udp_port 70000"},
		{"udp port negative", []string{"--udp-port=-1"}, "", "rtc.udp_port -1"},
		{"tcp port -2", []string{"--tcp-port=-2"}, "", "rtc.tcp_port -2"},
		{"udp port not a number", []string{"--udp-port", "abc"}, "", `invalid value "abc" for flag -udp-port`},
		{"tcp port clashes with http", []string{"--bind", "0.0.0.0:7902"}, "", "same TCP port as http.address"},
		{"bind without port", []string{"--bind", "localhost"}, "", `http.address "localhost": want host:port`},
		{"bind bad port", []string{"--bind", "localhost:http"}, "", "port must be a number"},
		{"node ip", []string{"--node-ip", "1.2.3.4,example.com"}, "", `rtc.node_ip "example.com": not an IP address`},
		{"node ip unspecified", []string{"--node-ip", "0.0.0.0"}, "", "unspecified address"},
		{"media bind ip", []string{"--media-bind-ip", "999.1.1.1"}, "", `rtc.bind_ip "999.1.1.1": not an IP address`},
		{"ice scheme", []string{"--ice-server", "http://stun.example.org"}, "", "must start with stun:, stuns:, turn: or turns:"},
		{"ice no url", []string{"--ice-server", "username=a,credential=b"}, "", "has no URL"},
		{"ice slashes", []string{"--ice-server", "stun://x.example"}, "", "without //"},
		{"ice no host", []string{"--ice-server", "stun:"}, "", "missing or malformed host"},
		{"ice bad port", []string{"--ice-server", "stun:x.example:99999"}, "", `bad port "99999"`},
		{"turn no creds", []string{"--ice-server", "turn:x.example:3478"}, "", "TURN needs a username and a credential"},
		{"turn bad transport", []string{"--ice-server", "turn:x.example?transport=sctp,username=a,credential=b"}, "", "?transport=udp"},
		{"stun with query", []string{"--ice-server", "stun:x.example?transport=udp"}, "", "STUN URLs take no ?query"},
		{"empty timeout negative", []string{"--empty-timeout=-1s"}, "", "room.empty_timeout -1s"},
		{"empty timeout zero", []string{"--empty-timeout=0"}, "", "room.empty_timeout 0s: must be positive"},
		{"negotiation timeout zero", []string{"--negotiation-timeout", "0s"}, "", "room.negotiation_timeout 0s: must be positive"},
		{"sender reports too often", []string{"--sender-report-interval", "10ms"}, "", "rtc.sender_report_interval: 10ms: must be 100ms..10s"},
		{"sender reports too rare", nil, "rtc:\n  sender_report_interval: 1m\n", "rtc.sender_report_interval: 1m0s: must be 100ms..10s"},
		{"empty timeout no unit", []string{"--empty-timeout", "10"}, "", `invalid value "10" for flag -empty-timeout`},
		{"log level", []string{"--log-level", "verbose"}, "", `log.level "verbose": want debug, info, warn or error`},
		{"log format", []string{"--log-format", "xml"}, "", `log.format "xml": want text or json`},
		{"unknown flag", []string{"--udp", "1"}, "", "flag provided but not defined: -udp"},
		{"positional arg", []string{"serve"}, "", `unexpected argument "serve"`},
		{"missing file", []string{"--config", "/nonexistent/starling.yaml"}, "", "no such file"},
		{"yaml duration", nil, "room:\n  empty_timeout: 10\n", `line 2: invalid duration "10"`},
		{"yaml type", nil, "rtc:\n  udp_port: lots\n", "cannot unmarshal !!str `lots` into int"},
		{"yaml syntax", nil, "rtc: [\n", "config file"},
		{"yaml ice url", nil, "rtc:\n  ice_servers:\n    - urls: [\"stun.example.org\"]\n", `rtc.ice_servers[0].urls "stun.example.org"`},
		{"yaml ice empty", nil, "rtc:\n  ice_servers:\n    - username: x\n", "rtc.ice_servers[0]: no urls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.yaml != "" {
				args = append([]string{"--config", writeFile(t, tt.yaml)}, args...)
			}
			_, err := load(args, nil, noEnv)
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := Default()
	c.RTC.UDPPort = -5
	c.Log.Level = "loud"
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "rtc.udp_port -5") || !strings.Contains(msg, `log.level "loud"`) {
		t.Errorf("want both problems reported, got:\n%s", msg)
	}
}

func TestParseICEServer(t *testing.T) {
	tests := []struct {
		in   string
		want ICEServer
	}{
		{"stun:stun.example.org:3478", ICEServer{URLs: []string{"stun:stun.example.org:3478"}}},
		{"turn:h:3478?transport=udp,user=U,credential=C",
			ICEServer{URLs: []string{"turn:h:3478?transport=udp"}, Username: "U", Credential: "C"}},
		{" turn:h , turns:h:5349 , username=U , password=p=w ",
			ICEServer{URLs: []string{"turn:h", "turns:h:5349"}, Username: "U", Credential: "p=w"}},
	}
	for _, tt := range tests {
		got, err := ParseICEServer(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseICEServer(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestICEURLs(t *testing.T) {
	good := []string{"stun:h", "STUN:h:1", "stuns:h:5349", "turn:[2001:db8::1]:3478?transport=tcp", "turns:h", "stun:[::1]", "stun:192.0.2.1"}
	for _, u := range good {
		if _, err := checkICEURL(u); err != nil {
			t.Errorf("checkICEURL(%q) = %v", u, err)
		}
	}
	bad := []string{"", "h:3478", "stun", "stun:h:0", "stun:u@h", "turn:h?x=y", "stun:h:port"}
	for _, u := range bad {
		if _, err := checkICEURL(u); err == nil {
			t.Errorf("checkICEURL(%q) = nil, want error", u)
		}
	}
}

func TestDurationYAML(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1m30s\n"), &v); err != nil || v.D.Std() != 90*time.Second {
		t.Fatalf("got %v, %v", v.D, err)
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "d: 1m30s\n" {
		t.Errorf("Marshal = %q, %v", out, err)
	}
	if err := yaml.Unmarshal([]byte("d: [1]\n"), &v); err == nil {
		t.Error("sequence accepted as duration")
	}
}

func TestLogger(t *testing.T) {
	c := Default()
	c.Log.Level = "warn"
	var buf bytes.Buffer
	l := c.Logger(&buf)
	l.Info("hidden")
	l.Warn("shown", "k", 1)
	if s := buf.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "level=WARN msg=shown k=1") {
		t.Errorf("text logger wrote %q", s)
	}

	buf.Reset()
	c.Log.Level, c.Log.Format = "debug", "json"
	c.Logger(&buf).Debug("hello", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("json logger wrote %q: %v", buf.String(), err)
	}
	if rec["level"] != "DEBUG" || rec["msg"] != "hello" || rec["k"] != "v" {
		t.Errorf("json record %v", rec)
	}
}
