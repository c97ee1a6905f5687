package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// apiFlags are the API server's address and the client certificate every subcommand talks to it
// with.
type apiFlags struct {
	server, ca, cert, key string
}

func (a *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.server, "server", "", "the API server's URL (https://127.0.0.1:PORT)")
	fs.StringVar(&a.ca, "ca", "", "PEM file of the API server's CA")
	fs.StringVar(&a.cert, "cert", "", "PEM client certificate")
	fs.StringVar(&a.key, "key", "", "PEM client key")
}

// apiClient is a minimal Kubernetes REST client: HTTP/2 over TLS with a client certificate, as
// client-go talks to the API server.
type apiClient struct {
	base string
	http *http.Client
}

func (a *apiFlags) client(connections int) (*apiClient, error) {
	if a.server == "" || a.ca == "" || a.cert == "" || a.key == "" {
		return nil, errors.New("--server, --ca, --cert and --key are required")
	}
	pool, err := loadPool(a.ca)
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(a.cert, a.key)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: connections,
		IdleConnTimeout:     90 * time.Second,
	}
	return &apiClient{base: a.server, http: &http.Client{Transport: transport}}, nil
}

func loadPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// do sends one request (body may be nil) and returns the status and the whole body. Every
// request is bounded by timeout.
func (c *apiClient) do(ctx context.Context, method, path string, body []byte, accept string,
	timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, reader)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "peers-load")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// newRequest is a request without a body, with the headers do() sets; for streams.
func newRequest(ctx context.Context, c *apiClient, method, path, accept string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "peers-load")
	return req, nil
}

// statusMessage is the message of a metav1.Status body, or the body itself.
func statusMessage(body []byte) string {
	var status struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &status) == nil && status.Message != "" {
		return status.Message
	}
	if len(body) > 300 {
		body = body[:300]
	}
	return string(body)
}

// resourcePath is the collection path of GROUP/VERSION/RESOURCE ("v1/namespaces" for the core
// group), optionally inside a namespace.
func resourcePath(gvr, namespace string) (string, error) {
	parts := splitN(gvr, '/')
	var prefix, resource string
	switch len(parts) {
	case 2:
		prefix, resource = "/api/"+parts[0], parts[1]
	case 3:
		prefix, resource = "/apis/"+parts[0]+"/"+parts[1], parts[2]
	default:
		return "", fmt.Errorf("%q is not GROUP/VERSION/RESOURCE or VERSION/RESOURCE", gvr)
	}
	if namespace != "" {
		return prefix + "/namespaces/" + namespace + "/" + resource, nil
	}
	return prefix + "/" + resource, nil
}

func splitN(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// readPod reads a pod manifest (JSON) as a generic object.
func readPod(path string) (map[string]any, error) {
	var pod map[string]any
	if err := readJSON(path, &pod); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if pod["kind"] != "Pod" {
		return nil, fmt.Errorf("%s is not a Pod", path)
	}
	return pod, nil
}

func metadataOf(obj map[string]any) map[string]any {
	md, _ := obj["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		obj["metadata"] = md
	}
	return md
}
