// Package oidctest is a real OpenID Connect issuer for tests: it serves
// HTTPS on a listener (loopback by default) with a certificate from its own
// self-signed CA, answers /.well-known/openid-configuration and a JWKS,
// and signs ID tokens (RS256 or ES256) with chosen claims. It can rotate
// its signing keys and sign with a stray key that is not in its JWKS, and
// it can forge the classic bad tokens (alg "none", HS256 keyed with the
// public key) so verification code can be tested against them.
//
// It is test support: its keys are generated per Issuer and never leave
// the process (except the CA certificate, which clients must trust).
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Algorithms the issuer signs with.
const (
	RS256 = "RS256"
	ES256 = "ES256"
)

// Options configure an Issuer. The zero value serves on 127.0.0.1 with a
// random port.
type Options struct {
	// Listener, when set, is served instead of a new loopback listener
	// (a test may open it inside a network namespace). Its address's IP
	// goes into the certificate and the issuer URL.
	Listener net.Listener
	// Hosts are extra DNS names or IPs for the server certificate.
	Hosts []string
	// JWKSURL, when set, is published as jwks_uri instead of the
	// issuer's own (a test of clients that must refuse it).
	JWKSURL string
}

// Issuer is a running OIDC issuer. Its methods are safe for concurrent use.
type Issuer struct {
	// URL is the issuer URL ("https://127.0.0.1:PORT"), the "iss" of
	// every token it signs.
	URL string
	// CAPEM is the PEM certificate of the CA that signed the server
	// certificate; clients must trust it.
	CAPEM []byte
	// CAPool holds the CA certificate.
	CAPool *x509.CertPool

	srv     *http.Server
	ln      net.Listener
	jwksURL string

	mu      sync.Mutex // guards the fields below
	keys    []*key     // published in the JWKS; keys[0] signs by default
	stray   map[string]*key
	fetches int // JWKS fetches served
	code    codeFlow
}

// key is one signing key.
type key struct {
	kid  string
	alg  string
	priv crypto.Signer
}

// Start starts an issuer. Close it when done.
func Start(o Options) (*Issuer, error) {
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("starting issuer: %w", err)
		}
	}
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		ln.Close()
		return nil, errors.New("starting issuer: listener is not TCP")
	}
	caPEM, pair, err := selfSignedTLS(addr.IP, o.Hosts)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("starting issuer: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	i := &Issuer{
		URL:    "https://" + addr.String(),
		CAPEM:  caPEM,
		CAPool: pool,
		ln:     ln,
		stray:  map[string]*key{},
	}
	i.jwksURL = o.JWKSURL
	if i.jwksURL == "" {
		i.jwksURL = i.URL + "/jwks"
	}
	k, err := newKey(RS256)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("starting issuer: %w", err)
	}
	i.keys = []*key{k}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", i.serveDiscovery)
	mux.HandleFunc("GET /jwks", i.serveJWKS)
	mux.HandleFunc("GET /authorize", i.serveAuthorize) // code.go
	mux.HandleFunc("POST /token", i.serveToken)        // code.go
	i.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go i.srv.Serve(tls.NewListener(ln, i.srv.TLSConfig))
	return i, nil
}

// Close stops the issuer.
func (i *Issuer) Close() error { return i.srv.Close() }

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                i.URL,
		"jwks_uri":                              i.jwksURL,
		"authorization_endpoint":                i.URL + "/authorize",
		"token_endpoint":                        i.URL + "/token",
		"response_types_supported":              []string{"code", "id_token"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{RS256, ES256},
	})
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	var set jose.JSONWebKeySet
	for _, k := range i.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"})
	}
	i.fetches++
	i.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(set)
}

// JWKSHandler serves the issuer's JWKS (a test may serve it elsewhere,
// say over plain HTTP, and publish that URL with Options.JWKSURL).
func (i *Issuer) JWKSHandler() http.Handler { return http.HandlerFunc(i.serveJWKS) }

// JWKSFetches reports how many times the JWKS was served.
func (i *Issuer) JWKSFetches() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.fetches
}

// Claims returns typical claims for a token from this issuer: iss, sub,
// aud, a fresh jti, iat and nbf now, exp in ten minutes. Callers change or
// delete entries as a test needs.
func (i *Issuer) Claims(sub, aud string) map[string]any {
	now := time.Now()
	var b [12]byte
	rand.Read(b[:])
	return map[string]any{
		"iss": i.URL,
		"sub": sub,
		"aud": aud,
		"jti": hex.EncodeToString(b[:]),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(10 * time.Minute).Unix(),
	}
}

