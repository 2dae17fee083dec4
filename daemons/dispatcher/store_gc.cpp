// Garbage collection's SQL: which jobs the retention policy no longer keeps,
// deleting them, cutting logs, giving the space back.  See store_gc.hpp.
#include "store_gc.hpp"

#include <sqlite3.h>

#include <cstdint>

#include <kiln/messages.hpp>

#include "log_codec.hpp"
#include "store_sql.hpp"

namespace kiln {

using namespace sql;

namespace {

// Commits' jobs that are done, numbered per repository and branch from the
// newest (1) back: "newer" is how many results of the branch are at least
// as new.  Live jobs are not results and are never numbered or deleted.
#define KILN_RANKED                                                                   \
    "WITH ranked AS (SELECT id, repo, branch, finished_unix_ms, reported,"           \
    " ROW_NUMBER() OVER (PARTITION BY repo, branch ORDER BY id DESC) AS newer"       \
    " FROM jobs WHERE parent = 0 AND state = 'done') "

// Reported (its FINISHED rows were queued) and no outbox row left, pending
// or rejected: its reports are done with.
#define KILN_REPORTED                                                                 \
    " t.reported = 1 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id = t.id)"

// Deletable: beyond keep_per_branch (?1), finished before the cut-off (?2),
// reports done, every shard done, and not the highest job id of the
// database (a restart hands out ids above the highest stored: deleting it
// would give its id to a new job).
const char *const kDeletable =
    KILN_RANKED "SELECT t.id, t.repo, t.branch FROM ranked t WHERE t.newer > ?1"
                " AND t.finished_unix_ms < ?2 AND" KILN_REPORTED
                " AND NOT EXISTS (SELECT 1 FROM jobs s WHERE s.parent = t.id AND s.state != 'done')"
                " AND t.id < (SELECT MAX(id) FROM jobs) ORDER BY t.id LIMIT ?3";

// Results whose log should be (re)cut to max_log_bytes (?2): the commit's
// result and its shards', beyond keep_per_branch (?1), reports done, not
// already cut to that size or less, and not old enough to be deleted
// (finished before ?4) — cutting what the next batch deletes is waste.
const char *const kCuttable =
    KILN_RANKED "SELECT r.job_id, t.repo, t.branch FROM ranked t"
                " JOIN jobs j ON j.id = t.id OR j.parent = t.id JOIN results r ON r.job_id = j.id"
                " WHERE t.newer > ?1 AND" KILN_REPORTED
                " AND (r.log_cut_to = 0 OR r.log_cut_to > ?2) AND t.finished_unix_ms >= ?4"
                " ORDER BY r.job_id LIMIT ?3";

struct Candidate {
    uint64_t id;
    std::string branch; // "repo branch"
};

std::vector<Candidate> select(sqlite3 *db, const char *sql, int64_t a, int64_t b, int64_t limit,
                              int64_t d = 0)
{
    std::vector<Candidate> out;
    Statement q(db, sql);
    q.bind(1, a).bind(2, b).bind(3, limit);
    if (d != 0)
        q.bind(4, d);
    while (q.step(db))
        out.push_back({static_cast<uint64_t>(q.integer(0)), q.text(1) + " " + q.text(2)});
    return out;
}

int64_t cutoff(const RetentionPolicy &p, int64_t now)
{
    return now - static_cast<int64_t>(p.max_age_ms);
}

// Delete one commit's job, its shards, their results (and any outbox row:
// there is none, by kDeletable).
void delete_job(sqlite3 *db, uint64_t id, GcBatch &out)
{
    auto job_id = static_cast<int64_t>(id);
    Statement bytes(db, "SELECT COALESCE(SUM(LENGTH(frame)), 0) FROM results WHERE job_id IN"
                        " (SELECT id FROM jobs WHERE id = ?1 OR parent = ?1)");
    bytes.bind(1, job_id).step(db);
    out.tally.stored_bytes += static_cast<uint64_t>(bytes.integer(0));
    Statement shards(db, "SELECT id FROM jobs WHERE parent = ?1");
    shards.bind(1, job_id);
    while (shards.step(db)) {
        out.deleted.push_back(static_cast<uint64_t>(shards.integer(0)));
        out.tally.shards++;
    }
    Statement(db, "DELETE FROM results WHERE job_id IN (SELECT id FROM jobs WHERE id = ?1 OR"
                  " parent = ?1)").bind(1, job_id).run(db);
    Statement(db, "DELETE FROM jobs WHERE parent = ?1").bind(1, job_id).run(db);
    Statement(db, "DELETE FROM jobs WHERE id = ?1").bind(1, job_id).run(db);
    out.deleted.push_back(id);
}

// A stored result's log cut to `max` (or only marked as looked at).
// Returns the bytes cut.  `write`: false for a dry run.
uint64_t cut_result(sqlite3 *db, uint64_t id, uint64_t max, bool write)
{
    Statement q(db, "SELECT frame FROM results WHERE job_id = ?1");
    q.bind(1, static_cast<int64_t>(id));
    if (!q.step(db))
        return 0;
    std::string frame, error;
    try {
        frame = unpack_stored_result(q.text(0));
    } catch (const std::runtime_error &e) {
        throw StoreError("job " + std::to_string(id) + ": " + e.what());
    }
    Message msg;
    if (frame.size() < 4 || !decode_message(std::string_view(frame).substr(4), msg, error) ||
        !std::holds_alternative<Result>(msg))
        throw StoreError("job " + std::to_string(id) + ": stored result unreadable: " + error);
    Result &r = std::get<Result>(msg);
    uint64_t cut = cut_log(r.log, max);
    if (!write)
        return cut;
    if (cut == 0)
        Statement(db, "UPDATE results SET log_cut_to = ?2 WHERE job_id = ?1")
            .bind(1, static_cast<int64_t>(id))
            .bind(2, static_cast<int64_t>(max))
            .run(db);
    else
        Statement(db, "UPDATE results SET frame = ?3, log_cut_to = ?2 WHERE job_id = ?1")
            .bind(1, static_cast<int64_t>(id))
            .bind(2, static_cast<int64_t>(max))
            .blob(3, pack_stored_result(encode_message(r)))
            .run(db);
    return cut;
}

// The work of a batch (limit > 0) or of a whole dry run (limit -1).
void collect(sqlite3 *db, const RetentionPolicy &p, int64_t now, int64_t limit, bool write,
             GcBatch &out)
{
    auto keep = static_cast<int64_t>(p.keep_per_branch);
    if (p.max_age_ms > 0) {
        auto doomed = select(db, kDeletable, keep, cutoff(p, now), limit);
        out.more = limit > 0 && doomed.size() == static_cast<size_t>(limit);
        for (const auto &c : doomed) {
            out.tally.jobs++;
            out.tally.branches[c.branch].jobs++;
            if (write)
                delete_job(db, c.id, out);
        }
    }
    if (p.max_log_bytes > 0) {
        int64_t young = p.max_age_ms > 0 ? cutoff(p, now) : INT64_MIN;
        auto cuts =
            select(db, kCuttable, keep, static_cast<int64_t>(p.max_log_bytes), limit, young);
        out.more = out.more || (limit > 0 && cuts.size() == static_cast<size_t>(limit));
        for (const auto &c : cuts) {
            uint64_t n = cut_result(db, c.id, p.max_log_bytes, write);
            if (n == 0)
                continue;
            out.tally.logs_cut++;
            out.tally.log_bytes_cut += n;
            out.tally.branches[c.branch].logs_cut++;
            out.tally.branches[c.branch].log_bytes_cut += n;
        }
    }
}

} // namespace

void GcTally::add(const GcTally &o)
{
    jobs += o.jobs, shards += o.shards, stored_bytes += o.stored_bytes;
    logs_cut += o.logs_cut, log_bytes_cut += o.log_bytes_cut;
    for (const auto &[name, b] : o.branches) {
        Branch &mine = branches[name];
        mine.jobs += b.jobs, mine.logs_cut += b.logs_cut, mine.log_bytes_cut += b.log_bytes_cut;
    }
}

void use_incremental_vacuum(sqlite3 *db)
{
    {
        Statement mode(db, "PRAGMA auto_vacuum");
        mode.step(db);
        if (mode.integer(0) == 2) // INCREMENTAL
            return;
    } // finalized: VACUUM refuses to run beside an open statement
    // The mode of an existing database only changes with a VACUUM, which
    // rewrites the file (outside any transaction).
    exec(db, "PRAGMA auto_vacuum = INCREMENTAL");
    exec(db, "VACUUM");
}

sqlite3 *open_gc_connection(const std::string &path)
{
    sqlite3 *db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
        std::string why = db ? sqlite3_errmsg(db) : "cannot open";
        sqlite3_close(db);
        throw StoreError(path + ": " + why);
    }
    try {
        exec(db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
                 " PRAGMA busy_timeout = 5000;");
    } catch (...) {
        sqlite3_close(db);
        throw;
    }
    return db;
}

GcBatch gc_batch(sqlite3 *db, const RetentionPolicy &p, int64_t now,
                 const std::function<void()> &before_commit)
{
    GcBatch out;
    // IMMEDIATE: take the write lock first, so the rows chosen are the rows
    // deleted (the Store's writer waits, within its busy_timeout).
    exec(db, "BEGIN IMMEDIATE");
    try {
        collect(db, p, now, p.batch, true, out);
        if (before_commit)
            before_commit();
        exec(db, "COMMIT");
    } catch (...) {
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
    return out;
}

GcTally gc_plan(sqlite3 *db, const RetentionPolicy &p, int64_t now)
{
    GcBatch out;
    exec(db, "BEGIN"); // one snapshot for both questions
    try {
        collect(db, p, now, -1, false, out);
        exec(db, "COMMIT");
    } catch (...) {
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
    return out.tally;
}

void gc_vacuum(sqlite3 *db, int pages)
{
    exec(db, ("PRAGMA incremental_vacuum(" + std::to_string(pages) + ")").c_str());
}

} // namespace kiln
