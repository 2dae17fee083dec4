#pragma once
// The runners: those registered now (by name, with their connection, slots
// and labels), and those that held jobs when the dispatcher last stopped and
// are expected back within restart_grace.  Which jobs a runner holds is not
// here: the JobTable owns that (held_by).
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <kiln/net.hpp>

namespace kiln {

struct RunnerSlotInfo {
    std::string name;
    std::shared_ptr<Connection> conn;
    uint32_t slots = 1;
    std::vector<std::string> labels;
    std::string paused; // why it takes no jobs (its min_free), as it said
    int64_t connected_unix_ms = 0;
    uint64_t completed = 0;
    // The jobs it held before this connection (a dispatcher or runner
    // restart), not yet confirmed: those its first heartbeat does not list
    // are requeued.
    std::set<uint64_t> adopted;
    bool awaiting_heartbeat = false;
};

// What `kilnctl runners` and the page show: "ready", "draining" (0 slots,
// stopping) or "paused: <why>".
std::string runner_state(const RunnerSlotInfo &r);

class RunnerRegistry {
  public:
    // The registered runner of this name, or nullptr.
    RunnerSlotInfo *find(const std::string &name);
    const RunnerSlotInfo *find(const std::string &name) const;
    // The registered runner whose live connection this is, or nullptr.
    RunnerSlotInfo *on(const Connection &conn);
    const std::map<std::string, RunnerSlotInfo> &all() const { return runners_; }
    size_t size() const { return runners_.size(); }
    // Slots of all runners; of those that have every label in `labels`.
    uint32_t slots() const;
    uint32_t slots_for(const std::vector<std::string> &labels) const;

    // A runner registered on a new connection (its old one, if any, removed
    // first), holding `adopted` from before.
    RunnerSlotInfo &add(const std::string &name, std::shared_ptr<Connection> conn,
                        std::set<uint64_t> adopted, int64_t now);
    void remove(const std::string &name) { runners_.erase(name); }

    // At start: this runner held jobs when the dispatcher stopped.
    void expect(const std::string &name) { expected_.insert(name); }
    size_t expected() const { return expected_.size(); }
    // The expected runners that have not registered; none is expected after.
    std::vector<std::string> take_missing();

  private:
    std::map<std::string, RunnerSlotInfo> runners_;
    std::set<std::string> expected_;
};

} // namespace kiln
