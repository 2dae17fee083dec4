#pragma once
// What the dispatcher counts since it started, for /metrics (see
// http/metrics.hpp).  Gauges (queue lengths, runners, connections) are read
// from the parts that own them at scrape time; only events that leave no
// trace in those parts are counted here.  A plain struct: the dispatcher
// increments it on its loop, the metrics route reads it on the same loop.
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "job_table.hpp"

namespace kiln {

// Job durations in seconds, Prometheus-style cumulative buckets.
struct DurationHistogram {
    static constexpr std::array<double, 11> bounds = {1,   5,   10,   30,   60,  120,
                                                      300, 600, 1800, 3600, 7200};
    std::array<uint64_t, bounds.size()> counts{}; // counts[i]: durations <= bounds[i] (not cumulative)
    uint64_t count = 0;
    double sum = 0;

    void observe(double seconds)
    {
        for (size_t i = 0; i < bounds.size(); i++)
            if (seconds <= bounds[i]) {
                counts[i]++;
                break;
            }
        count++;
        sum += seconds;
    }
};

struct Counters {
    // Why a job that had been handed to a runner went back to the queue.
    static constexpr const char *rerun_reasons[] = {"runner_lost", "timeout", "retry"};

    std::map<std::pair<std::string, std::string>, uint64_t> finished; // (repo, outcome) → commits
    std::map<std::string, DurationHistogram> durations;               // per repository
    std::map<std::string, uint64_t> reruns;                           // reason → jobs
    uint64_t heartbeats_missed = 0; // runners dropped after runner_timeout without a message

    // A commit's job has ended (shards are parts of it and not counted).
    void job_finished(const Job &job)
    {
        if (job.parent)
            return;
        finished[{job.spec.repo, kiln_outcome_name(job.result.outcome)}]++;
        // A job cancelled before any runner took it has no duration.
        if (job.assigned_unix_ms > 0 && job.finished_unix_ms >= job.assigned_unix_ms)
            durations[job.spec.repo].observe(double(job.finished_unix_ms - job.assigned_unix_ms) /
                                             1000.0);
    }

    // `jobs` went back to the queue because their runner went away: after
    // runner_timeout without a word (`silent`: its connection idled out)
    // or otherwise.
    void runner_released(bool silent, size_t jobs)
    {
        reruns[silent ? "timeout" : "runner_lost"] += jobs;
    }

    // A registered runner is gone; `silent`: its connection idled out.
    void runner_lost(bool silent)
    {
        if (silent)
            heartbeats_missed++;
    }
};

} // namespace kiln
