// kiln-bench-load: a load generator for kiln-dispatcher, speaking the real
// protocol through libkiln.
//
// It starts a real kiln-dispatcher process on 127.0.0.1 (port 0: the kernel
// picks one, read back from the dispatcher's log) with a throw-away state
// dir and no report plugins, then, all in this one uv loop:
//   - registers --runners synthetic runners, one slot and one TCP connection
//     each, that answer every Assign at once with a passing one-test Result;
//   - connects one synthetic observer that floods --commits commits (fake
//     but valid 40-hex ids) with at most --window unacknowledged and at most
//     --backlog jobs outstanding (sent, result not yet acknowledged);
// and prints throughput (jobs persisted per second, first commit sent → last
// result acknowledged), assignment latency (commit acked to the observer →
// Assign received by a runner, matched by Ack.job_id), commit-ack latency,
// and the dispatcher's peak RSS and CPU per 1,000 jobs from /proc.
//
// Every wait is bounded (--timeout for the whole run); the only process it
// signals is the dispatcher it started.  Exit 0 only when every job completed.
#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include <kiln/frame_codec.hpp>
#include <kiln/messages.hpp>
#include <kiln/net.hpp>

#ifndef KILN_BENCH_DISPATCHER
#define KILN_BENCH_DISPATCHER "kiln-dispatcher"
#endif

using namespace kiln;

namespace {

struct Options {
    unsigned runners = 200;
    unsigned commits = 20000;
    unsigned window = 1000;  // unacknowledged commits
    long backlog = -1;       // outstanding jobs; -1: = runners, 0: unbounded
    double timeout_s = 300;
    unsigned connect_batch = 50; // runners connecting at once
    std::string dispatcher = KILN_BENCH_DISPATCHER;
    bool keep = false;
};

void usage(FILE *f)
{
    fprintf(f,
            "usage: kiln-bench-load [options]\n"
            "  --runners N       synthetic runners, 1 slot and 1 connection each (200)\n"
            "  --commits N       commits the synthetic observer sends (20000)\n"
            "  --window N        at most N commits sent and not yet acknowledged (1000)\n"
            "  --backlog N       at most N jobs outstanding, commit sent to result acked\n"
            "                    (default: = runners, so latency is the dispatcher's own;\n"
            "                    0: unbounded, only --window limits the observer)\n"
            "  --dispatcher PATH kiln-dispatcher to start (%s)\n"
            "  --timeout S       hard bound on the whole run in seconds (300)\n"
            "  --keep            keep the temporary state dir and dispatcher log\n",
            KILN_BENCH_DISPATCHER);
}

bool parse_args(int argc, char **argv, Options &o)
{
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&](const char *name) -> const char * {
            if (i + 1 >= argc) {
                fprintf(stderr, "kiln-bench-load: %s needs a value\n", name);
                exit(2);
            }
            return argv[++i];
        };
        auto number = [&](const char *name, double lo, double hi) {
            const char *v = value(name);
            char *end = nullptr;
            double d = strtod(v, &end);
            if (!*v || *end || d < lo || d > hi) {
                fprintf(stderr, "kiln-bench-load: %s: expected a number from %g to %g, got '%s'\n",
                        name, lo, hi, v);
                exit(2);
            }
            return d;
        };
        if (a == "--runners")
            o.runners = static_cast<unsigned>(number("--runners", 1, 10000));
        else if (a == "--commits")
            o.commits = static_cast<unsigned>(number("--commits", 1, 10000000));
        else if (a == "--window")
            o.window = static_cast<unsigned>(number("--window", 1, 1000000));
        else if (a == "--backlog")
            o.backlog = static_cast<long>(number("--backlog", 0, 10000000));
        else if (a == "--timeout")
            o.timeout_s = number("--timeout", 1, 86400);
        else if (a == "--dispatcher")
            o.dispatcher = value("--dispatcher");
        else if (a == "--keep")
            o.keep = true;
        else if (a == "-h" || a == "--help") {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "kiln-bench-load: unknown argument '%s'\n", a.c_str());
            usage(stderr);
            exit(2);
        }
    }
    if (o.backlog < 0)
        o.backlog = o.runners;
    return true;
}

// ---- /proc ----

