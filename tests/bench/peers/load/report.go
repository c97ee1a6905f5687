package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// toolRun is everything peers.sh recorded about one tool, read back from WORK/TOOL/.
type toolRun struct {
	dir        string
	info       map[string]string
	creates    *CreatesResult
	admission  *DeltaResult
	webhook    *WebhookResult
	verdicts   []Verdict
	generation *GenerationResult
	genWrites  *DeltaResult
	settle     *SettleResult
	noop       *DeltaResult
	rssPeaks   map[string]float64 // phase -> MiB
	cpu        map[string]float64 // phase -> CPU seconds of the tool's processes
	phases     []string
	direct     []Verdict // the same pods sent to its webhook directly
}

func loadRun(dir string) *toolRun {
	r := &toolRun{dir: dir, info: readEnv(filepath.Join(dir, "info.env"))}
	optional := func(name string, v any) bool {
		return readJSON(filepath.Join(dir, name), v) == nil
	}
	r.creates = &CreatesResult{}
	if !optional("creates.json", r.creates) {
		r.creates = nil
	}
	r.admission = &DeltaResult{}
	if !optional("admission-delta.json", r.admission) {
		r.admission = nil
	}
	r.webhook = &WebhookResult{}
	if !optional("webhook.json", r.webhook) {
		r.webhook = nil
	}
	optional("verdicts.json", &r.verdicts)
	optional("verdicts-webhook.json", &r.direct)
	r.generation = &GenerationResult{}
	if !optional("generation.json", r.generation) {
		r.generation = nil
	}
	r.genWrites = &DeltaResult{}
	if !optional("generation-delta.json", r.genWrites) {
		r.genWrites = nil
	}
	r.settle = &SettleResult{}
	if !optional("settle.json", r.settle) {
		r.settle = nil
	}
	r.noop = &DeltaResult{}
	if !optional("noop-delta.json", r.noop) {
		r.noop = nil
	}
	r.rssPeaks, r.cpu, r.phases = sampled(filepath.Join(dir, "phases.log"), filepath.Join(dir, "rss.log"))
	return r
}

// readEnv reads KEY=VALUE lines.
func readEnv(path string) map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// sampled is, for each phase's time window, the largest sampled total RSS (MiB) and the CPU
// seconds used between its first and last sample.
func sampled(phasesFile, rssFile string) (map[string]float64, map[string]float64, []string) {
	type window struct {
		name       string
		start, end int64
	}
	var windows []window
	var order []string
	if f, err := os.Open(phasesFile); err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) != 3 {
				continue
			}
			start, _ := strconv.ParseInt(fields[1], 10, 64)
			end, _ := strconv.ParseInt(fields[2], 10, 64)
			windows = append(windows, window{fields[0], start, end})
			order = append(order, fields[0])
		}
	}
	peaks := map[string]float64{}
	firstCPU, lastCPU := map[string]float64{}, map[string]float64{}
	f, err := os.Open(rssFile)
	if err != nil {
		return peaks, map[string]float64{}, order
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 3 {
			continue
		}
		at, _ := strconv.ParseInt(fields[0], 10, 64)
		kb, _ := strconv.ParseFloat(fields[1], 64)
		cpuMS, _ := strconv.ParseFloat(fields[2], 64)
		for _, w := range windows {
			if at < w.start || at > w.end {
				continue
			}
			if kb/1024 > peaks[w.name] {
				peaks[w.name] = kb / 1024
			}
			if _, ok := firstCPU[w.name]; !ok {
				firstCPU[w.name] = cpuMS
			}
			lastCPU[w.name] = cpuMS
		}
	}
	cpu := map[string]float64{}
	for name, first := range firstCPU {
		cpu[name] = (lastCPU[name] - first) / 1000
	}
	return peaks, cpu, order
}

// The run's --generation-timeout and --generation-stall, for the cells of an incomplete
// generation.
var settingsTimeout, settingsStall string

// cell is one figure of one tool; ok=false when the tool has no such figure.
type cell struct {
	values []float64
	ok     bool
	note   string // shown instead of a value when !ok
}

type row struct {
	label  string
	format string // printf format of one value
	cells  []cell
}

func runReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	work := fs.String("work", "", "the run's work directory")
	tools := fs.String("tools", "bulkhead,kyverno,gatekeeper", "tools, the reference first")
	out := fs.String("out", "", "Markdown file")
	fs.Parse(args)
	names := strings.Split(*tools, ",")
	var runs []*toolRun
	for _, name := range names {
		runs = append(runs, loadRun(filepath.Join(*work, name)))
	}
	baseline := &DeltaResult{}
	if readJSON(filepath.Join(*work, "baseline-delta.json"), baseline) != nil {
		baseline = nil
	}
	settings := readEnv(filepath.Join(*work, "settings.env"))
	settingsTimeout = settings["generation_timeout"] + " s"
	settingsStall = settings["generation_stall"] + " s"

	var b strings.Builder
	machine, _ := os.ReadFile(filepath.Join(*work, "machine.txt"))
	fmt.Fprintf(&b, "%s\n", strings.TrimSpace(string(machine)))
	fmt.Fprintf(&b, "\nEvery figure is absolute, with its ratio to %s's in the same run in brackets "+
		"(for rates higher is better; for times, latencies, writes and memory lower is better).\n\n",
		display(runs[0]))

	header := "| | " + strings.Join(mapRuns(runs, display), " | ") + " |"
	fmt.Fprintln(&b, header)
	fmt.Fprintln(&b, "|"+strings.Repeat("---|", len(runs)+1))
	section := func(title string) {
		fmt.Fprintf(&b, "| **%s** |%s\n", title, strings.Repeat(" |", len(runs)))
	}
	emit := func(r row) {
		parts := []string{r.label}
		for i, c := range r.cells {
			parts = append(parts, formatCell(r.format, c, r.cells[0], i == 0))
		}
		fmt.Fprintln(&b, "| "+strings.Join(parts, " | ")+" |")
	}

	c0 := runs[0].creates
	if c0 != nil {
		section(fmt.Sprintf("Admission through the API server: %d server-dry-run pod creates "+
			"(%d-byte pod), %d in flight", c0.Count, c0.PodBytes, c0.Concurrency))
	}
	emit(row{"creates/s", "%.0f", mapCells(runs, func(r *toolRun) cell {
		if r.creates == nil {
			return cell{}
		}
		return cell{values: []float64{r.creates.Rate}, ok: true}
	})})
	emit(row{"client latency p50 / p99 (ms)", "%.1f", mapCells(runs, func(r *toolRun) cell {
		if r.creates == nil {
			return cell{}
		}
		return cell{values: []float64{r.creates.Latency.P50, r.creates.Latency.P99}, ok: true}
	})})
	emit(row{"its webhook, API server's histogram: mean / p50 / p99 (ms)", "%.1f",
		mapCells(runs, func(r *toolRun) cell {
			w, ok := podWebhook(r)
			if !ok {
				return cell{note: "not called"}
			}
			return cell{values: []float64{w.Mean, w.P50, w.P99}, ok: true}
		})})
	emit(row{"webhook calls per create (all of its webhooks)", "%.2f", mapCells(runs,
		func(r *toolRun) cell {
			if r.creates == nil || r.admission == nil {
				return cell{}
			}
			calls := 0
			for _, w := range r.admission.Webhooks {
				calls += w.Calls
			}
			return cell{values: []float64{float64(calls) / float64(r.creates.Count)}, ok: true}
		})})
	emit(row{"refused or failed creates", "%.0f", mapCells(runs, func(r *toolRun) cell {
		if r.creates == nil {
			return cell{}
		}
		return cell{values: []float64{float64(r.creates.Count - r.creates.Codes["201"])}, ok: true}
	})})

	w0 := firstWebhook(runs)
	if w0 != nil {
		section(fmt.Sprintf("Webhook called directly: the same pod in an AdmissionReview "+
			"(%d bytes), %d TLS keep-alive connections, %.0f s", w0.ReviewBytes, w0.Connections,
			w0.Seconds))
	}
	emit(row{"allowed answers/s", "%.0f", mapCells(runs, func(r *toolRun) cell {
		if r.webhook == nil {
			return cell{note: "n/a"}
		}
		return cell{values: []float64{r.webhook.Rate}, ok: true}
	})})
	emit(row{"latency p50 / p99 (ms)", "%.2f", mapCells(runs, func(r *toolRun) cell {
		if r.webhook == nil {
			return cell{note: "n/a"}
		}
		return cell{values: []float64{r.webhook.Latency.P50, r.webhook.Latency.P99}, ok: true}
	})})
	emit(row{"bad answers (not 200, not allowed, errors)", "%.0f", mapCells(runs, func(r *toolRun) cell {
		if r.webhook == nil {
			return cell{note: "n/a"}
		}
		return cell{values: []float64{float64(r.webhook.Requests - r.webhook.OK)}, ok: true}
	})})

	g0 := firstGeneration(runs)
	if g0 != nil {
		section(fmt.Sprintf("Generation: %d labelled namespaces created, %d in flight", g0.Namespaces,
			atoiOr(settings["namespace_concurrency"], 0)))
	}
	emit(row{"namespaces created in (s)", "%.1f", mapCells(runs, func(r *toolRun) cell {
		if r.generation == nil {
			return cell{}
		}
		return cell{values: []float64{r.generation.CreateSeconds}, ok: true}
	})})
	emit(row{"default-deny NetworkPolicy in every namespace after (s)", "%.1f",
		mapCells(runs, generated(func(g *GenerationResult) []float64 { return []float64{g.FirstSeconds} }))})
	emit(row{"every generated object in every namespace after (s)", "%.1f",
		mapCells(runs, generated(func(g *GenerationResult) []float64 { return []float64{g.AllSeconds} }))})
	emit(row{"per namespace, created to complete: p50 / p99 (s)", "%.1f",
		mapCells(runs, generated(func(g *GenerationResult) []float64 {
			return []float64{g.NamespaceLag.P50 / 1000, g.NamespaceLag.P99 / 1000}
		}))})
	emit(row{"its API writes until they settled, beyond its idle rate", "%.0f", mapCells(runs,
		func(r *toolRun) cell {
			if r.genWrites == nil || r.generation == nil {
				return cell{}
			}
			// Its own idle writes (Lease renewals, heartbeats) and the control plane's, at the
			// rate of the no-op window that follows, are not generation's.
			idle := r.noop
			if idle == nil {
				idle = baseline
			}
			return cell{values: []float64{toolWrites(r.genWrites, idle, r.generation.Posts)}, ok: true}
		})})
	emit(row{"... its writes went on after that for (s)", "%.1f", mapCells(runs, func(r *toolRun) cell {
		if r.settle == nil {
			return cell{}
		}
		v := cell{values: []float64{r.settle.Seconds}, ok: true}
		if !r.settle.Settled {
			v.note = " (not settled)"
		}
		return v
	})})
	n0 := firstNoop(runs)
	if n0 != nil {
		section(fmt.Sprintf("Nothing to do: the next %.0f s", n0.Seconds))
	}
	emit(row{"its API writes", "%.0f", mapCells(runs, func(r *toolRun) cell {
		if r.noop == nil {
			return cell{}
		}
		return cell{values: []float64{toolWrites(r.noop, baseline, 0)}, ok: true}
	})})

	section("Memory: peak RSS of its processes (MiB, sampled every 200 ms)")
	for _, phase := range runs[0].phases {
		phase := phase
		emit(row{phaseLabel(phase), "%.0f", mapCells(runs, func(r *toolRun) cell {
			v, ok := r.rssPeaks[phase]
			if !ok {
				return cell{}
			}
			return cell{values: []float64{v}, ok: true}
		})})
	}

	section("CPU time of its processes (s)")
	for _, phase := range runs[0].phases {
		phase := phase
		emit(row{phaseLabel(phase), "%.1f", mapCells(runs, func(r *toolRun) cell {
			v, ok := r.cpu[phase]
			if !ok {
				return cell{}
			}
			return cell{values: []float64{v}, ok: true}
		})})
	}

	section("Correctness: the same 20 bad and 20 good pods")
	emit(row{"server dry run: bad pods refused (of 20)", "%.0f", mapCells(runs, func(r *toolRun) cell {
		return countVerdicts(r.verdicts, "deny", false)
	})})
	emit(row{"server dry run: good pods admitted (of 20)", "%.0f", mapCells(runs, func(r *toolRun) cell {
		return countVerdicts(r.verdicts, "allow", true)
	})})
	emit(row{"its webhook alone (AdmissionReview sent to it): bad refused / good admitted", "%.0f",
		mapCells(runs, func(r *toolRun) cell {
			bad, good := countVerdicts(r.direct, "deny", false), countVerdicts(r.direct, "allow", true)
			if !bad.ok {
				return cell{}
			}
			return cell{values: append(bad.values, good.values...), ok: true}
		})})
	emit(row{"machine load average (1 min) when its run started / ended", "%.2f",
		mapCells(runs, func(r *toolRun) cell {
			start, err1 := strconv.ParseFloat(r.info["load_start"], 64)
			end, err2 := strconv.ParseFloat(r.info["load_end"], 64)
			if err1 != nil || err2 != nil {
				return cell{}
			}
			return cell{values: []float64{start, end}, ok: true}
		})})

	// What sits behind the figures: mismatches, webhooks, writes by resource.
	fmt.Fprintf(&b, "\n**Verdicts that differ from the expected one**\n\n")
	for _, r := range runs {
		lines := mismatches(r.verdicts, "")
		lines = append(lines, mismatches(r.direct, "its webhook alone: ")...)
		if len(r.verdicts) == 0 {
			lines = append(lines, "  - (not measured)")
		} else if len(lines) == 0 {
			lines = append(lines, "  - none")
		}
		fmt.Fprintf(&b, "- %s:\n%s\n", display(r), strings.Join(lines, "\n"))
	}
	fmt.Fprintf(&b, "\n**Who refused the bad pods**\n\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "- %s: %s\n", display(r), refusers(r))
	}
	fmt.Fprintf(&b, "\n**Webhooks the API server called during the admission run** (calls, mean ms)\n\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "- %s: %s\n", display(r), webhookList(r.admission))
	}
	fmt.Fprintf(&b, "\n**API writes by verb and resource** (all clients; the load tool's own "+
		"namespace POSTs and the control plane's own writes are in these raw counts)\n\n")
	for _, r := range runs {
		if r.genWrites != nil {
			fmt.Fprintf(&b, "- %s, generation: %d %s\n", display(r), r.genWrites.Writes,
				topWrites(r.genWrites.WritesBy, 10))
		}
		if r.noop != nil {
			fmt.Fprintf(&b, "- %s, nothing to do: %d %s\n", display(r), r.noop.Writes,
				topWrites(r.noop.WritesBy, 10))
		}
	}
	if baseline != nil {
		fmt.Fprintf(&b, "- the control plane alone (no tool), %.0f s: %d %s; subtracted, at that "+
			"rate, from each tool's writes when it had nothing to do; from its generation writes, "+
			"the rate of its own window with nothing to do (itself and the control plane idling) "+
			"is subtracted, and the load tool's namespace POSTs\n", baseline.Seconds,
			baseline.Writes, topWrites(baseline.WritesBy, 10))
	}
	fmt.Print(b.String())
	if *out != "" {
		return os.WriteFile(*out, []byte(b.String()), 0o644)
	}
	return nil
}

