#pragma once
// The dispatcher's durable state: SQLite (WAL) in state_dir.  The in-memory
// JobTable decides; the Store records each decision.  Writes are queued and
// committed in batches, one transaction each, on the libuv thread pool, so
// the loop never waits for the disk and one fsync covers every change of a
// loop turn; a change's `durable` callback runs on the loop once its batch
// has committed — that is when an ack may go out.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <uv.h>

#include "job_table.hpp"
#include "outbox.hpp"

struct sqlite3;

namespace kiln {

class StoreError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// The schema version this build writes; older databases are migrated.
constexpr int kStoreSchemaVersion = 6;

class Store {
  public:
    using Durable = std::function<void()>;

    // Touches nothing on disk: open() does.
    Store(uv_loop_t *loop, const std::string &state_dir);
    // Open (or create) STATE_DIR/dispatcher.db and migrate it.  Blocking:
    // call before the loop runs, once, before anything else.  Throws
    // StoreError naming the file.
    void open();
    ~Store();
    Store(const Store &) = delete;
    Store &operator=(const Store &) = delete;

    // Every job, in id order, with its result when done.  Blocking: start-up
    // only (tests; the dispatcher loads only the live ones).
    std::vector<Job> load_jobs();

    // ---- history on disk (store_history.cpp) ----
    // The jobs the dispatcher keeps in memory, in id order: those not done,
    // the shards of a split commit, and finished commits whose report is not
    // queued yet or still has outbox rows.  Blocking: start-up only.
    std::vector<Job> load_live_jobs();
    // The highest job id ever stored (0: none): ids are never reused.
    uint64_t last_job_id();
    // Finished commits per (repository, branch, outcome): how many, and the
    // newest job id.  Blocking: start-up only (one scan of an index of the
    // finished commits: 0.15 s for 1,000,000).
    struct Finished {
        std::string repo, branch;
        int outcome;
        uint64_t count, newest;
    };
    std::vector<Finished> load_finished();

    // Run `read` on the thread pool with a read-only connection of its own
    // (from a small pool; WAL lets it read beside the batch writer), then
    // `done` on the loop with "" or what went wrong.  A slow query never
    // holds up the loop.  `read` must touch nothing the loop owns.
    using Reader = std::function<void(sqlite3 *db)>;
    void read(Reader read, std::function<void(const std::string &error)> done);
    // For a reader: the commit jobs (not shards) whose commit id starts with
    // `prefix` (newest first, at most `limit`), and their shards.
    static std::vector<Job> read_commit_jobs(sqlite3 *db, const std::string &prefix,
                                             size_t limit = 16);
    // For a reader: every commit's job (not shards) as the store has it,
    // without results (the outcome is on the job's row), in id order.
    static std::vector<Job> read_commit_summaries(sqlite3 *db);
    // For a reader: the job id of each (repo, commit) stored, 0 when none.
    static std::vector<uint64_t> read_known(sqlite3 *db,
                                            const std::vector<std::pair<std::string, std::string>> &keys);
    // The last known duration of each test of a repository (loaded when the
    // store opens, kept current by save_durations): for planning shards.
    const std::map<std::string, uint64_t> &durations(const std::string &repo) const;

    // Record the job as it is now (its result too, when done).
    void save_job(const Job &job, Durable durable = {});
    // The same, with the outbox rows its change raised, in one transaction:
    // when `durable` runs, the job and its rows are on disk together.
    void save_job(const Job &job, std::vector<OutboxRow> rows, Durable durable);

    // ---- the report outbox (store_outbox.cpp) ----
    // An id for a new outbox row: above every id this database has ever
    // held (the table is AUTOINCREMENT), so a receiver never sees one twice.
    uint64_t next_delivery_id() { return next_delivery_id_++; }
    // The outbox, pending and rejected rows, in id order.  Blocking: start-up only.
    std::vector<OutboxRow> load_deliveries();
    // A row's retries, next attempt, state and last error changed.
    void update_delivery(const OutboxRow &row);
    // A row is done with (delivered, or superseded).
    void delete_delivery(uint64_t id);
    // Remember the durations of a result's tests (here and on disk).
    void save_durations(const std::string &repo, const std::vector<TestOutcome> &tests);
    void save_runner(const std::string &name, uint32_t slots,
                     const std::vector<std::string> &labels, int64_t seen_unix_ms);
    // `durable` runs once everything queued before it has committed.
    void sync(Durable durable);

    // Changes queued or committing (for status and tests).
    size_t backlog() const;
    const std::string &path() const { return path_; }
    uint64_t batches_committed() const { return batches_; }

    struct Change;   // one queued write
    struct Prepared; // statements compiled once
  private:
    void schedule();
    void commit_batch();
    // libuv callbacks: noexcept, an exception is logged (core's guarded()).
    static void on_idle(uv_idle_t *) noexcept;
    static void on_retry(uv_timer_t *) noexcept;
    static void on_committed(uv_work_t *, int) noexcept;

    uv_loop_t *loop_;
    std::string state_dir_;
    std::string path_;
    sqlite3 *db_ = nullptr;
    std::unique_ptr<Prepared> prepared_;
    std::vector<Change> queued_;     // waiting for the next batch
    std::vector<Change> committing_; // the batch on the thread pool
    bool in_flight_ = false;
    uv_idle_t *idle_ = nullptr;      // flushes at the start of the next loop turn
    uv_timer_t *retry_timer_ = nullptr;
    uv_work_t work_{};
    std::string batch_error_;
    uint64_t batches_ = 0;
    std::map<std::string, std::map<std::string, uint64_t>> durations_; // per repository
    uint64_t next_delivery_id_ = 1;
    std::mutex readers_mutex_;       // readers_ is shared with the thread pool
    std::vector<sqlite3 *> readers_; // read-only connections not in use
};

} // namespace kiln
