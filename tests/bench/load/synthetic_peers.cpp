// The synthetic peers that load the dispatcher, all in this process's loop
// and speaking the real protocol through libkiln: runners (1 slot each) that
// answer every Assign at once with a passing one-test Result, and one
// observer that floods commits within --window and --backlog.
#include "bench.hpp"

#include <cstdio>
#include <cstdlib>

#include <kiln/frame_codec.hpp>

namespace kiln::bench {

namespace {

std::string commit_id(unsigned index)
{
    // 40 lowercase hex digits: a fixed pattern and the index, so an Assign's
    // commit tells which commit it is.
    char buf[41];
    snprintf(buf, sizeof buf, "bec4%028x%08x", 0u, index);
    return buf;
}

bool commit_index(const std::string &commit, unsigned &index)
{
    if (commit.size() != 40 || commit.compare(0, 4, "bec4") != 0)
        return false;
    index = static_cast<unsigned>(strtoul(commit.c_str() + 32, nullptr, 16));
    return true;
}

} // namespace

// Connect runners a batch at a time (the dispatcher listens with a backlog
// of 128): each registered runner lets the next one start.
void Bench::connect_runners()
{
    while (runners_started_ < o_.runners &&
           runners_started_ - runners_registered_ < o_.connect_batch) {
        auto r = std::make_unique<Runner>();
        r->index = runners_started_++;
        char name[32];
        snprintf(name, sizeof name, "bench-runner-%04u", r->index);
        r->name = name;
        r->client = std::make_unique<Client>(loop_, address_, kDefaultMaxFrame, false);
        Runner *rp = r.get();
        r->client->on_connected = [rp](Connection &c) {
            c.send(Hello{rp->next_id++, kProtocolVersion, "runner", rp->name, "", ""});
        };
        r->client->on_message = [this, rp](Connection &, Message &&m) {
            runner_message(*rp, std::move(m));
        };
        r->client->on_disconnected = [this, rp](const std::string &why) {
            if (!done_)
                finish(false, "runner " + rp->name + " disconnected: " + why);
        };
        runners_.push_back(std::move(r));
        rp->client->start();
    }
}

void Bench::runner_message(Runner &r, Message &&msg)
{
    if (done_)
        return;
    if (auto *hello = std::get_if<Hello>(&msg)) {
        (void)hello;
        Register reg;
        reg.id = r.register_id = r.next_id++;
        reg.name = r.name;
        reg.slots = 1;
        r.client->send(reg);
    } else if (auto *ack = std::get_if<Ack>(&msg)) {
        if (!r.registered && ack->id == r.register_id) {
            r.registered = true;
            runners_registered_++;
            if (runners_registered_ == o_.runners)
                start_observer();
            else
                connect_runners();
            return;
        }
        // The ack of a result: the job is persisted, done.
        uint64_t now = uv_hrtime();
        auto it = result_sent_ns_.find(ack->job_id);
        if (it != result_sent_ns_.end()) {
            result_ack_ms_.push_back(ms(now - it->second));
            result_sent_ns_.erase(it);
        }
        completed_++;
        t_last_done_ = now;
        if (completed_ == o_.commits)
            finish(true, "");
        else
            pump();
    } else if (auto *as = std::get_if<Assign>(&msg)) {
        uint64_t now = uv_hrtime();
        assigns_++;
        unsigned index;
        if (!commit_index(as->spec.commit, index) || index >= o_.commits) {
            finish(false, "assign of an unknown commit " + as->spec.commit);
            return;
        }
        if (assigned_ns_[index])
            duplicate_assigns_++;
        else
            assigned_ns_[index] = now;
        if (job_of_[index] && job_of_[index] != as->job_id)
            mismatches_++;
        if (!acked_ns_[index])
            early_assigns_++; // the runner's socket was read before the observer's
        index_of_job_[as->job_id] = index;
        Result res;
        res.id = r.next_id++;
        res.job_id = as->job_id;
        res.attempt = as->attempt;
        res.commit = as->spec.commit;
        res.outcome = KILN_PASSED;
        TestOutcome t;
        t.name = "test_bench.BenchTest.test_ok";
        t.outcome = KILN_PASSED;
        t.duration_ms = 1;
        res.tests.push_back(std::move(t));
        res.log = "ok\n";
        int64_t wall = static_cast<int64_t>(uv_now(loop_));
        res.started_unix_ms = wall;
        res.finished_unix_ms = wall;
        result_sent_ns_[as->job_id] = uv_hrtime();
        r.client->send(res);
    } else if (auto *err = std::get_if<Error>(&msg)) {
        finish(false, "runner " + r.name + ": error from the dispatcher: " + err->message);
    }
    // Heartbeat, Cancel and anything newer: nothing to do.
}

void Bench::start_observer()
{
    t_ready_ = uv_hrtime();
    before_ = read_proc(dispatcher_.pid());
    getrusage(RUSAGE_SELF, &self_before_);
    observer_ = std::make_unique<Client>(loop_, address_, kDefaultMaxFrame, false);
    observer_->on_connected = [](Connection &c) {
        c.send(Hello{1, kProtocolVersion, "observer", "bench-observer", "", ""});
    };
    observer_->on_message = [this](Connection &, Message &&m) { observer_message(std::move(m)); };
    observer_->on_disconnected = [this](const std::string &why) {
        if (!done_)
            finish(false, "observer disconnected: " + why);
    };
    observer_->start();
}

void Bench::observer_message(Message &&msg)
{
    if (done_)
        return;
    if (std::holds_alternative<Hello>(msg)) {
        observer_ready_ = true;
        pump();
    } else if (auto *ack = std::get_if<Ack>(&msg)) {
        uint64_t now = uv_hrtime();
        // Commit ids are index + 2 (hello was 1).
        if (ack->id < 2 || ack->id - 2 >= sent_) {
            finish(false, "ack of an unknown commit request " + std::to_string(ack->id));
            return;
        }
        unsigned index = static_cast<unsigned>(ack->id - 2);
        if (acked_ns_[index])
            return;
        acked_ns_[index] = now;
        job_of_[index] = ack->job_id;
        acked_++;
        pump();
    } else if (auto *err = std::get_if<Error>(&msg)) {
        finish(false, "observer: error from the dispatcher: " + err->message);
    }
}

// Send commits while the window and the backlog allow.
void Bench::pump()
{
    if (!observer_ready_ || done_)
        return;
    while (sent_ < o_.commits && sent_ - acked_ < o_.window &&
           (o_.backlog == 0 || sent_ - completed_ < static_cast<unsigned long>(o_.backlog))) {
        unsigned index = sent_++;
        Commit c;
        c.id = index + 2;
        c.spec.repo = "bench";
        c.spec.url = "/srv/git/bench.git";
        c.spec.branch = "main";
        c.spec.commit = commit_id(index);
        c.spec.vcs = "git";
        c.spec.exec = "script";
        c.spec.timeout_ms = 60000;
        uint64_t now = uv_hrtime();
        if (!t_first_sent_)
            t_first_sent_ = now;
        sent_ns_[index] = now;
        observer_->send(c);
    }
}

} // namespace kiln::bench
