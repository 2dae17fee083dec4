// Result or TestList, alike.  See delivery.hpp.
#include "delivery.hpp"

#include <kiln/log.hpp>

#include "job_run.hpp"

namespace kiln {

uint64_t delivery_job_id(const Delivery &d)
{
    return std::visit([](const auto &m) { return m.job_id; }, d);
}

uint32_t delivery_attempt(const Delivery &d)
{
    return std::visit([](const auto &m) { return m.attempt; }, d);
}

void set_request_id(Delivery &d, uint64_t id)
{
    std::visit([id](auto &m) { m.id = id; }, d);
}

Message to_message(const Delivery &d)
{
    return std::visit([](const auto &m) { return Message(m); }, d);
}

namespace {

// Shrink the bulky parts step by step.
void fit_result(Result &r, size_t max_frame)
{
    const size_t limits[] = {4096, 256, 0};
    for (size_t limit : limits) {
        if (encode_message(r).size() <= max_frame)
            return;
        for (auto &t : r.tests)
            if (t.message.size() > limit)
                t.message = JobRun::bounded_log(t.message.data(), t.message.size(), limit);
        if (r.log.size() > (limit << 8))
            r.log = JobRun::bounded_log(r.log.data(), r.log.size(), limit << 8);
    }
    if (encode_message(r).size() > max_frame) {
        log_err("job %llu: %zu test results do not fit in max_frame; sending none",
                static_cast<unsigned long long>(r.job_id), r.tests.size());
        r.error = std::to_string(r.tests.size()) + " test results did not fit in one frame";
        r.outcome = KILN_ERROR;
        r.tests.clear();
    }
}

// A test list too; its names cannot be shortened, so a list too long for
// one frame becomes an error, and the dispatcher runs the commit unsharded.
void fit_list(TestList &l, size_t max_frame)
{
    if (encode_message(l).size() <= max_frame)
        return;
    log_err("job %llu: %zu test names do not fit in max_frame; sending none",
            static_cast<unsigned long long>(l.job_id), l.tests.size());
    l.error = std::to_string(l.tests.size()) + " test names did not fit in one frame";
    l.tests.clear();
}

} // namespace

void fit_in_frame(Delivery &d, size_t max_frame)
{
    if (auto *r = std::get_if<Result>(&d))
        fit_result(*r, max_frame);
    else
        fit_list(std::get<TestList>(d), max_frame);
}

} // namespace kiln
