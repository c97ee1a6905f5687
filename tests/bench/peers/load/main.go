// Command peers-load is the load generator and bookkeeper of tests/bench/peers.sh, which measures
// Bulkhead, Kyverno and Gatekeeper side by side on the same local control plane. One program for
// every tool, so that each one is driven by exactly the same client with the same settings.
// Standard library only; every subcommand writes its result as JSON (--out) and a summary line
// on stdout.
//
//	peers-load creates   --namespace NS --pod POD.json --count N --concurrency C
//	    server-dry-run creates of the pod through the API server (generateName), fixed
//	    concurrency, bounded count: creates/s, client latency, status codes.
//	peers-load verdicts  --namespace NS --pods PODS.json [--url URL --webhook-ca CA.pem]
//	    one server-dry-run create per pod (kubectl's JSON); a pod named bad-* must be refused,
//	    any other admitted. Each verdict with the API server's message. With --url, each pod
//	    goes to that webhook alone, in an AdmissionReview.
//	peers-load webhook   --url URL --ca CA.pem --pod POD.json --namespace NS --seconds S
//	                     --connections C
//	    the pod wrapped in an AdmissionReview (as kube-apiserver sends it) POSTed straight to a
//	    webhook over TLS keep-alive (HTTP/1.1, one connection per worker): requests/s, latency,
//	    every answer checked (HTTP 200, same uid, allowed).
//	peers-load generate  --count N --prefix P --label K=V --expect RESOURCE=NAME,NAME ...
//	    creates N labelled namespaces and watches until every expected generated object exists
//	    in every one of them: time to all, per-namespace latency.
//	peers-load scrape    --out FILE          the API server's /metrics, as text
//	peers-load delta     --before F --after F
//	    API writes (apiserver_request_total, verbs POST PUT PATCH DELETE DELETECOLLECTION APPLY,
//	    dry runs excluded) by verb and resource, and every webhook's
//	    apiserver_admission_webhook_admission_duration_seconds between two scrapes.
//	peers-load settle    --quiet 5s --max 3m
//	    waits until the API server has seen no write for a while, periodic ones (Lease
//	    renewals, heartbeats) aside.
//	peers-load rss       --pids P1,P2 --interval 200ms --out FILE
//	    samples VmRSS of the processes until they exit or it is stopped (SIGTERM).
//	peers-load report    --work DIR --tools a,b,c --out FILE.md
//	    the comparison table, every figure absolute and as a ratio to the first tool's.
//	peers-load manifest  select|args|env|webhooks|webhook ...
//	    reads the tools' own install manifests (see manifest.go).
//
// API server flags (creates, verdicts, generate, scrape, settle): --server URL --ca FILE
// --cert FILE --key FILE (a client certificate, e.g. the test control plane's admin).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"time"
)

func main() {
	commands := map[string]func([]string) error{
		"creates":  runCreates,
		"verdicts": runVerdicts,
		"webhook":  runWebhook,
		"generate": runGenerate,
		"scrape":   runScrape,
		"delta":    runDelta,
		"settle":   runSettle,
		"rss":      runRSS,
		"report":   runReport,
		"manifest": runManifest,
	}
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		names := make([]string, 0, len(commands))
		for name := range commands {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: peers-load COMMAND [flags]; commands: %v\n", names)
		os.Exit(2)
	}
	if err := commands[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "peers-load %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// writeJSON writes v, indented, to path ("" or "-": stdout).
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if path == "" || path == "-" {
		_, err = os.Stdout.Write(data)
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// readObjects reads one or more JSON objects (kubectl prints one per object it converts), a
// List among them flattened into its items.
func readObjects(path string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []map[string]any
	decoder := json.NewDecoder(f)
	for {
		var obj map[string]any
		if err := decoder.Decode(&obj); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if obj["kind"] != "List" {
			out = append(out, obj)
			continue
		}
		items, _ := obj["items"].([]any)
		for _, item := range items {
			if m, ok := item.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// Latencies summarises durations in milliseconds.
type Latencies struct {
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func summarise(samples []time.Duration) Latencies {
	if len(samples) == 0 {
		return Latencies{}
	}
	sorted := append([]time.Duration(nil), samples...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	at := func(q float64) float64 {
		i := int(q*float64(len(sorted)-1) + 0.5)
		return ms(sorted[i])
	}
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	return Latencies{P50: at(0.50), P99: at(0.99), P999: at(0.999), Max: ms(sorted[len(sorted)-1]),
		Mean: ms(sum / time.Duration(len(sorted)))}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
