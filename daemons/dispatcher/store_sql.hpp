#pragma once
// The Store's SQL layer (store.cpp and store_sql.cpp only): the schema's
// migrations, statements (one-off or prepared once and reused) and the row
// of a job.
#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "store.hpp"

namespace kiln {

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

namespace sql {

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
    // Ready to run again with new bindings.
    void reset()
    {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
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

void exec(sqlite3 *db, const char *sql);
// Lists of names in one column: newline-separated.
std::string join_lines(const std::vector<std::string> &items);
std::vector<std::string> split_lines(const std::string &text);
// The SQL taking the schema from version `from` to from + 1.
const char *migration(int from);
// "SELECT <a job's columns> FROM jobs j LEFT JOIN results r ...": add a
// WHERE; read_job() takes a row of it (throws StoreError on a bad result).
extern const char *const kJobColumns;
Job read_job(Statement &q);
// A results.frame as stored (zstd-compressed, or from before compression)
// back into its Result; throws StoreError naming the job.
Result read_stored_result(uint64_t job_id, const std::string &blob);
// Insert or replace a job's row (and its result's, when done).
void write_job(Store::Prepared &db, const Job &job);

// The outbox (store_outbox.cpp).
// The highest delivery id the database has ever held (0: none).
uint64_t last_delivery_id(sqlite3 *db);
void insert_delivery(Store::Prepared &db, const OutboxRow &row);
void update_delivery_row(Store::Prepared &db, const OutboxRow &row);
void delete_delivery_row(Store::Prepared &db, uint64_t id);

} // namespace sql
} // namespace kiln
