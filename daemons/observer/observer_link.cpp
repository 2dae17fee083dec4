// kiln-observer: the dispatcher connection — the hello exchange (and
// authentication), sending the outbox, acknowledgements and their
// deadline, refused commits offered again, notifications.
#include "observer.hpp"

#include <algorithm>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

void Observer::flush()
{
    if (!ready_)
        return;
    // A send that fails means the connection is closing: on_disconnected
    // then marks everything unsent again.
    for (const Commit &c : outbox_.take_unsent())
        client_.send(c);
    arm_ack_timer(false);
}

void Observer::arm_ack_timer(bool restart)
{
    if (!ack_timer_)
        return;
    if (!outbox_.awaiting_ack() || settings_.ack_timeout_ms == 0) {
        uv_timer_stop(ack_timer_);
        return;
    }
    if (restart || !uv_is_active(reinterpret_cast<uv_handle_t *>(ack_timer_)))
        uv_timer_start(
            ack_timer_,
            [](uv_timer_t *t) noexcept {
                guarded("ack timeout", [&] { static_cast<Observer *>(t->data)->on_ack_timeout(); });
            },
            settings_.ack_timeout_ms, 0);
}

void Observer::on_notify(const Notify &n)
{
    if (stopping_)
        return; // uv_timer_again would re-arm a stopped timer
    const char *branch = n.branch.empty() ? "(all branches)" : n.branch.c_str();
    bool repo_known = false;
    size_t matched = 0;
    for (auto &w : watches_) {
        if (w->retired || w->repo->job.repo != n.repo)
            continue;
        repo_known = true;
        if (!n.branch.empty() && w->branch != n.branch)
            continue;
        matched++;
        // The next regular poll comes a full interval after this one: the
        // notification just did its work.
        if (w->timer)
            uv_timer_again(w->timer);
        if (w->polling) {
            w->poll_again = true; // that poll may predate the push
            log_info("repo %s %s: notified while polling; polling again after it",
                     n.repo.c_str(), w->branch.c_str());
        } else {
            log_info("repo %s %s: notified; polling now", n.repo.c_str(), w->branch.c_str());
            poll(*w);
        }
    }
    if (!repo_known)
        log_warning("notify %s %s: repository %s is not watched here; ignored", n.repo.c_str(),
                    branch, n.repo.c_str());
    else if (!matched)
        log_warning("notify %s %s: branch %s of %s is not watched here; ignored", n.repo.c_str(),
                    branch, branch, n.repo.c_str());
}

void Observer::on_message(Connection &conn, Message &&msg)
{
    if (auto *hello = std::get_if<Hello>(&msg)) {
        std::string error;
        if (!handshake_.reply(conn, *hello, next_hello_id_++, error))
            return; // the Client says why, once per backoff step
        ready_ = true;
        log_info("dispatcher %s: connected; %zu commit(s) to send", conn.peer().c_str(),
                 outbox_.size());
        flush();
    } else if (auto *ack = std::get_if<Ack>(&msg)) {
        on_ack(*ack);
    } else if (auto *notify = std::get_if<Notify>(&msg)) {
        on_notify(*notify);
    } else if (auto *error = std::get_if<Error>(&msg)) {
        if (const Commit *refused = outbox_.refuse(error->id))
            return on_refused(conn, *refused, error->message);
        // Not dropped from the outbox: the error may be passing (a database
        // that is full), and a lost commit is worse than a retried one.
        log_err("dispatcher %s: error (request %llu): %s", conn.peer().c_str(),
                static_cast<unsigned long long>(error->id), error->message.c_str());
    } else if (!std::holds_alternative<Heartbeat>(msg)) {
        conn.fail(0, std::string("unexpected message ") + message_type(msg));
    }
}

void Observer::on_ack(const Ack &ack)
{
    Outbox::AckResult r = outbox_.ack(ack.id);
    if (!r.known) {
        log_debug("dispatcher: ack for request %llu, not in the outbox; ignored",
                  static_cast<unsigned long long>(ack.id));
        return;
    }
    log_debug("commit %.12s: acknowledged as job %llu", r.commit.c_str(),
              static_cast<unsigned long long>(ack.job_id));
    if (r.was_refused)
        refused_backoff_.reset(); // the dispatcher takes them again
    if (r.advance) {
        const Watch &w = *watches_.at(r.advance->watch);
        handed_over_[WatchKey{w.repo->job.repo, w.branch}] = r.advance->commit;
        state_.save(handed_over_);
    }
    arm_ack_timer(true); // the dispatcher makes progress: a full ack_timeout for the rest
    if (outbox_full_ && outbox_.size() < settings_.max_outbox) {
        log_notice("outbox: %zu commit(s) wait; polling resumed", outbox_.size());
        outbox_full_ = false;
    }
}

void Observer::on_ack_timeout()
{
    Connection *conn = client_.connection();
    if (!outbox_.awaiting_ack() || !conn)
        return;
    log_warning("dispatcher %s: no acknowledgement for %llu ms; reconnecting to send %zu "
                "commit(s) again",
                conn->peer().c_str(), static_cast<unsigned long long>(settings_.ack_timeout_ms),
                outbox_.size());
    conn->close("acknowledgement overdue");
}

// The dispatcher answered a commit with an error (max_queued_per_repo: its
// repository's queue is full).  The commit stays in the outbox; so do the
// later ones, which the dispatcher refuses too so as to keep their order.
// After a backoff a reconnect offers every unacknowledged commit again, in
// order (a reconnect, because the dispatcher refuses the later commits of
// that repository for as long as the connection lasts).
void Observer::on_refused(Connection &conn, const Commit &commit, const std::string &why)
{
    arm_ack_timer(false); // a refused commit is no longer awaited
    if (!refused_timer_ || uv_is_active(reinterpret_cast<uv_handle_t *>(refused_timer_))) {
        log_debug("dispatcher %s: commit %.12s of %s %s refused too: %s", conn.peer().c_str(),
                  commit.spec.commit.c_str(), commit.spec.repo.c_str(),
                  commit.spec.branch.c_str(), why.c_str());
        return;
    }
    uint64_t delay = refused_backoff_.next_delay_ms();
    if (settings_.ack_timeout_ms)
        delay = std::min(delay, settings_.ack_timeout_ms);
    log_warning("dispatcher %s: commit %.12s of %s %s refused: %s; it stays in the outbox and "
                "is offered again in %llu ms",
                conn.peer().c_str(), commit.spec.commit.c_str(), commit.spec.repo.c_str(),
                commit.spec.branch.c_str(), why.c_str(), static_cast<unsigned long long>(delay));
    uv_timer_start(
        refused_timer_,
        [](uv_timer_t *t) noexcept {
            guarded("refused commits",
                    [&] { static_cast<Observer *>(t->data)->offer_refused_again(); });
        },
        delay, 0);
}

void Observer::offer_refused_again()
{
    Connection *conn = client_.connection();
    if (!conn || outbox_.refused() == 0 || stopping_)
        return;
    log_notice("dispatcher %s: reconnecting to offer %zu refused commit(s) again (%zu in the "
               "outbox)",
               conn->peer().c_str(), outbox_.refused(), outbox_.size());
    conn->close("offering refused commits again");
}

} // namespace kiln
