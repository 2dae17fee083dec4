// /api/v1/commits/<id>/log, plain and followed (log_routes.hpp).
#include "log_routes.hpp"

#include <memory>

#include <nlohmann/json.hpp>

#include <kiln/plugin.h>

#include "events.hpp"

namespace kiln {

namespace {

constexpr char kPrefix[] = "/api/v1/commits/";
constexpr char kSuffix[] = "/log";

std::string commit_of(const std::string &path)
{
    const size_t p = sizeof kPrefix - 1, s = sizeof kSuffix - 1;
    return path.substr(p, path.size() - p - s);
}

std::string log_event(uint32_t attempt, uint64_t offset, std::string_view text)
{
    return sse_event("log", {{"offset", offset}, {"text", std::string(text)}, {"attempt", attempt}});
}

// One follower: where it is in the log, so that the end sends only the rest.
struct Follow {
    std::shared_ptr<HttpStream> stream;
    uint32_t attempt = 0;
    uint64_t offset = 0; // bytes of `attempt`'s log sent
    uint64_t token = 0;
};

void end_follow(Follow &f, const Job &job)
{
    if (job.state == JobState::done) {
        const std::string &log = job.result.log;
        // The result's log holds the streamed bytes from offset 0: only the
        // rest is new (all of it when the attempt changed or this is a split commit).
        uint64_t from = job.attempt == f.attempt && f.offset <= log.size() ? f.offset : 0;
        if (from < log.size())
            f.stream->write(log_event(job.attempt, from, std::string_view(log).substr(from)));
    }
    f.stream->write(sse_event("end", {{"state", job_state_name(job.state)},
                                {"outcome", job.state == JobState::done
                                                ? kiln_outcome_name(job.result.outcome)
                                                : ""}}));
    f.stream->close();
}

} // namespace

bool is_commit_log_path(const std::string &path)
{
    const size_t p = sizeof kPrefix - 1, s = sizeof kSuffix - 1;
    return path.size() > p + s && path.compare(0, p, kPrefix) == 0 &&
           path.compare(path.size() - s, s, kSuffix) == 0;
}

HttpHandler commit_log_handler(const JobTable &jobs, LiveLogs &logs)
{
    return [&jobs, &logs](const HttpRequest &req, HttpResponder &r) {
        const std::string id = is_commit_log_path(req.path) ? commit_of(req.path) : "";
        // Hex only: a '/', "..", '%' or anything else names no commit.
        const bool hex = id.size() >= 4 && id.size() <= 64 &&
                         id.find_first_not_of("0123456789abcdef") == std::string::npos;
        const Job *job = hex ? jobs.find_commit(id) : nullptr;
        if (!job) {
            r.send(404, "text/plain; charset=utf-8",
                   "no job for commit '" + id.substr(0, 64) + "'\n");
            return;
        }
        const LiveLogs::Tail *tail = logs.find(job->id);
        const bool live = tail && tail->attempt == job->attempt;
        if (req.param("follow") != "1") {
            r.send(200, "text/plain; charset=utf-8",
                   job->state == JobState::done ? job->result.log : live ? tail->bytes : "",
                   {{"cache-control", "no-cache"}});
            return;
        }
        auto f = std::make_shared<Follow>();
        f->stream = r.stream(200, "text/event-stream");
        f->attempt = job->attempt;
        if (job->state == JobState::done)
            return end_follow(*f, *job);
        if (live) {
            f->offset = tail->end();
            if (!tail->bytes.empty())
                f->stream->write(log_event(job->attempt, tail->start, tail->bytes));
        }
        const uint64_t job_id = job->id;
        std::weak_ptr<Follow> weak = f;
        f->token = logs.follow(
            job_id, {[weak](uint32_t attempt, uint64_t offset, std::string_view bytes) {
                         auto f = weak.lock();
                         if (!f)
                             return;
                         f->attempt = attempt;
                         f->offset = offset + bytes.size();
                         f->stream->write(log_event(attempt, offset, bytes));
                     },
                     [f, &jobs, job_id] {
                         // The follower's last reference: it ends with the job.
                         if (const Job *job = jobs.find(job_id))
                             end_follow(*f, *job);
                     },
                     [weak] {
                         if (auto f = weak.lock())
                             f->stream->write(":\n\n"); // an SSE comment: a quiet job
                     }});
        f->stream->on_close = [&logs, weak] {
            if (auto f = weak.lock())
                logs.unfollow(f->token);
        };
    };
}

} // namespace kiln
