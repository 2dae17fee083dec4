// The report outbox's SQL (table deliveries, schema 4): loading it at
// start-up, and its rows' inserts, updates and deletes inside the Store's
// batches.
#include "store_sql.hpp"

#include <kiln/plugin.h>

namespace kiln {

const char *event_kind_name(int kind)
{
    switch (kind) {
    case KILN_EVENT_QUEUED: return "queued";
    case KILN_EVENT_STARTED: return "started";
    case KILN_EVENT_FAILING: return "failing";
    case KILN_EVENT_FINISHED: return "finished";
    default: return "unknown";
    }
}

int event_kind_from_name(const std::string &name)
{
    for (int kind = KILN_EVENT_QUEUED; kind <= KILN_EVENT_FINISHED; kind++)
        if (name == event_kind_name(kind))
            return kind;
    return 0;
}

std::vector<OutboxRow> Store::load_deliveries()
{
    std::vector<OutboxRow> rows;
    try {
        sql::Statement q(db_, "SELECT id, receiver, job_id, attempt, kind, event_unix_ms, retries,"
                              " next_attempt_unix_ms, state, last_error FROM deliveries"
                              " ORDER BY id");
        while (q.step(db_)) {
            OutboxRow row;
            row.id = static_cast<uint64_t>(q.integer(0));
            row.receiver = q.text(1);
            row.job_id = static_cast<uint64_t>(q.integer(2));
            row.attempt = static_cast<uint32_t>(q.integer(3));
            row.kind = event_kind_from_name(q.text(4));
            row.event_unix_ms = q.integer(5);
            row.retries = static_cast<uint32_t>(q.integer(6));
            row.next_attempt_unix_ms = q.integer(7);
            row.rejected = q.text(8) == "rejected";
            row.last_error = q.text(9);
            if (!row.kind)
                throw StoreError("delivery " + std::to_string(row.id) + ": unknown event kind '" +
                                 q.text(4) + "'");
            rows.push_back(std::move(row));
        }
    } catch (const StoreError &e) {
        throw StoreError(path_ + ": " + e.what());
    }
    return rows;
}

namespace sql {

uint64_t last_delivery_id(sqlite3 *db)
{
    // sqlite_sequence remembers the highest id even after its row is deleted.
    Statement q(db, "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name ="
                    " 'deliveries'), 0), coalesce((SELECT max(id) FROM deliveries), 0))");
    q.step(db);
    return static_cast<uint64_t>(q.integer(0));
}

void insert_delivery(Store::Prepared &db, const OutboxRow &row)
{
    Statement(db, "INSERT INTO deliveries (id, receiver, job_id, attempt, kind, event_unix_ms,"
                  " retries, next_attempt_unix_ms, state, last_error)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")
        .bind(1, static_cast<int64_t>(row.id))
        .bind(2, row.receiver)
        .bind(3, static_cast<int64_t>(row.job_id))
        .bind(4, static_cast<int64_t>(row.attempt))
        .bind(5, std::string(event_kind_name(row.kind)))
        .bind(6, row.event_unix_ms)
        .bind(7, static_cast<int64_t>(row.retries))
        .bind(8, row.next_attempt_unix_ms)
        .bind(9, std::string(row.rejected ? "rejected" : "pending"))
        .bind(10, row.last_error)
        .run(db.db);
}

void update_delivery_row(Store::Prepared &db, const OutboxRow &row)
{
    Statement(db, "UPDATE deliveries SET retries = ?2, next_attempt_unix_ms = ?3, state = ?4,"
                  " last_error = ?5 WHERE id = ?1")
        .bind(1, static_cast<int64_t>(row.id))
        .bind(2, static_cast<int64_t>(row.retries))
        .bind(3, row.next_attempt_unix_ms)
        .bind(4, std::string(row.rejected ? "rejected" : "pending"))
        .bind(5, row.last_error)
        .run(db.db);
}

void delete_delivery_row(Store::Prepared &db, uint64_t id)
{
    Statement(db, "DELETE FROM deliveries WHERE id = ?1")
        .bind(1, static_cast<int64_t>(id))
        .run(db.db);
}

} // namespace sql
} // namespace kiln