struct ProcStats {
    bool ok = false;
    double cpu_s = 0;       // utime + stime
    long hwm_kb = -1;       // VmHWM
    long rss_kb = -1;       // VmRSS
    long long syscw = -1, write_bytes = -1;
};

ProcStats read_proc(int pid)
{
    ProcStats s;
    std::string base = "/proc/" + std::to_string(pid);
    {
        std::ifstream f(base + "/stat");
        std::string line;
        if (!std::getline(f, line))
            return s;
        // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
        size_t close = line.rfind(')');
        if (close == std::string::npos)
            return s;
        std::istringstream in(line.substr(close + 2));
        std::vector<std::string> fields;
        std::string w;
        while (in >> w)
            fields.push_back(w);
        if (fields.size() < 13)
            return s;
        double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
        s.cpu_s = (std::stod(fields[11]) + std::stod(fields[12])) / tick;
        s.ok = true;
    }
    {
        std::ifstream f(base + "/status");
        std::string line;
        while (std::getline(f, line)) {
            if (line.rfind("VmHWM:", 0) == 0)
                s.hwm_kb = std::atol(line.c_str() + 6);
            else if (line.rfind("VmRSS:", 0) == 0)
                s.rss_kb = std::atol(line.c_str() + 6);
        }
    }
    {
        std::ifstream f(base + "/io");
        std::string key;
        long long v;
        while (f >> key >> v) {
            if (key == "syscw:")
                s.syscw = v;
            else if (key == "write_bytes:")
                s.write_bytes = v;
        }
    }
    return s;
}

// ---- statistics ----

double percentile(std::vector<double> v, double p)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

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

double ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

// ---- the benchmark ----

class Bench;

struct Runner {
    Bench *bench = nullptr;
    unsigned index = 0;
    std::string name;
    std::unique_ptr<Client> client;
    uint64_t next_id = 1;
    uint64_t register_id = 0;
    bool registered = false;
};

class Bench {
  public:
    Bench(uv_loop_t *loop, Options opts) : loop_(loop), o_(std::move(opts)) {}

    int run();

  private:
    // Set-up and tear-down.
    bool make_state_dir();
    bool start_dispatcher();
    static void on_dispatcher_exit(uv_process_t *, int64_t status, int signum);
    static void on_poll_port(uv_timer_t *);
    static void on_deadline(uv_timer_t *);
    void connect_runners();
    void start_observer();
    void pump();
    void finish(bool ok, const std::string &why);
    void stop_dispatcher();
    void print_report();

    // Protocol.
    void runner_message(Runner &r, Message &&msg);
    void observer_message(Message &&msg);

    uv_loop_t *loop_;
    Options o_;
    std::string dir_, log_path_, config_path_;
    uv_process_t process_{};
    bool process_running_ = false;
    int pid_ = 0;
    int64_t exit_status_ = 0;
    int exit_signal_ = 0;
    int port_ = 0;
    std::string address_;
    uv_timer_t poll_timer_{};
    uv_timer_t deadline_{};
    uint64_t t_launch_ = 0;

    std::vector<std::unique_ptr<Runner>> runners_;
    unsigned runners_started_ = 0, runners_registered_ = 0;
    std::unique_ptr<Client> observer_;
    bool observer_ready_ = false;

    // Per commit (by index).
    std::vector<uint64_t> sent_ns_, acked_ns_, assigned_ns_;
    std::vector<uint64_t> job_of_;  // Ack.job_id
    std::unordered_map<uint64_t, unsigned> index_of_job_;
    unsigned sent_ = 0, acked_ = 0, assigns_ = 0, completed_ = 0;
    unsigned mismatches_ = 0, early_assigns_ = 0, duplicate_assigns_ = 0;
    std::vector<double> result_ack_ms_;
    std::unordered_map<uint64_t, uint64_t> result_sent_ns_; // result id → ns (per runner ids overlap: key on job)
    uint64_t t_first_sent_ = 0, t_last_done_ = 0, t_ready_ = 0;
    ProcStats before_, after_;
    struct rusage self_before_ {};

    bool done_ = false, ok_ = false;
    std::string why_;
};