// SignOptions choose how Sign signs. The zero value signs with the
// current key.
type SignOptions struct {
	// Alg selects the current published key of that algorithm (RS256 or
	// ES256), adding one to the JWKS if there is none yet.
	Alg string
	// Stray signs with a key that is not in the JWKS, under the kid
	// StrayKid (default: the current key's kid, so only the signature
	// is wrong).
	Stray    bool
	StrayKid string
	// Kid overrides the "kid" header of a published key's signature
	// (an unknown kid).
	Kid string
}

// Sign signs claims with the current key (RS256 unless it was rotated to
// another algorithm).
func (i *Issuer) Sign(claims map[string]any) (string, error) {
	return i.SignWith(SignOptions{}, claims)
}

// SignWith signs claims as o says.
func (i *Issuer) SignWith(o SignOptions, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	k, err := i.pick(o)
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	kid := k.kid
	if o.Kid != "" {
		kid = o.Kid
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.alg), Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	return jws.CompactSerialize()
}

// pick returns the key o selects.
func (i *Issuer) pick(o SignOptions) (*key, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	alg := o.Alg
	if alg == "" {
		alg = i.keys[0].alg
	}
	if o.Stray {
		kid := o.StrayKid
		if kid == "" {
			kid = i.keys[0].kid
		}
		if k, ok := i.stray[kid+"/"+alg]; ok {
			return k, nil
		}
		k, err := newKey(alg)
		if err != nil {
			return nil, err
		}
		k.kid = kid
		i.stray[kid+"/"+alg] = k
		return k, nil
	}
	for _, k := range i.keys {
		if k.alg == alg {
			return k, nil
		}
	}
	k, err := newKey(alg)
	if err != nil {
		return nil, err
	}
	i.keys = append(i.keys, k)
	return k, nil
}

// Rotate makes a new key of alg (RS256 when empty) the current one. With
// keepOld the previous keys stay in the JWKS; without, they are dropped
// and tokens they signed no longer verify.
func (i *Issuer) Rotate(alg string, keepOld bool) error {
	if alg == "" {
		alg = RS256
	}
	k, err := newKey(alg)
	if err != nil {
		return fmt.Errorf("rotating key: %w", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if keepOld {
		i.keys = append([]*key{k}, i.keys...)
	} else {
		i.keys = []*key{k}
	}
	return nil
}

// UnsignedToken returns a token with alg "none" and an empty signature.
func (i *Issuer) UnsignedToken(claims map[string]any) (string, error) {
	return i.forge(map[string]any{"alg": "none", "typ": "JWT"}, claims, func([]byte) []byte { return nil })
}

// HMACWithPublicKey returns an HS256 token whose HMAC key is the current
// key's public key in PEM, the classic algorithm-confusion forgery.
func (i *Issuer) HMACWithPublicKey(claims map[string]any) (string, error) {
	i.mu.Lock()
	k := i.keys[0]
	i.mu.Unlock()
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		return "", fmt.Errorf("forging token: %w", err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return i.forge(map[string]any{"alg": "HS256", "typ": "JWT", "kid": k.kid}, claims, func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	})
}

// forge assembles a compact JWS by hand.
func (i *Issuer) forge(header, claims map[string]any, sign func([]byte) []byte) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("forging token: %w", err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("forging token: %w", err)
	}
	enc := base64.RawURLEncoding
	in := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	return in + "." + enc.EncodeToString(sign([]byte(in))), nil
}

func newKey(alg string) (*key, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("unsupported algorithm %q", alg)
	}
	if err != nil {
		return nil, err
	}
	var b [8]byte
	rand.Read(b[:])
	return &key{kid: hex.EncodeToString(b[:]), alg: alg, priv: priv}, nil
}

// selfSignedTLS makes a CA and a server certificate for ip and hosts.
func selfSignedTLS(ip net.IP, hosts []string) ([]byte, tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "oidctest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "oidctest issuer"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{ip, net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	for _, h := range hosts {
		if hip := net.ParseIP(h); hip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, hip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, h)
		}
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, leafKey.Public(), caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	pair := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pair, nil
}
