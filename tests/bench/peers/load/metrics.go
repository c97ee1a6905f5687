package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The API server's metrics this program reads.
const (
	requestsFamily = "apiserver_request_total"
	webhookFamily  = "apiserver_admission_webhook_admission_duration_seconds"
	scrapedAt      = "# peers-load scraped at "
)

var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "DELETE": true,
	"DELETECOLLECTION": true, "APPLY": true}

func runScrape(args []string) error {
	fs := flag.NewFlagSet("scrape", flag.ExitOnError)
	var api apiFlags
	api.register(fs)
	out := fs.String("out", "", "file for the metrics text")
	fs.Parse(args)
	client, err := api.client(1)
	if err != nil {
		return err
	}
	text, err := scrape(client)
	if err != nil {
		return err
	}
	return os.WriteFile(*out, text, 0o644)
}

func scrape(client *apiClient) ([]byte, error) {
	at := time.Now()
	code, body, err := client.do(context.Background(), "GET", "/metrics", nil, "text/plain", time.Minute)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("/metrics: HTTP %d", code)
	}
	return append([]byte(fmt.Sprintf("%s%d\n", scrapedAt, at.UnixMilli())), body...), nil
}

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads the samples of the families wanted (by prefix) and the scrape time.
func parseMetrics(text []byte, prefixes ...string) ([]sample, time.Time) {
	var out []sample
	var at time.Time
	scanner := bufio.NewScanner(bytes.NewReader(text))
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.HasPrefix(line, scrapedAt) {
			msec, _ := strconv.ParseInt(strings.TrimPrefix(line, scrapedAt), 10, 64)
			at = time.UnixMilli(msec)
			continue
		}
		wanted := false
		for _, p := range prefixes {
			wanted = wanted || strings.HasPrefix(line, p)
		}
		if !wanted {
			continue
		}
		if s, ok := parseSample(line); ok {
			out = append(out, s)
		}
	}
	return out, at
}

