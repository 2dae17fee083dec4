// SQLite persistence for the dispatcher: schema and migrations, loading at
// start-up, batched writes on the thread pool.
#include "store.hpp"

#include "log_codec.hpp"
#include "store_gc.hpp"
#include "store_sql.hpp"

#include <sqlite3.h>

#include <map>

#include <kiln/atomic_file.hpp>
#include <kiln/log.hpp>

namespace kiln {

using namespace sql;

struct Store::Change {
    enum class Kind { job, runner, durations, barrier, delivery_update, delivery_delete } kind =
        Kind::barrier;
    std::vector<TestOutcome> tests; // durations
    Job job;
    std::string name;
    uint32_t slots = 0;
    std::string labels;
    int64_t seen_unix_ms = 0;
    std::vector<OutboxRow> rows; // job: inserted with it; delivery_*: the one row
    Durable durable;
};

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
        // auto_vacuum first: a new database takes it before WAL writes its
        // header (an older one needs the VACUUM below).  WAL: readers never
        // block the writer; FULL: a committed batch survives a power cut,
        // not only a crash of this process.
        exec(db_, "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;"
                  " PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
                  " PRAGMA busy_timeout = 5000;");
        int64_t have = 0;
        { // finalized before a VACUUM below, which refuses to run beside it
            Statement version(db_, "PRAGMA user_version");
            version.step(db_);
            have = version.integer(0);
        }
        if (have > kStoreSchemaVersion)
            throw StoreError("schema version " + std::to_string(have) +
                             " is newer than this dispatcher's " +
                             std::to_string(kStoreSchemaVersion) + "; refusing to touch it");
        for (int64_t v = have; v < kStoreSchemaVersion; v++) {
            exec(db_, "BEGIN IMMEDIATE");
            exec(db_, migration(static_cast<int>(v)));
            exec(db_, ("PRAGMA user_version = " + std::to_string(v + 1)).c_str());
            exec(db_, "COMMIT");
            log_notice("store %s: migrated schema %lld to %lld", path_.c_str(),
                       static_cast<long long>(v), static_cast<long long>(v + 1));
        }
        // store_gc.cpp: once, on a database from before it (a VACUUM: blocking).
        if (use_incremental_vacuum(db_))
            log_notice("store %s: switched to auto_vacuum = incremental", path_.c_str());
        Statement q(db_, "SELECT repo, name, duration_ms FROM test_durations");
        while (q.step(db_))
            durations_[q.text(0)][q.text(1)] = static_cast<uint64_t>(q.integer(2));
        next_delivery_id_ = last_delivery_id(db_) + 1;
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
    for (sqlite3 *reader : readers_)
        sqlite3_close(reader);
    if (db_)
        sqlite3_close(db_);
}

std::vector<Job> Store::load_jobs()
{
    std::vector<Job> jobs;
    try {
        Statement q(db_, (std::string(kJobColumns) + " ORDER BY j.id").c_str());
        while (q.step(db_))
            jobs.push_back(read_job(q));
    } catch (const StoreError &e) {
        throw StoreError(path_ + ": " + e.what());
    }
    return jobs;
}

void Store::save_job(const Job &job, Durable durable) { save_job(job, {}, std::move(durable)); }

void Store::save_job(const Job &job, std::vector<OutboxRow> rows, Durable durable)
{
    Change c;
    c.kind = Change::Kind::job;
    c.job = job;
    c.rows = std::move(rows);
    c.durable = std::move(durable);
    queued_.push_back(std::move(c));
    schedule();
}

void Store::update_delivery(const OutboxRow &row)
{
    Change c;
    c.kind = Change::Kind::delivery_update;
    c.rows.push_back(row);
    queued_.push_back(std::move(c));
    schedule();
}

void Store::delete_delivery(uint64_t id)
{
    Change c;
    c.kind = Change::Kind::delivery_delete;
    OutboxRow row;
    row.id = id;
    c.rows.push_back(std::move(row));
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
                    if (c.kind == Change::Kind::job) {
                        write_job(*self->prepared_, c.job);
                        for (const auto &row : c.rows)
                            insert_delivery(*self->prepared_, row);
                    } else if (c.kind == Change::Kind::delivery_update)
                        update_delivery_row(*self->prepared_, c.rows.front());
                    else if (c.kind == Change::Kind::delivery_delete)
                        delete_delivery_row(*self->prepared_, c.rows.front().id);
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
