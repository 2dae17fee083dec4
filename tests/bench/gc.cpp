// kiln-bench-gc: garbage collection on a large history.  Writes JOBS
// finished commits' jobs (over 20 branches, a 2 KB log each) through the
// real Store into a temp dir, then runs GC batches to the end (max_age
// passed by all but the newest 1,000, keep_per_branch 10, max_log_bytes
// 1024: those 1,000 but the kept ones cut) and prints how long each batch took (the write lock is
// held for at most that: the Store's writer waits no longer), batches, jobs
// deleted, the file size before and after.
//
//   kiln-bench-gc [JOBS (default 200000)] [BATCH (default 500)]
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <sqlite3.h>

#include "store.hpp"
#include "store_gc.hpp"

using namespace kiln;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t)
{
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

long long file_size(const std::string &path)
{
    struct stat st {};
    return stat(path.c_str(), &st) == 0 ? static_cast<long long>(st.st_size) : -1;
}

} // namespace

int main(int argc, char **argv)
{
    uint64_t jobs = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200000;
    uint32_t batch = argc > 2 ? static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10)) : 500;
    char tmpl[] = "/tmp/kiln-bench-gc-XXXXXX";
    std::string dir = mkdtemp(tmpl);
    const int64_t now = 1'800'000'000'000;
    std::string log;
    for (int i = 0; log.size() < 2048; i++)
        log += "test_" + std::to_string(i) + " (tests.test_m.T) ... ok\n";

    auto t0 = Clock::now();
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        Store store(&loop, dir);
        store.open();
        for (uint64_t id = 1; id <= jobs; id++) {
            Job j;
            j.id = id;
            j.spec.repo = "repo" + std::to_string(id % 5);
            j.spec.url = "/srv/git/" + j.spec.repo;
            j.spec.branch = "branch" + std::to_string(id % 4);
            j.spec.commit = std::to_string(id) + std::string(40 - std::to_string(id).size(), 'c');
            j.state = JobState::done;
            j.attempt = 1;
            j.reported = true;
            // The newest 1,000 finished a day ago, the others 40 days ago.
            j.finished_unix_ms = now - (id + 1000 > jobs ? 1LL : 40LL) * 24 * 3600 * 1000;
            j.result.job_id = id;
            j.result.commit = j.spec.commit;
            j.result.outcome = KILN_PASSED;
            j.result.log = log;
            store.save_job(j);
            if (id % 10000 == 0) // a transaction per 10,000 (memory stays small)
                uv_run(&loop, UV_RUN_DEFAULT);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    std::string path = dir + "/dispatcher.db";
    long long before = file_size(path);
    std::printf("wrote %llu jobs in %.1f s; database %lld bytes\n",
                static_cast<unsigned long long>(jobs), ms_since(t0) / 1000, before);

    RetentionPolicy p;
    p.max_age_ms = 30ULL * 24 * 3600 * 1000;
    p.keep_per_branch = 10;
    p.max_log_bytes = 1024;
    p.batch = batch;
    sqlite3 *db = open_gc_connection(path);
    // Per batch, the whole call: an upper bound of the write lock's hold
    // (the branch list is read before BEGIN IMMEDIATE).
    std::vector<double> per_batch;
    GcTally total;
    auto run = Clock::now();
    for (;;) {
        auto began = Clock::now();
        GcBatch b = gc_batch(db, p, now, {});
        per_batch.push_back(ms_since(began));
        total.add(b.tally);
        if (!b.more)
            break;
    }
    double run_ms = ms_since(run);
    std::vector<double> sorted = per_batch;
    std::sort(sorted.begin(), sorted.end());
    std::printf("batches: %zu of up to %u; per batch median %.1f ms, p90 %.1f ms, max %.1f ms\n",
                sorted.size(), batch, sorted[sorted.size() / 2], sorted[sorted.size() * 9 / 10],
                sorted.back());
    auto vac = Clock::now();
    gc_vacuum(db, 0);
    double vac_ms = ms_since(vac);
    sqlite3_close(db);
    long long after = file_size(path);
    std::printf("gc: %llu jobs deleted, %llu logs cut in %.1f s (%.2f ms per job); vacuum %.0f ms;"
                " database %lld -> %lld bytes\n",
                static_cast<unsigned long long>(total.jobs),
                static_cast<unsigned long long>(total.logs_cut), run_ms / 1000,
                total.jobs ? run_ms / static_cast<double>(total.jobs) : 0.0, vac_ms, before, after);
    std::filesystem::remove_all(dir);
    return 0;
}
