// kiln-observer: polling, the outbox, the dispatcher connection.
#include "observer.hpp"

#include <kiln/log.hpp>

namespace kiln {

Observer::Observer(uv_loop_t *loop, ObserverConfig config)
    : loop_(loop), config_(std::move(config)), client_(loop, config_.dispatcher, config_.max_frame)
{
    auto dirs = plugin_dirs(config_.plugin_dirs);
    for (const auto &repo : config_.repos)
        if (!vcs_.count(repo.vcs))
            vcs_[repo.vcs] = load_plugin(loop_, dirs, repo.vcs, KILN_PLUGIN_VCS,
                                         config_.plugin_tables.table(repo.vcs), "kiln-observer");
    config_.plugin_tables.reject_unknown_keys();

    for (const auto &repo : config_.repos)
        for (const auto &branch : repo.branches) {
            auto w = std::make_unique<Watch>();
            w->owner = this;
            w->repo = &repo;
            w->branch = branch;
            watches_.push_back(std::move(w));
        }

    client_.on_connected = [this](Connection &conn) {
        conn.set_idle_timeout(config_.dispatcher_timeout_ms);
        conn.send(Hello{next_id_++, kProtocolVersion, "observer", "kiln-observer"});
    };
    client_.on_message = [this](Connection &conn, Message &&msg) { on_message(conn, std::move(msg)); };
    client_.on_disconnected = [this](const std::string &why) {
        if (ready_)
            log_warning("dispatcher %s: disconnected: %s; %zu commit(s) wait in the outbox",
                        client_.address().c_str(), why.c_str(), outbox_.size());
        ready_ = false;
        for (auto &out : outbox_)
            out.sent = false; // unacknowledged: send again after reconnecting
    };
}

Observer::~Observer()
{
    for (auto &w : watches_)
        if (w->timer)
            uv_close(reinterpret_cast<uv_handle_t *>(w->timer),
                     [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
}

void Observer::start()
{
    log_notice("watching %zu branch(es) of %zu repositories; dispatcher %s", watches_.size(),
               config_.repos.size(), config_.dispatcher.c_str());
    for (auto &w : watches_) {
        w->timer = new uv_timer_t;
        uv_timer_init(loop_, w->timer);
        w->timer->data = w.get();
        uv_timer_start(
            w->timer, [](uv_timer_t *t) {
                auto *watch = static_cast<Watch *>(t->data);
                watch->owner->poll(*watch);
            },
            0, w->repo->interval_ms);
    }
    client_.start();
}

void Observer::stop()
{
    stopping_ = true;
    for (auto &w : watches_) {
        if (w->timer)
            uv_timer_stop(w->timer);
        if (w->op)
            vcs_.at(w->repo->vcs)->cancel(w->op);
    }
    client_.stop();
}

void Observer::poll(Watch &w)
{
    if (w.polling || stopping_)
        return; // a slow poll is still going: skip this tick rather than pile up
    Plugin &vcs = *vcs_.at(w.repo->vcs);
    std::string cache = config_.state_dir + "/cache/" + w.repo->vcs;
    kiln_vcs_poll_request req{};
    req.url = w.repo->url.c_str();
    req.branch = w.branch.c_str();
    req.since = w.last.c_str();
    req.max_commits = config_.max_backlog;
    req.cache_dir = cache.c_str();
    auto cb = [](void *arg, int status, const char *error, const kiln_vcs_poll_result *res) {
        auto *watch = static_cast<Watch *>(arg);
        watch->polling = false;
        watch->op = nullptr;
        watch->owner->on_polled(*watch, status, error, res);
    };
    int rc = vcs.vcs().poll(vcs.self(), &req, cb, &w, &w.op);
    if (rc != 0)
        log_err("repo %s %s: poll: cannot start: %s", w.repo->name.c_str(), w.branch.c_str(),
                uv_strerror(rc));
    else
        w.polling = true;
}

void Observer::on_polled(Watch &w, int status, const char *error, const kiln_vcs_poll_result *res)
{
    const char *repo = w.repo->name.c_str(), *branch = w.branch.c_str();
    if (status != 0) {
        if (status != UV_ECANCELED)
            log_warning("repo %s %s: poll: %s", repo, branch, error ? error : uv_strerror(status));
        return;
    }
    if (!res->head) {
        if (!w.branch_missing)
            log_warning("repo %s: branch %s does not exist (or was deleted); waiting for it",
                        repo, branch);
        w.branch_missing = true;
        return;
    }
    w.branch_missing = false;
    if (!w.last.empty() && !res->since_found)
        log_warning("repo %s %s: %.12s is no longer in the history (force-push?); testing the "
                    "new head %.12s",
                    repo, branch, w.last.c_str(), res->head);
    if (res->truncated)
        log_warning("repo %s %s: more than %u new commits; testing only the newest %zu",
                    repo, branch, config_.max_backlog, res->n_commits);
    if (res->n_commits > 0) {
        if (w.repo->every)
            for (size_t i = 0; i < res->n_commits; i++)
                enqueue(w, res->commits[i]);
        else
            enqueue(w, res->commits[res->n_commits - 1]);
    }
    w.last = res->head;
    flush();
}

void Observer::enqueue(const Watch &w, const std::string &commit)
{
    if (!valid_commit_id(commit)) {
        log_err("repo %s: plugin %s gave '%s', not a commit id; ignored", w.repo->name.c_str(),
                w.repo->vcs.c_str(), commit.c_str());
        return;
    }
    Outgoing out;
    out.commit.id = next_id_++;
    JobSpec &s = out.commit.spec;
    s.repo = w.repo->name;
    s.url = w.repo->url;
    s.branch = w.branch;
    s.commit = commit;
    s.vcs = w.repo->vcs;
    s.exec = w.repo->exec;
    s.timeout_ms = w.repo->timeout_ms;
    log_info("repo %s %s: new commit %.12s", s.repo.c_str(), s.branch.c_str(), commit.c_str());
    outbox_.push_back(std::move(out));
}

void Observer::flush()
{
    if (!ready_)
        return;
    for (auto &out : outbox_)
        if (!out.sent && client_.send(out.commit))
            out.sent = true;
}

void Observer::on_message(Connection &conn, Message &&msg)
{
    if (std::holds_alternative<Hello>(msg)) {
        ready_ = true;
        log_info("dispatcher %s: connected", conn.peer().c_str());
        flush();
    } else if (auto *ack = std::get_if<Ack>(&msg)) {
        for (auto it = outbox_.begin(); it != outbox_.end(); ++it)
            if (it->commit.id == ack->id) {
                log_debug("commit %.12s: acknowledged as job %llu", it->commit.spec.commit.c_str(),
                          static_cast<unsigned long long>(ack->job_id));
                outbox_.erase(it);
                break;
            }
    } else if (auto *error = std::get_if<Error>(&msg)) {
        log_err("dispatcher %s: error: %s", conn.peer().c_str(), error->message.c_str());
    } else if (!std::holds_alternative<Heartbeat>(msg)) {
        conn.fail(0, std::string("unexpected message ") + message_type(msg));
    }
}

} // namespace kiln