func display(r *toolRun) string {
	if d := r.info["display"]; d != "" {
		return d
	}
	return filepath.Base(r.dir)
}

func mapRuns(runs []*toolRun, f func(*toolRun) string) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

func mapCells(runs []*toolRun, f func(*toolRun) cell) []cell {
	out := make([]cell, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

// formatCell prints the values, and their ratios to the reference cell's values.
func formatCell(format string, c, ref cell, isRef bool) string {
	if !c.ok {
		if c.note != "" {
			return c.note
		}
		return "-"
	}
	values := make([]string, len(c.values))
	ratios := make([]string, len(c.values))
	// Ratios of the values as shown, so that they agree with what the reader sees.
	shown := func(v float64) float64 {
		x, _ := strconv.ParseFloat(fmt.Sprintf(format, v), 64)
		return x
	}
	for i, v := range c.values {
		values[i] = fmt.Sprintf(format, v)
		switch {
		case !ref.ok || i >= len(ref.values):
			ratios[i] = "?"
		case shown(ref.values[i]) == 0 && shown(v) == 0:
			ratios[i] = "="
		case shown(ref.values[i]) == 0:
			ratios[i] = "∞"
		default:
			ratios[i] = formatRatio(shown(v) / shown(ref.values[i]))
		}
	}
	text := strings.Join(values, " / ") + c.note
	if !isRef {
		text += " (" + strings.Join(ratios, " / ") + ")"
	}
	return text
}

func formatRatio(r float64) string {
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f×", r)
	case r >= 10:
		return fmt.Sprintf("%.1f×", r)
	default:
		return fmt.Sprintf("%.2f×", r)
	}
}

// podWebhook is the tool's webhook that validates pods, as named in info.env.
func podWebhook(r *toolRun) (WebhookStats, bool) {
	if r.admission == nil {
		return WebhookStats{}, false
	}
	w, ok := r.admission.Webhooks[r.info["pod_webhook"]]
	return w, ok
}

func generated(f func(*GenerationResult) []float64) func(*toolRun) cell {
	return func(r *toolRun) cell {
		if r.generation == nil {
			return cell{}
		}
		if len(r.generation.Expected) == 0 {
			return cell{note: "no generate"}
		}
		if !r.generation.Complete {
			spaces := r.generation.MissingSpaces
			if spaces == 0 && len(r.generation.Expected) > 0 { // results of an older peers-load
				spaces = r.generation.Missing / len(r.generation.Expected)
			}
			why := "at the " + settingsTimeout + " timeout"
			if r.generation.Stalled {
				why = "when none had appeared for " + settingsStall
			}
			return cell{note: fmt.Sprintf("never: %d namespaces still lacked objects %s", spaces, why)}
		}
		return cell{values: f(r.generation), ok: true}
	}
}

// toolWrites is the writes of a window minus the load tool's own and those an idle window
// (the control plane alone, or the tool idling on it) makes in as long.
func toolWrites(d *DeltaResult, idle *DeltaResult, ours int) float64 {
	own := 0.0
	if idle != nil && idle.Seconds > 0 {
		own = float64(idle.Writes) / idle.Seconds * d.Seconds
	}
	return math.Max(0, math.Round(float64(d.Writes-ours)-own))
}

func mismatches(verdicts []Verdict, prefix string) []string {
	var lines []string
	for _, v := range verdicts {
		if v.Match {
			continue
		}
		what := "admitted"
		if !v.Allowed {
			what = "refused: " + oneLine(v.Message, 200)
		}
		lines = append(lines, fmt.Sprintf("  - %s`%s` (expected %s) %s", prefix, v.Pod, v.Expect, what))
	}
	return lines
}

func countVerdicts(verdicts []Verdict, expect string, allowed bool) cell {
	if len(verdicts) == 0 {
		return cell{}
	}
	n := 0
	for _, v := range verdicts {
		if v.Expect == expect && v.Allowed == allowed {
			n++
		}
	}
	return cell{values: []float64{float64(n)}, ok: true}
}

// refusers counts, for the bad pods, which admission step said no: the API server's own Pod
// Security admission or a named webhook.
func refusers(r *toolRun) string {
	counts := map[string]int{}
	for _, v := range r.verdicts {
		if v.Expect != "deny" || v.Allowed {
			continue
		}
		who := "other"
		switch {
		case strings.Contains(v.Message, "violates PodSecurity"):
			who = "Pod Security admission"
		case strings.Contains(v.Message, "admission webhook \""):
			rest := v.Message[strings.Index(v.Message, "admission webhook \"")+19:]
			who = "webhook " + rest[:strings.Index(rest, "\"")]
		}
		counts[who]++
	}
	if len(counts) == 0 {
		return "none"
	}
	parts := []string{}
	for _, k := range sortedKeys(counts) {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}

func webhookList(d *DeltaResult) string {
	if d == nil || len(d.Webhooks) == 0 {
		return "none"
	}
	names := sortedKeys(d.Webhooks)
	sort.SliceStable(names, func(i, j int) bool {
		return d.Webhooks[names[i]].Calls > d.Webhooks[names[j]].Calls
	})
	parts := []string{}
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("`%s` %d, %.1f", n, d.Webhooks[n].Calls, d.Webhooks[n].Mean))
	}
	return strings.Join(parts, "; ")
}

func phaseLabel(phase string) string {
	labels := map[string]string{
		"setup":      "start until serving, policies in place",
		"admission":  "verdicts + admission through the API server",
		"webhook":    "webhook called directly",
		"generation": "generation (until writes settled)",
		"noop":       "nothing to do",
	}
	if l, ok := labels[phase]; ok {
		return "... " + l
	}
	return "... " + phase
}

func firstWebhook(runs []*toolRun) *WebhookResult {
	for _, r := range runs {
		if r.webhook != nil {
			return r.webhook
		}
	}
	return nil
}

func firstGeneration(runs []*toolRun) *GenerationResult {
	for _, r := range runs {
		if r.generation != nil {
			return r.generation
		}
	}
	return nil
}

func firstNoop(runs []*toolRun) *DeltaResult {
	for _, r := range runs {
		if r.noop != nil {
			return r.noop
		}
	}
	return nil
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}
