#pragma once
// A report plugin's own copy of what report() or event() lends it: the
// pointers of struct kiln_report are borrowed for the call only, and the
// work (a file written on the thread pool, a mail piped to sendmail) ends
// later.  Also how each plugin answers: one completion for both entry
// points, report()'s kiln_done_cb or event()'s kiln_delivery_cb.
// Header-only (a plugin links nothing of Kiln).
#include <cstdint>
#include <string>
#include <vector>

#include <kiln/plugin.h>

namespace kiln_report_copy {

struct Test {
    std::string name;
    int outcome = KILN_PASSED;
    uint64_t duration_ms = 0;
    bool has_message = false;
    std::string message;
};

struct Report {
    std::string repo, branch, commit, runner, error, log, url;
    bool has_error = false, has_url = false;
    int outcome = KILN_ERROR;
    int previous_outcome = KILN_OUTCOME_NONE;
    uint64_t job_id = 0, delivery_id = 0;
    uint32_t attempt = 0;
    int64_t started_unix_ms = 0, finished_unix_ms = 0;
    std::vector<Test> tests;
    uint32_t counts[6] = {}; // by enum kiln_outcome

    // Copies rep (may throw std::bad_alloc); counts from the tests.
    void assign(const kiln_report &rep)
    {
        repo = rep.repo ? rep.repo : "";
        branch = rep.branch ? rep.branch : "";
        commit = rep.commit ? rep.commit : "";
        runner = rep.runner ? rep.runner : "";
        has_error = rep.error != nullptr;
        error = rep.error ? rep.error : "";
        log.assign(rep.log ? rep.log : "", rep.log ? rep.log_len : 0);
        outcome = rep.outcome;
        job_id = rep.job_id;
        attempt = rep.attempt;
        started_unix_ms = rep.started_unix_ms;
        finished_unix_ms = rep.finished_unix_ms;
        tests.clear();
        tests.reserve(rep.n_tests);
        for (uint32_t &c : counts)
            c = 0;
        for (size_t i = 0; rep.tests && i < rep.n_tests; i++) {
            const kiln_test_result &t = rep.tests[i];
            tests.push_back({t.name ? t.name : "", t.outcome, t.duration_ms, t.message != nullptr,
                             t.message ? t.message : ""});
            if (t.outcome >= 0 && t.outcome < 6)
                counts[t.outcome]++;
        }
    }

    // Copies an event's report plus what only an event has (the host's
    // counts, which may cover tests it did not hand over, win).
    void assign(const kiln_report_event &ev)
    {
        assign(*ev.report);
        delivery_id = ev.delivery_id;
        if (KILN_EVENT_HAS(&ev, url)) {
            has_url = ev.url != nullptr;
            url = ev.url ? ev.url : "";
        }
        if (KILN_EVENT_HAS(&ev, previous_outcome))
            previous_outcome = ev.previous_outcome;
        if (KILN_EVENT_HAS(&ev, counts)) {
            uint32_t sum = 0;
            for (uint32_t c : ev.counts)
                sum += c;
            if (sum > 0)
                for (int i = 0; i < 6; i++)
                    counts[i] = ev.counts[i];
        }
    }
};

// How one report or event ends, whichever entry point started it.
struct Completion {
    kiln_done_cb done = nullptr;           // report()
    kiln_delivery_cb delivered = nullptr;  // event()
    void *arg = nullptr;

    // status 0, or -errno with `error` one line; `rejected`: never worth
    // another attempt (event() only; report() has no such answer).
    void finish(int status, const char *error, bool rejected = false) const noexcept
    {
        if (delivered) {
            kiln_delivery d{};
            d.status = status;
            d.rejected = status < 0 && rejected ? 1 : 0;
            d.error = status == 0 ? nullptr : error ? error : "failed";
            delivered(arg, &d);
        } else if (done) {
            done(arg, status, status == 0 ? nullptr : error ? error : "failed");
        }
    }
};

} // namespace kiln_report_copy
