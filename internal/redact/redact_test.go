package redact

import "testing"

func TestURLs(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                           "nats://127.0.0.1:4222",
		"nats://u:s3cret@a:4222":                          "nats://u:xxxxx@a:4222",
		"nats://t0ken@a:4222,tls://u:p@ss@b:4222/x?y=1@z": "nats://xxxxx@a:4222,tls://u:xxxxx@b:4222/x?y=1@z",
		"nats://u:pw@[bad":                                "nats://u:xxxxx@[bad",
		"u:pw@host:1":                                     "u:xxxxx@host:1",
		"":                                                "",
	} {
		if got := URLs(in); got != want {
			t.Errorf("URLs(%q) = %q, want %q", in, got, want)
		}
	}
}
