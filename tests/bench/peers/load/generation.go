package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// GenerationResult is what `generate` measured. Times are seconds from the first namespace
// create.
type GenerationResult struct {
	Namespaces     int       `json:"namespaces"`
	Posts          int       `json:"namespace_posts"` // every POST made, retries included
	CreateSeconds  float64   `json:"create_seconds"`  // the last namespace created
	Expected       []string  `json:"expected"`        // RESOURCE/NAME per namespace
	Complete       bool      `json:"complete"`
	AllSeconds     float64   `json:"all_seconds,omitempty"`   // every expected object exists
	FirstSeconds   float64   `json:"first_seconds,omitempty"` // the first expected name everywhere
	NamespaceLag   Latencies `json:"namespace_lag"`           // namespace created -> all its objects
	Missing        int       `json:"missing"`                 // objects
	MissingSpaces  int       `json:"missing_namespaces"`      // namespaces lacking any of them
	MissingExample string    `json:"missing_example,omitempty"`
	Stalled        bool      `json:"stalled"` // gave up: no object appeared for --stall
	Relists        int       `json:"relists"`
}

type expectation struct {
	gvr   string
	names []string
}

type expectList []expectation

func (e *expectList) String() string { return fmt.Sprint(*e) }
func (e *expectList) Set(v string) error {
	gvr, names, ok := strings.Cut(v, "=")
	if !ok || names == "" {
		return fmt.Errorf("%q is not GROUP/VERSION/RESOURCE=NAME,NAME", v)
	}
	*e = append(*e, expectation{gvr: gvr, names: strings.Split(names, ",")})
	return nil
}

// tracker records when each expected object of our namespaces was last seen to exist.
type tracker struct {
	mu       sync.Mutex
	prefix   string
	expected map[string]bool      // "gvr/name"
	present  map[string]time.Time // "namespace/gvr/name" -> first seen (deleted: removed)
	last     map[string]time.Time // namespace -> when its set became complete
	created  map[string]time.Time // namespace -> created
	counts   map[string]int       // namespace -> objects present
	want     int                  // objects per namespace
	progress time.Time            // when an expected object last appeared
}

