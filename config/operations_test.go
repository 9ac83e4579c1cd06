package config

import (
	"strings"
	"testing"
)

const secret32 = "0123456789abcdef0123456789abcdef"

func TestKeysFromFileAndEnv(t *testing.T) {
	path := writeFile(t, "keys:\n  file: "+secret32+"\n  both: "+secret32+"\n")
	env := func(k string) string {
		if k == EnvKeys {
			return "both:" + strings.ToUpper(secret32) + ", env:" + secret32
		}
		return ""
	}
	cfg, err := load([]string{"--config", path}, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"file": secret32, "both": strings.ToUpper(secret32), "env": secret32}
	if len(cfg.Keys) != len(want) {
		t.Fatalf("keys = %v, want %v", cfg.Keys, want)
	}
	for k, v := range want {
		if cfg.Keys[k] != v {
			t.Errorf("keys[%q] = %q, want %q ($%s overrides the file)", k, cfg.Keys[k], v, EnvKeys)
		}
	}
}

func TestOperationsValidation(t *testing.T) {
	tests := []struct {
		name, yaml, env string
		args            []string
		wantErr         string
	}{
		{name: "short secret", yaml: "keys:\n  k: short\n", wantErr: "at least 32"},
		{name: "bad env", env: "nocolon", wantErr: "want key:secret"},
		{name: "tls half", args: []string{"--tls-cert", "c.pem"}, wantErr: "give both or neither"},
		{name: "bad origin", args: []string{"--allowed-origin", "example.com"}, wantErr: "http.allowed_origins"},
		{name: "negative limit", yaml: "limits:\n  max_rooms: -1\n", wantErr: "limits.max_rooms"},
		{name: "huge data", yaml: "limits:\n  max_data_message: 100000\n", wantErr: "limits.max_data_message"},
		{name: "tiny frame", yaml: "limits:\n  max_frame: 10\n", wantErr: "limits.max_frame"},
		{name: "tiny ping interval", yaml: "limits:\n  ping_interval: 10ms\n", wantErr: "limits.ping_interval"},
		{name: "webhook needs keys", args: []string{"--webhook-url", "http://127.0.0.1:9/hook"}, wantErr: "configure keys"},
		{name: "webhook url", yaml: "keys:\n  k: " + secret32 + "\nwebhook:\n  urls: [ftp://x]\n", wantErr: "webhook.urls"},
		{name: "webhook key", yaml: "keys:\n  k: " + secret32 + "\nwebhook:\n  urls: [http://x/]\n  api_key: nope\n", wantErr: "webhook.api_key"},
		{name: "all good", yaml: "keys:\n  k: " + secret32 + "\nwebhook:\n  urls: [https://hooks.example.com/starling]\nlimits:\n  max_rooms: 0\n",
			args: []string{"--allowed-origin", "https://app.example.com,*", "--insecure-open"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.yaml != "" {
				args = append([]string{"--config", writeFile(t, tc.yaml)}, args...)
			}
			env := func(k string) string {
				if k == EnvKeys {
					return tc.env
				}
				return ""
			}
			_, err := load(args, nil, env)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "short") && tc.name == "short secret" {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestOpenServerError(t *testing.T) {
	tests := []struct {
		addr     string
		keys     bool
		insecure bool
		wantErr  bool
	}{
		{addr: "127.0.0.1:7900"},
		{addr: "[::1]:7900"},
		{addr: "localhost:7900"},
		{addr: "0.0.0.0:7900", wantErr: true},
		{addr: ":7900", wantErr: true},
		{addr: "192.0.2.1:7900", wantErr: true},
		{addr: "0.0.0.0:7900", keys: true},
		{addr: "0.0.0.0:7900", insecure: true},
	}
	for _, tc := range tests {
		c := Default()
		c.HTTP.Address = tc.addr
		c.InsecureOpen = tc.insecure
		if tc.keys {
			c.Keys = map[string]string{"k": secret32}
		}
		if err := c.OpenServerError(); (err != nil) != tc.wantErr {
			t.Errorf("%s keys=%v insecure=%v: OpenServerError = %v, want error %v", tc.addr, tc.keys, tc.insecure, err, tc.wantErr)
		}
	}
}