bool Bench::make_state_dir()
{
    const char *tmp = getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/kiln-bench-load.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) {
        fprintf(stderr, "kiln-bench-load: mkdtemp %s: %s\n", tmpl.c_str(), strerror(errno));
        return false;
    }
    dir_ = buf.data();
    log_path_ = dir_ + "/dispatcher.log";
    config_path_ = dir_ + "/dispatcher.toml";
    FILE *f = fopen(config_path_.c_str(), "w");
    if (!f)
        return false;
    // Heartbeats and runner timeouts far beyond the run: synthetic runners
    // send no heartbeats; their results keep the connections busy anyway.
    long long hold = static_cast<long long>(o_.timeout_s) + 600;
    fprintf(f,
            "[dispatcher]\n"
            "listen = \"127.0.0.1:0\"\n"
            "state_dir = \"%s/state\"\n"
            "heartbeat_interval = %lld\n"
            "runner_timeout = %lld\n"
            "handshake_timeout = \"60s\"\n"
            "# no [[report]]: no report plugins\n",
            dir_.c_str(), hold, hold * 2);
    fclose(f);
    return true;
}

bool Bench::start_dispatcher()
{
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "kiln-bench-load: %s: %s\n", log_path_.c_str(), strerror(errno));
        return false;
    }
    std::vector<std::string> args = {o_.dispatcher, "-c", config_path_};
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = fd;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = fd;
    uv_process_options_t po{};
    po.file = argv[0];
    po.args = argv.data();
    po.exit_cb = on_dispatcher_exit;
    po.stdio_count = 3;
    po.stdio = stdio;
    process_.data = this;
    t_launch_ = uv_hrtime();
    int rc = uv_spawn(loop_, &process_, &po);
    close(fd);
    if (rc != 0) {
        fprintf(stderr, "kiln-bench-load: cannot start %s: %s\n", o_.dispatcher.c_str(),
                uv_strerror(rc));
        uv_close(reinterpret_cast<uv_handle_t *>(&process_), nullptr);
        return false;
    }
    process_running_ = true;
    pid_ = process_.pid;
    uv_timer_init(loop_, &poll_timer_);
    poll_timer_.data = this;
    uv_timer_start(&poll_timer_, on_poll_port, 10, 10);
    return true;
}

void Bench::on_dispatcher_exit(uv_process_t *p, int64_t status, int signum)
{
    auto *self = static_cast<Bench *>(p->data);
    self->process_running_ = false;
    self->exit_status_ = status;
    self->exit_signal_ = signum;
    uv_close(reinterpret_cast<uv_handle_t *>(p), nullptr);
    if (!self->done_)
        self->finish(false, "the dispatcher exited (status " + std::to_string(status) +
                                ", signal " + std::to_string(signum) + ") before the run ended");
}

// The dispatcher logs "listening on 127.0.0.1:0 (port N)" once bound.
void Bench::on_poll_port(uv_timer_t *t)
{
    auto *self = static_cast<Bench *>(t->data);
    std::ifstream f(self->log_path_);
    std::string line;
    while (std::getline(f, line)) {
        size_t at = line.find("(port ");
        if (line.find("listening on") != std::string::npos && at != std::string::npos) {
            self->port_ = std::atoi(line.c_str() + at + 6);
            break;
        }
    }
    if (self->port_ > 0) {
        uv_timer_stop(t);
        self->address_ = "127.0.0.1:" + std::to_string(self->port_);
        self->connect_runners();
    } else if (uv_hrtime() - self->t_launch_ > 15ull * 1000000000) {
        uv_timer_stop(t);
        self->finish(false, "the dispatcher did not report its port within 15 s");
    }
}

void Bench::on_deadline(uv_timer_t *t)
{
    auto *self = static_cast<Bench *>(t->data);
    char why[200];
    snprintf(why, sizeof why,
             "timed out after %.0f s: %u runner(s) registered, %u/%u commits sent, %u acked, "
             "%u assigned, %u completed",
             self->o_.timeout_s, self->runners_registered_, self->sent_, self->o_.commits,
             self->acked_, self->assigns_, self->completed_);
    self->finish(false, why);
}

