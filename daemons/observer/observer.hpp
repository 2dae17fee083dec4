#pragma once
// kiln-observer's logic: polls each watched branch through its vcs plugin on
// a timer and sends every new commit (or only the newest, in mode "latest")
// to the dispatcher.  Commits wait in an outbox until the dispatcher acks
// them, and are sent again after a reconnect, so a dispatcher outage delays
// commits but does not lose them.
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include <kiln/net.hpp>
#include <kiln/plugin_loader.hpp>

#include "observer_config.hpp"

namespace kiln {

class Observer {
  public:
    // Loads the vcs plugins; throws PluginError or ConfigError.
    Observer(uv_loop_t *loop, ObserverConfig config);
    ~Observer();

    void start();
    void stop();

  private:
    struct Watch {
        Observer *owner = nullptr;
        const WatchedRepo *repo = nullptr;
        std::string branch;
        std::string last;  // the newest commit handed to the outbox
        bool polling = false;
        bool branch_missing = false;
        uv_timer_t *timer = nullptr;
        void *op = nullptr;
    };
    struct Outgoing {
        Commit commit;
        bool sent = false;
    };

    void poll(Watch &watch);
    void on_polled(Watch &watch, int status, const char *error, const kiln_vcs_poll_result *res);
    void enqueue(const Watch &watch, const std::string &commit);
    void flush();
    void on_message(Connection &conn, Message &&msg);

    uv_loop_t *loop_;
    ObserverConfig config_;
    std::map<std::string, std::unique_ptr<Plugin>> vcs_;
    std::vector<std::unique_ptr<Watch>> watches_;
    Client client_;
    bool ready_ = false; // connected and greeted
    bool stopping_ = false;
    uint64_t next_id_ = 1;
    std::deque<Outgoing> outbox_;
};

} // namespace kiln