func (t *tracker) saw(gvr, namespace, name string, exists bool, at time.Time) {
	if !strings.HasPrefix(namespace, t.prefix) || !t.expected[gvr+"/"+name] {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	key := namespace + "/" + gvr + "/" + name
	_, had := t.present[key]
	switch {
	case exists && !had:
		t.present[key] = at
		t.progress = at
		t.counts[namespace]++
		if t.counts[namespace] == t.want {
			t.last[namespace] = at
		}
	case !exists && had:
		delete(t.present, key)
		t.counts[namespace]--
		delete(t.last, namespace)
	}
}

func runGenerate(args []string) error {
	fs := flag.NewFlagSet("generate", flag.ExitOnError)
	var api apiFlags
	api.register(fs)
	count := fs.Int("count", 1000, "namespaces to create")
	prefix := fs.String("prefix", "bench-", "name prefix of the namespaces (NAME = PREFIX + 5 digits)")
	labels := fs.String("labels", "zero-trust=on", "comma-separated K=V labels of the namespaces")
	concurrency := fs.Int("concurrency", 8, "namespace creates in flight at once")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up waiting for the generated objects")
	stall := fs.Duration("stall", 3*time.Minute, "give up when no generated object appeared for "+
		"this long after the last namespace was created")
	var expect expectList
	fs.Var(&expect, "expect", "GROUP/VERSION/RESOURCE=NAME,NAME: objects each namespace must get "+
		"(repeatable; none: only create the namespaces)")
	out := fs.String("out", "", "result file (JSON)")
	fs.Parse(args)
	client, err := api.client(*concurrency)
	if err != nil {
		return err
	}
	labelMap := map[string]string{}
	for _, kv := range strings.Split(*labels, ",") {
		k, v, _ := strings.Cut(kv, "=")
		labelMap[k] = v
	}
	t := &tracker{prefix: *prefix, expected: map[string]bool{}, present: map[string]time.Time{},
		last: map[string]time.Time{}, created: map[string]time.Time{}, counts: map[string]int{}}
	result := GenerationResult{Namespaces: *count}
	for _, e := range expect {
		for _, n := range e.names {
			t.expected[e.gvr+"/"+n] = true
			result.Expected = append(result.Expected, e.gvr+"/"+n)
		}
	}
	t.want = len(t.expected)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	// Watch first, then create: nothing generated can be missed.
	var relists atomic.Int64
	var watchErr atomic.Value
	var watchers sync.WaitGroup
	for _, e := range expect {
		rv, err := listInto(ctx, client, e.gvr, t)
		if err != nil {
			return err
		}
		watchers.Add(1)
		go func(gvr, rv string) {
			defer watchers.Done()
			if err := watchLoop(ctx, client, gvr, rv, t, &relists); err != nil && ctx.Err() == nil {
				watchErr.Store(err)
			}
		}(e.gvr, rv)
	}

	start := time.Now()
	var next, posts atomic.Int64
	var createErr atomic.Value
	var creators sync.WaitGroup
	for w := 0; w < *concurrency; w++ {
		creators.Add(1)
		go func() {
			defer creators.Done()
			for i := next.Add(1); i <= int64(*count); i = next.Add(1) {
				name := fmt.Sprintf("%s%05d", *prefix, i)
				body, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Namespace",
					"metadata": map[string]any{"name": name, "labels": labelMap}})
				if err := createWithRetry(ctx, client, body, &posts); err != nil {
					createErr.Store(fmt.Errorf("namespace %s: %w", name, err))
					return
				}
				t.mu.Lock()
				t.created[name] = time.Now()
				t.mu.Unlock()
			}
		}()
	}
	creators.Wait()
	result.CreateSeconds = time.Since(start).Seconds()
	result.Posts = int(posts.Load())
	if err, _ := createErr.Load().(error); err != nil {
		return err
	}
	fmt.Printf("generate: %d namespaces created in %.1f s (%d POSTs)\n", *count,
		result.CreateSeconds, result.Posts)

	// Wait (bounded by --timeout and --stall) until every namespace has every expected object.
	createsDone := time.Now()
	if t.want > 0 {
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		lastReport := time.Now()
		for done := false; !done; {
			select {
			case <-ctx.Done():
				done = true
			case <-ticker.C:
				t.mu.Lock()
				complete, progress := len(t.last), t.progress
				t.mu.Unlock()
				if progress.Before(createsDone) {
					progress = createsDone
				}
				if complete == *count {
					done = true
				} else if time.Since(progress) > *stall {
					result.Stalled, done = true, true
				}
				if time.Since(lastReport) > 15*time.Second {
					fmt.Printf("generate: %d/%d namespaces complete after %.0f s\n", complete, *count,
						time.Since(start).Seconds())
					lastReport = time.Now()
				}
				if err, _ := watchErr.Load().(error); err != nil {
					return err
				}
			}
		}
	}
	cancel()
	watchers.Wait()
	result.Relists = int(relists.Load())
	summariseGeneration(t, start, *count, expect, &result)
	if t.want > 0 {
		if result.Complete {
			fmt.Printf("generate: every namespace has its %d objects after %.1f s (%s in all after "+
				"%.1f s); per namespace p50 %.0f ms, p99 %.0f ms after its creation\n", t.want,
				result.AllSeconds, expect[0].names[0], result.FirstSeconds, result.NamespaceLag.P50,
				result.NamespaceLag.P99)
		} else {
			why := "the timeout (" + timeout.String() + ")"
			if result.Stalled {
				why = "no new object for " + stall.String()
			}
			fmt.Printf("generate: INCOMPLETE, given up after %s: %d objects missing in %d namespaces "+
				"(e.g. %s)\n", why, result.Missing, result.MissingSpaces, result.MissingExample)
		}
	}
	return writeJSON(*out, result)
}

func summariseGeneration(t *tracker, start time.Time, count int, expect expectList,
	result *GenerationResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lags []time.Duration
	var lastAll time.Time
	for ns, at := range t.last {
		if at.After(lastAll) {
			lastAll = at
		}
		if c, ok := t.created[ns]; ok && at.After(c) {
			lags = append(lags, at.Sub(c))
		} else {
			lags = append(lags, 0) // seen before our create returned
		}
	}
	result.Complete = t.want > 0 && len(t.last) == count
	if result.Complete {
		result.AllSeconds = lastAll.Sub(start).Seconds()
		first := expect[0].gvr + "/" + expect[0].names[0]
		var lastFirst time.Time
		for key, at := range t.present {
			if strings.HasSuffix(key, "/"+first) && at.After(lastFirst) {
				lastFirst = at
			}
		}
		result.FirstSeconds = lastFirst.Sub(start).Seconds()
	}
	result.NamespaceLag = summarise(lags)
	var missing []string
	for i := 1; i <= count; i++ {
		ns := fmt.Sprintf("%s%05d", t.prefix, i)
		lacking := false
		for key := range t.expected {
			if _, ok := t.present[ns+"/"+key]; !ok {
				missing = append(missing, ns+"/"+key)
				lacking = true
			}
		}
		if lacking {
			result.MissingSpaces++
		}
	}
	sort.Strings(missing)
	if t.want > 0 {
		result.Missing = len(missing)
		if len(missing) > 0 {
			result.MissingExample = missing[0]
		}
	}
}

