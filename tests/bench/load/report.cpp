// The figures a run prints: throughput, latencies, and what the dispatcher
// cost in memory, CPU and writes.
#include "bench.hpp"

#include <algorithm>
#include <cstdio>

namespace kiln::bench {

namespace {

double percentile(std::vector<double> v, double p)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

} // namespace

void Bench::print_report()
{
    std::vector<double> assign_ms, ack_ms;
    assign_ms.reserve(o_.commits);
    ack_ms.reserve(o_.commits);
    for (unsigned i = 0; i < sent_; i++) {
        if (acked_ns_[i])
            ack_ms.push_back(ms(acked_ns_[i] - sent_ns_[i]));
        if (acked_ns_[i] && assigned_ns_[i])
            assign_ms.push_back(assigned_ns_[i] > acked_ns_[i] ? ms(assigned_ns_[i] - acked_ns_[i])
                                                               : 0.0);
    }
    double elapsed = t_last_done_ > t_first_sent_ ? (t_last_done_ - t_first_sent_) / 1e9 : 0;
    double cpu = after_.ok && before_.ok ? after_.cpu_s - before_.cpu_s : -1;
    struct rusage self_after {};
    getrusage(RUSAGE_SELF, &self_after);
    auto tv = [](const timeval &t) { return t.tv_sec + t.tv_usec / 1e6; };
    double self_cpu = tv(self_after.ru_utime) + tv(self_after.ru_stime) -
                      tv(self_before_.ru_utime) - tv(self_before_.ru_stime);

    printf("\n== kiln load benchmark ==\n");
    printf("dispatcher        %s (pid %d, 127.0.0.1:%d)\n", o_.dispatcher.c_str(),
           dispatcher_.pid(), dispatcher_.port());
    printf("runners           %u synthetic, 1 slot each, %u registered in %.2f s\n", o_.runners,
           runners_registered_, t_ready_ ? (t_ready_ - dispatcher_.launched_ns()) / 1e9 : 0.0);
    printf("commits           %u (window %u unacked, backlog %s outstanding jobs)\n", o_.commits,
           o_.window, o_.backlog ? std::to_string(o_.backlog).c_str() : "unbounded");
    printf("completed         %u/%u jobs in %.3f s%s\n", completed_, o_.commits, elapsed,
           ok_ ? "" : "  ** INCOMPLETE **");
    printf("throughput        %.0f jobs/s persisted (first commit sent -> last result acked)\n",
           elapsed > 0 ? completed_ / elapsed : 0.0);
    printf("assign latency    p50 %.2f ms  p99 %.2f ms  max %.2f ms  (commit acked -> assign "
           "received; %zu jobs)\n",
           percentile(assign_ms, 50), percentile(assign_ms, 99), percentile(assign_ms, 100),
           assign_ms.size());
    printf("commit-ack        p50 %.2f ms  p99 %.2f ms  max %.2f ms  (commit sent -> ack "
           "received)\n",
           percentile(ack_ms, 50), percentile(ack_ms, 99), percentile(ack_ms, 100));
    printf("result-ack        p50 %.2f ms  p99 %.2f ms  max %.2f ms  (result sent -> ack "
           "received)\n",
           percentile(result_ack_ms_, 50), percentile(result_ack_ms_, 99),
           percentile(result_ack_ms_, 100));
    if (after_.ok) {
        printf("dispatcher RSS    peak %.1f MB (VmHWM), %.1f MB at the end (VmRSS)\n",
               after_.hwm_kb / 1024.0, after_.rss_kb / 1024.0);
        printf("dispatcher CPU    %.2f s user+sys during the run = %.3f s per 1,000 jobs\n", cpu,
               completed_ ? cpu * 1000.0 / completed_ : 0.0);
        if (before_.syscw >= 0 && after_.syscw >= 0)
            printf("dispatcher I/O    %.1f write(2) calls per job (sockets, log and SQLite), %.0f "
                   "bytes written to disk per job\n",
                   completed_ ? double(after_.syscw - before_.syscw) / completed_ : 0.0,
                   completed_ ? double(after_.write_bytes - before_.write_bytes) / completed_
                              : 0.0);
    } else {
        printf("dispatcher RSS    unavailable (the dispatcher was gone at the end)\n");
    }
    printf("generator CPU     %.2f s user+sys (this process, same machine)\n", self_cpu);
    if (mismatches_ || duplicate_assigns_ || early_assigns_)
        printf("notes             %u ack/assign job id mismatches, %u duplicate assigns, %u "
               "assigns read before their commit ack (latency 0)\n",
               mismatches_, duplicate_assigns_, early_assigns_);
    std::string failed = "FAILED: " + (why_.empty() ? std::string("job id mismatches") : why_);
    printf("result            %s\n", ok_ && !mismatches_ ? "OK" : failed.c_str());
}

} // namespace kiln::bench
