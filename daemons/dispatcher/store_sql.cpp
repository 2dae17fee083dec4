// The Store's SQL: schema migrations, statements, a job's rows.
#include "store_sql.hpp"

#include <kiln/messages.hpp>
#include <kiln/plugin.h>

#include "log_codec.hpp"

namespace kiln {
namespace sql {

namespace {

// Each entry takes the schema from version i to i + 1.  Never edit one that
// has shipped: add the next.  (Both below were written before the first
// release; version 1 lost its UNIQUE (repo, commit_id) to shards then.)
const char *const kMigrations[] = {
    // 0 → 1
    "CREATE TABLE jobs ("
    "  id INTEGER PRIMARY KEY,"
    "  repo TEXT NOT NULL, url TEXT NOT NULL, branch TEXT NOT NULL, commit_id TEXT NOT NULL,"
    "  vcs TEXT NOT NULL, exec TEXT NOT NULL, timeout_ms INTEGER NOT NULL,"
    "  state TEXT NOT NULL, attempt INTEGER NOT NULL, round_start INTEGER NOT NULL,"
    "  runner TEXT NOT NULL, created_unix_ms INTEGER NOT NULL,"
    "  assigned_unix_ms INTEGER NOT NULL, finished_unix_ms INTEGER NOT NULL,"
    "  reported INTEGER NOT NULL);"
    "CREATE INDEX jobs_by_state ON jobs (state);"
    // The result as it came from the runner: its frame, decoded on load.
    "CREATE TABLE results ("
    "  job_id INTEGER PRIMARY KEY REFERENCES jobs (id),"
    "  attempt INTEGER NOT NULL, runner TEXT NOT NULL, outcome TEXT NOT NULL,"
    "  frame BLOB NOT NULL);"
    "CREATE TABLE runners ("
    "  name TEXT PRIMARY KEY, slots INTEGER NOT NULL, labels TEXT NOT NULL,"
    "  last_seen_unix_ms INTEGER NOT NULL);",
    // 1 → 2: shards, labels, superseding, and test durations for shard planning.
    "ALTER TABLE jobs ADD COLUMN parent INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN shards INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN tests TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN labels TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN spec_shards INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE jobs ADD COLUMN cancel_superseded INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX jobs_by_parent ON jobs (parent);"
    // One job per commit; its shards share the commit.
    "CREATE UNIQUE INDEX jobs_by_commit ON jobs (repo, commit_id) WHERE parent = 0;"
    "CREATE TABLE test_durations ("
    "  repo TEXT NOT NULL, name TEXT NOT NULL, duration_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (repo, name));",
    // 2 → 3: the repository lets its sandboxed tests reach the network.
    "ALTER TABLE jobs ADD COLUMN network INTEGER NOT NULL DEFAULT 0;",
    // 3 → 4: the report outbox, one row per (receiver, event) until
    // delivered.  AUTOINCREMENT: an id (a receiver's idempotency key) is
    // never handed out twice, even after its row is gone.  jobs.reported now
    // means "its FINISHED rows are queued"; a done job of an older database
    // that is not reported gets them at the next start.
    "CREATE TABLE deliveries ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  receiver TEXT NOT NULL, job_id INTEGER NOT NULL, attempt INTEGER NOT NULL,"
    "  kind TEXT NOT NULL, event_unix_ms INTEGER NOT NULL,"
    "  retries INTEGER NOT NULL DEFAULT 0, next_attempt_unix_ms INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL DEFAULT 'pending', last_error TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX deliveries_by_receiver ON deliveries (receiver, id);",
    // 4 → 5: retention (store_gc.cpp).  log_cut_to: the max_log_bytes a
    // result's log was last cut to (0: never looked at); the indexes serve
    // garbage collection: per-branch scans, the outbox check, uncut logs.  Result
    // frames written from now on are zstd-compressed (log_codec.hpp).
    "ALTER TABLE results ADD COLUMN log_cut_to INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX jobs_by_branch ON jobs (repo, branch, id) WHERE parent = 0;"
    "CREATE INDEX deliveries_by_job ON deliveries (job_id);"
    "CREATE INDEX results_to_cut ON results (log_cut_to);",
    // 5 → 6: history stays on disk (issue 13).  A commit's outcome on its
    // job row, so the per-branch facts read at start-up come from one
    // covering index; a commit id index for kilnctl's prefixes; an index of
    // the jobs not yet reported, so start-up finds the live ones at once.
    "ALTER TABLE jobs ADD COLUMN outcome TEXT NOT NULL DEFAULT '';"
    "UPDATE jobs SET outcome = COALESCE((SELECT outcome FROM results"
    "  WHERE results.job_id = jobs.id), '') WHERE state = 'done';"
    "CREATE INDEX jobs_by_commit_id ON jobs (commit_id) WHERE parent = 0;"
    "CREATE INDEX jobs_unreported ON jobs (id) WHERE reported = 0 AND parent = 0;"
    "CREATE INDEX jobs_history ON jobs (repo, branch, outcome, id)"
    "  WHERE parent = 0 AND state = 'done';",
};
static_assert(sizeof kMigrations / sizeof *kMigrations == kStoreSchemaVersion,
              "one migration per schema version");

} // namespace

const char *migration(int from) { return kMigrations[from]; }

void exec(sqlite3 *db, const char *sql)
{
    char *error = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
        std::string why = error ? error : sqlite3_errmsg(db);
        sqlite3_free(error);
        throw StoreError(why);
    }
}

// Lists of names in one column: newline-separated (names have no newline:
// labels are valid_name(), test names come from one line of a listing).
std::string join_lines(const std::vector<std::string> &items)
{
    std::string out;
    for (const auto &i : items)
        out += (out.empty() ? "" : "\n") + i;
    return out;
}

std::vector<std::string> split_lines(const std::string &text)
{
    std::vector<std::string> out;
    size_t start = 0;
    while (!text.empty() && start <= text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos)
            end = text.size();
        out.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

const char *const kJobColumns =
    "SELECT j.id, j.repo, j.url, j.branch, j.commit_id, j.vcs, j.exec,"
    " j.timeout_ms, j.state, j.attempt, j.round_start, j.runner,"
    " j.created_unix_ms, j.assigned_unix_ms, j.finished_unix_ms, j.reported,"
    " r.frame, j.parent, j.shard, j.shards, j.tests, j.labels, j.spec_shards,"
    " j.cancel_superseded, j.network FROM jobs j"
    " LEFT JOIN results r ON r.job_id = j.id";

Job read_job(Statement &q)
{
    Job job;
    job.id = static_cast<uint64_t>(q.integer(0));
    job.spec.repo = q.text(1);
    job.spec.url = q.text(2);
    job.spec.branch = q.text(3);
    job.spec.commit = q.text(4);
    job.spec.vcs = q.text(5);
    job.spec.exec = q.text(6);
    job.spec.timeout_ms = static_cast<uint64_t>(q.integer(7));
    job.state = job_state_from_name(q.text(8));
    job.attempt = static_cast<uint32_t>(q.integer(9));
    job.round_start = static_cast<uint32_t>(q.integer(10));
    job.runner = q.text(11);
    job.created_unix_ms = q.integer(12);
    job.assigned_unix_ms = q.integer(13);
    job.finished_unix_ms = q.integer(14);
    job.reported = q.integer(15) != 0;
    job.parent = static_cast<uint64_t>(q.integer(17));
    job.shard = static_cast<uint32_t>(q.integer(18));
    job.shards = static_cast<uint32_t>(q.integer(19));
    job.tests = split_lines(q.text(20));
    job.spec.labels = split_lines(q.text(21));
    job.spec.shards = static_cast<uint32_t>(q.integer(22));
    job.spec.cancel_superseded = q.integer(23) != 0;
    job.spec.network = q.integer(24) != 0;
    if (job.state == JobState::done)
        job.result = read_stored_result(job.id, q.text(16));
    return job;
}

Result read_stored_result(uint64_t job_id, const std::string &blob)
{
    std::string frame, error;
    try {
        frame = unpack_stored_result(blob); // zstd, or a row from before compression
    } catch (const std::runtime_error &e) {
        throw StoreError("job " + std::to_string(job_id) + ": " + e.what());
    }
    Message msg;
    if (frame.size() < 4 || !decode_message(std::string_view(frame).substr(4), msg, error) ||
        !std::holds_alternative<Result>(msg))
        throw StoreError("job " + std::to_string(job_id) + ": stored result unreadable: " +
                         (error.empty() ? "missing" : error));
    return std::get<Result>(std::move(msg));
}

void write_job(Store::Prepared &db, const Job &job)
{
    Statement(db, "INSERT INTO jobs (id, repo, url, branch, commit_id, vcs, exec, timeout_ms,"
                  " state, attempt, round_start, runner, created_unix_ms, assigned_unix_ms,"
                  " finished_unix_ms, reported, parent, shard, shards, tests, labels, spec_shards,"
                  " cancel_superseded, network, outcome) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,"
                  "?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25) ON CONFLICT (id)"
                  " DO UPDATE SET state = excluded.state, outcome = excluded.outcome,"
                  " attempt = excluded.attempt, round_start = excluded.round_start,"
                  " runner = excluded.runner, assigned_unix_ms = excluded.assigned_unix_ms,"
                  " finished_unix_ms = excluded.finished_unix_ms, reported = excluded.reported,"
                  " spec_shards = excluded.spec_shards")
        .bind(1, static_cast<int64_t>(job.id))
        .bind(2, job.spec.repo)
        .bind(3, job.spec.url)
        .bind(4, job.spec.branch)
        .bind(5, job.spec.commit)
        .bind(6, job.spec.vcs)
        .bind(7, job.spec.exec)
        .bind(8, static_cast<int64_t>(job.spec.timeout_ms))
        .bind(9, std::string(job_state_name(job.state)))
        .bind(10, static_cast<int64_t>(job.attempt))
        .bind(11, static_cast<int64_t>(job.round_start))
        .bind(12, job.runner)
        .bind(13, job.created_unix_ms)
        .bind(14, job.assigned_unix_ms)
        .bind(15, job.finished_unix_ms)
        .bind(16, static_cast<int64_t>(job.reported))
        .bind(17, static_cast<int64_t>(job.parent))
        .bind(18, static_cast<int64_t>(job.shard))
        .bind(19, static_cast<int64_t>(job.shards))
        .bind(20, join_lines(job.tests))
        .bind(21, join_lines(job.spec.labels))
        .bind(22, static_cast<int64_t>(job.spec.shards))
        .bind(23, static_cast<int64_t>(job.spec.cancel_superseded))
        .bind(24, static_cast<int64_t>(job.spec.network))
        .bind(25, std::string(job.state == JobState::done ? kiln_outcome_name(job.result.outcome)
                                                          : ""))
        .run(db.db);
    if (job.state == JobState::done)
        Statement(db, "INSERT OR REPLACE INTO results (job_id, attempt, runner, outcome, frame)"
                      " VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(1, static_cast<int64_t>(job.id))
            .bind(2, static_cast<int64_t>(job.result.attempt))
            .bind(3, job.runner)
            .bind(4, kiln_outcome_name(job.result.outcome))
            .blob(5, pack_stored_result(encode_message(job.result))) // on the writer thread
            .run(db.db);
    else if (job.round_start > 0) // only a retry takes a recorded result back
        Statement(db, "DELETE FROM results WHERE job_id = ?1")
            .bind(1, static_cast<int64_t>(job.id))
            .run(db.db);
}

} // namespace sql
} // namespace kiln