func parseSample(line string) (sample, bool) {
	s := sample{labels: map[string]string{}}
	rest := line
	if i := strings.IndexAny(rest, "{ "); i < 0 {
		return s, false
	} else {
		s.name = rest[:i]
		rest = rest[i:]
	}
	if strings.HasPrefix(rest, "{") {
		rest = rest[1:]
		for !strings.HasPrefix(rest, "}") {
			eq := strings.Index(rest, "=\"")
			if eq < 0 {
				return s, false
			}
			key := strings.TrimLeft(rest[:eq], ",")
			rest = rest[eq+2:]
			var value strings.Builder
			for i := 0; ; i++ {
				if i >= len(rest) {
					return s, false
				}
				if rest[i] == '\\' && i+1 < len(rest) {
					value.WriteByte(rest[i+1])
					i++
					continue
				}
				if rest[i] == '"' {
					rest = rest[i+1:]
					break
				}
				value.WriteByte(rest[i])
			}
			s.labels[key] = value.String()
			rest = strings.TrimPrefix(rest, ",")
		}
		rest = rest[1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, false
	}
	s.value = v
	return s, true
}

// WebhookStats is one webhook's latency between two scrapes, as the API server measured it.
type WebhookStats struct {
	Calls    int     `json:"calls"`
	Rejected int     `json:"rejected"`
	Mean     float64 `json:"mean_ms"`
	P50      float64 `json:"p50_ms"` // histogram_quantile over the bucket deltas
	P99      float64 `json:"p99_ms"`
	P50Le    string  `json:"p50_bucket_le"` // the bucket bound the quantile falls under
	P99Le    string  `json:"p99_bucket_le"`
}

// DeltaResult is what changed between two scrapes.
type DeltaResult struct {
	Seconds  float64                 `json:"seconds"`
	Writes   int                     `json:"writes"`
	WritesBy map[string]int          `json:"writes_by"` // "VERB resource[/subresource]"
	Reads    int                     `json:"reads"`     // GET, LIST, WATCH (started)
	Webhooks map[string]WebhookStats `json:"webhooks"`
}

func runDelta(args []string) error {
	fs := flag.NewFlagSet("delta", flag.ExitOnError)
	before := fs.String("before", "", "the first scrape")
	after := fs.String("after", "", "the second scrape")
	out := fs.String("out", "", "result file (JSON)")
	fs.Parse(args)
	b, err := os.ReadFile(*before)
	if err != nil {
		return err
	}
	a, err := os.ReadFile(*after)
	if err != nil {
		return err
	}
	d := delta(b, a)
	fmt.Printf("delta: %.0f s: %d API writes %s; %d reads\n", d.Seconds, d.Writes,
		topWrites(d.WritesBy, 8), d.Reads)
	for _, name := range sortedKeys(d.Webhooks) {
		w := d.Webhooks[name]
		fmt.Printf("delta: webhook %s: %d calls (%d rejected), mean %.2f ms, p50 %.2f ms (le %s), "+
			"p99 %.2f ms (le %s)\n", name, w.Calls, w.Rejected, w.Mean, w.P50, w.P50Le, w.P99, w.P99Le)
	}
	return writeJSON(*out, d)
}

func delta(before, after []byte) DeltaResult {
	b, t0 := parseMetrics(before, requestsFamily, webhookFamily)
	a, t1 := parseMetrics(after, requestsFamily, webhookFamily)
	key := func(s sample) string {
		keys := make([]string, 0, len(s.labels))
		for k, v := range s.labels {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		return s.name + "{" + strings.Join(keys, ",") + "}"
	}
	old := map[string]float64{}
	for _, s := range b {
		old[key(s)] = s.value
	}
	d := DeltaResult{Seconds: t1.Sub(t0).Seconds(), WritesBy: map[string]int{},
		Webhooks: map[string]WebhookStats{}}
	type hist struct {
		buckets    map[float64]float64
		sum, count float64
		rejected   float64
	}
	hists := map[string]*hist{}
	for _, s := range a {
		inc := s.value - old[key(s)]
		if inc <= 0 {
			continue
		}
		switch {
		case s.name == requestsFamily:
			if s.labels["dry_run"] != "" {
				continue
			}
			verb := s.labels["verb"]
			resource := s.labels["resource"]
			if s.labels["subresource"] != "" {
				resource += "/" + s.labels["subresource"]
			}
			if writeVerbs[verb] {
				d.Writes += int(inc)
				d.WritesBy[verb+" "+resource] += int(inc)
			} else {
				d.Reads += int(inc)
			}
		case strings.HasPrefix(s.name, webhookFamily):
			name := s.labels["name"]
			h := hists[name]
			if h == nil {
				h = &hist{buckets: map[float64]float64{}}
				hists[name] = h
			}
			switch strings.TrimPrefix(s.name, webhookFamily) {
			case "_bucket":
				le, err := strconv.ParseFloat(s.labels["le"], 64)
				if err == nil {
					h.buckets[le] += inc
				}
			case "_sum":
				h.sum += inc
			case "_count":
				h.count += inc
				if s.labels["rejected"] == "true" {
					h.rejected += inc
				}
			}
		}
	}
	for name, h := range hists {
		if h.count == 0 {
			continue
		}
		st := WebhookStats{Calls: int(h.count), Rejected: int(h.rejected),
			Mean: h.sum / h.count * 1000}
		st.P50, st.P50Le = histogramQuantile(0.50, h.buckets)
		st.P99, st.P99Le = histogramQuantile(0.99, h.buckets)
		d.Webhooks[name] = st
	}
	return d
}

// histogramQuantile is Prometheus' histogram_quantile (linear interpolation inside the bucket,
// the bucket's lower bound starting at 0) over cumulative bucket counts, in milliseconds; also
// the bound of the bucket it falls in.
func histogramQuantile(q float64, buckets map[float64]float64) (float64, string) {
	bounds := make([]float64, 0, len(buckets))
	for le := range buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return 0, ""
	}
	total := buckets[bounds[len(bounds)-1]]
	if total == 0 {
		return 0, ""
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		if buckets[le] >= rank {
			if math.IsInf(le, 1) {
				return lower * 1000, "+Inf"
			}
			frac := (rank - below) / math.Max(buckets[le]-below, 1e-9)
			return (lower + (le-lower)*frac) * 1000, strconv.FormatFloat(le*1000, 'g', -1, 64) + "ms"
		}
		lower, below = le, buckets[le]
	}
	return lower * 1000, "+Inf"
}

func topWrites(by map[string]int, n int) string {
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if by[keys[i]] != by[keys[j]] {
			return by[keys[i]] > by[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := []string{}
	for i, k := range keys {
		if i == n {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %d", k, by[k]))
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SettleResult says how long the API writes took to stop.
type SettleResult struct {
	Seconds float64 `json:"seconds"`
	Settled bool    `json:"settled"`
}

// runSettle waits until --quiet passes without an API write other than the periodic ones of
// --ignore (Lease renewals of every tool and of kube-apiserver itself, kube-apiserver's own
// Endpoints reconciliation, Kyverno's webhook heartbeat on its webhook configurations), bounded
// by --max.
func runSettle(args []string) error {
	fs := flag.NewFlagSet("settle", flag.ExitOnError)
	var api apiFlags
	api.register(fs)
	quiet := fs.Duration("quiet", 5*time.Second, "how long without writes counts as settled")
	max := fs.Duration("max", 3*time.Minute, "give up after this long")
	ignore := fs.String("ignore", "leases,endpoints,mutatingwebhookconfigurations,"+
		"validatingwebhookconfigurations", "resources whose writes do not count")
	out := fs.String("out", "", "result file (JSON)")
	fs.Parse(args)
	client, err := api.client(1)
	if err != nil {
		return err
	}
	ignored := map[string]bool{}
	for _, r := range strings.Split(*ignore, ",") {
		ignored[r] = true
	}
	counted := func() (int, error) {
		text, err := scrape(client)
		if err != nil {
			return 0, err
		}
		samples, _ := parseMetrics(text, requestsFamily)
		n := 0
		for _, s := range samples {
			if s.name == requestsFamily && s.labels["dry_run"] == "" && writeVerbs[s.labels["verb"]] &&
				!ignored[s.labels["resource"]] {
				n += int(s.value)
			}
		}
		return n, nil
	}
	start := time.Now()
	last, err := counted()
	if err != nil {
		return err
	}
	lastChange := time.Now()
	result := SettleResult{}
	for time.Since(start) < *max {
		time.Sleep(time.Second)
		n, err := counted()
		if err != nil {
			return err
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(lastChange) >= *quiet {
			result.Settled = true
			break
		}
	}
	result.Seconds = lastChange.Sub(start).Seconds()
	fmt.Printf("settle: the last write other than %s came %.1f s after the start "+
		"(settled: %v)\n", *ignore, result.Seconds, result.Settled)
	return writeJSON(*out, result)
}
