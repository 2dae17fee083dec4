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

// Per repository and branch, through the index jobs_by_branch (repo, branch,
// id): no query ranks the whole history (a window over a million jobs held
// the write lock for seconds).

// The branches that have commits' jobs.  Read before the batch's
// transaction: a branch that appears meanwhile waits for the next batch.
const char *const kBranches = "SELECT DISTINCT repo, branch FROM jobs INDEXED BY jobs_by_branch"
                              " WHERE parent = 0";

// The id of the branch's keep_per_branch-th newest result (OFFSET ?3 =
// keep - 1): results below it are beyond keep_per_branch.  Live jobs are
// not results and do not count.
const char *const kThreshold = "SELECT id FROM jobs WHERE parent = 0 AND repo = ?1 AND branch = ?2"
                               " AND state = 'done' ORDER BY id DESC LIMIT 1 OFFSET ?3";

// Reported (its FINISHED rows were queued) and no outbox row left, pending
// or rejected: its reports are done with.
#define KILN_REPORTS_DONE                                                              \
    " t.state = 'done' AND t.reported = 1"                                             \
    " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id = t.id)"

// Deletable: below the threshold (?3), finished before the cut-off (?4),
// reports done, every shard done, and not the highest job id of the
// database (a restart hands out ids above the highest stored: deleting it
// would give its id to a new job).  Oldest first.
const char *const kDeletable =
    "SELECT t.id FROM jobs t WHERE t.parent = 0 AND t.repo = ?1 AND t.branch = ?2 AND t.id < ?3"
    " AND t.finished_unix_ms < ?4 AND" KILN_REPORTS_DONE
    " AND NOT EXISTS (SELECT 1 FROM jobs s WHERE s.parent = t.id AND s.state != 'done')"
    " AND t.id < (SELECT MAX(id) FROM jobs) ORDER BY t.id LIMIT ?5";

// Results whose log should be (re)cut to max_log_bytes (?1): not yet cut to
// that size or less (index results_to_cut: once looked at, a result is not
// read again), with their commit's job (itself or its parent), reports done.
// The caller checks the commit against its branch's threshold and age.
const char *const kCuttable =
    "SELECT r.job_id, t.id, t.repo, t.branch, t.finished_unix_ms FROM results r"
    " JOIN jobs j ON j.id = r.job_id"
    " JOIN jobs t ON t.id = (CASE j.parent WHEN 0 THEN j.id ELSE j.parent END)"
    " WHERE (r.log_cut_to = 0 OR r.log_cut_to > ?1) AND" KILN_REPORTS_DONE;

struct Candidate {
    uint64_t id;
    std::string branch; // "repo branch"
};

struct Branch {
    std::string repo, branch;
    int64_t threshold = INT64_MAX; // commits' jobs below this id are beyond keep_per_branch
};

std::vector<Branch> branches(sqlite3 *db)
{
    std::vector<Branch> out;
    Statement q(db, kBranches);
    while (q.step(db))
        out.push_back({q.text(0), q.text(1)});
    return out;
}

// Fill in each branch's threshold; a branch with no more than keep results
// has nothing beyond it (threshold 0).
void thresholds(Store::Prepared &pr, uint32_t keep, std::vector<Branch> &list)
{
    if (keep == 0)
        return; // every result is beyond "the newest 0"
    for (Branch &b : list) {
        Statement q(pr, kThreshold);
        q.bind(1, b.repo).bind(2, b.branch).bind(3, static_cast<int64_t>(keep) - 1);
        b.threshold = q.step(pr.db) ? q.integer(0) : 0;
    }
}

int64_t cutoff(const RetentionPolicy &p, int64_t now)
{
    return now - static_cast<int64_t>(p.max_age_ms);
}

// Delete one commit's job, its shards, their results (and any outbox row:
// there is none, by kDeletable).
void delete_job(Store::Prepared &pr, uint64_t id, GcBatch &out)
{
    sqlite3 *db = pr.db;
    auto job_id = static_cast<int64_t>(id);
    Statement bytes(pr, "SELECT COALESCE(SUM(LENGTH(frame)), 0) FROM results WHERE job_id IN"
                        " (SELECT id FROM jobs WHERE id = ?1 OR parent = ?1)");
    bytes.bind(1, job_id).step(db);
    out.tally.stored_bytes += static_cast<uint64_t>(bytes.integer(0));
    Statement shards(pr, "SELECT id FROM jobs WHERE parent = ?1");
    shards.bind(1, job_id);
    while (shards.step(db)) {
        out.deleted.push_back(static_cast<uint64_t>(shards.integer(0)));
        out.tally.shards++;
    }
    Statement(pr, "DELETE FROM results WHERE job_id IN (SELECT id FROM jobs WHERE id = ?1 OR"
                  " parent = ?1)").bind(1, job_id).run(db);
    Statement(pr, "DELETE FROM jobs WHERE parent = ?1").bind(1, job_id).run(db);
    Statement(pr, "DELETE FROM jobs WHERE id = ?1").bind(1, job_id).run(db);
    out.deleted.push_back(id);
}

