package capability

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Telemetry is a sample of a node's load, announced as metadata when
// Config.Telemetry is set so that FindBestNode can prefer the least loaded
// node (see Metadata for the keys).
type Telemetry struct {
	CPULoad    float64 // 1-minute load average per CPU: 1 means every core busy
	MemUsedPct float64 // memory in use (total minus available), percent
	GPUs       []GPU
	// GPUProbe says how GPUs were read: "nvidia-smi" when it listed
	// devices, "none" when there is no GPU tool or it found no device.
	GPUProbe string
}

// GPU is one device in Telemetry.
type GPU struct {
	Name       string
	MemTotalMB float64
	MemUsedMB  float64
	UtilPct    float64 // utilisation, percent
}

// Sampler reads telemetry.
type Sampler interface {
	Sample(ctx context.Context) (Telemetry, error)
}

// Metadata returns the telemetry as set metadata:
//
//	cpu_load          CPULoad
//	mem_used_pct      MemUsedPct
//	gpu_count         number of GPUs (0 when none)
//	gpu_mem_gb        largest GPU memory, GiB        (only with GPUs)
//	gpu_mem_free_gb   most free GPU memory, GiB      (only with GPUs)
//	gpu_util_pct      lowest GPU utilisation, percent (only with GPUs)
//	gpu.<i>.name, gpu.<i>.mem_total_mb, gpu.<i>.mem_used_mb, gpu.<i>.util_pct
//
// for the first MaxTelemetryGPUs devices. Numbers have at most two decimals.
func (t Telemetry) Metadata() map[string]string {
	m := map[string]string{
		"cpu_load":     num(t.CPULoad),
		"mem_used_pct": num(t.MemUsedPct),
		"gpu_count":    strconv.Itoa(len(t.GPUs)),
	}
	if len(t.GPUs) == 0 {
		return m
	}
	var memMax, freeMax float64
	utilMin := t.GPUs[0].UtilPct
	for i, g := range t.GPUs {
		memMax = max(memMax, g.MemTotalMB)
		freeMax = max(freeMax, g.MemTotalMB-g.MemUsedMB)
		utilMin = min(utilMin, g.UtilPct)
		if i >= MaxTelemetryGPUs {
			continue
		}
		p := "gpu." + strconv.Itoa(i) + "."
		m[p+"name"] = sanitizeValue(g.Name)
		m[p+"mem_total_mb"] = num(g.MemTotalMB)
		m[p+"mem_used_mb"] = num(g.MemUsedMB)
		m[p+"util_pct"] = num(g.UtilPct)
	}
	m["gpu_mem_gb"] = num(memMax / 1024)
	m["gpu_mem_free_gb"] = num(freeMax / 1024)
	m["gpu_util_pct"] = num(utilMin)
	return m
}

// num formats x with at most two decimals.
func num(x float64) string {
	return strconv.FormatFloat(float64(int64(x*100+0.5))/100, 'f', -1, 64)
}

// sanitizeValue makes s a valid metadata value.
func sanitizeValue(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
	if len(s) > MaxMetadataValueLen {
		s = strings.ToValidUTF8(s[:MaxMetadataValueLen], "")
	}
	return s
}

// SystemSampler reads telemetry from the local machine: CPU load and memory
// from /proc (Linux), GPUs from nvidia-smi when it is installed. A machine
// without a GPU or without nvidia-smi reports GPUProbe "none", not an error.
type SystemSampler struct {
	// ProcDir is the proc file system; "" means "/proc".
	ProcDir string
	// NvidiaSMI is the nvidia-smi command; "" means "nvidia-smi" looked up
	// in PATH.
	NvidiaSMI string
}

// ErrNoProc reports that CPU and memory load cannot be read: not Linux, or
// no /proc.
var ErrNoProc = errors.New("capability: telemetry needs /proc (Linux)")

// Sample implements Sampler.
func (s SystemSampler) Sample(ctx context.Context) (Telemetry, error) {
	dir := s.ProcDir
	if dir == "" {
		dir = "/proc"
	}
	var t Telemetry
	load, err := os.ReadFile(filepath.Join(dir, "loadavg"))
	if err != nil {
		return t, fmt.Errorf("%w: %w", ErrNoProc, err)
	}
	if t.CPULoad, err = parseLoadAvg(load, runtime.NumCPU()); err != nil {
		return t, err
	}
	meminfo, err := os.ReadFile(filepath.Join(dir, "meminfo"))
	if err != nil {
		return t, fmt.Errorf("%w: %w", ErrNoProc, err)
	}
	if t.MemUsedPct, err = parseMemInfo(meminfo); err != nil {
		return t, err
	}
	t.GPUs, t.GPUProbe = s.gpus(ctx)
	return t, nil
}

// gpus lists NVIDIA GPUs. Any failure (no nvidia-smi, no driver, no device)
// means no GPU.
func (s SystemSampler) gpus(ctx context.Context) ([]GPU, string) {
	cmd := s.NvidiaSMI
	if cmd == "" {
		cmd = "nvidia-smi"
	}
	path, err := exec.LookPath(cmd)
	if err != nil {
		return nil, "none"
	}
	out, err := exec.CommandContext(ctx, path,
		"--query-gpu=name,memory.total,memory.used,utilization.gpu",
		"--format=csv,noheader,nounits").Output()
	if err != nil {
		return nil, "none"
	}
	gpus := parseNvidiaSMI(out)
	if len(gpus) == 0 {
		return nil, "none"
	}
	return gpus, "nvidia-smi"
}

// parseLoadAvg returns the 1-minute load average of /proc/loadavg divided by
// ncpu.
func parseLoadAvg(b []byte, ncpu int) (float64, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%w: empty loadavg", ErrNoProc)
	}
	x, err := strconv.ParseFloat(f[0], 64)
	if err != nil || x < 0 {
		return 0, fmt.Errorf("%w: loadavg %q", ErrNoProc, f[0])
	}
	return x / float64(max(ncpu, 1)), nil
}

// parseMemInfo returns the percentage of memory in use from /proc/meminfo:
// 100 * (MemTotal - MemAvailable) / MemTotal.
func parseMemInfo(b []byte) (float64, error) {
	var total, avail float64
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		x, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "MemTotal:":
			total, haveTotal = x, true
		case "MemAvailable:":
			avail, haveAvail = x, true
		}
	}
	if !haveTotal || !haveAvail || total <= 0 || avail > total {
		return 0, fmt.Errorf("%w: meminfo lacks MemTotal or MemAvailable", ErrNoProc)
	}
	return 100 * (total - avail) / total, nil
}

// parseNvidiaSMI parses "name, total MiB, used MiB, util %" lines; lines
// that do not parse (such as "[N/A]" fields) are skipped.
func parseNvidiaSMI(b []byte) []GPU {
	var gpus []GPU
	for line := range strings.Lines(string(b)) {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) != 4 {
			continue
		}
		var v [3]float64
		ok := true
		for i := range v {
			x, err := strconv.ParseFloat(strings.TrimSpace(f[i+1]), 64)
			ok = ok && err == nil && x >= 0
			v[i] = x
		}
		if ok {
			gpus = append(gpus, GPU{Name: strings.TrimSpace(f[0]), MemTotalMB: v[0], MemUsedMB: v[1], UtilPct: v[2]})
		}
	}
	return gpus
}
