package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CreatesResult is what `creates` measured.
type CreatesResult struct {
	Count       int            `json:"count"`
	Concurrency int            `json:"concurrency"`
	PodBytes    int            `json:"pod_bytes"`
	Seconds     float64        `json:"seconds"`
	Rate        float64        `json:"creates_per_second"`
	Latency     Latencies      `json:"latency"`
	Codes       map[string]int `json:"codes"`
	Errors      int            `json:"errors"`
	FirstBad    string         `json:"first_bad,omitempty"`
}

func runCreates(args []string) error {
	fs := flag.NewFlagSet("creates", flag.ExitOnError)
	var api apiFlags
	api.register(fs)
	namespace := fs.String("namespace", "", "namespace of the pods")
	podFile := fs.String("pod", "", "the pod (JSON)")
	count := fs.Int("count", 1000, "creates in all")
	concurrency := fs.Int("concurrency", 8, "creates in flight at once")
	out := fs.String("out", "", "result file (JSON)")
	fs.Parse(args)
	client, err := api.client(*concurrency)
	if err != nil {
		return err
	}
	pod, err := readPod(*podFile)
	if err != nil {
		return err
	}
	md := metadataOf(pod)
	delete(md, "name")
	md["generateName"] = "bench-"
	md["namespace"] = *namespace
	body, _ := json.Marshal(pod)
	path := "/api/v1/namespaces/" + *namespace + "/pods?dryRun=All&fieldManager=peers-load"

	var next atomic.Int64
	var mu sync.Mutex
	result := CreatesResult{Count: *count, Concurrency: *concurrency, PodBytes: len(body),
		Codes: map[string]int{}}
	var latencies []time.Duration
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			codes := map[string]int{}
			errs, firstBad := 0, ""
			for i := next.Add(1); i <= int64(*count); i = next.Add(1) {
				t0 := time.Now()
				code, resp, err := client.do(context.Background(), "POST", path, body, "", 30*time.Second)
				mine = append(mine, time.Since(t0))
				switch {
				case err != nil:
					errs++
					if firstBad == "" {
						firstBad = err.Error()
					}
				default:
					codes[fmt.Sprint(code)]++
					if code != 201 && firstBad == "" {
						firstBad = fmt.Sprintf("%d %s", code, statusMessage(resp))
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			latencies = append(latencies, mine...)
			for c, n := range codes {
				result.Codes[c] += n
			}
			result.Errors += errs
			if result.FirstBad == "" {
				result.FirstBad = firstBad
			}
		}()
	}
	wg.Wait()
	result.Seconds = time.Since(start).Seconds()
	result.Rate = float64(*count) / result.Seconds
	result.Latency = summarise(latencies)
	fmt.Printf("creates: %d in %.1f s = %.0f/s at concurrency %d; client latency p50 %.1f ms, "+
		"p99 %.1f ms; codes %v; errors %d\n", *count, result.Seconds, result.Rate, *concurrency,
		result.Latency.P50, result.Latency.P99, result.Codes, result.Errors)
	if result.FirstBad != "" {
		fmt.Printf("creates: first refusal or error: %s\n", result.FirstBad)
	}
	return writeJSON(*out, result)
}

// Verdict is one pod's outcome under a tool.
type Verdict struct {
	Pod     string `json:"pod"`
	Expect  string `json:"expect"` // "deny" for bad-*, else "allow"
	Allowed bool   `json:"allowed"`
	Code    int    `json:"code"`
	Message string `json:"message,omitempty"`
	Match   bool   `json:"match"`
}

func runVerdicts(args []string) error {
	fs := flag.NewFlagSet("verdicts", flag.ExitOnError)
	var api apiFlags
	api.register(fs)
	namespace := fs.String("namespace", "", "namespace of the pods")
	podsFile := fs.String("pods", "", "the pods (JSON: objects or a kubectl List)")
	url := fs.String("url", "", "send each pod in an AdmissionReview to this webhook URL instead "+
		"of creating it through the API server")
	caFile := fs.String("webhook-ca", "", "PEM CA bundle of the webhook (with --url)")
	out := fs.String("out", "", "result file (JSON)")
	fs.Parse(args)
	var create func(pod map[string]any) (int, string, error)
	if *url != "" {
		pool, err := loadPool(*caFile)
		if err != nil {
			return err
		}
		transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		hc := &http.Client{Transport: transport, Timeout: 10 * time.Second}
		create = func(pod map[string]any) (int, string, error) {
			return reviewVerdict(hc, *url, pod, *namespace)
		}
	} else {
		client, err := api.client(1)
		if err != nil {
			return err
		}
		path := "/api/v1/namespaces/" + *namespace + "/pods?dryRun=All&fieldManager=peers-load"
		create = func(pod map[string]any) (int, string, error) {
			body, _ := json.Marshal(pod)
			code, resp, err := client.do(context.Background(), "POST", path, body, "", 30*time.Second)
			if err != nil || code == 201 {
				return code, "", err
			}
			return code, statusMessage(resp), nil
		}
	}
	pods, err := readObjects(*podsFile)
	if err != nil {
		return err
	}
	var verdicts []Verdict
	for _, pod := range pods {
		md := metadataOf(pod)
		name, _ := md["name"].(string)
		md["namespace"] = *namespace
		v := Verdict{Pod: name, Expect: "allow"}
		if strings.HasPrefix(name, "bad-") {
			v.Expect = "deny"
		}
		code, message, err := create(pod)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		v.Code = code
		v.Allowed = code == 201
		v.Message = message
		v.Match = v.Allowed == (v.Expect == "allow")
		mark := "ok      "
		if !v.Match {
			mark = "MISMATCH"
		}
		verdict := "admitted"
		if !v.Allowed {
			verdict = fmt.Sprintf("refused (%d): %s", code, oneLine(v.Message, 160))
		}
		fmt.Printf("  %s %-40s %s\n", mark, name, verdict)
		verdicts = append(verdicts, v)
	}
	return writeJSON(*out, verdicts)
}

// reviewVerdict sends the pod to a webhook as kube-apiserver would and reads its answer as the
// API server would: 201 when allowed, else the answer's status code and message.
func reviewVerdict(hc *http.Client, url string, pod map[string]any, namespace string) (int, string, error) {
	body, err := admissionReview(pod, namespace)
	if err != nil {
		return 0, "", err
	}
	status, answer, _, err := post(hc, url, bytes.Replace(body, []byte(uidPlaceholder),
		[]byte("6b1e2f00-0000-4000-8000-00000000abcd"), 1))
	if err != nil {
		return 0, "", err
	}
	if status != 200 {
		return status, fmt.Sprintf("HTTP %d: %s", status, oneLine(string(answer), 300)), nil
	}
	var review struct {
		Response struct {
			Allowed bool `json:"allowed"`
			Status  struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(answer, &review); err != nil {
		return 0, "", err
	}
	if review.Response.Allowed {
		return 201, "", nil
	}
	code := review.Response.Status.Code
	if code == 0 {
		code = 403
	}
	return code, review.Response.Status.Message, nil
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
