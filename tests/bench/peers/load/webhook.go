package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// WebhookResult is what `webhook` measured.
type WebhookResult struct {
	URL         string         `json:"url"`
	Connections int            `json:"connections"`
	ReviewBytes int            `json:"review_bytes"`
	Requests    int            `json:"requests"`
	Seconds     float64        `json:"seconds"`
	Rate        float64        `json:"requests_per_second"`
	Latency     Latencies      `json:"latency"`
	OK          int            `json:"ok"`
	NotAllowed  int            `json:"not_allowed"`
	Errors      int            `json:"errors"`
	Statuses    map[string]int `json:"statuses"`
	FirstBad    string         `json:"first_bad,omitempty"`
	TLS         string         `json:"tls"`
	Protocol    string         `json:"protocol"`
}

// The uid every review is sent with is this placeholder's 36 bytes, overwritten per request.
const uidPlaceholder = "00000000-0000-4000-8000-000000000000"

// admissionReview wraps the pod as kube-apiserver sends it for the creates of the admission run:
// a server dry run by the control plane's admin.
func admissionReview(pod map[string]any, namespace string) ([]byte, error) {
	md := metadataOf(pod)
	md["namespace"] = namespace
	name, _ := md["name"].(string)
	podKind := map[string]any{"group": "", "version": "v1", "kind": "Pod"}
	podResource := map[string]any{"group": "", "version": "v1", "resource": "pods"}
	review := map[string]any{
		"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
		"request": map[string]any{
			"uid": uidPlaceholder, "kind": podKind, "resource": podResource,
			"requestKind": podKind, "requestResource": podResource,
			"name": name, "namespace": namespace, "operation": "CREATE",
			"userInfo": map[string]any{
				"username": "admin",
				"groups":   []string{"system:masters", "system:authenticated"},
			},
			"object": pod, "oldObject": nil, "dryRun": true,
			"options": map[string]any{"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
		},
	}
	return json.Marshal(review)
}

func runWebhook(args []string) error {
	fs := flag.NewFlagSet("webhook", flag.ExitOnError)
	url := fs.String("url", "", "the webhook's URL, as its webhook configuration has it")
	caFile := fs.String("ca", "", "PEM CA bundle of the webhook (its caBundle)")
	podFile := fs.String("pod", "", "the pod (JSON)")
	namespace := fs.String("namespace", "", "namespace of the pod")
	seconds := fs.Float64("seconds", 15, "measured duration")
	warmup := fs.Float64("warmup-seconds", 2, "load before the measurement starts (not counted)")
	connections := fs.Int("connections", 16, "keep-alive connections, one request in flight each")
	out := fs.String("out", "", "result file (JSON)")
	fs.Parse(args)
	pool, err := loadPool(*caFile)
	if err != nil {
		return err
	}
	pod, err := readPod(*podFile)
	if err != nil {
		return err
	}
	body, err := admissionReview(pod, *namespace)
	if err != nil {
		return err
	}
	uidAt := bytes.Index(body, []byte(uidPlaceholder))
	// HTTP/1.1 for every tool (Bulkhead's server speaks nothing else), one keep-alive
	// connection per worker; TLS as the server negotiates it (recorded).
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}},
		ForceAttemptHTTP2:   false,
		MaxConnsPerHost:     *connections,
		MaxIdleConnsPerHost: *connections,
		DisableCompression:  true,
		IdleConnTimeout:     90 * time.Second,
	}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	result := WebhookResult{URL: *url, Connections: *connections, ReviewBytes: len(body),
		Statuses: map[string]int{}}

	warmEnd := time.Now().Add(time.Duration(*warmup * float64(time.Second)))
	end := warmEnd.Add(time.Duration(*seconds * float64(time.Second)))
	var mu sync.Mutex
	var latencies []time.Duration
	var wg sync.WaitGroup
	for w := 0; w < *connections; w++ {
		wg.Add(1)
		go func(worker int) {
			defer wg.Done()
			request := append([]byte(nil), body...)
			var mine []time.Duration
			ok, notAllowed, errs := 0, 0, 0
			statuses := map[string]int{}
			firstBad, tlsInfo, proto := "", "", ""
			for n := 0; ; n++ {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				uid := fmt.Sprintf("6b1e2f00-%04x-4000-8000-%012x", worker, n)
				copy(request[uidAt:], uid)
				status, answer, state, err := post(client, *url, request)
				elapsed := time.Since(t0)
				if t0.Before(warmEnd) {
					continue
				}
				mine = append(mine, elapsed)
				if err != nil {
					errs++
					if firstBad == "" {
						firstBad = err.Error()
					}
					continue
				}
				if state != nil && tlsInfo == "" {
					tlsInfo = tls.VersionName(state.Version) + " " + tls.CipherSuiteName(state.CipherSuite)
					proto = state.NegotiatedProtocol
				}
				statuses[fmt.Sprint(status)]++
				if status != 200 {
					if firstBad == "" {
						firstBad = fmt.Sprintf("HTTP %d: %s", status, oneLine(string(answer), 300))
					}
					continue
				}
				var review struct {
					Response struct {
						UID     string `json:"uid"`
						Allowed bool   `json:"allowed"`
					} `json:"response"`
				}
				if json.Unmarshal(answer, &review) != nil || review.Response.UID != uid ||
					!review.Response.Allowed {
					notAllowed++
					if firstBad == "" {
						firstBad = oneLine(string(answer), 300)
					}
					continue
				}
				ok++
			}
			mu.Lock()
			defer mu.Unlock()
			latencies = append(latencies, mine...)
			result.OK += ok
			result.NotAllowed += notAllowed
			result.Errors += errs
			for s, n := range statuses {
				result.Statuses[s] += n
			}
			if result.FirstBad == "" {
				result.FirstBad = firstBad
			}
			if result.TLS == "" {
				result.TLS, result.Protocol = tlsInfo, proto
			}
		}(w)
	}
	wg.Wait()
	result.Seconds = time.Since(warmEnd).Seconds()
	result.Requests = len(latencies)
	result.Rate = float64(result.OK) / result.Seconds
	result.Latency = summarise(latencies)
	if result.Protocol == "" {
		result.Protocol = "http/1.1"
	}
	fmt.Printf("webhook: %d requests in %.1f s over %d connections (%s, %s, %d-byte review): "+
		"%.0f allowed answers/s; p50 %.2f ms, p99 %.2f ms; not allowed %d, errors %d\n",
		result.Requests, result.Seconds, *connections, result.TLS, result.Protocol, len(body),
		result.Rate, result.Latency.P50, result.Latency.P99, result.NotAllowed, result.Errors)
	if result.FirstBad != "" {
		fmt.Printf("webhook: first bad answer: %s\n", result.FirstBad)
	}
	return writeJSON(*out, result)
}

func post(client *http.Client, url string, body []byte) (int, []byte, *tls.ConnectionState, error) {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, */*")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	return resp.StatusCode, answer, resp.TLS, err
}
