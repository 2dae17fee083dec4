#pragma once
// kiln-observer's logic: polls each watched branch through its vcs plugin on
// a timer and sends every new commit (or only the newest, in mode "latest")
// to the dispatcher, so that no commit is lost whatever crashes:
//
//  - commits wait in the Outbox until the dispatcher acknowledges them (it
//    acks only once they are persisted); all unacknowledged ones are sent
//    again after every reconnect, and when an ack is overdue (ack_timeout);
//  - per watch, the last commit acknowledged (with every earlier one) is
//    kept in STATE_DIR/handed-over; after a restart polling starts from
//    there, so whatever was not acknowledged is listed and sent again (the
//    dispatcher deduplicates by repo and commit);
//  - polling goes on while the dispatcher is down, until the outbox holds
//    max_outbox commits;
//  - a commit the dispatcher refuses (an error frame answering it: its
//    repository has max_queued_per_repo jobs queued) stays in the outbox and
//    is offered again, with every unacknowledged one in order, by a
//    reconnect after a backoff (about 1 s, doubling up to ack_timeout).
//
// A Notify relayed by the dispatcher (kilnctl notify, from a post-receive
// hook) polls the named repository (or one branch of it) at once and
// restarts its interval timer; a notification that arrives while a poll of
// that branch runs is kept and polls again right after it, since that poll
// may have listed the branch before the push.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include <kiln/auth.hpp>
#include <kiln/net.hpp>
#include <kiln/plugin_loader.hpp>

#include "observer_config.hpp"
#include "observer_state.hpp"
#include "outbox.hpp"

namespace kiln {

class Observer {
  public:
    // Loads the vcs plugins; throws PluginError or ConfigError.
    Observer(uv_loop_t *loop, ObserverConfig config);
    ~Observer();

    // Load the state file and start polling and connecting.  False (after
    // logging why, naming the file and line) when the state file is
    // unreadable, corrupt or cannot be written: the observer must not start
    // without knowing what it already handed over.
    bool start();
    // Stop polling and disconnect; a state write in flight still completes.
    void stop();
    // SIGHUP: watch what the new config lists — new repositories and
    // branches start polling at once, removed ones stop (their commits in
    // the outbox are still delivered, their handed-over entries kept),
    // changed ones (interval, exec, labels, ...) apply to their next commit;
    // apply the [observer] intervals and limits.  A vcs plugin not loaded
    // yet is loaded first (throws PluginError, changing nothing).
    // dispatcher, state_dir and max_frame need a restart (logged).
    void reload(ObserverConfig config);
    // One line for systemd's STATUS=: "watching 3 branches; outbox 0".
    std::string status() const;

  private:
    struct Watch {
        Observer *owner = nullptr;
        size_t index = 0; // in watches_, and the Outbox's watch number
        std::shared_ptr<const WatchedRepo> repo; // replaced by a reload
        bool retired = false; // no longer configured: never polled again
        std::string branch;
        std::string last; // `since` of the next poll: the newest commit enqueued
        bool polling = false;
        bool poll_again = false; // notified while polling: poll once more when done
        bool branch_missing = false;
        uv_timer_t *timer = nullptr;
        void *op = nullptr;
    };

    // The vcs plugins `s` names that are not loaded yet (throws PluginError);
    // checks s.plugin_tables for keys no plugin takes.
    std::map<std::string, std::unique_ptr<Plugin>> load_new_plugins(ObserverSettings &s);
    // Reload: keep, retire or add a watch per (repository, branch) of `repos`.
    void update_watches(const std::vector<WatchedRepo> &repos);
    bool load_state();
    Watch &add_watch(std::shared_ptr<const WatchedRepo> repo, const std::string &branch);
    void start_watch(Watch &watch, uint64_t delay_ms);
    void retire(Watch &watch);
    size_t watching() const;
    void poll(Watch &watch);
    void on_notify(const Notify &notify);
    void on_polled(Watch &watch, int status, const char *error, const kiln_vcs_poll_result *res);
    void enqueue(Watch &watch, const std::string &commit);
    void flush();
    void on_message(Connection &conn, Message &&msg);
    void on_ack(const Ack &ack);
    void arm_ack_timer(bool restart);
    void on_ack_timeout();
    void on_refused(Connection &conn, const Commit &commit, const std::string &why);
    void offer_refused_again();
    void close_timer(uv_timer_t *&timer);

    uv_loop_t *loop_;
    const ObserverStartup startup_; // as started: a reload keeps it (and says so)
    ObserverSettings settings_;     // replaced by a reload
    std::map<std::string, std::unique_ptr<Plugin>> vcs_;
    // Never shrinks: a watch's index names it in the outbox, so a removed
    // one stays (retired) for its commits still awaiting an ack.
    std::vector<std::unique_ptr<Watch>> watches_;
    Client client_;
    bool ready_ = false; // connected and greeted
    bool stopping_ = false;
    bool outbox_full_ = false; // polling paused: max_outbox reached
    // Hello and auth ids live apart from the outbox's commit ids (from 1),
    // so an ack of one can never be taken for the other.
    uint64_t next_hello_id_ = uint64_t(1) << 63;
    ClientHandshake handshake_;
    Outbox outbox_;
    HandedOver handed_over_; // also keeps entries of watches no longer configured
    StateFile state_;
    uv_timer_t *ack_timer_ = nullptr;
    uv_timer_t *refused_timer_ = nullptr; // offers refused commits again
    Backoff refused_backoff_{1000, 30000};
};

} // namespace kiln
