// History on disk: the live jobs and per-branch facts read at start-up, and
// the queries run off the loop (finished commits by id prefix, intake's
// known commits) on read-only connections of their own.
#include "store.hpp"

#include "store_sql.hpp"

#include <sqlite3.h>

#include <kiln/log.hpp>
#include <kiln/messages.hpp>

namespace kiln {

using namespace sql;

std::vector<Job> Store::load_live_jobs()
{
    std::vector<Job> jobs;
    try {
        // Each arm has its index (jobs_by_state, jobs_by_parent,
        // jobs_unreported — named: the planner would rather walk
        // jobs_by_parent —, the outbox's rows): the finished history is
        // never walked.
        Statement q(db_, (std::string(kJobColumns) +
                          " WHERE j.id IN (SELECT id FROM jobs WHERE state IN"
                          " ('queued', 'assigned', 'split')"
                          " UNION SELECT c.id FROM jobs p JOIN jobs c ON c.parent = p.id"
                          " WHERE p.state = 'split'"
                          " UNION SELECT id FROM jobs INDEXED BY jobs_unreported"
                          " WHERE reported = 0 AND parent = 0"
                          " UNION SELECT job_id FROM deliveries WHERE state = 'pending')"
                          " ORDER BY j.id")
                             .c_str());
        while (q.step(db_))
            jobs.push_back(read_job(q));
    } catch (const StoreError &e) {
        throw StoreError(path_ + ": " + e.what());
    }
    return jobs;
}

uint64_t Store::last_job_id()
{
    Statement q(db_, "SELECT COALESCE(MAX(id), 0) FROM jobs");
    q.step(db_);
    return static_cast<uint64_t>(q.integer(0));
}

std::vector<Store::Finished> Store::load_finished()
{
    std::vector<Finished> out;
    try {
        // INDEXED BY: without statistics the planner would walk jobs_by_parent
        // and every row (0.7 s for 1,000,000 jobs, against 0.2 s).
        Statement q(db_, "SELECT repo, branch, outcome, COUNT(*), MAX(id) FROM jobs"
                         " INDEXED BY jobs_history WHERE parent = 0 AND state = 'done'"
                         " GROUP BY repo, branch, outcome");
        while (q.step(db_))
            out.push_back({q.text(0), q.text(1), outcome_from_name(q.text(2)),
                           static_cast<uint64_t>(q.integer(3)),
                           static_cast<uint64_t>(q.integer(4))});
    } catch (const StoreError &e) {
        throw StoreError(path_ + ": " + e.what());
    }
    return out;
}

namespace {

struct ReadWork {
    uv_work_t req{};
    Store *store = nullptr;
    std::string path;
    std::mutex *mutex = nullptr;
    std::vector<sqlite3 *> *pool = nullptr;
    Store::Reader read;
    std::function<void(const std::string &)> done;
    std::string error;
};

} // namespace

void Store::read(Reader read, std::function<void(const std::string &error)> done)
{
    auto *w = new ReadWork;
    w->req.data = w;
    w->store = this;
    w->path = path_;
    w->mutex = &readers_mutex_;
    w->pool = &readers_;
    w->read = std::move(read);
    w->done = std::move(done);
    int rc = uv_queue_work(
        loop_, &w->req,
        [](uv_work_t *req) noexcept {
            // Thread pool: a connection from the pool, or a new one.
            auto *w = static_cast<ReadWork *>(req->data);
            sqlite3 *db = nullptr;
            {
                std::lock_guard<std::mutex> lock(*w->mutex);
                if (!w->pool->empty()) {
                    db = w->pool->back();
                    w->pool->pop_back();
                }
            }
            try {
                if (!db) {
                    if (sqlite3_open_v2(w->path.c_str(), &db,
                                        SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                                        nullptr) != SQLITE_OK) {
                        std::string why = db ? sqlite3_errmsg(db) : "cannot open";
                        sqlite3_close(db);
                        db = nullptr;
                        throw StoreError(why);
                    }
                    sqlite3_busy_timeout(db, 5000);
                }
                w->read(db);
            } catch (const std::exception &e) {
                w->error = w->path + ": " + e.what();
            }
            if (db) {
                sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr); // no read left open
                std::lock_guard<std::mutex> lock(*w->mutex);
                w->pool->push_back(db);
            }
        },
        [](uv_work_t *req, int status) noexcept {
            std::unique_ptr<ReadWork> w(static_cast<ReadWork *>(req->data));
            if (status != 0 && w->error.empty())
                w->error = uv_strerror(status);
            guarded("store: after a read", [&w] { w->done(w->error); });
        });
    if (rc != 0) {
        std::unique_ptr<ReadWork> w_owned(w);
        w_owned->done(uv_strerror(rc));
    }
}

std::vector<Job> Store::read_commit_jobs(sqlite3 *db, const std::string &prefix, size_t limit)
{
    std::vector<Job> out;
    // Hex ids: every id with the prefix sorts before prefix + 'g'.
    Statement q(db, (std::string(kJobColumns) +
                     " WHERE j.parent = 0 AND j.commit_id >= ?1 AND j.commit_id < ?2"
                     " ORDER BY j.id DESC LIMIT ?3")
                        .c_str());
    q.bind(1, prefix).bind(2, prefix + "g").bind(3, static_cast<int64_t>(limit));
    while (q.step(db))
        out.push_back(read_job(q));
    size_t commits = out.size();
    for (size_t i = 0; i < commits; i++) {
        Statement c(db, (std::string(kJobColumns) + " WHERE j.parent = ?1 ORDER BY j.id").c_str());
        c.bind(1, static_cast<int64_t>(out[i].id));
        while (c.step(db))
            out.push_back(read_job(c));
    }
    return out;
}

std::vector<Job> Store::read_commit_summaries(sqlite3 *db)
{
    std::vector<Job> out;
    Statement q(db, "SELECT id, repo, branch, commit_id, state, attempt, runner, outcome,"
                    " created_unix_ms, finished_unix_ms, labels FROM jobs WHERE parent = 0"
                    " ORDER BY id");
    while (q.step(db)) {
        Job job;
        job.id = static_cast<uint64_t>(q.integer(0));
        job.spec.repo = q.text(1);
        job.spec.branch = q.text(2);
        job.spec.commit = q.text(3);
        job.state = job_state_from_name(q.text(4));
        job.attempt = static_cast<uint32_t>(q.integer(5));
        job.runner = q.text(6);
        int outcome = outcome_from_name(q.text(7));
        job.result.outcome = static_cast<kiln_outcome>(outcome < 0 ? KILN_ERROR : outcome);
        job.created_unix_ms = q.integer(8);
        job.finished_unix_ms = q.integer(9);
        job.spec.labels = split_lines(q.text(10));
        out.push_back(std::move(job));
    }
    return out;
}

std::vector<uint64_t> Store::read_known(sqlite3 *db,
                                        const std::vector<std::pair<std::string, std::string>> &keys)
{
    std::vector<uint64_t> ids;
    ids.reserve(keys.size());
    // One statement for the batch (the unique jobs_by_commit index answers each).
    Statement q(db, "SELECT id FROM jobs WHERE repo = ?1 AND commit_id = ?2 AND parent = 0");
    for (const auto &[repo, commit] : keys) {
        q.bind(1, repo).bind(2, commit);
        ids.push_back(q.step(db) ? static_cast<uint64_t>(q.integer(0)) : 0);
        q.reset();
    }
    return ids;
}

} // namespace kiln
