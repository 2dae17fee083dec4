// SQLite persistence for the dispatcher: schema and migrations, loading at
// start-up, batched writes on the thread pool.
#include "store.hpp"

#include <sqlite3.h>

#include <map>

#include <kiln/atomic_file.hpp>
#include <kiln/log.hpp>

namespace kiln {

struct Store::Change {
    enum class Kind { job, runner, durations, barrier } kind = Kind::barrier;
    std::vector<TestOutcome> tests; // durations
    Job job;
    std::string name;
    uint32_t slots = 0;
    std::string labels;
    int64_t seen_unix_ms = 0;
    Durable durable;
};

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
};
static_assert(sizeof kMigrations / sizeof *kMigrations == kStoreSchemaVersion,
              "one migration per schema version");

} // namespace

// Statements prepared once and reused: compiling SQL was half the
// dispatcher's CPU when every write prepared its statement afresh.
struct Store::Prepared {
    sqlite3 *db;
    std::map<const char *, sqlite3_stmt *> cache; // by the SQL text's address
    ~Prepared()
    {
        for (auto &entry : cache)
            sqlite3_finalize(entry.second);
    }
    sqlite3_stmt *get(const char *sql)
    {
        sqlite3_stmt *&stmt = cache[sql];
        if (!stmt && sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) !=
                         SQLITE_OK)
            throw StoreError(std::string("prepare: ") + sqlite3_errmsg(db));
        return stmt;
    }
};

