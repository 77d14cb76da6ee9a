package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchnet/latch/coordinator"
)

func TestRateLimitDefaultsMatchTheAPI(t *testing.T) {
	opts, err := parseServe(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := opts.cfg
	want := []coordinator.RateLimit{{Rate: 10, Burst: 20}, {Rate: 5, Burst: 10}, {Rate: 5, Burst: 10}}
	got := []coordinator.RateLimit{c.EnrollPerIP, c.EnrollPerKey, c.AuthFailuresPerIP}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("limit %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestRateLimitFlags(t *testing.T) {
	tests := []struct {
		args  []string
		field func(coordinator.Config) coordinator.RateLimit
		want  coordinator.RateLimit
	}{
		{[]string{"--enroll-rate-per-ip", "3/s", "--enroll-burst-per-ip", "7"},
			func(c coordinator.Config) coordinator.RateLimit { return c.EnrollPerIP }, coordinator.RateLimit{Rate: 3, Burst: 7}},
		{[]string{"--enroll-rate-per-key", "120/m"},
			func(c coordinator.Config) coordinator.RateLimit { return c.EnrollPerKey }, coordinator.RateLimit{Rate: 2, Burst: 10}},
		{[]string{"--auth-failure-rate-per-ip", "1800/h", "--auth-failure-burst-per-ip", "1"},
			func(c coordinator.Config) coordinator.RateLimit { return c.AuthFailuresPerIP }, coordinator.RateLimit{Rate: 0.5, Burst: 1}},
		{[]string{"--enroll-rate-per-ip", "off"},
			func(c coordinator.Config) coordinator.RateLimit { return c.EnrollPerIP }, coordinator.RateLimit{Rate: 0, Burst: 20}},
		{[]string{"--enroll-rate-per-key", "0"},
			func(c coordinator.Config) coordinator.RateLimit { return c.EnrollPerKey }, coordinator.RateLimit{Rate: 0, Burst: 10}},
		{[]string{"--enroll-burst-per-key", "1000000"},
			func(c coordinator.Config) coordinator.RateLimit { return c.EnrollPerKey }, coordinator.RateLimit{Rate: 5, Burst: 1000000}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			opts, err := parseServe(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.field(opts.cfg); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRateLimitFlagErrorsExit2WithOneLine(t *testing.T) {
	tests := []struct {
		args []string
		want string // substring of the one stderr line
	}{
		{[]string{"--enroll-rate-per-ip", "-1/s"}, "want a positive rate, or off"},
		{[]string{"--enroll-rate-per-ip", "10"}, "want N/s, N/m, N/h or off"},
		{[]string{"--enroll-rate-per-key", "10/d"}, "want N/s, N/m, N/h or off"},
		{[]string{"--enroll-rate-per-key", "NaN/s"}, "want N/s, N/m, N/h or off"},
		{[]string{"--auth-failure-rate-per-ip", "1e9/s"}, "want at most 1e+06/s"},
		{[]string{"--enroll-burst-per-ip", "0"}, "want a whole number between 1 and 1000000"},
		{[]string{"--enroll-burst-per-key", "-3"}, "want a whole number between 1 and 1000000"},
		{[]string{"--auth-failure-burst-per-ip", "99999999"}, "want a whole number between 1 and 1000000"},
		{[]string{"--auth-failure-burst-per-ip", "many"}, "want a whole number"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"serve"}, tt.args...), &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			s := stderr.String()
			if !strings.Contains(s, tt.want) || strings.Count(s, "\n") != 1 {
				t.Fatalf("stderr %q: want one line containing %q", s, tt.want)
			}
		})
	}
}

func TestRateLimitConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "coordinator.hujson")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{
		"enroll-rate-per-ip": "2/s",
		"enroll-burst-per-ip": 4,
		"enroll-rate-per-key": "off",
		"auth-failure-rate-per-ip": "60/m",
		"auth-failure-burst-per-ip": 3, // trailing comma next
	}`)
	opts, err := parseServe([]string{"--config", path, "--enroll-burst-per-ip", "9"})
	if err != nil {
		t.Fatal(err)
	}
	c := opts.cfg
	if c.EnrollPerIP != (coordinator.RateLimit{Rate: 2, Burst: 9}) {
		t.Errorf("enroll per IP %+v: want file rate, flag burst", c.EnrollPerIP)
	}
	if !c.EnrollPerKey.Off() || c.EnrollPerKey.Burst != 10 {
		t.Errorf("enroll per key %+v: want off", c.EnrollPerKey)
	}
	if c.AuthFailuresPerIP != (coordinator.RateLimit{Rate: 1, Burst: 3}) {
		t.Errorf("auth failures per IP %+v", c.AuthFailuresPerIP)
	}

	for _, tt := range []struct{ body, want string }{
		{`{"enroll-rate-per-ip": "-5/s"}`, "enroll-rate-per-ip: rate"},
		{`{"enroll-rate-per-key": 10}`, "enroll-rate-per-key"},
		{`{"enroll-burst-per-key": 0}`, "enroll-burst-per-key: want a whole number between 1 and 1000000"},
		{`{"auth-failure-burst-per-ip": -1}`, "auth-failure-burst-per-ip: want a whole number"},
		{`{"auth-failure-burst-per-ip": 1.5}`, "auth-failure-burst-per-ip"},
		{`{"auth-failure-rate-per-ip": "1e7/s"}`, "want at most"},
	} {
		t.Run(tt.body, func(t *testing.T) {
			write(tt.body)
			var stdout, stderr bytes.Buffer
			if code := run([]string{"serve", "--config", path}, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			if s := stderr.String(); !strings.Contains(s, tt.want) || strings.Count(s, "\n") != 1 {
				t.Fatalf("stderr %q: want one line containing %q", s, tt.want)
			}
		})
	}
}

func TestConfigValidateRateLimits(t *testing.T) {
	for _, tt := range []struct {
		l    coordinator.RateLimit
		want string
	}{
		{coordinator.RateLimit{Rate: -1, Burst: 1}, "enroll-rate-per-ip -"},
		{coordinator.RateLimit{Rate: 2e6, Burst: 1}, "enroll-rate-per-ip 2e+06/s"},
		{coordinator.RateLimit{Rate: 1, Burst: 0}, "enroll-burst-per-ip 0"},
	} {
		c := coordinator.DefaultConfig()
		c.EnrollPerIP = tt.l
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err %v, want %q", tt.l, err, tt.want)
		}
	}
	c := coordinator.DefaultConfig()
	c.AuthFailuresPerIP = coordinator.RateLimit{} // off
	if err := c.Validate(); err != nil {
		t.Errorf("off limit refused: %v", err)
	}
}
