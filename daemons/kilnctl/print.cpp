// Tables for kilnctl: columns sized to their widest cell.
#include "print.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace kiln {
namespace {

using Row = std::vector<std::string>;

void print_table(const std::vector<Row> &rows)
{
    std::vector<size_t> width;
    for (const auto &row : rows)
        for (size_t i = 0; i < row.size(); i++) {
            if (width.size() <= i)
                width.push_back(0);
            width[i] = std::max(width[i], row[i].size());
        }
    for (const auto &row : rows) {
        std::string line;
        for (size_t i = 0; i < row.size(); i++) {
            line += row[i];
            if (i + 1 < row.size())
                line += std::string(width[i] - row[i].size() + 2, ' ');
        }
        printf("%s\n", line.c_str());
    }
}

std::string str(const nlohmann::json &j, const char *key)
{
    const auto &v = j.at(key);
    return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string seconds(int64_t ms)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.2fs", static_cast<double>(ms) / 1000.0);
    return buf;
}

// A receiver's next attempt as "in 4.0s" (it is paused after a failure), or "-".
std::string next_attempt(int64_t unix_ms_at)
{
    if (!unix_ms_at)
        return "-";
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    return "in " + seconds(std::max<int64_t>(0, unix_ms_at - now));
}

void print_reports(const nlohmann::json &body)
{
    std::vector<Row> rows = {{"RECEIVER", "PLUGIN", "PENDING", "IN-FLIGHT", "REJECTED",
                              "DELIVERED", "RETRIES", "NEXT", "LAST-ERROR"}};
    for (const auto &r : body) {
        std::string error = str(r, "last_error");
        rows.push_back({str(r, "receiver") + (r.at("configured").get<bool>() ? "" : " (gone)"),
                        str(r, "plugin"), str(r, "pending"), str(r, "in_flight"),
                        str(r, "rejected"), str(r, "delivered"), str(r, "retries"),
                        next_attempt(r.at("next_attempt_unix_ms").get<int64_t>()),
                        error.empty() ? "-" : error});
    }
    print_table(rows);
}

void print_result(const nlohmann::json &r)
{
    int64_t started = r.at("started_unix_ms"), finished = r.at("finished_unix_ms");
    printf("commit   %s\nrepo     %s (%s)\nstate    %s\noutcome  %s\nrunner   %s (attempt %s)\n",
           str(r, "commit").c_str(), str(r, "repo").c_str(), str(r, "branch").c_str(),
           str(r, "state").c_str(), str(r, "outcome").c_str(), str(r, "runner").c_str(),
           str(r, "attempt").c_str());
    if (started && finished)
        printf("took     %s\n", seconds(finished - started).c_str());
    if (!str(r, "error").empty())
        printf("error    %s\n", str(r, "error").c_str());
    const auto &tests = r.at("tests");
    if (tests.empty())
        return;
    printf("\n");
    std::vector<Row> rows = {{"TEST", "OUTCOME", "TIME"}};
    for (const auto &t : tests)
        rows.push_back({str(t, "name"), str(t, "outcome"), seconds(t.at("duration_ms"))});
    print_table(rows);
    for (const auto &t : tests)
        if (!str(t, "message").empty())
            printf("\n%s: %s\n%s\n", str(t, "name").c_str(), str(t, "outcome").c_str(),
                   str(t, "message").c_str());
}

} // namespace

// kilnctl gc: the totals, then what per repository and branch.
void print_gc(const nlohmann::json &body)
{
    bool dry = body.at("dry_run").get<bool>();
    printf("%s %s job(s) (%s shard(s), %s stored bytes); %s %s log(s) by %s bytes\n",
           dry ? "would delete" : "deleted", str(body, "jobs").c_str(),
           str(body, "shards").c_str(), str(body, "stored_bytes").c_str(),
           dry ? "would cut" : "cut", str(body, "logs_cut").c_str(),
           str(body, "log_bytes_cut").c_str());
    if (body.at("branches").empty())
        return;
    std::vector<Row> rows = {{"REPO", "BRANCH", "JOBS", "LOGS-CUT", "LOG-BYTES-CUT"}};
    for (const auto &b : body.at("branches"))
        rows.push_back({str(b, "repo"), str(b, "branch"), str(b, "jobs"), str(b, "logs_cut"),
                        str(b, "log_bytes_cut")});
    print_table(rows);
}

bool print_answer(const std::string &what, const nlohmann::json &body, bool json)
{
    if (json) {
        printf("%s\n", body.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return true;
    }
    try {
        if (what == "status") {
            for (const auto &[key, value] : body.items())
                printf("%-10s %s\n", key.c_str(),
                       value.is_string() ? value.get<std::string>().c_str() : value.dump().c_str());
        } else if (what == "runners") {
            std::vector<Row> rows = {{"NAME", "PEER", "SLOTS", "BUSY", "DONE", "LABELS", "STATE"}};
            for (const auto &r : body) {
                std::string labels;
                for (const auto &l : r.at("labels"))
                    labels += (labels.empty() ? "" : ",") + l.get<std::string>();
                rows.push_back({str(r, "name"), str(r, "peer"), str(r, "slots"), str(r, "busy"),
                                str(r, "completed"), labels.empty() ? "-" : labels,
                                // older dispatchers send no state
                                r.contains("state") ? str(r, "state") : "-"});
            }
            print_table(rows);
        } else if (what == "jobs") {
            std::vector<Row> rows = {
                {"JOB", "REPO", "BRANCH", "COMMIT", "STATE", "ATTEMPT", "RUNNER", "OUTCOME"}};
            for (const auto &j : body) {
                auto outcome = str(j, "outcome"), runner = str(j, "runner");
                rows.push_back({str(j, "job_id"), str(j, "repo"), str(j, "branch"),
                                str(j, "commit").substr(0, 12), str(j, "state"),
                                str(j, "attempt"), runner.empty() ? "-" : runner,
                                outcome.empty() ? "-" : outcome});
            }
            print_table(rows);
        } else if (what == "result") {
            print_result(body);
        } else if (what == "reports") {
            print_reports(body);
        } else if (what == "gc") {
            print_gc(body);
        } else if (what == "retry") {
            printf("job %s (%s %s) queued again\n", str(body, "job_id").c_str(),
                   str(body, "repo").c_str(), str(body, "commit").substr(0, 12).c_str());
        } else if (what == "notify") {
            // Zero is not an error: no observer may be connected right now
            // (restarting), and its next regular poll finds the commit.
            printf("notified %s observer(s)\n", str(body, "observers").c_str());
        }
        return true;
    } catch (const nlohmann::json::exception &e) {
        fprintf(stderr, "kilnctl: unexpected answer: %s\n", e.what());
        return false;
    }
}

} // namespace kiln