namespace {

class Statement {
  public:
    // A one-off statement (start-up, migrations).
    Statement(sqlite3 *db, const char *sql)
    {
        if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
            throw StoreError(std::string("prepare: ") + sqlite3_errmsg(db));
    }
    // A cached one, reset for reuse when done.
    Statement(Store::Prepared &prepared, const char *sql)
        : stmt_(prepared.get(sql)), owned_(false)
    {
    }
    ~Statement()
    {
        if (owned_) {
            sqlite3_finalize(stmt_);
        } else {
            sqlite3_reset(stmt_);
            sqlite3_clear_bindings(stmt_);
        }
    }
    Statement &bind(int i, const std::string &s)
    {
        sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
        return *this;
    }
    Statement &bind(int i, int64_t v)
    {
        sqlite3_bind_int64(stmt_, i, v);
        return *this;
    }
    Statement &blob(int i, const std::string &s)
    {
        sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
        return *this;
    }
    // Run to completion; throws with the database's message.
    void run(sqlite3 *db)
    {
        int rc = sqlite3_step(stmt_);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            throw StoreError(sqlite3_errmsg(db));
    }
    bool step(sqlite3 *db)
    {
        int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW)
            return true;
        if (rc != SQLITE_DONE)
            throw StoreError(sqlite3_errmsg(db));
        return false;
    }
    int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
    std::string text(int col) const
    {
        auto *p = sqlite3_column_blob(stmt_, col);
        return p ? std::string(static_cast<const char *>(p),
                               static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
                 : std::string();
    }

  private:
    sqlite3_stmt *stmt_ = nullptr;
    bool owned_ = true;
};

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

void write_job(Store::Prepared &db, const Job &job)
{
    Statement(db, "INSERT INTO jobs (id, repo, url, branch, commit_id, vcs, exec, timeout_ms,"
                  " state, attempt, round_start, runner, created_unix_ms, assigned_unix_ms,"
                  " finished_unix_ms, reported, parent, shard, shards, tests, labels, spec_shards,"
                  " cancel_superseded, network) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,"
                  "?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24) ON CONFLICT (id) DO UPDATE SET"
                  " state = excluded.state,"
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
        .run(db.db);
    if (job.state == JobState::done)
        Statement(db, "INSERT OR REPLACE INTO results (job_id, attempt, runner, outcome, frame)"
                      " VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(1, static_cast<int64_t>(job.id))
            .bind(2, static_cast<int64_t>(job.result.attempt))
            .bind(3, job.runner)
            .bind(4, kiln_outcome_name(job.result.outcome))
            .blob(5, encode_message(job.result))
            .run(db.db);
    else if (job.round_start > 0) // only a retry takes a recorded result back
        Statement(db, "DELETE FROM results WHERE job_id = ?1")
            .bind(1, static_cast<int64_t>(job.id))
            .run(db.db);
}

} // namespace

Store::Store(uv_loop_t *loop, const std::string &state_dir)
    : loop_(loop), state_dir_(state_dir), path_(state_dir + "/dispatcher.db")
{
}

void Store::open()
{
    const std::string &state_dir = state_dir_;
    int rc = make_dirs(state_dir);
    if (rc != 0)
        throw StoreError(state_dir + ": cannot create: " + uv_strerror(rc));
    if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK)
        throw StoreError(path_ + ": " + (db_ ? sqlite3_errmsg(db_) : "cannot open"));
    try {
        // WAL: readers never block the writer; FULL: a committed batch
        // survives a power cut, not only a crash of this process.
        exec(db_, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                  " PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;");
        Statement version(db_, "PRAGMA user_version");
        version.step(db_);
        int64_t have = version.integer(0);
        if (have > kStoreSchemaVersion)
            throw StoreError("schema version " + std::to_string(have) +
                             " is newer than this dispatcher's " +
                             std::to_string(kStoreSchemaVersion) + "; refusing to touch it");
        for (int64_t v = have; v < kStoreSchemaVersion; v++) {
            exec(db_, "BEGIN IMMEDIATE");
            exec(db_, kMigrations[v]);
            exec(db_, ("PRAGMA user_version = " + std::to_string(v + 1)).c_str());
            exec(db_, "COMMIT");
            log_notice("store %s: migrated schema %lld to %lld", path_.c_str(),
                       static_cast<long long>(v), static_cast<long long>(v + 1));
        }
        Statement q(db_, "SELECT repo, name, duration_ms FROM test_durations");
        while (q.step(db_))
            durations_[q.text(0)][q.text(1)] = static_cast<uint64_t>(q.integer(2));
    } catch (const StoreError &e) {
        sqlite3_close(db_);
        db_ = nullptr;
        throw StoreError(path_ + ": " + e.what());
    }
    prepared_ = std::make_unique<Prepared>();
    prepared_->db = db_;
    idle_ = new uv_idle_t;
    uv_idle_init(loop_, idle_);
    idle_->data = this;
    retry_timer_ = new uv_timer_t;
    uv_timer_init(loop_, retry_timer_);
    retry_timer_->data = this;
}

Store::~Store()
{
    for (uv_handle_t *h : {reinterpret_cast<uv_handle_t *>(idle_),
                           reinterpret_cast<uv_handle_t *>(retry_timer_)})
        if (h)
            uv_close(h, [](uv_handle_t *handle) {
                if (handle->type == UV_IDLE)
                    delete reinterpret_cast<uv_idle_t *>(handle);
                else
                    delete reinterpret_cast<uv_timer_t *>(handle);
            });
    prepared_.reset(); // statements before the connection
    if (db_)
        sqlite3_close(db_);
}

std::vector<Job> Store::load_jobs()
{
    std::vector<Job> jobs;
    try {
        Statement q(db_, "SELECT j.id, j.repo, j.url, j.branch, j.commit_id, j.vcs, j.exec,"
                         " j.timeout_ms, j.state, j.attempt, j.round_start, j.runner,"
                         " j.created_unix_ms, j.assigned_unix_ms, j.finished_unix_ms, j.reported,"
                         " r.frame, j.parent, j.shard, j.shards, j.tests, j.labels, j.spec_shards,"
                         " j.cancel_superseded, j.network FROM jobs j"
                         " LEFT JOIN results r ON r.job_id = j.id"
                         " ORDER BY j.id");
        while (q.step(db_)) {
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
            if (job.state == JobState::done) {
                std::string frame = q.text(16), error;
                Message msg;
                if (frame.size() < 4 || !decode_message(std::string_view(frame).substr(4), msg, error) ||
                    !std::holds_alternative<Result>(msg))
                    throw StoreError("job " + std::to_string(job.id) + ": stored result unreadable: " +
                                     (error.empty() ? "missing" : error));
                job.result = std::get<Result>(msg);
            }
            jobs.push_back(std::move(job));
        }
    } catch (const StoreError &e) {
        throw StoreError(path_ + ": " + e.what());
    }
    return jobs;
}

void Store::save_job(const Job &job, Durable durable)
{
    Change c;
    c.kind = Change::Kind::job;
    c.job = job;
    c.durable = std::move(durable);
    queued_.push_back(std::move(c));
    schedule();
}

const std::map<std::string, uint64_t> &Store::durations(const std::string &repo) const
{
    static const std::map<std::string, uint64_t> none;
    auto it = durations_.find(repo);
    return it == durations_.end() ? none : it->second;
}

void Store::save_durations(const std::string &repo, const std::vector<TestOutcome> &tests)
{
    if (tests.empty())
        return;
    auto &known = durations_[repo];
    for (const auto &t : tests)
        known[t.name] = t.duration_ms;
    Change c;
    c.kind = Change::Kind::durations;
    c.name = repo;
    c.tests = tests;
    queued_.push_back(std::move(c));
    schedule();
}

void Store::save_runner(const std::string &name, uint32_t slots,
                        const std::vector<std::string> &labels, int64_t seen_unix_ms)
{
    Change c;
    c.kind = Change::Kind::runner;
    c.name = name;
    c.slots = slots;
    for (const auto &l : labels)
        c.labels += (c.labels.empty() ? "" : ",") + l;
    c.seen_unix_ms = seen_unix_ms;
    queued_.push_back(std::move(c));
    schedule();
}

size_t Store::backlog() const { return queued_.size() + committing_.size(); }

void Store::sync(Durable durable)
{
    Change c;
    c.durable = std::move(durable);
    queued_.push_back(std::move(c));
    schedule();
}

// Commit at the start of the next loop turn, so that everything this turn
// changed goes in one transaction.  (An idle handle, not a check: an active
// idle handle also keeps the loop from blocking in poll meanwhile.)
void Store::schedule()
{
    if (!in_flight_ && !uv_is_active(reinterpret_cast<uv_handle_t *>(idle_)))
        uv_idle_start(idle_, on_idle);
}

void Store::on_idle(uv_idle_t *handle) noexcept
{
    auto *self = static_cast<Store *>(handle->data);
    uv_idle_stop(handle);
    guarded("store: starting a commit", [self] {
        if (!self->in_flight_ && !self->queued_.empty()) {
            self->committing_ = std::move(self->queued_);
            self->queued_.clear();
            self->commit_batch();
        }
    });
}

void Store::on_retry(uv_timer_t *timer) noexcept
{
    guarded("store: retrying a commit",
            [timer] { static_cast<Store *>(timer->data)->commit_batch(); });
}

void Store::commit_batch()
{
    in_flight_ = true;
    work_.data = this;
    uv_queue_work(
        loop_, &work_,
        [](uv_work_t *w) noexcept {
            // Thread pool: only this batch touches the database now.
            auto *self = static_cast<Store *>(w->data);
            self->batch_error_.clear();
            try {
                exec(self->db_, "BEGIN IMMEDIATE");
                for (const Change &c : self->committing_) {
                    if (c.kind == Change::Kind::job)
                        write_job(*self->prepared_, c.job);
                    else if (c.kind == Change::Kind::durations)
                        for (const auto &t : c.tests)
                            Statement(*self->prepared_, "INSERT OR REPLACE INTO test_durations (repo, name,"
                                                 " duration_ms) VALUES (?1, ?2, ?3)")
                                .bind(1, c.name)
                                .bind(2, t.name)
                                .bind(3, static_cast<int64_t>(t.duration_ms))
                                .run(self->db_);
                    else if (c.kind == Change::Kind::runner)
                        Statement(*self->prepared_, "INSERT OR REPLACE INTO runners (name, slots, labels,"
                                             " last_seen_unix_ms) VALUES (?1, ?2, ?3, ?4)")
                            .bind(1, c.name)
                            .bind(2, static_cast<int64_t>(c.slots))
                            .bind(3, c.labels)
                            .bind(4, c.seen_unix_ms)
                            .run(self->db_);
                }
                exec(self->db_, "COMMIT");
            } catch (const std::exception &e) { // StoreError, or bad_alloc
                self->batch_error_ = e.what();
                sqlite3_exec(self->db_, "ROLLBACK", nullptr, nullptr, nullptr);
            }
        },
        on_committed);
}

void Store::on_committed(uv_work_t *w, int) noexcept
{
    auto *self = static_cast<Store *>(w->data);
    guarded("store: after a commit", [self] {
        if (!self->batch_error_.empty()) {
            // Nothing of the batch is stored and nothing was acknowledged:
            // try the same batch again (a full disk may get space).
            log_err("store %s: commit of %zu change(s) failed: %s; retrying in 1 s",
                    self->path_.c_str(), self->committing_.size(),
                    self->batch_error_.c_str());
            uv_timer_start(self->retry_timer_, on_retry, 1000, 0);
            return;
        }
        self->batches_++;
        auto done = std::move(self->committing_);
        self->committing_.clear();
        self->in_flight_ = false;
        // One change's follow-up failing must not keep the others' from running.
        for (auto &c : done)
            if (c.durable)
                guarded("store: after a commit", [&c] { c.durable(); });
        if (!self->queued_.empty())
            self->schedule();
    });
}

} // namespace kiln
