package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// tlsMaterial is PEM-encoded key material for a cluster with TLS enabled.
type tlsMaterial struct {
	caCert     []byte
	serverCert []byte
	serverKey  []byte
}

// generateTLS creates a fresh CA and a server certificate signed by it. A
// separate CA (instead of one self-signed leaf) lets clients exercise
// sslmode=verify-full exactly as they would against a real deployment.
func generateTLS() (*tlsMaterial, error) {
	ca, caKey, err := newCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "pgtest CA", Organization: []string{"pgverbs pgtest"}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	srv, srvKey, err := newCert(serverTemplate("127.0.0.1", false), ca, caKey)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	keyPEM, err := keyToPEM(srvKey)
	if err != nil {
		return nil, err
	}
	return &tlsMaterial{caCert: certToPEM(ca), serverCert: certToPEM(srv), serverKey: keyPEM}, nil
}

// Cert is a self-signed server certificate for 127.0.0.1, ::1 and
// localhost, its own CA, so that a client verifying against it
// (sslmode=verify-full with it as sslrootcert) accepts the server.
type Cert struct {
	// CertPEM and KeyPEM are the certificate and its PKCS #8 key.
	CertPEM, KeyPEM []byte
	// TLS is the pair for a tls.Config's Certificates.
	TLS tls.Certificate
	// Pool trusts the certificate, for a tls.Config's RootCAs.
	Pool *x509.CertPool
}

// SelfSigned returns a new self-signed certificate with common name cn
// (a test tells certificates apart by it); any error fails the test.
func SelfSigned(t testing.TB, cn string) *Cert {
	t.Helper()
	cert, key, err := newCert(serverTemplate(cn, true), nil, nil)
	if err != nil {
		t.Fatalf("pgtest: self-signed certificate: %v", err)
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &Cert{
		CertPEM: certToPEM(cert),
		KeyPEM:  keyPEM,
		TLS:     tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert},
		Pool:    pool,
	}
}

// WriteSelfSigned writes a new SelfSigned certificate into dir as
// <cn>.crt and <cn>.key (mode 0600, as servers demand of a key) and
// returns their paths.
func WriteSelfSigned(t testing.TB, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	c := SelfSigned(t, cn)
	certFile = filepath.Join(dir, cn+".crt")
	keyFile = filepath.Join(dir, cn+".key")
	if err := os.WriteFile(certFile, c.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// serverTemplate is a server certificate for cn, 127.0.0.1, ::1 and
// localhost; selfSigned makes it its own CA.
func serverTemplate(cn string, selfSigned bool) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"pgverbs pgtest"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if selfSigned {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	return tmpl
}

// newCert creates a P-256 key and a certificate from tmpl for it, signed by
// parent's key, or by its own when parent is nil.
func newCert(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("generate certificate serial: %w", err)
	}
	tmpl.SerialNumber = serial
	// Backdated so that small clock differences never make the certificate
	// "not yet valid"; long-lived enough for a `make run` session.
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = tmpl.NotBefore.Add(365 * 24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, key, nil
}

func certToPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyToPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
