package capability

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestParseProc(t *testing.T) {
	load, err := parseLoadAvg([]byte("3.00 0.25 0.12 3/83 4993\n"), 4)
	if err != nil || load != 0.75 {
		t.Errorf("parseLoadAvg = %v %v", load, err)
	}
	if _, err := parseLoadAvg([]byte("x"), 1); !errors.Is(err, ErrNoProc) {
		t.Errorf("parseLoadAvg(bad) = %v", err)
	}
	mem, err := parseMemInfo([]byte("MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:   250 kB\n"))
	if err != nil || mem != 75 {
		t.Errorf("parseMemInfo = %v %v", mem, err)
	}
	if _, err := parseMemInfo([]byte("MemTotal: 1000 kB\n")); !errors.Is(err, ErrNoProc) {
		t.Errorf("parseMemInfo(no MemAvailable) = %v", err)
	}
	gpus := parseNvidiaSMI([]byte("NVIDIA A100-SXM4-80GB, 81920, 1024, 3\nTesla T4, [N/A], 0, 0\nNVIDIA L4, 23034, 0, 55\n"))
	if len(gpus) != 2 || gpus[0].MemTotalMB != 81920 || gpus[1].UtilPct != 55 {
		t.Errorf("parseNvidiaSMI = %+v", gpus)
	}
}

func TestTelemetryMetadata(t *testing.T) {
	none := Telemetry{CPULoad: 0.123, MemUsedPct: 50}.Metadata()
	if none["gpu_count"] != "0" || none["cpu_load"] != "0.12" || len(none) != 3 {
		t.Errorf("no-GPU metadata %v", none)
	}
	gpus := make([]GPU, MaxTelemetryGPUs+2)
	for i := range gpus {
		gpus[i] = GPU{Name: "G\x00PU", MemTotalMB: 24576, MemUsedMB: float64(i) * 1024, UtilPct: float64(10 + i)}
	}
	md := Telemetry{GPUs: gpus}.Metadata()
	if md["gpu_count"] != "10" || md["gpu_mem_gb"] != "24" || md["gpu_mem_free_gb"] != "24" || md["gpu_util_pct"] != "10" || md["gpu.0.name"] != "GPU" {
		t.Errorf("GPU metadata %v", md)
	}
	if _, ok := md["gpu.8.name"]; ok {
		t.Error("more than MaxTelemetryGPUs devices listed")
	}
	if err := (Set{Metadata: md}).Validate(); err != nil {
		t.Errorf("telemetry metadata invalid: %v", err)
	}
}

func TestSystemSampler(t *testing.T) {
	proc := t.TempDir()
	os.WriteFile(filepath.Join(proc, "loadavg"), []byte("1.00 1.00 1.00 1/1 1\n"), 0o644)
	os.WriteFile(filepath.Join(proc, "meminfo"), []byte("MemTotal: 100 kB\nMemAvailable: 40 kB\n"), 0o644)

	tel, err := SystemSampler{ProcDir: proc, NvidiaSMI: filepath.Join(proc, "no-such-nvidia-smi")}.Sample(context.Background())
	if err != nil || tel.GPUProbe != "none" || len(tel.GPUs) != 0 || tel.MemUsedPct != 60 {
		t.Fatalf("Sample without GPU = %+v, %v", tel, err)
	}
	if _, err := (SystemSampler{ProcDir: t.TempDir()}).Sample(context.Background()); !errors.Is(err, ErrNoProc) {
		t.Errorf("Sample without /proc = %v", err)
	}
	if runtime.GOOS == "windows" {
		t.Skip("fake nvidia-smi is a shell script")
	}
	smi := filepath.Join(proc, "nvidia-smi")
	os.WriteFile(smi, []byte("#!/bin/sh\necho 'NVIDIA L4, 23034, 2048, 40'\n"), 0o755)
	tel, err = SystemSampler{ProcDir: proc, NvidiaSMI: smi}.Sample(context.Background())
	if err != nil || tel.GPUProbe != "nvidia-smi" || len(tel.GPUs) != 1 || tel.GPUs[0].Name != "NVIDIA L4" {
		t.Fatalf("Sample with fake nvidia-smi = %+v, %v", tel, err)
	}
	failing := filepath.Join(proc, "failing-smi")
	os.WriteFile(failing, []byte("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n"), 0o755)
	if tel, err = (SystemSampler{ProcDir: proc, NvidiaSMI: failing}).Sample(context.Background()); err != nil || tel.GPUProbe != "none" {
		t.Fatalf("Sample with failing nvidia-smi = %+v, %v", tel, err)
	}
	if runtime.GOOS == "linux" {
		if _, err := (SystemSampler{}).Sample(context.Background()); err != nil {
			t.Errorf("Sample on this machine: %v", err)
		}
	}
}