// Connect runners a batch at a time (the dispatcher listens with a backlog
// of 128): each registered runner lets the next one start.
void Bench::connect_runners()
{
    while (runners_started_ < o_.runners &&
           runners_started_ - runners_registered_ < o_.connect_batch) {
        auto r = std::make_unique<Runner>();
        r->bench = this;
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
    before_ = read_proc(pid_);
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

void Bench::finish(bool ok, const std::string &why)
{
    if (done_)
        return;
    done_ = true;
    ok_ = ok;
    why_ = why;
    if (process_running_)
        after_ = read_proc(pid_); // before anything is torn down
    uv_timer_stop(&deadline_);
    uv_timer_stop(&poll_timer_);
    if (observer_)
        observer_->stop();
    for (auto &r : runners_)
        r->client->stop();
    stop_dispatcher();
}

// SIGTERM to the dispatcher this run started, then SIGKILL if it lingers.
void Bench::stop_dispatcher()
{
    if (!process_running_)
        return;
    uv_process_kill(&process_, SIGTERM);
    auto *t = new uv_timer_t;
    uv_timer_init(loop_, t);
    t->data = this;
    uv_timer_start(
        t,
        [](uv_timer_t *timer) {
            auto *self = static_cast<Bench *>(timer->data);
            if (self->process_running_) {
                fprintf(stderr, "kiln-bench-load: dispatcher %d still up 10 s after SIGTERM; "
                                "SIGKILL\n", self->pid_);
                uv_process_kill(&self->process_, SIGKILL);
            }
            uv_close(reinterpret_cast<uv_handle_t *>(timer),
                     [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
        },
        10000, 0);
    uv_unref(reinterpret_cast<uv_handle_t *>(t)); // the process handle keeps the loop up
}

void Bench::print_report()
{
    std::vector<double> assign_ms, ack_ms;
    assign_ms.reserve(o_.commits);
    ack_ms.reserve(o_.commits);
    for (unsigned i = 0; i < sent_; i++) {
        if (acked_ns_[i])
            ack_ms.push_back(ms(acked_ns_[i] - sent_ns_[i]));
        if (acked_ns_[i] && assigned_ns_[i])
            assign_ms.push_back(assigned_ns_[i] > acked_ns_[i] ? ms(assigned_ns_[i] - acked_ns_[i])
                                                               : 0.0);
    }
    double elapsed = t_last_done_ > t_first_sent_ ? (t_last_done_ - t_first_sent_) / 1e9 : 0;
    double cpu = after_.ok && before_.ok ? after_.cpu_s - before_.cpu_s : -1;
    struct rusage self_after {};
    getrusage(RUSAGE_SELF, &self_after);
    auto tv = [](const timeval &t) { return t.tv_sec + t.tv_usec / 1e6; };
    double self_cpu = tv(self_after.ru_utime) + tv(self_after.ru_stime) -
                      tv(self_before_.ru_utime) - tv(self_before_.ru_stime);

    printf("\n== kiln load benchmark ==\n");
    printf("dispatcher        %s (pid %d, 127.0.0.1:%d)\n", o_.dispatcher.c_str(), pid_, port_);
    printf("runners           %u synthetic, 1 slot each, %u registered in %.2f s\n", o_.runners,
           runners_registered_, t_ready_ ? (t_ready_ - t_launch_) / 1e9 : 0.0);
    printf("commits           %u (window %u unacked, backlog %s outstanding jobs)\n", o_.commits,
           o_.window, o_.backlog ? std::to_string(o_.backlog).c_str() : "unbounded");
    printf("completed         %u/%u jobs in %.3f s%s\n", completed_, o_.commits, elapsed,
           ok_ ? "" : "  ** INCOMPLETE **");
    printf("throughput        %.0f jobs/s persisted (first commit sent -> last result acked)\n",
           elapsed > 0 ? completed_ / elapsed : 0.0);
    printf("assign latency    p50 %.2f ms  p99 %.2f ms  max %.2f ms  (commit acked -> assign "
           "received; %zu jobs)\n",
           percentile(assign_ms, 50), percentile(assign_ms, 99), percentile(assign_ms, 100),
           assign_ms.size());
    printf("commit-ack        p50 %.2f ms  p99 %.2f ms  max %.2f ms  (commit sent -> ack "
           "received)\n",
           percentile(ack_ms, 50), percentile(ack_ms, 99), percentile(ack_ms, 100));
    printf("result-ack        p50 %.2f ms  p99 %.2f ms  max %.2f ms  (result sent -> ack "
           "received)\n",
           percentile(result_ack_ms_, 50), percentile(result_ack_ms_, 99),
           percentile(result_ack_ms_, 100));
    if (after_.ok) {
        printf("dispatcher RSS    peak %.1f MB (VmHWM), %.1f MB at the end (VmRSS)\n",
               after_.hwm_kb / 1024.0, after_.rss_kb / 1024.0);
        printf("dispatcher CPU    %.2f s user+sys during the run = %.3f s per 1,000 jobs\n", cpu,
               completed_ ? cpu * 1000.0 / completed_ : 0.0);
        if (before_.syscw >= 0 && after_.syscw >= 0)
            printf("dispatcher I/O    %.1f write(2) calls per job (sockets, log and SQLite), %.0f "
                   "bytes written to disk per job\n",
                   completed_ ? double(after_.syscw - before_.syscw) / completed_ : 0.0,
                   completed_ ? double(after_.write_bytes - before_.write_bytes) / completed_ : 0.0);
    } else {
        printf("dispatcher RSS    unavailable (the dispatcher was gone at the end)\n");
    }
    printf("generator CPU     %.2f s user+sys (this process, same machine)\n", self_cpu);
    if (mismatches_ || duplicate_assigns_ || early_assigns_)
        printf("notes             %u ack/assign job id mismatches, %u duplicate assigns, %u "
               "assigns read before their commit ack (latency 0)\n",
               mismatches_, duplicate_assigns_, early_assigns_);
    printf("result            %s\n", ok_ && !mismatches_ ? "OK" : ("FAILED: " + (why_.empty() ? std::string("job id mismatches") : why_)).c_str());
}

int Bench::run()
{
    sent_ns_.assign(o_.commits, 0);
    acked_ns_.assign(o_.commits, 0);
    assigned_ns_.assign(o_.commits, 0);
    job_of_.assign(o_.commits, 0);
    index_of_job_.reserve(o_.commits);
    result_ack_ms_.reserve(o_.commits);
    if (!make_state_dir())
        return 1;
    uv_timer_init(loop_, &deadline_);
    deadline_.data = this;
    uv_timer_start(&deadline_, on_deadline, static_cast<uint64_t>(o_.timeout_s * 1000), 0);
    if (!start_dispatcher()) {
        uv_close(reinterpret_cast<uv_handle_t *>(&deadline_), nullptr);
        uv_run(loop_, UV_RUN_DEFAULT);
        return 1;
    }
    fprintf(stderr, "kiln-bench-load: %u runners, %u commits against %s (log %s)\n", o_.runners,
            o_.commits, o_.dispatcher.c_str(), log_path_.c_str());
    // Runs until finish() has stopped every client and the dispatcher exited.
    while (!done_ || process_running_)
        uv_run(loop_, UV_RUN_ONCE);
    // Let the clients' handles close.
    runners_.clear();
    observer_.reset();
    uv_close(reinterpret_cast<uv_handle_t *>(&deadline_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t *>(&poll_timer_), nullptr);
    uv_run(loop_, UV_RUN_DEFAULT);

    print_report();
    if (!ok_) {
        fprintf(stderr, "kiln-bench-load: %s\n", why_.c_str());
        fprintf(stderr, "kiln-bench-load: dispatcher log kept in %s\n", log_path_.c_str());
        return 1;
    }
    if (exit_signal_ || exit_status_)
        fprintf(stderr, "kiln-bench-load: note: the dispatcher exited with status %lld signal %d\n",
                static_cast<long long>(exit_status_), exit_signal_);
    if (!o_.keep) {
        std::string cmd = "rm -rf -- '" + dir_ + "'";
        if (system(cmd.c_str()) != 0)
            fprintf(stderr, "kiln-bench-load: could not remove %s\n", dir_.c_str());
    } else {
        fprintf(stderr, "kiln-bench-load: kept %s\n", dir_.c_str());
    }
    return mismatches_ ? 1 : 0;
}

} // namespace

int main(int argc, char **argv)
{
    Options o;
    parse_args(argc, argv, o);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, nullptr, _IOLBF, 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    int rc;
    {
        Bench bench(&loop, o);
        rc = bench.run();
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}
