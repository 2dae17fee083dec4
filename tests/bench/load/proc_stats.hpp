// What /proc says about a process: CPU time, memory high-water mark and
// writes, read before and after a run to measure the dispatcher.
#pragma once

namespace kiln::bench {

struct ProcStats {
    bool ok = false;
    double cpu_s = 0;       // utime + stime
    long hwm_kb = -1;       // VmHWM
    long rss_kb = -1;       // VmRSS
    long long syscw = -1, write_bytes = -1;
};

// /proc/PID/{stat,status,io}; ok is false when the process is gone.
ProcStats read_proc(int pid);

} // namespace kiln::bench