// A stored result's log cut to `max` (or only marked as looked at).
// Returns the bytes cut.  `write`: false for a dry run.
uint64_t cut_result(Store::Prepared &pr, uint64_t id, uint64_t max, bool write)
{
    sqlite3 *db = pr.db;
    Statement q(pr, "SELECT frame FROM results WHERE job_id = ?1");
    q.bind(1, static_cast<int64_t>(id));
    if (!q.step(db))
        return 0;
    Result r = read_stored_result(id, q.text(0));
    uint64_t cut = cut_log(r.log, max);
    if (!write)
        return cut;
    if (cut == 0)
        Statement(pr, "UPDATE results SET log_cut_to = ?2 WHERE job_id = ?1")
            .bind(1, static_cast<int64_t>(id))
            .bind(2, static_cast<int64_t>(max))
            .run(db);
    else
        Statement(pr, "UPDATE results SET frame = ?3, log_cut_to = ?2 WHERE job_id = ?1")
            .bind(1, static_cast<int64_t>(id))
            .bind(2, static_cast<int64_t>(max))
            .blob(3, pack_stored_result(encode_message(r)))
            .run(db);
    return cut;
}

// The work of a batch (limit > 0) or of a whole dry run (limit -1), on
// `list` (its thresholds filled in here, inside the transaction).
void collect(Store::Prepared &pr, const RetentionPolicy &p, int64_t now, int64_t limit, bool write,
             std::vector<Branch> &list, GcBatch &out)
{
    sqlite3 *db = pr.db;
    thresholds(pr, p.keep_per_branch, list);
    auto full = [limit](uint64_t n) { return limit > 0 && n >= static_cast<uint64_t>(limit); };
    if (p.max_age_ms > 0) {
        uint64_t found = 0;
        for (const Branch &b : list) {
            if (b.threshold == 0 || full(found))
                continue;
            std::vector<uint64_t> doomed;
            {
                Statement q(pr, kDeletable);
                q.bind(1, b.repo).bind(2, b.branch).bind(3, b.threshold);
                q.bind(4, cutoff(p, now)).bind(5, limit > 0 ? limit - int64_t(found) : -1);
                while (q.step(db))
                    doomed.push_back(static_cast<uint64_t>(q.integer(0)));
            }
            found += doomed.size();
            out.tally.jobs += doomed.size();
            if (!doomed.empty())
                out.tally.branches[b.repo + " " + b.branch].jobs += doomed.size();
            if (write)
                for (uint64_t id : doomed)
                    delete_job(pr, id, out);
        }
        out.more = full(found);
    }
    // Logs only once nothing is left to delete: until then the uncut rows
    // are mostly about to go, and looking through them every batch would
    // make a first run over a long history quadratic.
    if (p.max_log_bytes > 0 && !out.more) {
        std::map<std::string, int64_t> threshold; // by "repo branch"
        for (const Branch &b : list)
            threshold[b.repo + " " + b.branch] = b.threshold;
        // Old enough to be deleted: not cut first (waste); the next batch deletes it.
        int64_t young = p.max_age_ms > 0 ? cutoff(p, now) : INT64_MIN;
        std::vector<Candidate> cuts;
        {
            Statement q(pr, kCuttable);
            q.bind(1, static_cast<int64_t>(p.max_log_bytes));
            while (!full(cuts.size()) && q.step(db)) {
                std::string name = q.text(2) + " " + q.text(3);
                auto t = threshold.find(name);
                if (t != threshold.end() && q.integer(1) < t->second && q.integer(4) >= young)
                    cuts.push_back({static_cast<uint64_t>(q.integer(0)), name});
            }
        }
        out.more = out.more || full(cuts.size());
        for (const auto &c : cuts) {
            uint64_t n = cut_result(pr, c.id, p.max_log_bytes, write);
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

bool use_incremental_vacuum(sqlite3 *db)
{
    {
        Statement mode(db, "PRAGMA auto_vacuum");
        mode.step(db);
        if (mode.integer(0) == 2) // INCREMENTAL
            return false;
    } // finalized: VACUUM refuses to run beside an open statement
    // The mode of an existing database only changes with a VACUUM, which
    // rewrites the file (outside any transaction).
    exec(db, "PRAGMA auto_vacuum = INCREMENTAL");
    exec(db, "VACUUM");
    return true;
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
    std::vector<Branch> list = branches(db); // before the write lock: it scans an index
    Store::Prepared pr; // each statement compiled once per batch, not once per job
    pr.db = db;
    exec(db, "BEGIN IMMEDIATE");
    try {
        collect(pr, p, now, p.batch, true, list, out);
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
    exec(db, "BEGIN"); // one snapshot for every question
    try {
        std::vector<Branch> list = branches(db);
        Store::Prepared pr;
        pr.db = db;
        collect(pr, p, now, -1, false, list, out);
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
