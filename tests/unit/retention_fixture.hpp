#pragma once
// What the retention tests share: jobs made to order, written through the
// real Store (compressed as the dispatcher writes them), and read back by
// id with their logs.
#include <sqlite3.h>

#include <set>
#include <string>
#include <vector>

#include "store.hpp"
#include "store_gc.hpp"
#include "store_sql.hpp"
#include "test.hpp"

namespace retention_fixture {

using namespace kiln;

constexpr int64_t kDay = 24 * 3600 * 1000;

// A commit's job, done (with its result) unless `state` says otherwise.
inline Job job(uint64_t id, const std::string &repo, const std::string &branch,
               int64_t finished_unix_ms, bool reported = true, JobState state = JobState::done,
               std::string log = "log\n")
{
    Job j;
    j.id = id;
    j.spec.repo = repo;
    j.spec.url = "/srv/git/" + repo;
    j.spec.branch = branch;
    j.spec.commit = std::to_string(id) + std::string(40 - std::to_string(id).size(), 'c');
    j.created_unix_ms = finished_unix_ms - 1000;
    j.state = state;
    if (state == JobState::done) {
        j.attempt = 1;
        j.runner = "r1";
        j.finished_unix_ms = finished_unix_ms;
        j.reported = reported;
        j.result.job_id = id;
        j.result.commit = j.spec.commit;
        j.result.outcome = KILN_PASSED;
        j.result.log = std::move(log);
    }
    return j;
}

// Write `jobs` (and outbox rows) through a Store on `dir`, then close it.
inline void write(const std::string &dir, const std::vector<Job> &jobs,
                  std::vector<OutboxRow> rows = {})
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        Store store(&loop, dir);
        store.open();
        for (const Job &j : jobs)
            store.save_job(j);
        if (!rows.empty()) {
            for (auto &r : rows)
                r.id = store.next_delivery_id();
            store.save_job(jobs.back(), rows, {});
        }
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

// Every job as stored now (the Store's start-up path: results decoded).
inline std::vector<Job> load(const std::string &dir)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    std::vector<Job> jobs;
    {
        Store store(&loop, dir);
        store.open();
        jobs = store.load_jobs();
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return jobs;
}

inline std::set<uint64_t> ids(const std::vector<Job> &jobs)
{
    std::set<uint64_t> out;
    for (const Job &j : jobs)
        out.insert(j.id);
    return out;
}

// GC to the end, batch after batch, on a connection of its own.
inline GcTally collect_all(const std::string &dir, const RetentionPolicy &p, int64_t now,
                           int *batches = nullptr)
{
    sqlite3 *db = open_gc_connection(dir + "/dispatcher.db");
    GcTally total;
    int n = 0;
    for (;;) {
        GcBatch b = gc_batch(db, p, now);
        total.add(b.tally);
        n++;
        if (!b.more)
            break;
    }
    gc_vacuum(db, 0);
    sqlite3_close(db);
    if (batches)
        *batches = n;
    return total;
}

inline std::string pragma(const std::string &dir, const char *sql)
{
    sqlite3 *db = nullptr;
    sqlite3_open((dir + "/dispatcher.db").c_str(), &db);
    std::string out;
    {
        sql::Statement q(db, sql);
        while (q.step(db))
            out += (out.empty() ? "" : "\n") + q.text(0);
    }
    sqlite3_close(db);
    return out;
}

} // namespace retention_fixture
