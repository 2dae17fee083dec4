// kiln-observer: watches, polling, the state; the dispatcher connection is
// in observer_link.cpp.
#include "observer.hpp"

#include <kiln/restart_keys.hpp>
#include <kiln/log.hpp>

namespace kiln {

Observer::Observer(uv_loop_t *loop, ObserverConfig config)
    : loop_(loop), startup_(std::move(config.startup)), settings_(std::move(config.settings)),
      client_(loop, startup_.dispatcher, startup_.max_frame),
      state_(loop, startup_.state_dir + "/handed-over")
{
    handshake_ = ClientHandshake("observer", "kiln-observer", settings_.secret);
    client_.set_reconnect_max(settings_.reconnect_max_ms);
    vcs_ = load_new_plugins(settings_);

    for (const auto &repo : settings_.repos) {
        auto shared = std::make_shared<const WatchedRepo>(repo);
        for (const auto &branch : repo.branches)
            add_watch(shared, branch);
    }

    // Client runs these through core's exception boundary (net.hpp): a
    // throw closes the dispatcher connection, and the reconnect resends.
    client_.on_connected = [this](Connection &conn) {
        conn.set_idle_timeout(settings_.dispatcher_timeout_ms);
        conn.send(handshake_.hello(next_hello_id_++));
    };
    client_.on_message = [this](Connection &conn, Message &&msg) {
        on_message(conn, std::move(msg));
    };
    client_.on_disconnected = [this](const std::string &why) {
        if (ready_)
            log_warning("dispatcher %s: disconnected: %s; %zu commit(s) wait in the outbox",
                        client_.address().c_str(), why.c_str(), outbox_.size());
        ready_ = false;
        outbox_.mark_all_unsent(); // sent again after the next hello
        if (ack_timer_)
            uv_timer_stop(ack_timer_);
        if (refused_timer_)
            uv_timer_stop(refused_timer_); // the refused ones go with the rest
    };
}

Observer::~Observer()
{
    for (auto &w : watches_)
        close_timer(w->timer);
    close_timer(ack_timer_);
    close_timer(refused_timer_);
}

void Observer::close_timer(uv_timer_t *&timer)
{
    if (timer)
        uv_close(reinterpret_cast<uv_handle_t *>(timer),
                 [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_timer_t *>(h); });
    timer = nullptr;
}

Observer::Watch &Observer::add_watch(std::shared_ptr<const WatchedRepo> repo,
                                     const std::string &branch)
{
    auto w = std::make_unique<Watch>();
    w->owner = this;
    w->index = watches_.size();
    w->repo = std::move(repo);
    w->branch = branch;
    watches_.push_back(std::move(w));
    return *watches_.back();
}

void Observer::start_watch(Watch &w, uint64_t delay_ms)
{
    if (!w.timer) {
        w.timer = new uv_timer_t;
        uv_timer_init(loop_, w.timer);
        w.timer->data = &w;
    }
    uv_timer_start(
        w.timer,
        [](uv_timer_t *t) noexcept {
            auto *watch = static_cast<Watch *>(t->data);
            guarded("poll", [&] { watch->owner->poll(*watch); });
        },
        delay_ms, w.repo->interval_ms);
}

void Observer::retire(Watch &w)
{
    w.retired = true;
    close_timer(w.timer);
    if (w.op)
        vcs_.at(w.repo->job.vcs)->cancel(w.op);
    w.poll_again = false;
}

size_t Observer::watching() const
{
    size_t n = 0;
    for (const auto &w : watches_)
        n += w->retired ? 0 : 1;
    return n;
}

std::string Observer::status() const
{
    std::string s = "watching " + std::to_string(watching()) + " branch(es); outbox " +
                    std::to_string(outbox_.size());
    if (stopping_)
        s = "stopping; " + s;
    else if (!ready_)
        s += "; dispatcher " + startup_.dispatcher + " not connected";
    else if (outbox_.refused())
        s += " (" + std::to_string(outbox_.refused()) + " refused by the dispatcher: offered again)";
    else if (outbox_full_)
        s += " (full: polling paused)";
    return s;
}

std::map<std::string, std::unique_ptr<Plugin>> Observer::load_new_plugins(ObserverSettings &s)
{
    std::map<std::string, std::unique_ptr<Plugin>> fresh;
    auto dirs = plugin_dirs(s.plugin_dirs);
    for (const auto &repo : s.repos) {
        const std::string &vcs = repo.job.vcs;
        if (!vcs_.count(vcs) && !fresh.count(vcs))
            fresh[vcs] = load_plugin(loop_, dirs, vcs, KILN_PLUGIN_VCS,
                                     s.plugin_tables.table(vcs), "kiln-observer");
    }
    for (const auto &entry : vcs_)
        s.plugin_tables.accept(entry.first); // loaded at start; its settings stay
    s.plugin_tables.reject_unknown_keys();
    return fresh;
}

void Observer::reload(ObserverConfig c)
{
    if (stopping_)
        return;
    // What can throw comes first: a plugin that does not load changes nothing.
    auto fresh = load_new_plugins(c.settings);
    warn_needs_restart(startup_, c.startup);
    for (auto &entry : fresh)
        vcs_.emplace(entry.first, std::move(entry.second));
    update_watches(c.settings.repos);
    settings_ = std::move(c.settings);

    handshake_.set_key(settings_.secret);
    client_.set_reconnect_max(settings_.reconnect_max_ms);
    if (Connection *conn = client_.connection())
        conn->set_idle_timeout(settings_.dispatcher_timeout_ms);
}

void Observer::update_watches(const std::vector<WatchedRepo> &repos)
{
    // Watches: kept (with the new settings), retired, or added.
    std::map<WatchKey, std::shared_ptr<const WatchedRepo>> wanted;
    for (const auto &repo : repos) {
        auto shared = std::make_shared<const WatchedRepo>(repo);
        for (const auto &branch : repo.branches)
            wanted[WatchKey{repo.job.repo, branch}] = shared;
    }
    std::map<WatchKey, std::string> last; // newest commit enqueued, per key
    size_t kept = 0, removed = 0, added = 0;
    for (size_t i = 0; i < watches_.size(); i++) {
        Watch &w = *watches_[i];
        WatchKey key{w.repo->job.repo, w.branch};
        if (!w.last.empty())
            last[key] = w.last;
        if (w.retired)
            continue;
        auto it = wanted.find(key);
        // Another url or vcs is another source: a new watch polls it.
        if (it == wanted.end() || it->second->job.url != w.repo->job.url ||
            it->second->job.vcs != w.repo->job.vcs) {
            log_notice("reload: repo %s %s: no longer watched%s", key.first.c_str(),
                       key.second.c_str(),
                       outbox_.pending(w.index) ? "; its commits in the outbox are still sent"
                                                : "");
            retire(w);
            removed++;
            continue;
        }
        uint64_t interval = w.repo->interval_ms;
        w.repo = it->second;
        if (interval != w.repo->interval_ms && w.timer)
            start_watch(w, w.repo->interval_ms);
        wanted.erase(it);
        kept++;
    }
    for (auto &[key, repo] : wanted) {
        Watch &w = add_watch(repo, key.second);
        auto l = last.find(key);
        auto h = handed_over_.find(key);
        if (l != last.end())
            w.last = l->second;
        else if (h != handed_over_.end())
            w.last = h->second;
        log_notice("reload: repo %s %s: now watched%s%.12s", key.first.c_str(),
                   key.second.c_str(), w.last.empty() ? "" : ", after ", w.last.c_str());
        start_watch(w, 0);
        added++;
    }
    log_notice("reload: watching %zu branch(es) of %zu repositories: %zu kept, %zu added, %zu "
               "removed",
               watching(), repos.size(), kept, added, removed);
}

bool Observer::start()
{
    if (!load_state())
        return false;
    log_notice("watching %zu branch(es) of %zu repositories; dispatcher %s", watches_.size(),
               settings_.repos.size(), startup_.dispatcher.c_str());
    for (auto &w : watches_)
        start_watch(*w, 0);
    ack_timer_ = new uv_timer_t;
    uv_timer_init(loop_, ack_timer_);
    ack_timer_->data = this;
    refused_timer_ = new uv_timer_t;
    uv_timer_init(loop_, refused_timer_);
    refused_timer_->data = this;
    client_.start();
    return true;
}

bool Observer::load_state()
{
    std::string error;
    if (!state_.load(handed_over_, error)) {
        log_err("state: %s", error.c_str());
        return false;
    }
    for (auto &w : watches_) {
        auto it = handed_over_.find(WatchKey{w->repo->job.repo, w->branch});
        if (it != handed_over_.end()) {
            w->last = it->second;
            log_info("repo %s %s: resuming after %.12s, the last commit acknowledged",
                     w->repo->job.repo.c_str(), w->branch.c_str(), w->last.c_str());
        }
    }
    // Kept, not dropped: a repo taken out of the config by mistake resumes
    // where it was when it comes back.
    for (const auto &[key, commit] : handed_over_) {
        bool watched = false;
        for (auto &w : watches_)
            watched = watched || (w->repo->job.repo == key.first && w->branch == key.second);
        if (!watched)
            log_notice("state %s: repo %s %s is not watched; its entry is kept",
                       state_.path().c_str(), key.first.c_str(), key.second.c_str());
    }
    // Now rather than at the first ack: a state dir we cannot write is a
    // start-up error, not a surprise after the first commit.
    int rc = state_.write_now(handed_over_);
    if (rc < 0) {
        log_err("state %s: cannot write: %s", state_.path().c_str(), uv_strerror(rc));
        return false;
    }
    return true;
}

void Observer::stop()
{
    stopping_ = true;
    for (auto &w : watches_) {
        if (w->timer)
            uv_timer_stop(w->timer);
        if (w->op && !w->retired) // a retired watch's poll is cancelled already
            vcs_.at(w->repo->job.vcs)->cancel(w->op);
    }
    if (ack_timer_)
        uv_timer_stop(ack_timer_);
    if (refused_timer_)
        uv_timer_stop(refused_timer_);
    client_.stop();
}

void Observer::poll(Watch &w)
{
    if (w.polling || stopping_ || w.retired)
        return; // a slow poll is still going: skip this tick rather than pile up
    if (outbox_.size() >= settings_.max_outbox) {
        // Memory stays bounded while the dispatcher is away; what is not
        // polled now is listed later (up to max_backlog per branch).
        if (!outbox_full_)
            log_warning("outbox: %zu commits wait for the dispatcher (max_outbox %zu); polling "
                        "paused until it acknowledges some",
                        outbox_.size(), settings_.max_outbox);
        outbox_full_ = true;
        return;
    }
    Plugin &vcs = *vcs_.at(w.repo->job.vcs);
    std::string cache = startup_.state_dir + "/cache/" + w.repo->job.vcs;
    kiln_vcs_poll_request req{};
    req.url = w.repo->job.url.c_str();
    req.branch = w.branch.c_str();
    req.since = w.last.c_str();
    req.max_commits = settings_.max_backlog;
    req.cache_dir = cache.c_str();
    auto cb = [](void *arg, int status, const char *error,
                 const kiln_vcs_poll_result *res) noexcept {
        auto *watch = static_cast<Watch *>(arg);
        watch->polling = false;
        watch->op = nullptr;
        guarded("poll", [&] { watch->owner->on_polled(*watch, status, error, res); });
        if (watch->poll_again && status != UV_ECANCELED) {
            watch->poll_again = false;
            guarded("poll", [&] { watch->owner->poll(*watch); });
        }
    };
    int rc = vcs.vcs().poll(vcs.self(), &req, cb, &w, &w.op);
    if (rc != 0)
        log_err("repo %s %s: poll: cannot start: %s", w.repo->job.repo.c_str(), w.branch.c_str(),
                uv_strerror(rc));
    else
        w.polling = true;
}

void Observer::on_polled(Watch &w, int status, const char *error, const kiln_vcs_poll_result *res)
{
    if (w.retired)
        return; // removed by a reload while it polled
    const char *repo = w.repo->job.repo.c_str(), *branch = w.branch.c_str();
    if (status != 0) {
        if (status != UV_ECANCELED)
            log_warning("repo %s %s: poll: %s", repo, branch, error ? error : uv_strerror(status));
        return;
    }
    // A deleted branch keeps its `last`: when it comes back, the commits
    // after it are listed (or, if history was rewritten, its new head).
    if (!res->head) {
        if (!w.branch_missing)
            log_warning("repo %s: branch %s does not exist (or was deleted); waiting for it",
                        repo, branch);
        w.branch_missing = true;
        return;
    }
    if (w.branch_missing)
        log_notice("repo %s: branch %s exists again, at %.12s", repo, branch, res->head);
    w.branch_missing = false;
    if (!valid_commit_id(res->head)) {
        log_err("repo %s %s: plugin %s gave head '%s', not a commit id; ignored", repo, branch,
                w.repo->job.vcs.c_str(), res->head);
        return;
    }
    // Logged once: `last` moves to the new head below, which is found next time.
    if (!w.last.empty() && !res->since_found)
        log_warning("repo %s %s: %.12s is no longer in the history (force-push?); testing the "
                    "new head %.12s",
                    repo, branch, w.last.c_str(), res->head);
    if (res->truncated)
        log_warning("repo %s %s: more than %u new commits after %.12s; skipping the older ones, "
                    "testing the newest %zu (max_backlog)",
                    repo, branch, settings_.max_backlog, w.last.c_str(), res->n_commits);
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

void Observer::enqueue(Watch &w, const std::string &commit)
{
    if (!valid_commit_id(commit)) {
        log_err("repo %s: plugin %s gave '%s', not a commit id; ignored", w.repo->job.repo.c_str(),
                w.repo->job.vcs.c_str(), commit.c_str());
        return;
    }
    JobSpec s = w.repo->job; // the repository's template, for this branch and commit
    s.branch = w.branch;
    s.commit = commit;
    log_info("repo %s %s: new commit %.12s", s.repo.c_str(), s.branch.c_str(), commit.c_str());
    outbox_.push(w.index, std::move(s));
}

} // namespace kiln
