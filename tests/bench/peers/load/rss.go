package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runRSS appends "UNIX_MS TOTAL_KB TOTAL_CPU_MS KB..." lines (VmRSS of each pid, 0 once gone;
// the CPU time, user and system, the live processes have used so far) every interval until every
// process is gone, SIGTERM/SIGINT arrives, or --max passes.
func runRSS(args []string) error {
	fs := flag.NewFlagSet("rss", flag.ExitOnError)
	pidList := fs.String("pids", "", "comma-separated process ids")
	interval := fs.Duration("interval", 200*time.Millisecond, "sampling interval")
	max := fs.Duration("max", 6*time.Hour, "stop after this long in any case")
	out := fs.String("out", "", "file the samples are appended to")
	fs.Parse(args)
	var pids []int
	for _, p := range strings.Split(*pidList, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("bad pid %q", p)
		}
		pids = append(pids, pid)
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	defer w.Flush()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	deadline := time.After(*max)
	for {
		total, cpu, alive := 0, 0, 0
		values := make([]string, len(pids))
		for i, pid := range pids {
			kb := statusKB(pid, "VmRSS")
			if kb > 0 {
				alive++
				cpu += cpuMS(pid)
			}
			total += kb
			values[i] = strconv.Itoa(kb)
		}
		fmt.Fprintf(w, "%d %d %d %s\n", time.Now().UnixMilli(), total, cpu, strings.Join(values, " "))
		if alive == 0 {
			return nil
		}
		select {
		case <-stop:
			return nil
		case <-deadline:
			return nil
		case <-ticker.C:
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// statusKB reads a "Field:   N kB" line of /proc/PID/status; 0 when the process is gone.
func statusKB(pid int, field string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field+":") {
			fields := strings.Fields(line)
			if len(fields) >= 2 {
				kb, _ := strconv.Atoi(fields[1])
				return kb
			}
		}
	}
	return 0
}

// cpuMS is the user and system CPU time of a process in milliseconds (fields 14 and 15 of
// /proc/PID/stat, in clock ticks of 10 ms: USER_HZ is 100 on Linux).
func cpuMS(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count fields after its closing parenthesis.
	rest := string(data)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fields := strings.Fields(rest) // fields[0] is field 3 (state)
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return (utime + stime) * 10
}