func createWithRetry(ctx context.Context, client *apiClient, body []byte, posts *atomic.Int64) error {
	for attempt := 1; ; attempt++ {
		posts.Add(1)
		code, resp, err := client.do(ctx, "POST", "/api/v1/namespaces?fieldManager=peers-load", body,
			"", 30*time.Second)
		switch {
		case err == nil && code == 201:
			return nil
		case err == nil && code == 409:
			return nil // a retry of a create that did happen
		case attempt >= 5:
			if err != nil {
				return err
			}
			return fmt.Errorf("HTTP %d: %s", code, statusMessage(resp))
		case err == nil && code < 500 && code != 429:
			return fmt.Errorf("HTTP %d: %s", code, statusMessage(resp))
		}
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
}

const metadataOnly = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
const metadataOnlyWatch = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

type objectMeta struct {
	Metadata struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
}

// listInto lists a resource in all namespaces into the tracker; returns the list's
// resourceVersion.
func listInto(ctx context.Context, client *apiClient, gvr string, t *tracker) (string, error) {
	path, err := resourcePath(gvr, "")
	if err != nil {
		return "", err
	}
	code, body, err := client.do(ctx, "GET", path, nil, metadataOnly, time.Minute)
	if err != nil {
		return "", err
	}
	if code != 200 {
		return "", fmt.Errorf("list %s: HTTP %d: %s", gvr, code, statusMessage(body))
	}
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []objectMeta `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return "", err
	}
	now := time.Now()
	for _, item := range list.Items {
		t.saw(gvr, item.Metadata.Namespace, item.Metadata.Name, true, now)
	}
	return list.Metadata.ResourceVersion, nil
}

// watchLoop watches gvr from rv until ctx ends; a watch that ends or expires is resumed, from a
// fresh list when needed (at most 20 times).
func watchLoop(ctx context.Context, client *apiClient, gvr, rv string, t *tracker,
	relists *atomic.Int64) error {
	path, err := resourcePath(gvr, "")
	if err != nil {
		return err
	}
	for restarts := 0; ctx.Err() == nil; restarts++ {
		if restarts > 20 {
			return fmt.Errorf("watch %s: restarted too often", gvr)
		}
		next, err := watchOnce(ctx, client, path, gvr, rv, t)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil || next == "" {
			// Gone or broken: list again (objects deleted meanwhile are not seen as deleted;
			// none are expected here).
			relists.Add(1)
			if next, err = listInto(ctx, client, gvr, t); err != nil {
				return err
			}
		}
		rv = next
	}
	return nil
}

// watchOnce follows one watch stream; returns the last resourceVersion seen, or "" when the
// server said the version is gone.
func watchOnce(ctx context.Context, client *apiClient, path, gvr, rv string, t *tracker) (string, error) {
	q := url.Values{"watch": {"1"}, "resourceVersion": {rv}, "timeoutSeconds": {"1800"}}
	req, err := newRequest(ctx, client, "GET", path+"?"+q.Encode(), metadataOnlyWatch)
	if err != nil {
		return rv, err
	}
	resp, err := client.http.Do(req)
	if err != nil {
		return rv, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("watch %s: HTTP %d", gvr, resp.StatusCode)
	}
	decoder := json.NewDecoder(resp.Body)
	for {
		var event struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := decoder.Decode(&event); err != nil {
			return rv, err
		}
		now := time.Now()
		if event.Type == "ERROR" {
			return "", errors.New("watch error: " + statusMessage(event.Object))
		}
		var obj objectMeta
		if err := json.Unmarshal(event.Object, &obj); err != nil {
			return rv, err
		}
		rv = obj.Metadata.ResourceVersion
		switch event.Type {
		case "ADDED", "MODIFIED":
			t.saw(gvr, obj.Metadata.Namespace, obj.Metadata.Name, true, now)
		case "DELETED":
			t.saw(gvr, obj.Metadata.Namespace, obj.Metadata.Name, false, now)
		}
	}
}
